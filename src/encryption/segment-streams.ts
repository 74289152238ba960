/**
 * Streaming encryption and decryption of segments (format.ts). Memory stays flat: encryption
 * emits ciphertext as it goes; decryption emits a segment's plaintext only once its tag has been
 * checked (never serve bytes that fail authentication).
 *
 * Both streams seal and open whole segments with native.ts into buffers of their own, which
 * their consumer may hand back (`recycle`: the file store once a chunk is written, the HTTP pump
 * once it is sent). A long push or pull then allocates a few buffers, not one per segment
 * (ADR 0007).
 */
import { randomFillSync } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { registryError, type Digest } from '../oci/index.js';
import { RecyclePool, sharedFreeList } from '../storage/index.js';
import { aesGcm, sealSegments, type AsyncSha256, type SegmentToSeal } from './native.js';
import { NONCE_BYTES, SEGMENT_OVERHEAD, SealError, checkTerminator, hashHeader, segmentAad, terminatorLength } from './format.js';

/**
 * Output buffers a stream keeps for reuse: as many as its consumers hold at once (the stream's
 * own queue, the socket's or the file writer's), so that a steady stream stops allocating.
 */
const KEEP = 8;

/** A small stream read whole (headers, tails, terminators: a few hundred KiB at most). */
export async function collect(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

export interface EncryptOptions {
  readonly key: Buffer;
  readonly objectId: Buffer;
  readonly segmentSize: number;
  /** index of the first segment written */
  readonly firstIndex: number;
  /** plaintext already in segment `firstIndex` (a partial tail being rewritten); not hashed or counted */
  readonly prefix?: Buffer;
  /** fed with the body (not the prefix): the client's digest */
  readonly hash?: AsyncSha256 | undefined;
  /** fed with every segment produced: the ciphertext's name in the store below */
  readonly cipherHash?: AsyncSha256 | undefined;
  /** exact body length (Content-Length): longer fails at once, shorter at the end */
  readonly length?: number | undefined;
}

/** Plaintext bytes waiting to be sealed, or being sealed, before the body waits (backpressure). */
const SEAL_AHEAD = 2 << 20;
/** Segments sealed by one thread-pool job at most. */
const SEAL_BATCH = 16;
/**
 * Bytes of free whole-segment buffers kept for the next pushes, per role and buffer size
 * (plaintext segments, sealed segments): what one push has ahead of its writes (SEAL_AHEAD),
 * less than it has in flight, to keep idle memory small. Pushes taking the buffers the last
 * one left, instead of allocating their own (promoted, then old-generation garbage), cut the
 * full collections of 16 encrypted 64 MiB pushes from 26 to 18 (ADR 0014).
 */
const SHARED_BYTES = 2 << 20;
/** A full (or final) segment waiting to be sealed. */
interface Unsealed {
  readonly plain: Buffer;
  /** plaintext bytes in it */
  readonly n: number;
  /** of which the first ones are the prefix (not hashed again) */
  readonly prefixed: number;
  readonly index: number;
}

/**
 * Plaintext in, data segments out (never the terminator: the upload does not know it has ended).
 * A partial last segment is closed at the end of the body; the next append rewrites it. Each
 * output chunk is one whole segment, nonce | ciphertext | tag, in a buffer `recycle` takes back.
 *
 * The event loop only cuts the body into segments. Sealing them and hashing both sides (the
 * plaintext for the client's digest, the ciphertext for its name in the store below) runs on
 * the thread pool, a batch of segments per job, one job at a time, in order (native.ts
 * `sealSegments`); a job per segment and per hash cost more in waking threads than the hashing
 * itself. The body is held back while more than SEAL_AHEAD bytes wait for sealing, and by the
 * stream's own backpressure when the consumer is slow.
 */
export class EncryptTransform extends Transform {
  private readonly plains: RecyclePool;
  private readonly outs: RecyclePool;
  /** the segment being filled (taken at the first byte), and how much of it is the unhashed prefix */
  private segment: Buffer | undefined;
  private filled = 0;
  private prefixed = 0;
  private index: number;
  /** full segments not yet handed to a job */
  private readonly queue: Unsealed[] = [];
  /** the segments of the running job */
  private sealing: Unsealed[] | undefined;
  /** plaintext bytes queued or being sealed */
  private ahead = 0;
  /** both hashes were idle once: from then on only this stream's jobs update them */
  private ready = false;
  /** a _transform held back (SEAL_AHEAD, a full readable side), or the _flush waiting for the last job */
  private waiting: TransformCallback | undefined;
  private flushing = false;
  /**
   * The consumer asked for more (_read) and nothing was pushed since: its queue is emptying,
   * whatever its length says, and it will not ask again before the next push.
   */
  private asked = false;
  /** body bytes seen */
  bytes = 0;

  constructor(private readonly o: EncryptOptions) {
    super({ highWaterMark: 1 << 20 });
    this.index = o.firstIndex;
    // A body of known length shorter than a segment gets buffers of its size, not a segment's:
    // small layers and configs are most of what a registry receives.
    const prefix = o.prefix?.length ?? 0;
    const plain = o.length === undefined ? o.segmentSize : Math.max(1, Math.min(o.segmentSize, prefix + o.length));
    if (plain === o.segmentSize) {
      // Whole segments: pooled across pushes, all free ones in the shared lists (none kept by
      // the stream itself). A plaintext buffer goes back only once sealed, and sealing wipes it
      // (native.ts), or zero-filled.
      const keep = Math.max(1, Math.floor(SHARED_BYTES / plain));
      this.plains = new RecyclePool(plain, 0, sharedFreeList('plain', plain, keep, false));
      this.outs = new RecyclePool(plain + SEGMENT_OVERHEAD, 0, sharedFreeList('sealed', plain + SEGMENT_OVERHEAD, keep, false));
    } else {
      this.plains = new RecyclePool(plain, KEEP);
      this.outs = new RecyclePool(plain + SEGMENT_OVERHEAD, KEEP);
    }
    if (o.prefix !== undefined && o.prefix.length > 0) {
      this.feed(o.prefix);
      this.prefixed = this.filled;
    }
  }

  /** Takes back an output chunk the consumer no longer references (AppendOptions.recycle). */
  recycle(chunk: Buffer): void {
    this.outs.recycle(chunk);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.o.length !== undefined && this.bytes > this.o.length) {
      cb(registryError('SIZE_INVALID', `body is longer than the declared ${this.o.length} bytes`));
      return;
    }
    this.whenReady(cb, () => {
      this.feed(chunk);
      this.pump();
      this.waiting = cb;
      this.settle();
    });
  }

  override _flush(cb: TransformCallback): void {
    if (this.o.length !== undefined && this.bytes !== this.o.length) {
      cb(registryError('SIZE_INVALID', `received ${this.bytes} bytes but ${this.o.length} were declared`));
      return;
    }
    this.whenReady(cb, () => {
      if (this.filled > 0) this.close();
      this.flushing = true;
      this.pump();
      this.waiting = cb;
      this.settle();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Plaintext never waits in memory for the collector: a running job wipes its segments.
    if (this.segment !== undefined) this.plains.giveBack(this.segment.fill(0));
    for (const u of this.queue) this.plains.giveBack(u.plain.fill(0));
    this.queue.length = 0;
    this.segment = undefined;
    this.plains.close();
    this.outs.close();
    cb(err);
  }

  /** Runs `go` once both hashes are idle (the first time: startUpload may still be hashing the header). */
  private whenReady(cb: TransformCallback, go: () => void): void {
    const run = (): void => {
      try {
        go();
      } catch (e) {
        cb(e as Error);
      }
    };
    if (this.ready) {
      run();
      return;
    }
    Promise.all([this.o.hash?.whenBelow(0), this.o.cipherHash?.whenBelow(0)]).then(() => {
      // Destroyed meanwhile (the client went away): no plaintext may be copied in any more.
      if (this.destroyed) return;
      this.ready = true;
      run();
    }, cb);
  }

  private feed(piece: Buffer): void {
    while (piece.length > 0) {
      const segment = (this.segment ??= this.plains.take());
      const k = piece.copy(segment, this.filled);
      if (k === 0) throw new Error('encryption segment buffer overrun');
      this.filled += k;
      piece = piece.subarray(k);
      if (this.filled === this.o.segmentSize) this.close();
    }
  }

  /** The segment being filled is complete (or the body ended): it waits for a job. */
  private close(): void {
    this.queue.push({ plain: this.segment as Buffer, n: this.filled, prefixed: this.prefixed, index: this.index++ });
    this.ahead += this.filled;
    this.segment = undefined;
    this.filled = 0;
    this.prefixed = 0;
  }

  /** Starts a job for the queued segments, unless one is running. */
  private pump(): void {
    if (this.sealing !== undefined || this.queue.length === 0 || this.destroyed) return;
    const batch = this.queue.splice(0, SEAL_BATCH);
    const segments = batch.map((u) => {
      const out = this.outs.take().subarray(0, u.n + SEGMENT_OVERHEAD);
      randomFillSync(out, 0, NONCE_BYTES);
      return { plain: u.plain.subarray(0, u.n), hashed: u.plain.subarray(u.prefixed, u.n), out, aad: segmentAad(this.o.objectId, this.o.segmentSize, u.index, false) };
    });
    this.sealing = batch;
    try {
      sealSegments(this.o.key, this.o.hash, this.o.cipherHash, segments, (err) => this.sealed(batch, segments, err));
    } catch (e) {
      this.sealing = undefined;
      for (const u of batch) u.plain.fill(0);
      throw e;
    }
  }

  private sealed(batch: readonly Unsealed[], segments: readonly SegmentToSeal[], err: Error | undefined): void {
    this.sealing = undefined;
    for (const u of batch) {
      this.ahead -= u.n;
      // The job wiped every plaintext it sealed; a failed one may have stopped before some.
      if (err !== undefined) u.plain.fill(0);
      this.plains.giveBack(u.plain);
    }
    if (this.destroyed || err !== undefined) {
      for (const s of segments) this.outs.giveBack(s.out as Buffer);
      if (!this.destroyed) this.destroy(err);
      return;
    }
    for (const s of segments) {
      const out = s.out as Buffer;
      this.outs.lend(out);
      this.push(out);
    }
    this.asked = false;
    try {
      this.pump();
    } catch (e) {
      this.destroy(e as Error);
      return;
    }
    this.settle();
  }

  /**
   * The consumer wants more: a _transform held back by a full readable side may go on. Released
   * first: the stream may then keep its callback until its own _read, which comes next (the
   * consumer does not ask twice before something is pushed).
   */
  override _read(size: number): void {
    this.asked = true;
    this.settle();
    super._read(size);
  }

  /** Lets a held-back _transform go on, or ends the _flush once everything is sealed. */
  private settle(): void {
    const cb = this.waiting;
    if (cb === undefined) return;
    // Sealed segments are pushed when their job ends, after _transform returned: the stream's
    // own check of its readable side then never sees them, so the held-back body also waits
    // for the consumer here.
    const done = this.flushing
      ? this.sealing === undefined && this.queue.length === 0
      : this.ahead <= SEAL_AHEAD && (this.asked || this.readableLength < this.readableHighWaterMark);
    if (!done) return;
    this.waiting = undefined;
    cb();
  }
}

export interface DecryptOptions {
  readonly key: Buffer;
  readonly objectId: Buffer;
  readonly segmentSize: number;
  /** the object's plaintext size */
  readonly size: number;
  /** index of the first data segment in the input */
  readonly firstIndex: number;
  /** index of the last data segment in the input (firstIndex - 1: none) */
  readonly lastIndex: number;
  /** plaintext offset wanted, relative to the start of segment `firstIndex` */
  readonly skip: number;
  /** plaintext bytes wanted */
  readonly take: number;
  /** the input ends with the terminator, which must bind the object to this digest */
  readonly terminator?: Digest | undefined;
  /** the input starts with the header, this long; it is checked against the terminator */
  readonly headerLength?: number | undefined;
  /**
   * Hands a fully consumed input chunk back to its source for reuse (FileRangeStream.recycle):
   * without it every 1 MiB read is a fresh allocation, and the garbage collection that costs
   * was the largest item in a profile of encrypted pulls, ahead of AES-GCM itself.
   */
  readonly recycle?: ((chunk: Buffer) => void) | undefined;
}

/**
 * Cuts ciphertext of consecutive data segments (and optionally the header and the terminator)
 * into whole units: each data segment goes to `open`, synchronously; the header is hashed and
 * the terminator checked here. Extra bytes, or an input that ends early, throw a SealError.
 */
class SegmentCutter {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private index: number;
  private terminatorDone: boolean;
  private headerHash: Buffer | undefined;
  /** where a unit that spans input chunks is put together; reused, since `open` is synchronous */
  private scratch: Buffer | undefined;

  constructor(
    private readonly o: DecryptOptions,
    private readonly open: (index: number, sealed: Buffer) => void,
  ) {
    this.index = o.firstIndex;
    this.terminatorDone = o.terminator === undefined;
  }

  /**
   * Takes a chunk and opens every data segment it completes; appends to `consumed` the input
   * chunks no longer referenced (free for reuse when this returns).
   */
  write(chunk: Buffer, consumed: Buffer[]): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    for (let need = this.nextBytes(); need > 0 && this.pendingBytes >= need; need = this.nextBytes()) this.cut(need, consumed);
    if (this.nextBytes() === 0 && this.pendingBytes > 0) throw new SealError('TAMPERED', 'encrypted object has extra bytes');
  }

  /** The input has ended: throws unless it ended exactly where it should. */
  end(): void {
    if (this.nextBytes() > 0 || this.pendingBytes > 0) throw new SealError('TAMPERED', 'encrypted object ended early');
  }

  /** ciphertext length of the next unit (header, data segment or terminator); 0 when nothing is due */
  private nextBytes(): number {
    if (this.o.headerLength !== undefined && this.headerHash === undefined) return this.o.headerLength;
    if (this.index <= this.o.lastIndex) return Math.min(this.o.segmentSize, this.o.size - this.index * this.o.segmentSize) + SEGMENT_OVERHEAD;
    if (!this.terminatorDone && this.o.terminator !== undefined) return terminatorLength(this.o.terminator);
    return 0;
  }

  private cut(need: number, consumed: Buffer[]): void {
    const sealed = this.takeBytes(need, consumed);
    if (this.o.headerLength !== undefined && this.headerHash === undefined) {
      this.headerHash = hashHeader(sealed);
      return;
    }
    if (this.index > this.o.lastIndex) {
      const expect = { size: this.o.size, digest: this.o.terminator as Digest, headerHash: this.headerHash };
      checkTerminator(this.o.key, this.o.objectId, this.o.segmentSize, sealed, expect);
      this.terminatorDone = true;
      return;
    }
    this.open(this.index++, sealed);
  }

  /** The next `n` pending bytes as one buffer (copied into the scratch buffer only when they span chunks). */
  private takeBytes(n: number, consumed: Buffer[]): Buffer {
    const first = this.pending[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) consumed.push(this.pending.shift() as Buffer);
      else this.pending[0] = first.subarray(n);
    } else {
      if (this.scratch === undefined || this.scratch.length < n) this.scratch = Buffer.allocUnsafeSlow(n);
      out = this.scratch.subarray(0, n);
      let at = 0;
      while (at < n) {
        const c = this.pending[0] as Buffer;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) consumed.push(this.pending.shift() as Buffer);
        else this.pending[0] = c.subarray(k);
      }
    }
    this.pendingBytes -= n;
    return out;
  }
}

/**
 * Plaintext bytes per chunk a DecryptTransform pushes: whole segments opened side by side into
 * one buffer, as large as the 1 MiB a plaintext pull reads and writes at a time. One socket
 * write per segment instead cost the server about 0.3 CPU s per GiB pulled and the client about
 * as much again (more, smaller reads and hash updates): ADR 0015.
 */
const OPEN_CHUNK = 1 << 20;
/** Output chunks a DecryptTransform keeps for itself: its own queue, the socket's, one being filled. */
const OPEN_KEEP = 4;
/**
 * Free full-size output chunks waiting for the next pull, process-wide (per chunk size, that is
 * per segment size in use): enough for the next pull to start without allocating, few enough
 * not to weigh on the resident memory while the server does other work.
 */
const OPEN_SHARED = 2;

/**
 * Ciphertext of consecutive data segments (and optionally the terminator) in, the wanted
 * plaintext range out, in chunks of whole segments (OPEN_CHUNK) that `recycle` takes back. Any
 * segment that fails authentication, a missing terminator, a short or long input all end the
 * stream in a SealError; no segment's bytes leave before its tag is checked.
 */
export class DecryptTransform extends Transform {
  private readonly cutter: SegmentCutter;
  private readonly outs: RecyclePool;
  /** input chunks fully consumed during this _transform, recycled once it is done with them */
  private readonly consumed: Buffer[] = [];
  /** the chunk being filled, and how much of it holds opened plaintext */
  private filling: Buffer | undefined;
  private filled = 0;
  private skip: number;
  private left: number;

  constructor(private readonly o: DecryptOptions) {
    super({ highWaterMark: OPEN_CHUNK });
    this.cutter = new SegmentCutter(o, (index, sealed) => this.openSegment(index, sealed));
    // Room for whole segments; never more than the object holds (a small blob gets small buffers).
    const perChunk = Math.max(1, Math.floor(OPEN_CHUNK / o.segmentSize));
    const size = Math.max(1, Math.min(perChunk * o.segmentSize, o.size));
    // Full-size chunks a pull no longer needs go to the next one (a fresh buffer per pull cost a
    // 1 MiB pull more than its decryption), wiped on the way; small ones are the stream's own.
    this.outs =
      size === perChunk * o.segmentSize
        ? new RecyclePool(size, OPEN_KEEP, sharedFreeList('opened', size, OPEN_SHARED, true))
        : new RecyclePool(size, OPEN_KEEP);
    this.skip = o.skip;
    this.left = o.take;
  }

  /** Give back a chunk this stream produced, once nothing references its bytes any more. */
  recycle(chunk: Buffer): void {
    this.outs.recycle(chunk);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.cutter.write(chunk, this.consumed);
    } catch (e) {
      cb(e as Error);
      return;
    }
    // Every segment cut above has been opened into a buffer of ours: the input memory is free.
    if (this.o.recycle !== undefined) for (const c of this.consumed) this.o.recycle(c);
    this.consumed.length = 0;
    cb();
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.cutter.end();
    } catch (e) {
      cb(e as Error);
      return;
    }
    this.pushFilled();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // A chunk being filled holds plaintext that was never sent.
    this.filling?.fill(0);
    this.filling = undefined;
    this.outs.close();
    cb(err);
  }

  private openSegment(index: number, sealed: Buffer): void {
    const n = sealed.length - SEGMENT_OVERHEAD;
    if (this.filling !== undefined && this.filled + n > this.filling.length) this.pushFilled();
    const out = (this.filling ??= this.outs.take());
    const at = this.filled;
    const aad = segmentAad(this.o.objectId, this.o.segmentSize, index, false);
    if (!aesGcm.open(this.o.key, sealed.subarray(0, NONCE_BYTES), aad, sealed.subarray(NONCE_BYTES, NONCE_BYTES + n), sealed.subarray(NONCE_BYTES + n), out.subarray(at, at + n))) {
      throw new SealError('TAMPERED', 'segment failed authentication');
    }
    const from = Math.min(this.skip, n);
    const to = Math.min(n, from + this.left);
    this.skip -= from;
    this.left -= to - from;
    // Only the wanted part stays: a range's first segment moves down over its skipped bytes.
    if (from > 0 && to > from) out.copyWithin(at, at + from, at + to);
    this.filled = at + (to - from);
    if (this.left === 0) this.pushFilled();
  }

  /** Hands the chunk being filled to the consumer (or back to the pool if it holds nothing). */
  private pushFilled(): void {
    const out = this.filling;
    if (out === undefined) return;
    this.filling = undefined;
    const n = this.filled;
    this.filled = 0;
    if (n === 0) {
      this.outs.giveBack(out);
      return;
    }
    this.outs.lend(out);
    this.push(out.subarray(0, n));
  }
}
