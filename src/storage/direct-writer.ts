/**
 * A Writable that appends to a file open with O_DIRECT (ADR 0024): the bytes go from a pool
 * thread's aligned buffer to the device, not through the page cache. Whole blocks are written as
 * they come; the bytes of a partial block wait (copied, at most DIRECT_ALIGN - 1 of them) for the
 * next write, and the last ones go through the page cache when the body ends. The commit's fsync
 * then only has to flush the device's cache and the file's metadata. Like FlushingWriter, it
 * makes no durability promise itself.
 */
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { appendDirect } from './native-fs.js';

export interface DirectWriterOptions {
  /** the file's size when the writer starts: the first byte goes there */
  readonly position: number;
  readonly highWaterMark?: number;
  /** hands each chunk back once the file has taken it (AppendOptions.recycle) */
  readonly recycle?: ((chunk: Buffer) => void) | undefined;
}

/** Most chunks in one native job (native/fs.c takes at most 1,024). */
const MAX_CHUNKS = 512;

export class DirectWriter extends Writable {
  private position: number;
  /** bytes already taken from the caller but not yet written: a partial block */
  private carry: Buffer | undefined;
  /** the write running, if any: it uses the descriptor itself, unknown to the FileHandle */
  private running: Promise<void> | undefined;

  constructor(
    private readonly fh: FileHandle,
    private readonly opts: DirectWriterOptions,
  ) {
    super({ highWaterMark: opts.highWaterMark ?? 1 << 20 });
    this.position = opts.position;
  }

  /**
   * Resolves once no write is running. The file must not be closed before: a file opened
   * meanwhile could take its descriptor's number, and the write would land in it.
   */
  async idle(): Promise<void> {
    await this.running?.catch(() => undefined);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const buffers = chunks.map((c) => c.chunk);
    this.track(this.writeAll(buffers, false))
      .then(() => {
        const recycle = this.opts.recycle;
        if (recycle !== undefined) for (const b of buffers) recycle(b);
      })
      .then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.track(this.writeAll([], true)).then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.idle().then(() => cb(err), cb);
  }

  private track(write: Promise<void>): Promise<void> {
    this.running = write;
    return write;
  }

  private async writeAll(buffers: Buffer[], final: boolean): Promise<void> {
    for (let at = 0; at < buffers.length || (final && at === 0); at += MAX_CHUNKS) {
      const batch = buffers.slice(at, at + MAX_CHUNKS);
      const last = final && at + MAX_CHUNKS >= buffers.length;
      const carry = this.carry;
      const parts = carry === undefined ? batch : [carry, ...batch];
      if (parts.length === 0) return;
      const total = parts.reduce((n, b) => n + b.length, 0);
      const written = await appendDirect(this.fh.fd, this.position, parts, last);
      this.position += written;
      const left = total - written;
      // What was not written is the tail of `parts`: kept (copied: the caller's chunks go back
      // to it now) for the next write.
      this.carry = left === 0 ? undefined : tail(parts, left);
    }
  }
}

/** A copy of the last `n` bytes of `parts`. */
function tail(parts: Buffer[], n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let at = n;
  for (let i = parts.length - 1; i >= 0 && at > 0; i--) {
    const b = parts[i] as Buffer;
    const k = Math.min(b.length, at);
    b.copy(out, at - k, b.length - k);
    at -= k;
  }
  return out;
}
