/**
 * EncryptingBlobStore: a BlobStore decorator that encrypts every byte before the store below it
 * sees it (ADR 0006; format in format.ts). Clients keep seeing plaintext digests and sizes; the
 * store below holds ciphertext objects named by their own sha256, so it still verifies what it
 * holds (fsck needs no keys), and a DataKeyStore record maps each plaintext digest to its object
 * and its wrapped data key. Identical content is stored once: a commit of content that already
 * has a record discards the new ciphertext.
 *
 * Upload sessions hold header | data segments. A body that ends inside a segment leaves a short
 * segment; the next append re-reads it, truncates it away and seals it again together with the
 * new bytes (fresh nonce), so segments stay fixed-size (session-bytes.ts does that byte work).
 * The commit appends the terminator.
 */
import { createDigester, digestAlgorithm, digestOf, isRegistryError, registryError, type Digest, type DigestAlgorithm } from '../oci/index.js';
import { Readable, pipeline } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { KeyedQueue, isRecycling, type AppendOptions, type BlobCheck, type BlobInfo, type BlobStore, type ByteRange, type CommitOptions, type UploadInfo } from '../storage/index.js';
import { sameKek, type DataKeyRecord, type DataKeyStore } from './data-key-store.js';
import {
  Layout,
  SEGMENT_OVERHEAD,
  SealError,
  encodeHeader,
  newObjectId,
  checkTerminator,
  hashHeader,
  sealSegment,
  segmentAad,
  terminatorPlaintext,
} from './format.js';
import type { KeyRing } from './key-ring.js';
import { AsyncSha256 } from './native.js';
import { collect, DecryptTransform, EncryptTransform } from './segment-streams.js';
import { UploadStates } from './upload-state.js';
import { SessionBytes } from './session-bytes.js';
import { sealUnderNewKey } from './sealed-record.js';

export interface EncryptingBlobStoreOptions {
  readonly inner: BlobStore;
  readonly keys: DataKeyStore;
  readonly ring: KeyRing;
  /** plaintext bytes per segment of new objects */
  readonly segmentSize: number;
}

/** How many checked bindings are remembered. */
const BOUND_ENTRIES = 50_000;

/**
 * What a checked binding is remembered by: a record that names another object, or the same one
 * with another size or layout, is another binding and is checked again. (The wrapped key is left
 * out: rotation rewraps the same data key.)
 */
function bindingId(rec: DataKeyRecord): string {
  return `${rec.digest} ${rec.objectId} ${rec.cipherDigest} ${rec.size} ${rec.segmentSize} ${rec.headerLength}`;
}

/** Tampered or unreadable ciphertext is a storage fault, never client data: 500, logged. */
function asStoreError(e: unknown, digest: Digest): unknown {
  if (e instanceof SealError) return new Error(`failed to decrypt ${digest}: ${e.message}`, { cause: e });
  return e;
}

export class EncryptingBlobStore implements BlobStore {
  private readonly inner: BlobStore;
  private readonly keys: DataKeyStore;
  private readonly ring: KeyRing;
  private readonly segmentSize: number;
  private readonly uploads: UploadStates;
  private readonly sessions: SessionBytes;
  /** object bindings already checked (checkBinding), oldest first */
  private readonly bound = new Set<string>();
  /** commits, puts and deletes run one at a time per digest (exclusive) */
  private readonly committing = new KeyedQueue();

  constructor(o: EncryptingBlobStoreOptions) {
    this.inner = o.inner;
    this.keys = o.keys;
    this.ring = o.ring;
    this.segmentSize = o.segmentSize;
    this.uploads = new UploadStates(o.inner, (id, st, stored) => this.sessions.repairTail(id, st, stored));
    this.sessions = new SessionBytes(o.inner, o.ring, this.uploads);
  }

  // --- stored blobs -----------------------------------------------------------------------

  /** The record of a stored blob whose ciphertext is present (a stale record counts as absent; `settle` replaces it). */
  private async record(digest: Digest): Promise<DataKeyRecord | undefined> {
    const rec = await this.keys.get('blob', digest);
    if (rec === undefined) return undefined;
    if ((await this.inner.stat(rec.cipherDigest)) !== undefined) return rec;
    // The ciphertext is gone (quarantined, or deleted before its record by a crash).
    return undefined;
  }

  private async recordOrThrow(digest: Digest): Promise<DataKeyRecord> {
    const rec = await this.keys.get('blob', digest);
    if (rec === undefined) throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
    return rec;
  }

  private dataKey(rec: DataKeyRecord): Promise<Buffer> {
    return this.ring.dataKey(rec.objectId, rec.kek, rec.wrapped);
  }

  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    const rec = await this.record(digest);
    return rec === undefined ? undefined : { digest, size: rec.size };
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    const rec = await this.recordOrThrow(digest);
    const key = await this.dataKey(rec);
    const layout = new Layout(rec.headerLength, rec.segmentSize);
    const objectId = Buffer.from(rec.objectId, 'hex');
    const start = range?.start ?? 0;
    const end = range?.end ?? rec.size - 1;
    const first = Math.floor(start / rec.segmentSize);
    const last = end < start ? first - 1 : Math.floor(end / rec.segmentSize);
    const toEnd = end >= rec.size - 1;
    try {
      // Before the first byte leaves: this object is the one the record's digest names, and it
      // ends where it should (a swapped row or a truncated file fails here, not mid-response).
      await this.checkBinding(rec, key, layout, objectId);
      const cipherEnd = toEnd ? layout.cipherSize(rec.size, digest) - 1 : layout.segmentOffset(last) + layout.segmentPlainLength(last, rec.size) + SEGMENT_OVERHEAD - 1;
      // A whole read also reads the header, which the terminator authenticates.
      const withHeader = toEnd && first === 0;
      const source = await this.inner.read(rec.cipherDigest, { start: withHeader ? 0 : layout.segmentOffset(first), end: cipherEnd });
      const decrypt = new DecryptTransform({
        key,
        objectId,
        segmentSize: rec.segmentSize,
        size: rec.size,
        firstIndex: first,
        lastIndex: last,
        skip: start - first * rec.segmentSize,
        take: end - start + 1,
        terminator: toEnd ? digest : undefined,
        headerLength: withHeader ? rec.headerLength : undefined,
        recycle: isRecycling(source) ? (c) => source.recycle(c) : undefined,
      });
      decrypt.once('close', () => key.fill(0));
      return pipeline(source, decrypt, () => undefined);
    } catch (e) {
      key.fill(0);
      throw asStoreError(e, digest);
    }
  }

  /**
   * Checks the object's terminator against the record. A binding once checked holds for as long
   * as the record names the same object id and ciphertext (segments of another object cannot
   * authenticate under this object id), so it is remembered.
   */
  private async checkBinding(rec: DataKeyRecord, key: Buffer, layout: Layout, objectId: Buffer): Promise<void> {
    const id = bindingId(rec);
    if (this.bound.has(id)) return;
    const at = layout.terminatorOffset(rec.size);
    const sealed = await collect(await this.inner.read(rec.cipherDigest, { start: at, end: layout.cipherSize(rec.size, rec.digest) - 1 }));
    checkTerminator(key, objectId, rec.segmentSize, sealed, { size: rec.size, digest: rec.digest });
    this.remember(id);
  }

  /** A binding known to hold: checked, or just written by this store (its commit sealed the terminator). */
  private remember(id: string): void {
    if (this.bound.has(id)) return;
    if (this.bound.size >= BOUND_ENTRIES) this.bound.delete(this.bound.values().next().value as string);
    this.bound.add(id);
  }

  async readAll(digest: Digest): Promise<Buffer> {
    return collect(await this.read(digest));
  }

  async put(data: Buffer, digest: Digest): Promise<BlobInfo> {
    if (digestOf(data, digestAlgorithm(digest)) !== digest) throw registryError('DIGEST_INVALID', undefined, { detail: { digest } });
    return this.exclusive(digest, async () => {
      if ((await this.record(digest)) !== undefined) return { digest, size: data.length };
      const fresh = await sealUnderNewKey(this.ring, 'blob', data, digest, this.segmentSize);
      try {
        await this.storeBeside(fresh.record, () => this.inner.put(fresh.bytes, fresh.record.cipherDigest));
        return { digest, size: data.length };
      } finally {
        fresh.key.fill(0);
      }
    });
  }

  /**
   * Runs `run` while no other commit, put or delete of `digest` runs in this store. Records may be
   * written before their objects are durable (storeBeside), so a second commit of the same
   * content must not find the first one's record while its object is still being written: it
   * would take the record for a stale one and replace it. One process owns a data directory.
   */
  private exclusive<T>(digest: Digest, run: () => Promise<T>): Promise<T> {
    return this.committing.run(digest, run);
  }

  /**
   * Writes a ciphertext object (`write`, which must store it under `rec.cipherDigest`) and its
   * record side by side: each is durable before this resolves, and the record's sync (a WAL
   * sync of its own database) no longer waits for the object's sync and rename. A record whose
   * object is missing is harmless: `record` treats it as absent and the next commit replaces it.
   * So a crash between the two leaves either nothing readable or a blob whose record and object
   * are both durable; only the answer after both vouches for the blob. Callers hold `exclusive`.
   */
  private async storeBeside(rec: DataKeyRecord, write: () => Promise<BlobInfo>): Promise<void> {
    const [object, record] = await Promise.allSettled([write(), this.keys.putIfAbsent(rec)]);
    const wrongName = object.status === 'fulfilled' && object.value.digest !== rec.cipherDigest;
    if (object.status === 'rejected' || wrongName) {
      // Take our record back when it was written (best effort: a stale record is harmless).
      if (record.status === 'fulfilled' && record.value.cipherDigest === rec.cipherDigest) await this.keys.delete('blob', rec.digest, rec.cipherDigest).catch(() => false);
      if (object.status === 'rejected') throw object.reason;
      throw new Error(`the blob store stored ${rec.cipherDigest} as ${object.value.digest}`);
    }
    if (record.status === 'rejected') {
      // Our object is ours alone (its object id is new): without a record nothing can reach it.
      await this.inner.delete(rec.cipherDigest).catch(() => false);
      throw record.reason;
    }
    await this.settle(rec, record.value);
  }

  /**
   * Makes a committed ciphertext object the blob's, given what `putIfAbsent(rec)` returned. A
   * stale record (ciphertext gone) is replaced; a live one wins, and ours is deleted.
   */
  private async settle(rec: DataKeyRecord, first: DataKeyRecord): Promise<void> {
    let stored = first;
    if (stored.cipherDigest !== rec.cipherDigest && (await this.inner.stat(stored.cipherDigest)) === undefined) {
      await this.keys.delete('blob', rec.digest, stored.cipherDigest);
      stored = await this.keys.putIfAbsent(rec);
    }
    if (stored.cipherDigest !== rec.cipherDigest) {
      await this.inner.delete(rec.cipherDigest);
      return;
    }
    // This store sealed the object's terminator for this digest moments ago: the first pull
    // need not read it back to check the record (a record changed since is another binding).
    this.remember(bindingId(rec));
  }

  async delete(digest: Digest): Promise<boolean> {
    // Not in the middle of a commit of the same content, whose record may already be written
    // while its object is not (storeBeside): the object would land after the delete, unreachable.
    return this.exclusive(digest, async () => {
      const rec = await this.keys.get('blob', digest);
      if (rec === undefined) return false;
      const removed = await this.keys.delete('blob', digest, rec.cipherDigest);
      await this.inner.delete(rec.cipherDigest);
      this.ring.forget(rec.objectId);
      return removed;
    });
  }

  async *list(): AsyncIterable<Digest> {
    // A quarantined blob keeps its record (its key is needed to inspect it) but is not listed.
    for await (const rec of this.keys.list()) if (rec.kind === 'blob' && (await this.inner.stat(rec.cipherDigest)) !== undefined) yield rec.digest;
  }

  async verify(digest: Digest): Promise<BlobCheck> {
    const rec = await this.recordOrThrow(digest);
    const cipher = await this.inner.verify(rec.cipherDigest);
    if (!cipher.ok) return { digest, ok: false, problem: `ciphertext ${rec.cipherDigest}: ${cipher.problem ?? 'corrupt'}` };
    const h = createDigester(digestAlgorithm(digest));
    try {
      await pipelineAsync(await this.read(digest), async (src: AsyncIterable<Buffer>) => {
        for await (const c of src) h.update(c);
      });
    } catch (e) {
      // A vault that refuses (UNAVAILABLE) says nothing about the content: fsck must stop, not
      // quarantine healthy blobs because a key is disabled for a moment.
      if (isRegistryError(e)) throw e;
      return { digest, ok: false, problem: `failed to decrypt: ${(e as Error).message}` };
    }
    const actual = `${digestAlgorithm(digest)}:${h.digest('hex')}`;
    return actual === digest ? { digest, ok: true } : { digest, ok: false, problem: `plaintext hashes to ${actual}` };
  }

  async quarantine(digest: Digest): Promise<void> {
    const rec = await this.recordOrThrow(digest);
    await this.inner.quarantine(rec.cipherDigest);
  }

  // --- upload sessions ----------------------------------------------------------------------

  async startUpload(id: string, repository: string, initial?: Buffer): Promise<UploadInfo> {
    const info = await this.startSession(id, repository);
    if (initial === undefined || initial.length === 0) return info;
    // Plaintext to begin with: encrypted like any append (the store below starts with the header).
    return { ...info, size: await this.appendUpload(id, Readable.from([initial]), { length: initial.length }) };
  }

  private async startSession(id: string, repository: string): Promise<UploadInfo> {
    const objectId = newObjectId();
    const dk = await this.ring.newDataKey(objectId.toString('hex'));
    dk.key.fill(0);
    const header = encodeHeader({ segmentSize: this.segmentSize, objectId, kek: dk.kek, wrapped: dk.wrapped });
    const info = await this.inner.startUpload(id, repository, header);
    const st = this.uploads.adopt(id, { objectId, segmentSize: this.segmentSize, headerLength: header.length, headerHash: hashHeader(header), kek: dk.kek, wrapped: dk.wrapped });
    st.cipherHash = new AsyncSha256();
    st.cipherHash.update(header);
    return { ...info, size: 0 };
  }

  async getUpload(id: string): Promise<UploadInfo | undefined> {
    const info = await this.inner.getUpload(id);
    if (info === undefined) return undefined;
    const st = await this.uploads.peek(id, info);
    return st === undefined ? undefined : { ...info, size: st.plainSize };
  }

  async appendUpload(id: string, body: Readable, opts: AppendOptions = {}): Promise<number> {
    const st = await this.uploads.acquire(id);
    let key: Buffer | undefined;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    // A body that closes before its end has failed: from then on this request only rolls back.
    const onClose = (): void => {
      if (!body.readableEnded && st.busy) st.settling = finished;
    };
    body.once('close', onClose);
    try {
      if (opts.offset !== undefined && opts.offset !== st.plainSize) {
        throw registryError('RANGE_INVALID', `chunk starts at ${opts.offset} but the upload has ${st.plainSize} bytes`, {
          headers: { Range: st.plainSize === 0 ? '0-0' : `0-${st.plainSize - 1}` },
        });
      }
      key = await this.ring.dataKey(st.objectId.toString('hex'), st.kek, st.wrapped);
      const { index, prefix, tailCipher } = await this.sessions.openTail(id, st, key);
      // A rewritten tail took bytes the ciphertext hash has seen out of the session.
      if (tailCipher !== undefined) st.cipherHash = undefined;
      const encrypt = new EncryptTransform({ key, objectId: st.objectId, segmentSize: st.segmentSize, firstIndex: index, prefix, hash: st.hash, cipherHash: st.cipherHash, length: opts.length });
      const callerHashes = st.cipherHash !== undefined;
      try {
        // The store hands each written segment back for the next one (no allocation per segment).
        const recycle = (c: Buffer): void => encrypt.recycle(c);
        // With the body's length known, so is the ciphertext's: the store below then knows where
        // the body ends (its write-back stops before the end, not in the commit's way).
        const plain = opts.length === undefined ? undefined : prefix.length + opts.length;
        const length = plain === undefined ? undefined : plain + st.layout().dataSegments(plain) * SEGMENT_OVERHEAD;
        await this.inner.appendUpload(id, pipeline(body, encrypt, () => undefined), {
          ...(opts.signal === undefined ? {} : { signal: opts.signal }),
          ...(length === undefined ? {} : { length }),
          recycle,
          callerHashes,
        });
      } catch (e) {
        // A store that failed before reading the body leaves the stream open: end it (its key is wiped below).
        encrypt.destroy();
        st.hash = undefined;
        st.cipherHash = undefined;
        if (tailCipher !== undefined) await this.sessions.restoreTail(id, tailCipher);
        throw e;
      }
      st.plainSize += encrypt.bytes;
      return st.plainSize;
    } finally {
      body.off('close', onClose);
      key?.fill(0);
      this.uploads.release(st);
      done();
    }
  }

  async readUploadData(id: string, range: ByteRange): Promise<Readable> {
    const st = await this.uploads.acquire(id);
    try {
      const key = await this.ring.dataKey(st.objectId.toString('hex'), st.kek, st.wrapped);
      return await this.sessions.decryptSession(id, st, key, range);
    } finally {
      this.uploads.release(st);
    }
  }

  async truncateUpload(id: string, size: number): Promise<void> {
    const st = await this.uploads.acquire(id);
    try {
      if (size > st.plainSize) throw registryError('RANGE_INVALID', `cannot truncate ${st.plainSize} bytes to ${size}`);
      const key = await this.ring.dataKey(st.objectId.toString('hex'), st.kek, st.wrapped);
      try {
        const index = Math.floor(size / st.segmentSize);
        const keep = size - index * st.segmentSize;
        const kept = keep === 0 ? undefined : await collect(await this.sessions.decryptSession(id, st, Buffer.from(key), { start: index * st.segmentSize, end: size - 1 }));
        st.hash = undefined;
        st.cipherHash = undefined;
        await this.inner.truncateUpload(id, st.layout().segmentOffset(index));
        st.plainSize = index * st.segmentSize;
        if (kept !== undefined) {
          const sealed = sealSegment(key, segmentAad(st.objectId, st.segmentSize, index, false), kept);
          await this.inner.appendUpload(id, Readable.from([sealed]), { length: sealed.length });
          st.plainSize = size;
        }
      } finally {
        key.fill(0);
      }
    } finally {
      this.uploads.release(st);
    }
  }

  async commitUpload(id: string, expected?: Digest, opts: CommitOptions = {}): Promise<BlobInfo> {
    // A plaintext trailer is the blob's last bytes, encrypted like any append; `vouched` is for
    // stores that name bytes they never see in plaintext, not for this one.
    if (opts.trailer !== undefined && opts.trailer.length > 0) await this.appendUpload(id, Readable.from([opts.trailer]), { length: opts.trailer.length });
    const st = await this.uploads.acquire(id);
    let key: Buffer | undefined;
    let ended = false;
    try {
      const dataKey = await this.ring.dataKey(st.objectId.toString('hex'), st.kek, st.wrapped);
      key = dataKey;
      const algorithm: DigestAlgorithm = expected === undefined ? 'sha256' : digestAlgorithm(expected);
      const digest = algorithm === 'sha256' && st.hash !== undefined ? await st.hash.digest() : await this.sessions.hashSession(id, st, dataKey, algorithm).catch((e: unknown) => {
        if (e instanceof SealError) throw registryError('BLOB_UPLOAD_INVALID', 'the upload session is damaged; restart the upload', { cause: e });
        throw e;
      });
      if (expected !== undefined && digest !== expected) {
        throw registryError('DIGEST_INVALID', 'provided digest did not match uploaded content', { detail: { digest: expected } });
      }
      return await this.exclusive(digest, async () => {
        if ((await this.record(digest)) !== undefined) return { digest, size: st.plainSize };
        // An upload that began before a rotation commits under the rotation's key version.
        const current = this.ring.currentKek;
        const { kek, wrapped } = current !== undefined && !sameKek(current, st.kek) ? await this.ring.rewrap(st.kek, st.wrapped, current) : st;
        const layout = st.layout();
        const terminator = sealSegment(
          dataKey,
          segmentAad(st.objectId, st.segmentSize, layout.dataSegments(st.plainSize), true),
          terminatorPlaintext(st.plainSize, digest, st.headerHash),
        );
        const cipherHash = st.cipherHash;
        cipherHash?.update(terminator);
        const cipherDigest = await cipherHash?.digest();
        ended = true;
        const rec = (object: Digest): DataKeyRecord => ({
          kind: 'blob',
          digest,
          cipherDigest: object,
          size: st.plainSize,
          objectId: st.objectId.toString('hex'),
          segmentSize: st.segmentSize,
          headerLength: st.headerLength,
          kek,
          wrapped,
          createdAt: Date.now(),
        });
        // The terminator ends the session with the commit's own sync. The object is named by the
        // hash of every byte this decorator wrote, and its record is written beside it. When that
        // hash is unknown (a session from before a restart, or one whose hash an append dropped:
        // a rewritten partial segment, a truncation, a failed append), the store names the
        // object, and the record follows.
        if (cipherDigest !== undefined) {
          await this.storeBeside(rec(cipherDigest), () => this.inner.commitUpload(id, cipherDigest, { vouched: true, trailer: terminator }));
        } else {
          const stored = await this.inner.commitUpload(id, undefined, { trailer: terminator });
          const mine = rec(stored.digest);
          await this.settle(mine, await this.keys.putIfAbsent(mine));
        }
        return { digest, size: st.plainSize };
      });
    } finally {
      key?.fill(0);
      this.uploads.drop(id);
      if (!ended) await this.inner.cancelUpload(id).catch(() => false);
    }
  }

  async cancelUpload(id: string): Promise<boolean> {
    this.uploads.drop(id);
    return this.inner.cancelUpload(id);
  }

  staleUploads(before: number): Promise<string[]> {
    return this.inner.staleUploads(before);
  }

  async close(): Promise<void> {
    this.ring.close();
    await this.inner.close();
  }
}
