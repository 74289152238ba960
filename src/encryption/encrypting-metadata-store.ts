/**
 * EncryptingMetadataStore: a MetadataStore decorator that keeps manifest bodies and manifest
 * annotations (signatures, SBOM and scan results name what an image contains) encrypted in the
 * store below it (issue 4, ADR 0006). Business code above it sees plaintext.
 *
 * - A manifest body is sealed with `sealBuffer` (format.ts) under a data key of its own, recorded
 *   in the DataKeyStore as kind 'manifest' with the manifest's digest. The store below keeps one
 *   body per digest across repositories, so every push of that digest seals under the same record
 *   (its key and object id; every segment still gets a fresh nonce). The record is written before
 *   the body, so a stored body always has its key. A record's `cipherDigest` names the sealing
 *   made by its creator; the body kept below may be another sealing under the same key, so bodies
 *   are authenticated by `openBuffer` (every segment, and the terminator binding the digest), not
 *   by `cipherDigest`.
 * - Annotations are stored as the single reserved annotation `io.bulwark.sealed`: base64 of
 *   nonce | AES-256-GCM ciphertext | tag of their JSON, under the manifest's data key, with
 *   "bulwark-annotations-v1\0<repository>\0<digest>" as authenticated data, so a sealed value
 *   copied to another record does not open.
 *
 * Stated limits: `mediaType`, `artifactType`, `subject`, `size`, tags and repository names stay in
 * clear, because the referrers and listing queries filter on them. A record whose annotations
 * were removed below (set to nothing) reads as a record without annotations.
 *
 * - Bodies that opened (were read and authenticated) are kept in a byte-bounded cache by digest
 *   (32 MiB), each only until its data key's entry in the KeyRing's cache expires
 *   (`KeyRing.cachedUntil`). A cached body lives no longer than the key itself, so revocation
 *   still stops manifest reads within `encryption.dataKeyCacheSeconds`, and a lifetime of 0 caches
 *   no body. A pushed body is not cached until it is first read back from the store.
 *
 * Anything that does not open (no data-key record, a failed tag, a malformed value) is a storage
 * fault: a StoredContentError (500, logged), never bytes served. A vault that refuses to unwrap is
 * UNAVAILABLE (503) from the KeyRing: revocation stops reads within the data-key cache lifetime.
 */
import type { Digest } from '../oci/index.js';
import { ManifestCache, type ManifestRecord, type MetadataStore, type Page } from '../storage/index.js';
import type { DataKeyRecord, DataKeyStore } from './data-key-store.js';
import { SealError, openBuffer, openSegment, sealBuffer, sealSegment } from './format.js';
import { sealUnderNewKey } from './sealed-record.js';
import type { KeyRing } from './key-ring.js';

export interface EncryptingMetadataStoreOptions {
  readonly inner: MetadataStore;
  readonly keys: DataKeyStore;
  readonly ring: KeyRing;
  /** plaintext bytes per segment of new manifest bodies */
  readonly segmentSize: number;
}

/** The one annotation a sealed record carries below this decorator. */
export const SEALED_ANNOTATION = 'io.bulwark.sealed';
const ANNOTATIONS_PURPOSE = 'bulwark-annotations-v1';
/** Most bytes of opened manifest bodies kept in memory (as ManifestService's plaintext cache). */
const OPENED_CACHE_BYTES = 32 * 1024 * 1024;
/** putIfAbsent races and stale records resolve within a couple of rounds; more is a fault. */
const MAX_SEAL_ATTEMPTS = 4;

function annotationsAad(repository: string, digest: Digest): Buffer {
  return Buffer.from(`${ANNOTATIONS_PURPOSE}\0${repository}\0${digest}`, 'utf8');
}

/**
 * Stored content that fails verification: a storage fault, answered 500 and logged, never served.
 * `bulwark fsck` reports it as a corrupt manifest by its `code` (STYLE rule 2).
 */
export class StoredContentError extends Error {
  override readonly name = 'StoredContentError';
  readonly code = 'STORED_CONTENT_INVALID';
}

function storeFault(what: string, digest: Digest, cause?: unknown): StoredContentError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new StoredContentError(`failed to read ${what} of manifest ${digest}${why}`, cause === undefined ? {} : { cause });
}

/** Decrypted annotations are still checked: a string map, as the record type promises. */
function asAnnotations(v: unknown): Record<string, string> | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const entries = Object.entries(v);
  return entries.every(([, x]) => typeof x === 'string') ? Object.fromEntries(entries as Array<[string, string]>) : undefined;
}

export class EncryptingMetadataStore implements MetadataStore {
  private readonly inner: MetadataStore;
  private readonly keys: DataKeyStore;
  private readonly ring: KeyRing;
  private readonly segmentSize: number;
  /** opened bodies by digest, each until its data key's cache entry expires */
  private readonly opened: ManifestCache;

  constructor(o: EncryptingMetadataStoreOptions) {
    this.inner = o.inner;
    this.keys = o.keys;
    this.ring = o.ring;
    this.segmentSize = o.segmentSize;
    this.opened = new ManifestCache(OPENED_CACHE_BYTES, { now: o.ring.now });
  }

  private dataKey(rec: DataKeyRecord): Promise<Buffer> {
    return this.ring.dataKey(rec.objectId, rec.kek, rec.wrapped);
  }

  // --- manifests ----------------------------------------------------------------------------

  async putManifest(record: ManifestRecord, body: Buffer, tag?: string): Promise<void> {
    const { sealed, key } = await this.sealBody(record.digest, body);
    try {
      await this.inner.putManifest(this.sealRecord(record, key), sealed, tag);
    } finally {
      key.fill(0);
    }
  }

  /** The body sealed under the digest's data-key record (made first when there is none). */
  private async sealBody(digest: Digest, body: Buffer): Promise<{ sealed: Buffer; key: Buffer }> {
    for (let attempt = 0; attempt < MAX_SEAL_ATTEMPTS; attempt++) {
      const existing = await this.keys.get('manifest', digest);
      if (existing !== undefined) {
        const key = await this.dataKey(existing);
        const header = { segmentSize: existing.segmentSize, objectId: Buffer.from(existing.objectId, 'hex'), kek: existing.kek, wrapped: existing.wrapped };
        const sealed = sealBuffer(body, digest, key, header);
        if (sealed.headerLength === existing.headerLength) return { sealed: sealed.bytes, key };
        // Re-wrapped since by a KEK whose reference has another length: a new sealing would not
        // match the record's header length. The body already stored is still good; without one,
        // the record protects nothing and is replaced.
        const stored = await this.inner.manifestBody(digest);
        if (stored !== undefined) return { sealed: stored, key };
        key.fill(0);
        this.ring.forget(existing.objectId);
        await this.keys.delete('manifest', digest, existing.cipherDigest);
        continue;
      }
      const fresh = await sealUnderNewKey(this.ring, 'manifest', body, digest, this.segmentSize);
      const won = await this.keys.putIfAbsent(fresh.record);
      if (won.objectId === fresh.record.objectId) return { sealed: fresh.bytes, key: fresh.key };
      // A concurrent push of the same manifest wrote its record first: seal under that one.
      fresh.key.fill(0);
      this.ring.forget(fresh.record.objectId);
    }
    throw new Error(`failed to store manifest ${digest}: its data-key record kept changing`);
  }

  /** The record as stored below: annotations replaced by their sealed form. */
  private sealRecord(record: ManifestRecord, key: Buffer): ManifestRecord {
    const a = record.annotations;
    if (a === undefined || Object.keys(a).length === 0) return record;
    const sealed = sealSegment(key, annotationsAad(record.repository, record.digest), Buffer.from(JSON.stringify(a), 'utf8'));
    return { ...record, annotations: { [SEALED_ANNOTATION]: sealed.toString('base64') } };
  }

  /** The record as stored below, its annotations opened. */
  private async openRecord(record: ManifestRecord): Promise<ManifestRecord> {
    const a = record.annotations;
    if (a === undefined || Object.keys(a).length === 0) return record;
    const value = a[SEALED_ANNOTATION];
    // Clear-text annotations below this decorator were not written by it: refuse, never serve.
    if (value === undefined || Object.keys(a).length !== 1) throw storeFault('the annotations', record.digest, new Error('annotations are not sealed'));
    const rec = await this.keys.get('manifest', record.digest);
    if (rec === undefined) throw storeFault('the annotations', record.digest, new Error('no data-key record'));
    const key = await this.dataKey(rec);
    let parsed: unknown;
    try {
      const plain = openSegment(key, annotationsAad(record.repository, record.digest), Buffer.from(value, 'base64'));
      parsed = JSON.parse(plain.toString('utf8'));
    } catch (e) {
      throw storeFault('the annotations', record.digest, e);
    } finally {
      key.fill(0);
    }
    const annotations = asAnnotations(parsed);
    if (annotations === undefined) throw storeFault('the annotations', record.digest, new Error('sealed annotations are not a string map'));
    return { ...record, annotations };
  }

  async getManifest(repository: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const r = await this.inner.getManifest(repository, digest);
    return r === undefined ? undefined : this.openRecord(r);
  }

  async listReferrers(repository: string, subject: Digest, artifactType?: string): Promise<ManifestRecord[]> {
    const rows = await this.inner.listReferrers(repository, subject, artifactType);
    // One data key per referrer, from the ring's cache when warm; in order, so a large list does
    // not fire every unwrap at the vault at once.
    const out: ManifestRecord[] = [];
    for (const r of rows) out.push(await this.openRecord(r));
    return out;
  }

  async manifestBody(digest: Digest): Promise<Buffer | undefined> {
    const cached = this.opened.get(digest);
    if (cached !== undefined) return cached;
    const sealed = await this.inner.manifestBody(digest);
    if (sealed === undefined) return undefined;
    const rec = await this.keys.get('manifest', digest);
    if (rec === undefined) throw storeFault('the body', digest, new Error('no data-key record'));
    const key = await this.dataKey(rec);
    try {
      const body = openBuffer(sealed, key, { objectId: Buffer.from(rec.objectId, 'hex'), segmentSize: rec.segmentSize, headerLength: rec.headerLength, size: rec.size, digest });
      // Kept only after it opened (authenticated), and only while its key stays cached.
      const until = this.ring.cachedUntil(rec.objectId);
      if (until !== undefined) this.opened.set(digest, body, until);
      return body;
    } catch (e) {
      throw e instanceof SealError ? storeFault('the body', digest, e) : e;
    } finally {
      key.fill(0);
    }
  }

  /** The body stays (stored once per digest, maybe used by other repositories), so does its key. */
  deleteManifest(repository: string, digest: Digest): Promise<boolean> {
    return this.inner.deleteManifest(repository, digest);
  }

  // --- everything else holds no content: passed through --------------------------------------

  linkBlob(repository: string, digest: Digest, size: number): Promise<void> {
    return this.inner.linkBlob(repository, digest, size);
  }
  blobLink(repository: string, digest: Digest): Promise<number | undefined> {
    return this.inner.blobLink(repository, digest);
  }
  unlinkBlob(repository: string, digest: Digest): Promise<boolean> {
    return this.inner.unlinkBlob(repository, digest);
  }
  repositoriesWithBlob(digest: Digest, limit: number): Promise<string[]> {
    return this.inner.repositoriesWithBlob(digest, limit);
  }
  resolveTag(repository: string, tag: string): Promise<Digest | undefined> {
    return this.inner.resolveTag(repository, tag);
  }
  deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.inner.deleteTag(repository, tag);
  }
  listTags(repository: string, page: Page): Promise<string[]> {
    return this.inner.listTags(repository, page);
  }
  repositoryExists(repository: string): Promise<boolean> {
    return this.inner.repositoryExists(repository);
  }
  listRepositories(page: Page): Promise<string[]> {
    return this.inner.listRepositories(page);
  }
  referencedDigests(): AsyncIterable<{ repository: string; digest: Digest; kind: 'blob' | 'manifest' }> {
    return this.inner.referencedDigests();
  }

  /** The ring and the data-key store are shared with the blob decorator; their owner closes them. */
  close(): Promise<void> {
    return this.inner.close();
  }
}
