/**
 * Filesystem BlobStore. Bytes are hashed while they stream into the session file; a commit
 * fsyncs the file, renames it into place and fsyncs the directory, so a crash at any instant
 * leaves either no blob or a complete one (see fs-layout.ts for the tree).
 */
import { randomUUID, type Hash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDigester, digestAlgorithm, isDigest, registryError, type Digest } from '../oci/index.js';
import type { AppendOptions, BlobCheck, CommitOptions, BlobInfo, BlobStore, ByteRange, UploadInfo } from './blob-store.js';
import { FileRangeStream, ONE_READ, readSmallRange } from './file-range-stream.js';
import { DirectWriter } from './direct-writer.js';
import { FlushingWriter } from './flushing-writer.js';
import { FsLayout, isUploadId } from './fs-layout.js';
import { appendDirect, commitFile, makeFolder, readDirect, type CommitFileOptions } from './native-fs.js';
import { countingDigest } from './streams.js';

const READ_CHUNK = 1 << 20;
const DIGEST_ALGORITHMS = ['sha256', 'sha512'] as const;
/** the first two hex digits of a digest: the store's fan-out folders */
const FAN_OUT = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** Start a background fdatasync after this many appended bytes (see flushing-writer.ts). */
const FLUSH_EVERY = 4 << 20;
/**
 * Request bodies and blob reads of at least this many bytes bypass the page cache (O_DIRECT,
 * ADR 0024), where the file system supports it; smaller ones, the hot small objects, use it.
 */
export const DIRECT_MIN_BYTES = 8 << 20;

export interface FsBlobStoreOptions {
  /** bodies and reads of at least this many bytes use direct I/O (0: never); DIRECT_MIN_BYTES by default */
  readonly directMinBytes?: number;
}

interface LiveSession {
  /** sha256 state of the first `hashedBytes` bytes; dropped when in doubt */
  hash: Hash | undefined;
  hashedBytes: number;
  busy: boolean;
  /**
   * What the session's files say, kept while this process owns the session so that a request
   * does not re-read them; undefined when unknown or in doubt (then the files are read).
   */
  info: UploadInfo | undefined;
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Appends `bytes` to a file and syncs it, in one open. */
async function appendAndSync(path: string, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'a');
  try {
    await fh.writeFile(bytes); // writes all of it, short writes included
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Whether the file system under `dir` takes direct I/O: a file written and read back with
 * O_DIRECT (some, tmpfs on older kernels among them, refuse the flag or its writes).
 */
async function directIoWorks(dir: string): Promise<boolean> {
  const path = join(dir, `direct-io-${randomUUID()}`);
  const bytes = Buffer.alloc(3 * 4096 + 100, 0x5a);
  try {
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, 0o600);
    try {
      if ((await appendDirect(fh.fd, 0, [bytes], true)) !== bytes.length) return false;
      const back = Buffer.alloc(bytes.length + 10);
      return (await readDirect(fh.fd, 0, back)) === bytes.length && back.subarray(0, bytes.length).equals(bytes);
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  } finally {
    await rm(path, { force: true });
  }
}

/**
 * Opens `path` with `flags`, and O_DIRECT when `direct`; a file system that refuses the flag
 * there (a folder mounted apart from `tmp/`, where init checked) gets the page cache instead.
 * Without O_DIRECT a writer appends (O_APPEND), as FlushingWriter expects.
 */
async function openMaybeDirect(path: string, flags: number, direct: boolean): Promise<[FileHandle, boolean]> {
  if (direct) {
    try {
      return [await open(path, flags | constants.O_DIRECT), true];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
    }
  }
  const append = (flags & constants.O_RDWR) !== 0 ? constants.O_APPEND : 0;
  return [await open(path, flags | append), false];
}

export class FsBlobStore implements BlobStore {
  private readonly layout: FsLayout;
  /** in-process state of sessions this process has touched; the files are the truth */
  private readonly live = new Map<string, LiveSession>();
  private readonly knownDirs = new Set<string>();
  /** removals of finished session folders, done after the answer; awaited by close() */
  private readonly cleanups = new Set<Promise<void>>();
  /** sessions that ended while their folder is still being removed: not sessions any more */
  private readonly finished = new Set<string>();

  /** the smallest body or read that uses direct I/O; Infinity when the file system has none */
  private directMin = Infinity;

  constructor(
    root: string,
    private readonly opts: FsBlobStoreOptions = {},
  ) {
    this.layout = new FsLayout(root);
  }

  async init(): Promise<this> {
    for (const d of [this.layout.blobsDir, this.layout.uploadsDir, this.layout.tmpDir, this.layout.quarantineDir]) {
      await mkdir(d, { recursive: true });
    }
    await this.createFanOut();
    // Leftovers of small puts interrupted by a crash are never referenced: remove them.
    for (const name of await readdir(this.layout.tmpDir)) await rm(join(this.layout.tmpDir, name), { force: true });
    const min = this.opts.directMinBytes ?? DIRECT_MIN_BYTES;
    if (min > 0 && (await directIoWorks(this.layout.tmpDir))) this.directMin = min;
    return this;
  }

  /** Whether bodies and reads of `bytes` bytes use direct I/O (for tests and the health of a deployment). */
  usesDirectIo(bytes: number): boolean {
    return bytes >= this.directMin;
  }

  /**
   * Creates every fan-out folder (`blobs/<alg>/<00..ff>`) up front, durably, so that no push
   * pays for a mkdir and an fsync of its parent: with 256 folders per algorithm, most of a new
   * registry's first few hundred pushes would otherwise create one.
   */
  private async createFanOut(): Promise<void> {
    for (const alg of DIGEST_ALGORITHMS) {
      const algDir = join(this.layout.blobsDir, alg);
      await mkdir(algDir, { recursive: true });
      await Promise.all(
        FAN_OUT.map((p) =>
          mkdir(join(algDir, p)).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== 'EEXIST') throw e;
          }),
        ),
      );
      // Synced at every start, not only the one that made them: a first start killed between
      // its mkdirs and these syncs would otherwise leave them unsynced for good.
      await fsyncPath(algDir);
      await fsyncPath(this.layout.blobsDir);
      for (const p of FAN_OUT) this.knownDirs.add(join(algDir, p));
    }
  }

  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    try {
      const s = await stat(this.layout.blobPath(digest));
      return { digest, size: s.size };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    const path = this.layout.blobPath(digest);
    // A missing blob is a clean BLOB_UNKNOWN, before any answer, not a stream error mid-response.
    const unknownIfMissing = (e: NodeJS.ErrnoException): never => {
      if (e.code === 'ENOENT') throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
      throw e;
    };
    // A range of at most ONE_READ bytes in one job: open, read, close (ADR 0023). BlobService
    // passes the whole blob as a range, so this is every pull of a blob up to that size.
    const length = range === undefined ? -1 : range.end + 1 - range.start;
    if (range !== undefined && length >= 0 && length <= ONE_READ) return readSmallRange(path, range.start, range.end + 1).catch(unknownIfMissing);
    // A large range is read past the page cache (ADR 0024): the blob was written so.
    const wanted = range !== undefined && this.usesDirectIo(length);
    const [fh, direct] = await openMaybeDirect(path, constants.O_RDONLY, wanted).catch(unknownIfMissing);
    // Bounded by the size, so a file shorter than it is ends in an error, never a short answer.
    const end = range === undefined ? (await fh.stat()).size : range.end + 1;
    return new FileRangeStream(fh, range?.start ?? 0, end, direct);
  }

  async readAll(digest: Digest): Promise<Buffer> {
    try {
      return await readFile(this.layout.blobPath(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
      throw e;
    }
  }

  async put(data: Buffer, digest: Digest): Promise<BlobInfo> {
    const actual = createDigester(digestAlgorithm(digest)).update(data).digest('hex');
    if (`${digestAlgorithm(digest)}:${actual}` !== digest) throw registryError('DIGEST_INVALID', undefined, { detail: { digest } });
    const existing = await this.stat(digest);
    if (existing !== undefined) return existing;
    const tmp = join(this.layout.tmpDir, randomUUID());
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    // Stored meanwhile by another request: this copy is not needed.
    if (!(await this.moveIntoPlace(tmp, digest, { synced: true }))) await rm(tmp, { force: true });
    return { digest, size: data.length };
  }

  /**
   * Syncs `from` (see commitFile's options) and renames it to the blob's path, unless a blob is
   * there already (false); rename(2) is atomic, and the folder is synced so that the new name
   * survives a crash.
   */
  private async moveIntoPlace(from: string, digest: Digest, opts: CommitFileOptions = {}): Promise<boolean> {
    const dest = this.layout.blobPath(digest);
    const dir = dirname(dest);
    if (!this.knownDirs.has(dir)) {
      // Never after init, which makes every fan-out folder (createFanOut); kept for a store used
      // without it. A folder removed behind the store's back fails the rename (ENOENT).
      await mkdir(dir, { recursive: true });
      await fsyncPath(dirname(dir));
      this.knownDirs.add(dir);
    }
    return commitFile(from, dest, dir, opts);
  }

  async delete(digest: Digest): Promise<boolean> {
    try {
      await rm(this.layout.blobPath(digest));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  async *list(): AsyncIterable<Digest> {
    for (const alg of await readdir(this.layout.blobsDir).catch(() => [])) {
      for (const prefix of await readdir(join(this.layout.blobsDir, alg))) {
        for (const hex of await readdir(join(this.layout.blobsDir, alg, prefix))) {
          const d = `${alg}:${hex}`;
          if (isDigest(d)) yield d;
        }
      }
    }
  }

  async verify(digest: Digest): Promise<BlobCheck> {
    const hash = createDigester(digestAlgorithm(digest));
    try {
      await pipeline(createReadStream(this.layout.blobPath(digest), { highWaterMark: READ_CHUNK }), async (src: AsyncIterable<Buffer>) => {
        for await (const c of src) hash.update(c);
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
      return { digest, ok: false, problem: `failed to read: ${(e as Error).message}` };
    }
    const actual = `${digestAlgorithm(digest)}:${hash.digest('hex')}`;
    return actual === digest ? { digest, ok: true } : { digest, ok: false, problem: `content hashes to ${actual}` };
  }

  async quarantine(digest: Digest): Promise<void> {
    await rename(this.layout.blobPath(digest), this.layout.quarantinePath(digest)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
      throw e;
    });
  }

  async startUpload(id: string, repository: string, initial?: Buffer): Promise<UploadInfo> {
    const dir = this.layout.uploadDir(id);
    const startedAt = Date.now();
    const head = initial ?? Buffer.alloc(0);
    await makeFolder(dir, [
      [join(dir, 'data'), head],
      [join(dir, 'info.json'), Buffer.from(JSON.stringify({ repository, startedAt }))],
    ]);
    const info = { id, repository, size: head.length, startedAt, updatedAt: startedAt };
    this.live.set(id, { hash: createDigester('sha256').update(head), hashedBytes: head.length, busy: false, info });
    return info;
  }

  async getUpload(id: string): Promise<UploadInfo | undefined> {
    if (!isUploadId(id) || this.finished.has(id)) return undefined;
    return this.live.get(id)?.info ?? this.readUpload(id);
  }

  private async readUpload(id: string): Promise<UploadInfo | undefined> {
    const dir = this.layout.uploadDir(id);
    try {
      const [info, s] = await Promise.all([readFile(join(dir, 'info.json'), 'utf8'), stat(join(dir, 'data'))]);
      const parsed = JSON.parse(info) as { repository: string; startedAt: number };
      return { id, repository: parsed.repository, startedAt: parsed.startedAt, size: s.size, updatedAt: s.mtimeMs };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private acquire(id: string): LiveSession {
    if (this.finished.has(id)) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    let s = this.live.get(id);
    if (s === undefined) {
      // A session from before a restart: its hash state is gone, recompute at commit.
      s = { hash: undefined, hashedBytes: 0, busy: false, info: undefined };
      this.live.set(id, s);
    }
    if (s.busy) throw registryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload session');
    s.busy = true;
    return s;
  }

  /**
   * Lock the session, then read its size. Reading first would race an append that is finishing:
   * the size would be stale, and a rollback to it would cut off the other request's bytes.
   */
  private async acquireExisting(id: string): Promise<{ session: LiveSession; info: UploadInfo }> {
    if (!isUploadId(id)) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    const session = this.acquire(id);
    let info: UploadInfo | undefined;
    try {
      info = session.info ?? (await this.readUpload(id));
    } finally {
      if (info === undefined) session.busy = false;
    }
    if (info === undefined) {
      this.live.delete(id);
      throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    }
    session.info = info;
    return { session, info };
  }

  async appendUpload(id: string, body: Readable, opts: AppendOptions = {}): Promise<number> {
    const { session, info } = await this.acquireExisting(id);
    const dataPath = join(this.layout.uploadDir(id), 'data');
    const start = info.size;
    try {
      if (opts.offset !== undefined && opts.offset !== start) {
        throw registryError('RANGE_INVALID', `chunk starts at ${opts.offset} but the upload has ${start} bytes`, {
          headers: { Range: start === 0 ? '0-0' : `0-${start - 1}` },
        });
      }
      const hashing = opts.callerHashes !== true && session.hash !== undefined && session.hashedBytes === start ? session.hash : undefined;
      const counter = countingDigest(hashing, opts.length);
      let writer: FlushingWriter | DirectWriter | undefined;
      try {
        // A large body goes past the page cache (ADR 0024), written at the size the session has
        // (read and write: the block that size falls in is completed with the bytes before it).
        const wanted = opts.length !== undefined && this.usesDirectIo(opts.length);
        const [fh, direct] = await openMaybeDirect(dataPath, constants.O_RDWR | constants.O_CREAT, wanted);
        try {
          writer = direct
            ? new DirectWriter(fh, { position: start, highWaterMark: READ_CHUNK, recycle: opts.recycle })
            : new FlushingWriter(fh, { flushEvery: FLUSH_EVERY, expectedBytes: opts.length, highWaterMark: READ_CHUNK, recycle: opts.recycle });
          await pipeline(body, counter.transform, writer, {
            ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
          });
        } finally {
          if (writer instanceof DirectWriter) await writer.idle();
          await fh.close(); // waits for a flush still running
        }
        const flushFailed = writer instanceof FlushingWriter ? writer.flushFailed : undefined;
        if (flushFailed !== undefined) throw flushFailed;
        counter.assertComplete();
      } catch (e) {
        if (writer instanceof FlushingWriter && writer.flushFailed !== undefined) {
          // A failed write-back may have lost pages of earlier requests too, and Linux reports it
          // once: a later fsync would succeed over the lost bytes. The session cannot be trusted.
          await this.poison(id, session);
          throw registryError('BLOB_UPLOAD_INVALID', 'the server failed to write the upload to disk; restart the upload', { cause: writer.flushFailed });
        }
        // All or nothing: roll the session back to where this request started.
        session.hash = undefined;
        session.info = undefined;
        await truncate(dataPath, start);
        session.info = info;
        throw e;
      }
      const size = start + counter.bytes;
      if (hashing !== undefined) session.hashedBytes = size;
      else session.hash = undefined;
      session.info = { ...info, size, updatedAt: Date.now() };
      return size;
    } finally {
      session.busy = false;
    }
  }

  async readUploadData(id: string, range: ByteRange): Promise<Readable> {
    if (!isUploadId(id) || this.finished.has(id)) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    const fh = await open(join(this.layout.uploadDir(id), 'data'), 'r').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
      throw e;
    });
    return new FileRangeStream(fh, range.start, range.end + 1);
  }

  async truncateUpload(id: string, size: number): Promise<void> {
    const { session, info } = await this.acquireExisting(id);
    try {
      if (size > info.size) throw registryError('RANGE_INVALID', `cannot truncate ${info.size} bytes to ${size}`);
      session.hash = undefined;
      session.info = undefined;
      await truncate(join(this.layout.uploadDir(id), 'data'), size);
      session.info = { ...info, size, updatedAt: Date.now() };
    } finally {
      session.busy = false;
    }
  }

  async commitUpload(id: string, expected?: Digest, opts: CommitOptions = {}): Promise<BlobInfo> {
    const { session, info } = await this.acquireExisting(id);
    const dataPath = join(this.layout.uploadDir(id), 'data');
    let moved = false;
    try {
      let size = info.size;
      const trailer = opts.trailer;
      // With a vouched digest the trailer goes in with the commit's own job (below); otherwise
      // the digest may cover it, so it is written (and synced) first.
      const vouched = opts.vouched === true && expected !== undefined;
      if (trailer !== undefined && !vouched) {
        await appendAndSync(dataPath, trailer);
        if (session.hash !== undefined && session.hashedBytes === size) {
          session.hash.update(trailer);
          session.hashedBytes += trailer.length;
        }
        size += trailer.length;
      }
      const algorithm = expected === undefined ? 'sha256' : digestAlgorithm(expected);
      let hex: string;
      if (vouched) {
        // The caller's own hash of its own bytes; still, only a well-formed digest names a file.
        if (!isDigest(expected)) throw new Error(`commitUpload: a vouched digest must be a digest, got ${JSON.stringify(expected)}`);
        hex = expected.slice(algorithm.length + 1);
      } else if (algorithm === 'sha256' && session.hash !== undefined && session.hashedBytes === size) {
        hex = session.hash.digest('hex');
        session.hash = undefined;
      } else {
        const h = createDigester(algorithm);
        await pipeline(createReadStream(dataPath, { highWaterMark: READ_CHUNK }), async (src: AsyncIterable<Buffer>) => {
          for await (const c of src) h.update(c);
        });
        hex = h.digest('hex');
      }
      const digest = `${algorithm}:${hex}` as const;
      if (expected !== undefined && digest !== expected) {
        throw registryError('DIGEST_INVALID', 'provided digest did not match uploaded content', { detail: { digest: expected } });
      }
      if (trailer !== undefined && vouched) size += trailer.length;
      // One job: the trailer appended and synced (or the file synced), renamed into place and
      // the folder synced; when the blob is stored already, only the trailer goes in.
      moved = await this.moveIntoPlace(dataPath, digest, { append: vouched ? trailer : undefined, synced: trailer !== undefined && !vouched });
      return { digest, size };
    } finally {
      this.live.delete(id);
      this.removeFinished(id, moved);
    }
  }

  /** End a session whose bytes cannot be trusted: no later request may resume or commit it. */
  private async poison(id: string, session: LiveSession): Promise<void> {
    session.hash = undefined;
    session.info = undefined;
    this.live.delete(id);
    this.finished.add(id);
    await rm(this.layout.uploadDir(id), { recursive: true, force: true }).finally(() => this.finished.delete(id));
  }

  /**
   * Remove a committed session's folder after the answer: nothing refers to it any more (its
   * data file was renamed into the store or is discarded, and a folder without data is not a
   * session), so the client need not wait. A crash before it runs leaves a folder that the
   * stale-upload purge removes. `moved`: the data file is in the store now (unlinking its old
   * name would only fail, at the cost of a thread-pool round trip and an error).
   */
  private removeFinished(id: string, moved: boolean): void {
    const dir = this.layout.uploadDir(id);
    this.finished.add(id);
    const job = (async () => {
      if (!moved) await unlink(join(dir, 'data')).catch(() => undefined);
      await unlink(join(dir, 'info.json')).catch(() => undefined);
      await rmdir(dir).catch(() => rm(dir, { recursive: true, force: true }));
    })()
      .catch(() => undefined)
      .finally(() => {
        this.cleanups.delete(job);
        this.finished.delete(id);
      });
    this.cleanups.add(job);
  }

  async cancelUpload(id: string): Promise<boolean> {
    if (!isUploadId(id)) return false;
    const existed = (await this.getUpload(id)) !== undefined;
    this.live.delete(id);
    // Also removes the folder of a session a crash cut short (info.json without data).
    await rm(this.layout.uploadDir(id), { recursive: true, force: true });
    return existed;
  }

  async staleUploads(before: number): Promise<string[]> {
    const out: string[] = [];
    for (const id of await readdir(this.layout.uploadsDir)) {
      if (!isUploadId(id)) continue;
      const s = await stat(join(this.layout.uploadsDir, id, 'data'))
        .catch(() => stat(join(this.layout.uploadsDir, id)))
        .catch(() => undefined); // removed meanwhile
      if (s !== undefined && s.mtimeMs < before && this.live.get(id)?.busy !== true) out.push(id);
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all([...this.cleanups]);
    this.live.clear();
  }
}
