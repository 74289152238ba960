/** Stream helpers for tests: collect a stream, and request bodies the test controls chunk by chunk. */
import { Readable } from 'node:stream';

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/** A request body that yields the given chunks, then ends. */
export function bodyOf(...chunks: Buffer[]): Readable {
  return Readable.from(chunks);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface GatedBody {
  readonly body: Readable;
  /** resolves when the consumer first reads: the store has accepted the body and is streaming it */
  readonly started: Promise<void>;
  /** resolves when the consumer has taken the first chunk and asks for more */
  readonly firstChunkTaken: Promise<void>;
  /** send the rest and end the body */
  finish(rest?: Buffer): void;
  /** fail the body midway, as a client connection that drops does */
  fail(err: Error): void;
}

/**
 * A body whose first chunk is sent when the store starts reading; the rest waits for the test.
 * Nothing is pushed before the first read, so `started` proves the store is consuming the body.
 */
export function gatedBody(first: Buffer): GatedBody {
  let reads = 0;
  let onStarted!: () => void;
  let onTaken!: () => void;
  const started = new Promise<void>((r) => (onStarted = r));
  const firstChunkTaken = new Promise<void>((r) => (onTaken = r));
  const body = new Readable({
    read() {
      reads++;
      if (reads === 1) {
        this.push(first);
        onStarted();
      } else if (reads === 2) onTaken();
    },
  });
  return {
    body,
    started,
    firstChunkTaken,
    finish(rest) {
      if (rest !== undefined) body.push(rest);
      body.push(null);
    },
    fail(err) {
      body.destroy(err);
    },
  };
}
