/**
 * A Writable that appends to an open file and starts an fdatasync(2) in the background every
 * `flushEvery` bytes, so that dirty pages reach the disk while the rest of the body is still
 * arriving. The fsync that makes a blob durable at commit then only has the tail left to flush:
 * on a 1 GiB push this turns "receive, then wait for the disk" into "receive while the disk
 * writes" (measured in docs/benchmarks.md). The writer never makes durability promises itself.
 */
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/**
 * Background flushes running in this process at once. libuv's pool has 4 threads, shared with
 * every other file operation (pull reads, opens, scrypt); flushes must leave room for them.
 */
const MAX_FLUSHES = 2;
let flushesRunning = 0;

export interface FlushingWriterOptions {
  /** bytes written between background flushes; 0 disables them */
  readonly flushEvery: number;
  /**
   * How many bytes the body will bring (Content-Length), when known. No flush is started once
   * they have all been written: the caller would only wait for it.
   */
  readonly expectedBytes?: number | undefined;
  readonly highWaterMark?: number;
  /** hands each chunk back once the file has taken it (AppendOptions.recycle) */
  readonly recycle?: ((chunk: Buffer) => void) | undefined;
}

export class FlushingWriter extends Writable {
  /** the error of a failed background flush: the caller must not trust anything written */
  get flushFailed(): Error | undefined {
    return this.flushError;
  }

  private sinceFlush = 0;
  private written = 0;
  private flushing: Promise<void> | undefined;
  private flushError: Error | undefined;

  constructor(
    private readonly fh: FileHandle,
    private readonly opts: FlushingWriterOptions,
  ) {
    super({ highWaterMark: opts.highWaterMark ?? 1 << 20 });
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const buffers = chunks.map((c) => c.chunk);
    this.writeAll(buffers).then(() => {
      const recycle = this.opts.recycle;
      if (recycle !== undefined) for (const b of buffers) recycle(b);
      cb();
    }, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.settle().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Never let the caller close the file while a flush is still using it.
    this.settle().then(
      () => cb(err),
      () => cb(err),
    );
  }

  private async writeAll(buffers: Buffer[]): Promise<void> {
    if (this.flushError !== undefined) throw this.flushError;
    let pending = buffers;
    while (pending.length > 0) {
      const { bytesWritten } = await this.fh.writev(pending);
      if (bytesWritten === 0) throw new Error('the file accepted no bytes');
      this.sinceFlush += bytesWritten;
      this.written += bytesWritten;
      pending = remainder(pending, bytesWritten);
    }
    const every = this.opts.flushEvery;
    const more = this.opts.expectedBytes === undefined || this.written < this.opts.expectedBytes;
    if (every > 0 && more && this.sinceFlush >= every && this.flushing === undefined && flushesRunning < MAX_FLUSHES) {
      // The flush only helps (the commit's fsync is what makes bytes durable): when other
      // uploads already hold the slots, skip it rather than fill libuv's pool with fdatasyncs.
      this.sinceFlush = 0;
      flushesRunning++;
      this.flushing = this.fh.datasync().then(
        () => {
          flushesRunning--;
          this.flushing = undefined;
        },
        (e: unknown) => {
          flushesRunning--;
          this.flushing = undefined;
          this.flushError = e instanceof Error ? e : new Error(String(e));
        },
      );
    }
  }

  private async settle(): Promise<void> {
    await this.flushing;
    if (this.flushError !== undefined) throw this.flushError;
  }
}

/** The buffers left after the first `written` bytes of `buffers` (short writes are rare, not impossible). */
function remainder(buffers: Buffer[], written: number): Buffer[] {
  let skip = written;
  const out: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
