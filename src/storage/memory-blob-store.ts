/** In-memory BlobStore: the reference implementation of the contract, for tests. */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { createDigester, digestAlgorithm, digestOf, registryError, type Digest } from '../oci/index.js';
import type { AppendOptions, BlobCheck, BlobInfo, BlobStore, ByteRange, CommitOptions, UploadInfo } from './blob-store.js';
import { countingDigest } from './streams.js';

interface Session {
  repository: string;
  chunks: Buffer[];
  size: number;
  startedAt: number;
  updatedAt: number;
  busy: boolean;
}

export class MemoryBlobStore implements BlobStore {
  private readonly blobs = new Map<Digest, Buffer>();
  private readonly sessions = new Map<string, Session>();

  async stat(digest: Digest): Promise<BlobInfo | undefined> {
    const b = this.blobs.get(digest);
    return b === undefined ? undefined : { digest, size: b.length };
  }

  private get(digest: Digest): Buffer {
    const b = this.blobs.get(digest);
    if (b === undefined) throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
    return b;
  }

  async read(digest: Digest, range?: ByteRange): Promise<Readable> {
    const b = this.get(digest);
    return Readable.from([range === undefined ? b : b.subarray(range.start, range.end + 1)]);
  }

  async readAll(digest: Digest): Promise<Buffer> {
    return this.get(digest);
  }

  async put(data: Buffer, digest: Digest): Promise<BlobInfo> {
    if (digestOf(data, digestAlgorithm(digest)) !== digest) throw registryError('DIGEST_INVALID', undefined, { detail: { digest } });
    if (!this.blobs.has(digest)) this.blobs.set(digest, Buffer.from(data));
    return { digest, size: data.length };
  }

  async delete(digest: Digest): Promise<boolean> {
    return this.blobs.delete(digest);
  }

  async *list(): AsyncIterable<Digest> {
    yield* [...this.blobs.keys()];
  }

  async verify(digest: Digest): Promise<BlobCheck> {
    const b = this.get(digest);
    const actual = digestOf(b, digestAlgorithm(digest));
    return actual === digest ? { digest, ok: true } : { digest, ok: false, problem: `content hashes to ${actual}` };
  }

  async quarantine(digest: Digest): Promise<void> {
    if (!this.blobs.delete(digest)) throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
  }

  async startUpload(id: string, repository: string, initial?: Buffer): Promise<UploadInfo> {
    const now = Date.now();
    const head = initial === undefined ? [] : [Buffer.from(initial)];
    const size = initial?.length ?? 0;
    this.sessions.set(id, { repository, chunks: head, size, startedAt: now, updatedAt: now, busy: false });
    return { id, repository, size, startedAt: now, updatedAt: now };
  }

  async getUpload(id: string): Promise<UploadInfo | undefined> {
    const s = this.sessions.get(id);
    return s === undefined ? undefined : { id, repository: s.repository, size: s.size, startedAt: s.startedAt, updatedAt: s.updatedAt };
  }

  private session(id: string): Session {
    const s = this.sessions.get(id);
    if (s === undefined) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    return s;
  }

  async appendUpload(id: string, body: Readable, opts: AppendOptions = {}): Promise<number> {
    const s = this.session(id);
    if (s.busy) throw registryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload session');
    s.busy = true;
    try {
      if (opts.offset !== undefined && opts.offset !== s.size) {
        throw registryError('RANGE_INVALID', `chunk starts at ${opts.offset} but the upload has ${s.size} bytes`, {
          headers: { Range: s.size === 0 ? '0-0' : `0-${s.size - 1}` },
        });
      }
      const received: Buffer[] = [];
      const counter = countingDigest(undefined, opts.length);
      const sink = new Writable({
        write(chunk: Buffer, _e, cb) {
          received.push(chunk);
          cb();
        },
      });
      await pipeline(body, counter.transform, sink, ...(opts.signal !== undefined ? [{ signal: opts.signal }] : []));
      counter.assertComplete();
      s.chunks.push(...received);
      s.size += counter.bytes;
      s.updatedAt = Date.now();
      return s.size;
    } finally {
      s.busy = false;
    }
  }

  async readUploadData(id: string, range: ByteRange): Promise<Readable> {
    const s = this.session(id);
    return Readable.from([Buffer.concat(s.chunks).subarray(range.start, range.end + 1)]);
  }

  async truncateUpload(id: string, size: number): Promise<void> {
    const s = this.session(id);
    if (s.busy) throw registryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload session');
    if (size > s.size) throw registryError('RANGE_INVALID', `cannot truncate ${s.size} bytes to ${size}`);
    s.chunks = [Buffer.concat(s.chunks).subarray(0, size)];
    s.size = size;
    s.updatedAt = Date.now();
  }

  async commitUpload(id: string, expected?: Digest, opts: CommitOptions = {}): Promise<BlobInfo> {
    const s = this.session(id);
    if (s.busy) throw registryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload session');
    this.sessions.delete(id);
    const data = Buffer.concat(opts.trailer === undefined ? s.chunks : [...s.chunks, opts.trailer]);
    const algorithm = expected === undefined ? 'sha256' : digestAlgorithm(expected);
    const digest = `${algorithm}:${createDigester(algorithm).update(data).digest('hex')}` as const;
    if (expected !== undefined && digest !== expected) {
      throw registryError('DIGEST_INVALID', 'provided digest did not match uploaded content', { detail: { digest: expected } });
    }
    if (!this.blobs.has(digest)) this.blobs.set(digest, data);
    return { digest, size: data.length };
  }

  async cancelUpload(id: string): Promise<boolean> {
    return this.sessions.delete(id);
  }

  async staleUploads(before: number): Promise<string[]> {
    return [...this.sessions.entries()].filter(([, s]) => s.updatedAt < before && !s.busy).map(([id]) => id);
  }

  async close(): Promise<void> {
    this.sessions.clear();
  }
}
