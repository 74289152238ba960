/**
 * Appends every event to a JSON-lines file. Writes are buffered by the stream and flushed on
 * close; the hash chain and tamper evidence come in a later change.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { EventBus, RegistryEvent } from './events.js';

export class AuditLog {
  private readonly out: WriteStream;
  private readonly unsubscribe: () => void;

  constructor(path: string, bus: EventBus) {
    mkdirSync(dirname(path), { recursive: true });
    this.out = createWriteStream(path, { flags: 'a', mode: 0o600 });
    this.unsubscribe = bus.subscribe((e) => this.write(e));
  }

  private write(e: RegistryEvent): void {
    this.out.write(`${JSON.stringify(e)}\n`);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await new Promise<void>((res) => this.out.end(res));
  }
}
