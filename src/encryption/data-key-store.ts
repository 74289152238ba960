/**
 * DataKeyStore: one record per encrypted object (a blob, or a manifest body), holding the
 * object's data key wrapped by a key-encryption key (KEK), never in the clear, plus what is needed
 * to find and decrypt the object (ADR 0006).
 *
 * Contract (every implementation passes test/testkit/data-key-store-suite.ts):
 * - Records are keyed by (kind, digest): the digest of the *plaintext* a client asked for.
 * - `putIfAbsent` is atomic and durable when it resolves: when a record for (kind, digest) exists,
 *   nothing is written and the existing record is returned (first writer wins; the caller cleans
 *   up whatever its own losing record referred to). Otherwise the given record is stored and
 *   returned.
 * - `rewrap` is a compare-and-set: it replaces the wrapped key and KEK reference only while the
 *   record still holds `expected` (same vault, name, version and wrapped bytes); it returns false
 *   when the record changed or is gone. Rotation is therefore safe to run concurrently with
 *   pushes, deletes and another rotation, and resumable: whatever was not re-wrapped still is not.
 * - `delete` removes the record only when it still references `cipherDigest` (a concurrent push
 *   of the same content may have replaced it); returns whether it removed one.
 * - `listNotWrappedBy` pages through records whose KEK reference differs from `key`, in (kind,
 *   digest) order after `after` (exclusive), at most `limit`.
 * - `countByKey` groups every record by KEK reference (vault, name, version).
 * - Settings (`getSetting`/`setSetting`) are small durable strings: the last rotation's summary.
 */
import type { Digest } from '../oci/index.js';

export type SealedKind = 'blob' | 'manifest';

/** Which KEK wrapped a data key: a vault (by its configured name), a key name and a version. */
export interface KekRef {
  readonly vault: string;
  readonly name: string;
  readonly version: string;
}

export interface DataKeyRecord {
  readonly kind: SealedKind;
  /** digest of the plaintext */
  readonly digest: Digest;
  /** sha256 of the stored ciphertext object (the name the inner BlobStore knows it by) */
  readonly cipherDigest: Digest;
  /** plaintext bytes */
  readonly size: number;
  /** 16 random bytes, hex: bound into every segment's authenticated data */
  readonly objectId: string;
  readonly segmentSize: number;
  readonly headerLength: number;
  readonly kek: KekRef;
  /** the data key, wrapped by `kek` (RSA-OAEP-256) */
  readonly wrapped: Buffer;
  /** ms since epoch */
  readonly createdAt: number;
  /** ms since epoch of the last re-wrap; absent when never re-wrapped */
  readonly rewrappedAt?: number;
}

export interface KekCount {
  readonly kek: KekRef;
  readonly kind: SealedKind;
  readonly count: number;
}

export interface DataKeyStore {
  get(kind: SealedKind, digest: Digest): Promise<DataKeyRecord | undefined>;
  putIfAbsent(record: DataKeyRecord): Promise<DataKeyRecord>;
  rewrap(
    kind: SealedKind,
    digest: Digest,
    expected: { readonly kek: KekRef; readonly wrapped: Buffer },
    next: { readonly kek: KekRef; readonly wrapped: Buffer; readonly at: number },
  ): Promise<boolean>;
  delete(kind: SealedKind, digest: Digest, cipherDigest: Digest): Promise<boolean>;
  listNotWrappedBy(key: KekRef, limit: number, after?: { readonly kind: SealedKind; readonly digest: Digest }): Promise<DataKeyRecord[]>;
  countByKey(): Promise<KekCount[]>;
  list(): AsyncIterable<DataKeyRecord>;
  getSetting(name: string): Promise<string | undefined>;
  setSetting(name: string, value: string): Promise<void>;
  close(): Promise<void>;
}

export function sameKek(a: KekRef, b: KekRef): boolean {
  return a.vault === b.vault && a.name === b.name && a.version === b.version;
}
