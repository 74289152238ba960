/**
 * A Readable over a byte range of an open file whose chunks can be handed back for reuse.
 *
 * Why: a 1 GiB pull through fs.createReadStream allocates 1,024 fresh 1 MiB buffers, and on a
 * process with Bulwark's heap the garbage collections that external allocation triggers cost
 * more CPU than the copies themselves (measured: 1.2 CPU s of GC for 3 GiB served). A consumer
 * that knows when a chunk has left the process (the HTTP pump in routes/, after the socket
 * write callback) calls `recycle(chunk)`; the next read then reuses that memory. A consumer that
 * never recycles (any ordinary pipe) gets fresh buffers, exactly like createReadStream.
 */
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { readDirect, readRange } from './native-fs.js';
import { RecyclePool, sharedFreeList } from './recycle-pool.js';

const CHUNK = 1 << 20;
/** Buffers a stream keeps for itself: enough to keep the socket busy while the next read runs. */
const POOL = 4;
/**
 * Free buffers waiting for the next stream, process-wide: a buffer per pull cost a small pull
 * more than its read (a fresh 1 MiB is 256 pages the kernel faults in, then the collector frees).
 * Two: enough for the next pull to start, few enough not to weigh on idle memory. ADR 0015.
 */
const SHARED = 2;
/**
 * A range that ends at most this far past a chunk is read in one go, not as a chunk and a sliver:
 * an encrypted 1 MiB blob is 1 MiB and a few hundred bytes of ciphertext, and the second read
 * was a thread-pool round trip of its own, plus the copy of a segment cut in two.
 */
const SLACK = 64 << 10;

/** The most bytes a range may hold to be read in one go (readSmallRange): one chunk and its slack. */
export const ONE_READ = CHUNK + SLACK;

/**
 * Reads a direct-I/O stream keeps running at once (ADR 0024): they wait for the device instead
 * of copying from the page cache, so the next one runs while the consumer still sends the last.
 * Two: with three, a pull held more buffers than the shared list keeps, and the benchmark's peak
 * RSS rose from 178-190 MiB to 197 (the target is under 200).
 */
const DIRECT_AHEAD = 2;

function readPool(keep = POOL): RecyclePool {
  return new RecyclePool(ONE_READ, keep, sharedFreeList('file-read', ONE_READ, SHARED, false));
}

/**
 * A buffer for a read of `want` bytes. A read under 1 MiB gets a buffer of its size (its reader
 * may well not recycle it: a terminator, a session's tail); only full-size buffers are reused. A
 * reader of 1 MiB or more that never recycles (collect, verify) takes shared buffers away: the
 * next stream allocates.
 */
function readBuffer(pool: RecyclePool, want: number): Buffer {
  return want >= CHUNK ? (pool.reuse() ?? Buffer.allocUnsafeSlow(ONE_READ)) : Buffer.allocUnsafeSlow(want);
}

export class FileRangeStream extends Readable {
  private position: number;
  private readonly end: number;
  private readonly pool: RecyclePool;
  /** direct reads started and not yet pushed, in file order */
  private readonly reads: Promise<{ buf: Buffer; n: number; want: number; at: number }>[] = [];
  private waiting = false;

  /**
   * Bytes [start, end) of the file; a file that ends before `end` is an error, never a short
   * answer. The stream owns `fh` and closes it. `direct`: `fh` was opened with O_DIRECT, and is
   * read through native-fs.ts readDirect (ADR 0024).
   */
  constructor(
    private readonly fh: FileHandle,
    start: number,
    end: number,
    private readonly direct = false,
  ) {
    super({ highWaterMark: CHUNK });
    this.pool = readPool(direct ? POOL + 1 : POOL);
    this.position = start;
    this.end = end;
  }

  /** Give back a chunk this stream produced, once nothing references its bytes any more. */
  recycle(chunk: Buffer): void {
    this.pool.recycle(chunk);
  }

  override _read(): void {
    if (this.direct) {
      this.readAhead();
      return;
    }
    const want = this.nextLength();
    if (want <= 0) {
      this.push(null);
      return;
    }
    const buf = readBuffer(this.pool, want);
    this.fh.read(buf, 0, want, this.position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          this.destroy(new Error(`file ended ${this.end - this.position} bytes early`));
          return;
        }
        this.position += bytesRead;
        this.pool.lend(buf);
        this.push(buf.subarray(0, bytesRead));
      },
      (e: unknown) => this.destroy(e instanceof Error ? e : new Error(String(e))),
    );
  }

  /** Bytes of the next read: a chunk, or all that is left when that is at most a chunk and its slack. */
  private nextLength(): number {
    const left = this.end - this.position;
    return left <= CHUNK + SLACK ? left : CHUNK;
  }

  /**
   * Direct reads wait for the device: DIRECT_AHEAD of them run at once, each into a buffer of
   * its own, and their chunks are pushed in order.
   */
  private readAhead(): void {
    while (this.reads.length < DIRECT_AHEAD && this.position < this.end) {
      const want = this.nextLength();
      const buf = readBuffer(this.pool, want);
      const at = this.position;
      this.position += want;
      const read = readDirect(this.fh.fd, at, buf.subarray(0, want)).then((n) => ({ buf, n, want, at }));
      read.catch(() => undefined); // its error is taken when its turn comes (or the stream is gone)
      this.reads.push(read);
    }
    const next = this.reads[0];
    if (next === undefined) {
      this.push(null);
      return;
    }
    if (this.waiting) return;
    this.waiting = true;
    next.then(
      ({ buf, n, want, at }) => {
        this.waiting = false;
        void this.reads.shift(); // this one (settled)
        if (this.destroyed) return;
        if (n < want) {
          this.destroy(new Error(`file ended ${this.end - at - n} bytes early`));
          return;
        }
        this.pool.lend(buf);
        this.push(buf.subarray(0, n));
      },
      (e: unknown) => {
        this.waiting = false;
        void this.reads.shift();
        this.destroy(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Direct reads use the descriptor itself, unknown to the FileHandle: they must end before it
    // closes, or a file opened meanwhile could take its number.
    Promise.allSettled(this.reads)
      .then(() => {
        this.pool.close();
        return this.fh.close();
      })
      .then(
        () => cb(err),
        (e: unknown) => cb(err ?? (e instanceof Error ? e : new Error(String(e)))),
      );
  }
}

/**
 * Bytes [start, end) of the file at `path` (at most ONE_READ of them), read before the stream is
 * made, in one thread-pool job (native-fs.ts readRange) where a FileRangeStream takes three (open,
 * read, close); on a 2-core VM a round trip cost about 80 us of CPU (ADR 0023). The stream yields
 * them as one chunk, in a buffer its consumer may hand back (`recycle`) as a FileRangeStream's.
 * A missing file rejects with node's ENOENT; a file that ends before `end`, with an error.
 */
export async function readSmallRange(path: string, start: number, end: number): Promise<RecyclingReadable> {
  const length = end - start;
  if (!(length >= 0 && length <= ONE_READ)) throw new RangeError(`readSmallRange: ${length} bytes is not a small range`);
  const pool = readPool();
  const buf = readBuffer(pool, length);
  // The stream holds the buffer from here on; destroyed unread, it gives the buffer back.
  const stream = new LoadedRange(pool, buf, length);
  let bytesRead: number;
  try {
    bytesRead = await readRange(path, start, buf.subarray(0, length));
  } catch (e) {
    stream.destroy();
    throw e;
  }
  if (bytesRead < length) {
    stream.destroy();
    throw new Error(`file ended ${length - bytesRead} bytes early`);
  }
  return stream;
}

/** One chunk read before the stream was made (readSmallRange). */
class LoadedRange extends Readable implements RecyclingReadable {
  private chunk: Buffer | undefined;

  constructor(
    private readonly pool: RecyclePool,
    buf: Buffer,
    length: number,
  ) {
    super({ highWaterMark: CHUNK });
    this.chunk = buf.subarray(0, length);
  }

  recycle(chunk: Buffer): void {
    this.pool.recycle(chunk);
  }

  override _read(): void {
    const chunk = this.chunk;
    this.chunk = undefined;
    if (chunk !== undefined && chunk.length > 0) {
      this.pool.lend(chunk);
      this.push(chunk);
    }
    this.push(null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Never pushed: its buffer is free again.
    if (this.chunk !== undefined) this.pool.giveBack(this.chunk);
    this.chunk = undefined;
    this.pool.close();
    cb(err);
  }
}

/** A stream whose chunks can be handed back for reuse once they have left the process. */
export interface RecyclingReadable extends Readable {
  recycle(chunk: Buffer): void;
}

/** Whether a stream supports `recycle` (FileRangeStream, the encryption's DecryptTransform). */
export function isRecycling(s: Readable): s is RecyclingReadable {
  return typeof (s as Partial<RecyclingReadable>).recycle === 'function';
}
