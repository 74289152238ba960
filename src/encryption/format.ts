/**
 * The on-disk format of an encrypted object (ADR 0006, drawn in docs/encryption.md):
 *
 *   header | segment 0 | segment 1 | ... | segment n-1 | terminator
 *
 * - header: MAGIC, u32 header length, u32 segment size, 16-byte object id, then the KEK reference
 *   (vault, name, version) and the wrapped data key as u16-length-prefixed fields. It is a copy
 *   for disaster recovery; the DataKeyStore record is authoritative (rotation updates only that).
 * - segment i: 12-byte random nonce | AES-256-GCM ciphertext | 16-byte tag. Every segment holds
 *   `segmentSize` plaintext bytes except the last data segment, which may be shorter; n is
 *   ceil(size / segmentSize), so an empty object has no data segment.
 * - terminator: one more segment, the only one with the final flag set, whose plaintext is the
 *   object's size (u64), the sha256 of the header and the plaintext digest. It proves the object
 *   ends here (truncation), authenticates the header, and binds the object to the digest clients
 *   ask for (a database row pointing digest A at the object of digest B is detected).
 *
 * Each segment's authenticated data is MAGIC | object id | segment size | index (u64) | final
 * flag, so segments cannot be reordered, dropped, duplicated or moved between objects: every
 * object also has its own random data key.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Digest } from '../oci/index.js';
import type { KekRef } from './data-key-store.js';

export const MAGIC = Buffer.from('BWENC001', 'latin1');
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** Ciphertext bytes added to each segment. */
export const SEGMENT_OVERHEAD = NONCE_BYTES + TAG_BYTES;
export const OBJECT_ID_BYTES = 16;
export const DATA_KEY_BYTES = 32;
export const HEADER_HASH_BYTES = 32;
export const MIN_SEGMENT_SIZE = 16 * 1024;
export const MAX_SEGMENT_SIZE = 4 * 1024 * 1024;
/** magic + header length + segment size: enough to learn how long the whole header is */
export const HEADER_PREFIX_BYTES = MAGIC.length + 8;
const MAX_HEADER_BYTES = 64 * 1024;

/** Why an object could not be decrypted; callers switch on `code` (STYLE rule 2). */
export class SealError extends Error {
  override readonly name = 'SealError';
  constructor(
    readonly code: 'TAMPERED' | 'MALFORMED',
    message: string,
  ) {
    super(message);
  }
}

export interface ObjectHeader {
  readonly segmentSize: number;
  readonly objectId: Buffer;
  readonly kek: KekRef;
  readonly wrapped: Buffer;
}

function field(b: Buffer): Buffer[] {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return [len, b];
}

export function encodeHeader(h: ObjectHeader): Buffer {
  const parts = [
    ...field(Buffer.from(h.kek.vault, 'utf8')),
    ...field(Buffer.from(h.kek.name, 'utf8')),
    ...field(Buffer.from(h.kek.version, 'utf8')),
    ...field(h.wrapped),
  ];
  const fixed = Buffer.alloc(8);
  const total = HEADER_PREFIX_BYTES + OBJECT_ID_BYTES + parts.reduce((n, p) => n + p.length, 0);
  fixed.writeUInt32BE(total, 0);
  fixed.writeUInt32BE(h.segmentSize, 4);
  return Buffer.concat([MAGIC, fixed, h.objectId, ...parts], total);
}

/** The header's total length from its first HEADER_PREFIX_BYTES bytes. */
export function headerLength(prefix: Buffer): number {
  if (prefix.length < HEADER_PREFIX_BYTES || !prefix.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new SealError('MALFORMED', 'not an encrypted object (bad magic)');
  }
  const len = prefix.readUInt32BE(MAGIC.length);
  if (len < HEADER_PREFIX_BYTES + OBJECT_ID_BYTES + 8 || len > MAX_HEADER_BYTES) throw new SealError('MALFORMED', `bad header length ${len}`);
  return len;
}

/** Parses a header; attacker-controlled bytes, so every length is checked. */
export function decodeHeader(b: Buffer): ObjectHeader {
  const len = headerLength(b);
  if (b.length < len) throw new SealError('MALFORMED', 'header truncated');
  const segmentSize = b.readUInt32BE(MAGIC.length + 4);
  if (segmentSize < MIN_SEGMENT_SIZE || segmentSize > MAX_SEGMENT_SIZE) throw new SealError('MALFORMED', `bad segment size ${segmentSize}`);
  let at = HEADER_PREFIX_BYTES;
  const objectId = Buffer.from(b.subarray(at, at + OBJECT_ID_BYTES));
  at += OBJECT_ID_BYTES;
  const next = (): Buffer => {
    if (at + 2 > len) throw new SealError('MALFORMED', 'header truncated');
    const n = b.readUInt16BE(at);
    if (at + 2 + n > len) throw new SealError('MALFORMED', 'header field overruns the header');
    const out = Buffer.from(b.subarray(at + 2, at + 2 + n));
    at += 2 + n;
    return out;
  };
  const vault = next().toString('utf8');
  const name = next().toString('utf8');
  const version = next().toString('utf8');
  const wrapped = next();
  if (at !== len) throw new SealError('MALFORMED', 'header has trailing bytes');
  return { segmentSize, objectId, kek: { vault, name, version }, wrapped };
}

/** The authenticated data of segment `index`. */
export function segmentAad(objectId: Buffer, segmentSize: number, index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(MAGIC.length + OBJECT_ID_BYTES + 4 + 8 + 1);
  MAGIC.copy(aad, 0);
  objectId.copy(aad, MAGIC.length);
  let at = MAGIC.length + OBJECT_ID_BYTES;
  aad.writeUInt32BE(segmentSize, at);
  at += 4;
  aad.writeBigUInt64BE(BigInt(index), at);
  aad.writeUInt8(final ? 1 : 0, at + 8);
  return aad;
}

/** Where things are in an object of `size` plaintext bytes. */
export class Layout {
  constructor(
    readonly headerLength: number,
    readonly segmentSize: number,
  ) {}

  dataSegments(size: number): number {
    return Math.ceil(size / this.segmentSize);
  }
  /** ciphertext offset of segment i (a data segment or the terminator) */
  segmentOffset(i: number): number {
    return this.headerLength + i * (this.segmentSize + SEGMENT_OVERHEAD);
  }
  /** plaintext bytes in data segment i of an object of `size` bytes */
  segmentPlainLength(i: number, size: number): number {
    return Math.min(this.segmentSize, size - i * this.segmentSize);
  }
  terminatorOffset(size: number): number {
    return this.headerLength + size + this.dataSegments(size) * SEGMENT_OVERHEAD;
  }
  cipherSize(size: number, digest: Digest): number {
    return this.terminatorOffset(size) + terminatorLength(digest);
  }
  /**
   * Plaintext bytes held by an unfinished upload whose ciphertext (header included, no
   * terminator) is `cipherBytes` long; undefined when that length is impossible (a torn write).
   */
  plainSizeOfUpload(cipherBytes: number): number | undefined {
    const body = cipherBytes - this.headerLength;
    if (body < 0) return undefined;
    const full = Math.floor(body / (this.segmentSize + SEGMENT_OVERHEAD));
    const rest = body - full * (this.segmentSize + SEGMENT_OVERHEAD);
    if (rest === 0) return full * this.segmentSize;
    if (rest <= SEGMENT_OVERHEAD) return undefined;
    return full * this.segmentSize + rest - SEGMENT_OVERHEAD;
  }
}

/**
 * The terminator's plaintext: u64 size | sha256 of the header | digest. `header` is the sha256 of
 * the header bytes; a reader that did not read the header passes undefined and the check skips it.
 */
export function terminatorPlaintext(size: number, digest: Digest, headerHash: Buffer): Buffer {
  const b = Buffer.alloc(8 + HEADER_HASH_BYTES + Buffer.byteLength(digest));
  b.writeBigUInt64BE(BigInt(size), 0);
  headerHash.copy(b, 8);
  b.write(digest, 8 + HEADER_HASH_BYTES, 'latin1');
  return b;
}

export function terminatorLength(digest: Digest): number {
  return SEGMENT_OVERHEAD + 8 + HEADER_HASH_BYTES + Buffer.byteLength(digest);
}

export function hashHeader(header: Buffer): Buffer {
  return createHash('sha256').update(header).digest();
}

/** Opens a terminator and checks it binds `size`, `digest` and (when known) the header. */
export function checkTerminator(key: Buffer, objectId: Buffer, segmentSize: number, sealed: Buffer, expect: { size: number; digest: Digest; headerHash?: Buffer | undefined }): void {
  const index = Math.ceil(expect.size / segmentSize);
  const plain = openSegment(key, segmentAad(objectId, segmentSize, index, true), sealed);
  const want = terminatorPlaintext(expect.size, expect.digest, expect.headerHash ?? plain.subarray(8, 8 + HEADER_HASH_BYTES));
  if (!plain.equals(want)) throw new SealError('TAMPERED', 'object is bound to another digest, size or header');
}

/** Seals one segment: nonce | ciphertext | tag. */
export function sealSegment(key: Buffer, aad: Buffer, plain: Buffer | readonly Buffer[]): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const parts = Buffer.isBuffer(plain) ? [plain] : plain;
  const out = [nonce, ...parts.map((p) => cipher.update(p)), cipher.final(), cipher.getAuthTag()];
  return Buffer.concat(out);
}

/** Opens one whole segment; TAMPERED when it does not authenticate under `aad`. */
export function openSegment(key: Buffer, aad: Buffer, sealed: Buffer): Buffer {
  if (sealed.length < SEGMENT_OVERHEAD) throw new SealError('TAMPERED', 'segment too short');
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES));
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const body = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    throw new SealError('TAMPERED', 'segment failed authentication');
  }
  return body;
}

export interface SealedBuffer {
  readonly bytes: Buffer;
  readonly headerLength: number;
}

/** Seals a whole small object in memory (manifests, small puts). */
export function sealBuffer(plain: Buffer, digest: Digest, key: Buffer, header: ObjectHeader): SealedBuffer {
  const head = encodeHeader(header);
  const layout = new Layout(head.length, header.segmentSize);
  const n = layout.dataSegments(plain.length);
  const parts = [head];
  for (let i = 0; i < n; i++) {
    const piece = plain.subarray(i * header.segmentSize, (i + 1) * header.segmentSize);
    parts.push(sealSegment(key, segmentAad(header.objectId, header.segmentSize, i, false), piece));
  }
  parts.push(sealSegment(key, segmentAad(header.objectId, header.segmentSize, n, true), terminatorPlaintext(plain.length, digest, hashHeader(head))));
  return { bytes: Buffer.concat(parts), headerLength: head.length };
}

/** Opens a whole sealed object in memory, checking every segment and the terminator. */
export function openBuffer(sealed: Buffer, key: Buffer, expect: { objectId: Buffer; segmentSize: number; headerLength: number; size: number; digest: Digest }): Buffer {
  const layout = new Layout(expect.headerLength, expect.segmentSize);
  if (sealed.length !== layout.cipherSize(expect.size, expect.digest)) throw new SealError('TAMPERED', 'object has the wrong length');
  const n = layout.dataSegments(expect.size);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const start = layout.segmentOffset(i);
    const end = start + layout.segmentPlainLength(i, expect.size) + SEGMENT_OVERHEAD;
    out.push(openSegment(key, segmentAad(expect.objectId, expect.segmentSize, i, false), sealed.subarray(start, end)));
  }
  const headerHash = hashHeader(sealed.subarray(0, expect.headerLength));
  checkTerminator(key, expect.objectId, expect.segmentSize, sealed.subarray(layout.terminatorOffset(expect.size)), { ...expect, headerHash });
  return Buffer.concat(out);
}

export function newObjectId(): Buffer {
  return randomBytes(OBJECT_ID_BYTES);
}
