/**
 * Deterministic blob content for the benchmark, produced without ever holding a large blob in
 * memory and without copying.
 *
 * One 8 MiB block of pseudo-random bytes (AES-128-CTR keystream from a fixed key, so every run
 * and both registries see the same bytes) is shared by all blobs. A blob is a sequence of such
 * blocks in which the first 16 bytes of each block are replaced by a header (blob id, block index):
 * no two blocks of any two blobs are equal, so a server cannot deduplicate trivially, yet the
 * content is a list of slices of one immutable buffer plus tiny headers.
 */
import { createCipheriv, createHash } from 'node:crypto';
export { prng } from '../test/testkit/prng.js';

export const BLOCK = 8 * 1024 * 1024;
const HEADER = 16;

let base: Buffer | undefined;

/** The shared 8 MiB pseudo-random block. Never mutated: slices of it are handed to sockets. */
export function baseBlock(): Buffer {
  if (base === undefined) {
    const key = createHash('sha256').update('bulwark-bench').digest().subarray(0, 16);
    const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    base = Buffer.concat([cipher.update(Buffer.alloc(BLOCK)), cipher.final()]);
  }
  return base;
}

export interface BlobContent {
  /** stable label; the same label gives the same bytes in every run */
  readonly label: string;
  readonly size: number;
  /** 64-bit id derived from the label, written into every block header */
  readonly id: Buffer;
}

export function blobContent(label: string, size: number): BlobContent {
  return { label, size, id: createHash('sha256').update(label).digest().subarray(0, 8) };
}

/** The bytes [offset, offset+length) of the blob, as zero-copy slices in order. */
export function* pieces(blob: BlobContent, offset = 0, length = blob.size - offset): Generator<Buffer> {
  const block = baseBlock();
  let pos = offset;
  const end = Math.min(blob.size, offset + length);
  while (pos < end) {
    const index = Math.floor(pos / BLOCK);
    const within = pos - index * BLOCK;
    const blockEnd = Math.min(end, (index + 1) * BLOCK);
    if (within < HEADER) {
      const header = Buffer.allocUnsafe(HEADER);
      blob.id.copy(header, 0);
      header.writeBigUInt64BE(BigInt(index), 8);
      const take = Math.min(HEADER, blockEnd - index * BLOCK);
      yield header.subarray(within, take);
      pos = index * BLOCK + take;
    }
    if (pos < blockEnd) {
      yield block.subarray(pos - index * BLOCK, blockEnd - index * BLOCK);
      pos = blockEnd;
    }
  }
}

/** The whole blob in one buffer: for small blobs only. */
export function materialize(blob: BlobContent): Buffer {
  if (blob.size > 64 * 1024 * 1024) throw new Error(`refusing to materialize ${blob.size} bytes`);
  return Buffer.concat([...pieces(blob)], blob.size);
}

const digestCache = new Map<string, string>();

/** sha256 digest of the blob (hashed once per label and size, then cached). */
export function digestOf(blob: BlobContent): string {
  const key = `${blob.label}\0${blob.size}`;
  let d = digestCache.get(key);
  if (d === undefined) {
    const h = createHash('sha256');
    for (const p of pieces(blob)) h.update(p);
    d = `sha256:${h.digest('hex')}`;
    digestCache.set(key, d);
  }
  return d;
}

/** sha256 digest of an in-memory buffer. */
export function sha256(buf: Buffer | string): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

