/**
 * Streaming encryption and decryption of segments (format.ts). Memory stays flat: encryption
 * emits ciphertext as it goes; decryption holds at most one segment, because no plaintext may
 * leave before its segment's tag has been checked (never serve bytes that fail authentication).
 */
import { createCipheriv, randomBytes, type Cipher, type CipherGCM, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { registryError, type Digest } from '../oci/index.js';
import { NONCE_BYTES, SEGMENT_OVERHEAD, SealError, checkTerminator, hashHeader, openSegment, segmentAad, terminatorLength } from './format.js';

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
  /** fed with the body (not the prefix) */
  readonly hash?: Hash | undefined;
  /** exact body length (Content-Length): longer fails at once, shorter at the end */
  readonly length?: number | undefined;
}

/**
 * Plaintext in, data segments out (never the terminator: the upload does not know it has ended).
 * A partial last segment is closed at the end of the body; the next append rewrites it.
 */
export class EncryptTransform extends Transform {
  private cipher: CipherGCM | undefined;
  private filled = 0;
  private index: number;
  /** body bytes seen */
  bytes = 0;

  constructor(private readonly o: EncryptOptions) {
    super({ highWaterMark: 1 << 20 });
    this.index = o.firstIndex;
    if (o.prefix !== undefined && o.prefix.length > 0) this.feed(o.prefix);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.o.length !== undefined && this.bytes > this.o.length) {
      cb(registryError('SIZE_INVALID', `body is longer than the declared ${this.o.length} bytes`));
      return;
    }
    this.o.hash?.update(chunk);
    this.feed(chunk);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.o.length !== undefined && this.bytes !== this.o.length) {
      cb(registryError('SIZE_INVALID', `received ${this.bytes} bytes but ${this.o.length} were declared`));
      return;
    }
    if (this.cipher !== undefined) this.close();
    cb();
  }

  private feed(piece: Buffer): void {
    const s = this.o.segmentSize;
    while (piece.length > 0) {
      if (this.cipher === undefined) {
        const nonce = randomBytes(NONCE_BYTES);
        this.cipher = createCipheriv('aes-256-gcm', this.o.key, nonce);
        this.cipher.setAAD(segmentAad(this.o.objectId, s, this.index, false));
        this.push(nonce);
      }
      const take = Math.min(s - this.filled, piece.length);
      this.push(this.cipher.update(piece.subarray(0, take)));
      this.filled += take;
      piece = piece.subarray(take);
      if (this.filled === s) this.close();
    }
  }

  private close(): void {
    const c = this.cipher as Cipher & CipherGCM;
    const rest = c.final();
    if (rest.length > 0) this.push(rest);
    this.push(c.getAuthTag());
    this.cipher = undefined;
    this.filled = 0;
    this.index++;
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
 * Ciphertext of consecutive data segments (and optionally the terminator) in, the wanted
 * plaintext range out. Any segment that fails authentication, a missing terminator, a short or
 * long input all end the stream in a SealError before a single unauthenticated byte is emitted.
 */
export class DecryptTransform extends Transform {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  /** input chunks fully consumed during this _transform, recycled once it is done with them */
  private readonly consumed: Buffer[] = [];
  private index: number;
  private skip: number;
  private left: number;
  private terminatorDone: boolean;
  private headerHash: Buffer | undefined;

  constructor(private readonly o: DecryptOptions) {
    super({ highWaterMark: 1 << 20 });
    this.index = o.firstIndex;
    this.skip = o.skip;
    this.left = o.take;
    this.terminatorDone = o.terminator === undefined;
  }

  /** ciphertext length of the next unit (header, data segment or terminator); 0 when nothing is due */
  private nextBytes(): number {
    if (this.o.headerLength !== undefined && this.headerHash === undefined) return this.o.headerLength;
    if (this.index <= this.o.lastIndex) return Math.min(this.o.segmentSize, this.o.size - this.index * this.o.segmentSize) + SEGMENT_OVERHEAD;
    if (!this.terminatorDone && this.o.terminator !== undefined) return terminatorLength(this.o.terminator);
    return 0;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    try {
      for (let need = this.nextBytes(); need > 0 && this.pendingBytes >= need; need = this.nextBytes()) this.openNext(need);
      if (this.nextBytes() === 0 && this.pendingBytes > 0) throw new SealError('TAMPERED', 'encrypted object has extra bytes');
    } catch (e) {
      cb(e as Error);
      return;
    }
    // Every segment opened above was copied out by the decipher: the input memory is free.
    if (this.o.recycle !== undefined) for (const c of this.consumed) this.o.recycle(c);
    this.consumed.length = 0;
    cb();
  }

  override _flush(cb: TransformCallback): void {
    cb(this.nextBytes() > 0 || this.pendingBytes > 0 ? new SealError('TAMPERED', 'encrypted object ended early') : null);
  }

  private openNext(need: number): void {
    const sealed = this.takeBytes(need);
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
    const plain = openSegment(this.o.key, segmentAad(this.o.objectId, this.o.segmentSize, this.index, false), sealed);
    this.index++;
    const from = Math.min(this.skip, plain.length);
    const to = Math.min(plain.length, from + this.left);
    this.skip -= from;
    this.left -= to - from;
    if (to > from) this.push(plain.subarray(from, to));
  }

  /** The next `n` pending bytes as one buffer (copied only when they span chunks). */
  private takeBytes(n: number): Buffer {
    const first = this.pending[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.consumed.push(this.pending.shift() as Buffer);
      else this.pending[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.pending[0] as Buffer;
        const k = Math.min(c.length, n - at);
        c.copy(out, at, 0, k);
        at += k;
        if (k === c.length) this.consumed.push(this.pending.shift() as Buffer);
        else this.pending[0] = c.subarray(k);
      }
    }
    this.pendingBytes -= n;
    return out;
  }
}
