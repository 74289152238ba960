/**
 * Blob operations: check, pull, delete, upload sessions and cross-repository mounts.
 * A blob is visible in a repository only once its bytes are durable and linked.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { registryError, type Digest } from '../oci/index.js';
import type { BlobInfo, ByteRange, UploadInfo } from '../storage/index.js';
import { observed, type OpContext, type RegistryDeps } from './context.js';

export interface AppendRequest {
  readonly body: Readable;
  readonly offset?: number | undefined;
  readonly length?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

export class BlobService {
  constructor(private readonly deps: RegistryDeps) {}

  /** Size of a blob the repository holds; BLOB_UNKNOWN otherwise. */
  async stat(repository: string, digest: Digest): Promise<BlobInfo> {
    const linked = await this.deps.meta.blobLink(repository, digest);
    const info = linked === undefined ? undefined : await this.deps.blobs.stat(digest);
    if (info === undefined) throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
    return info;
  }

  async open(ctx: OpContext, repository: string, digest: Digest, range: (size: number) => ByteRange | undefined): Promise<{ info: BlobInfo; range: ByteRange | undefined; stream: Readable }> {
    return observed(this.deps, ctx, 'blob.pull', { repository, digest }, async () => {
      // The link records the size: no stat of the bytes on the hot path. Opening them throws
      // BLOB_UNKNOWN if they are gone, before any header is sent, and a stored file shorter than
      // its size is an error, never a short answer: before any header for a range read in one go
      // (up to 1 MiB + 64 KiB, ADR 0023), else the response ends in it (storage/file-range-stream.ts).
      const size = await this.deps.meta.blobLink(repository, digest);
      if (size === undefined) throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
      const r = range(size);
      const whole = size > 0 ? { start: 0, end: size - 1 } : undefined;
      return { info: { digest, size }, range: r, stream: await this.deps.blobs.read(digest, r ?? whole) };
    }, (r) => ({ size: r.info.size }));
  }

  async delete(ctx: OpContext, repository: string, digest: Digest): Promise<void> {
    await observed(this.deps, ctx, 'blob.delete', { repository, digest }, async () => {
      this.assertDeleteEnabled();
      if (!(await this.deps.meta.unlinkBlob(repository, digest))) throw registryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
    });
  }

  assertDeleteEnabled(): void {
    if (!this.deps.config.storage.deleteEnabled) throw registryError('METHOD_NOT_ALLOWED', 'deletes are disabled on this registry');
  }

  /**
   * Cross-repository mount (spec "Mounting a blob from another repository"). With `from`
   * omitted, any repository holding the blob is a source ("automatic content discovery").
   * Returns undefined when the blob cannot be mounted; the caller then opens a session.
   */
  async mount(ctx: OpContext, repository: string, digest: Digest, from: string | undefined, mayRead?: (name: string) => Promise<boolean>): Promise<BlobInfo | undefined> {
    let sources = from !== undefined ? [from] : await this.deps.meta.repositoriesWithBlob(digest, mayRead === undefined ? 1 : 100);
    if (from === undefined && mayRead !== undefined) {
      const allowed: string[] = [];
      for (const s of sources) if (await mayRead(s)) allowed.push(s);
      sources = allowed.slice(0, 1);
    }
    const source = (await this.deps.meta.blobLink(repository, digest)) !== undefined ? repository : sources[0];
    if (source === undefined || (await this.deps.meta.blobLink(source, digest)) === undefined) return undefined;
    const info = await this.deps.blobs.stat(digest);
    if (info === undefined) return undefined;
    return observed(this.deps, ctx, 'blob.mount', { repository, digest, from: source, size: info.size }, async () => {
      await this.deps.meta.linkBlob(repository, digest, info.size);
      return info;
    });
  }

  async startUpload(ctx: OpContext, repository: string): Promise<UploadInfo> {
    return observed(this.deps, ctx, 'upload.start', { repository }, () => this.deps.blobs.startUpload(randomUUID(), repository), (u) => ({ uploadId: u.id }));
  }

  /** The session, if it exists and belongs to this repository; BLOB_UPLOAD_UNKNOWN otherwise. */
  async upload(repository: string, id: string): Promise<UploadInfo> {
    const u = await this.deps.blobs.getUpload(id);
    if (u === undefined || u.repository !== repository) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    return u;
  }

  async append(repository: string, id: string, req: AppendRequest): Promise<number> {
    const u = await this.upload(repository, id);
    const max = this.deps.config.limits.blobMaxBytes;
    if (max > 0 && req.length !== undefined && u.size + req.length > max) {
      throw registryError('SIZE_INVALID', `blob would exceed the ${max}-byte limit`);
    }
    return this.deps.blobs.appendUpload(id, req.body, {
      ...(req.offset !== undefined ? { offset: req.offset } : {}),
      ...(req.length !== undefined ? { length: req.length } : {}),
      ...(req.signal !== undefined ? { signal: req.signal } : {}),
    });
  }

  /** Append the final body (if any), verify the digest, store and link the blob. */
  async finish(ctx: OpContext, repository: string, id: string, digest: Digest, last: AppendRequest | undefined): Promise<BlobInfo> {
    return observed(this.deps, ctx, 'upload.finish', { repository, digest, uploadId: id }, async () => {
      if (last !== undefined) await this.append(repository, id, last);
      else await this.upload(repository, id);
      const info = await this.deps.blobs.commitUpload(id, digest);
      await this.deps.meta.linkBlob(repository, digest, info.size);
      this.deps.bus.emit({ type: 'blob.push', time: new Date().toISOString(), repository, digest, size: info.size, client: ctx.client, outcome: 'success' });
      return info;
    }, (info) => ({ size: info.size }));
  }

  async cancel(ctx: OpContext, repository: string, id: string): Promise<void> {
    await observed(this.deps, ctx, 'upload.cancel', { repository, uploadId: id }, async () => {
      await this.upload(repository, id);
      await this.deps.blobs.cancelUpload(id);
    });
  }

  /** End a session the server itself abandons (a failed single-request push); no event, no error. */
  async discard(id: string): Promise<void> {
    await this.deps.blobs.cancelUpload(id);
  }

  /** Delete sessions untouched for `uploads.purgeAfterSeconds`. Returns how many. */
  async purgeStaleUploads(ctx: OpContext): Promise<number> {
    const before = Date.now() - this.deps.config.uploads.purgeAfterSeconds * 1000;
    let n = 0;
    for (const id of await this.deps.blobs.staleUploads(before)) {
      const u = await this.deps.blobs.getUpload(id);
      if (await this.deps.blobs.cancelUpload(id)) {
        n++;
        this.deps.bus.emit({ type: 'upload.purge', time: new Date().toISOString(), repository: u?.repository ?? '', uploadId: id, client: ctx.client, outcome: 'success' });
      }
    }
    return n;
  }
}
