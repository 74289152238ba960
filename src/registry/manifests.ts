/**
 * Manifest operations (distribution-spec "Pushing manifests", "Pulling manifests", "Deleting").
 * Bodies are stored byte-exact in the metadata store, in the same transaction as the record, its
 * tag and the fields the referrers API needs (ADR 0003).
 */
import { createHash } from 'node:crypto';
import { digestAlgorithm, isDigest, isTag, parseManifest, registryError, type Digest, type Descriptor } from '../oci/index.js';
import type { ManifestRecord } from '../storage/index.js';
import { observed, type OpContext, type RegistryDeps } from './context.js';
import { ManifestCache } from '../storage/index.js';

export interface PutManifestResult {
  readonly digest: Digest;
  readonly subject: Digest | undefined;
}

/** Parse a `<reference>`: a digest or a tag; anything else is MANIFEST_INVALID for PUT / UNKNOWN for GET. */
function parseReference(reference: string): { digest: Digest } | { tag: string } | undefined {
  if (reference.includes(':')) return isDigest(reference) ? { digest: reference } : undefined;
  return isTag(reference) ? { tag: reference } : undefined;
}

export class ManifestService {
  private readonly cache: ManifestCache;

  constructor(private readonly deps: RegistryDeps) {
    this.cache = new ManifestCache(32 * 1024 * 1024, { ttlMs: deps.manifestCacheTtlMs });
  }

  /** Resolve a tag or digest to the manifest record; MANIFEST_UNKNOWN when absent. */
  async resolve(repository: string, reference: string): Promise<ManifestRecord> {
    const ref = parseReference(reference);
    if (ref === undefined) {
      if (reference.includes(':')) throw registryError('DIGEST_INVALID', 'invalid digest', { detail: { reference: reference.slice(0, 200) } });
      throw registryError('MANIFEST_INVALID', 'invalid tag', { detail: { reference: reference.slice(0, 200) } });
    }
    const digest = 'digest' in ref ? ref.digest : await this.deps.meta.resolveTag(repository, ref.tag);
    const record = digest === undefined ? undefined : await this.deps.meta.getManifest(repository, digest);
    if (record === undefined) {
      const known = await this.deps.meta.repositoryExists(repository);
      throw registryError(known ? 'MANIFEST_UNKNOWN' : 'NAME_UNKNOWN', undefined, { detail: { name: repository, reference } });
    }
    return record;
  }

  async body(record: ManifestRecord): Promise<Buffer> {
    let b = this.cache.get(record.digest);
    if (b === undefined) {
      b = await this.deps.meta.manifestBody(record.digest);
      if (b === undefined) throw registryError('MANIFEST_UNKNOWN', undefined, { detail: { digest: record.digest } });
      this.cache.set(record.digest, b);
    }
    return b;
  }

  async get(ctx: OpContext, repository: string, reference: string): Promise<{ record: ManifestRecord; body: Buffer }> {
    const tag = isTag(reference) ? reference : undefined;
    return observed(this.deps, ctx, 'manifest.pull', { repository, tag, digest: tag === undefined ? reference : undefined }, async () => {
      const record = await this.resolve(repository, reference);
      return { record, body: await this.body(record) };
    }, (r) => ({ digest: r.record.digest, size: r.record.size, mediaType: r.record.mediaType }));
  }

  async put(ctx: OpContext, repository: string, reference: string, body: Buffer, contentType: string | undefined): Promise<PutManifestResult> {
    const ref = parseReference(reference);
    const tag = ref !== undefined && 'tag' in ref ? ref.tag : undefined;
    return observed(this.deps, ctx, 'manifest.push', { repository, tag, size: body.length }, async () => {
      if (ref === undefined) {
        throw registryError(reference.includes(':') ? 'DIGEST_INVALID' : 'MANIFEST_INVALID', 'reference is neither a valid tag nor a digest');
      }
      const alg = 'digest' in ref ? digestAlgorithm(ref.digest) : 'sha256';
      const digest: Digest = `${alg}:${createHash(alg).update(body).digest('hex')}`;
      if ('digest' in ref && ref.digest !== digest) {
        throw registryError('DIGEST_INVALID', 'manifest content does not match the digest in the URL', { detail: { expected: ref.digest, actual: digest } });
      }
      const parsed = parseManifest(body, contentType);
      await this.assertReferencesExist(repository, parsed.blobs, parsed.manifests);
      const record: ManifestRecord = {
        repository,
        digest,
        mediaType: parsed.mediaType,
        size: body.length,
        artifactType: parsed.artifactType,
        subject: parsed.subject?.digest,
        // annotations are only served back by the referrers API, so only referrers keep them
        annotations: parsed.subject !== undefined ? parsed.annotations : undefined,
        createdAt: Date.now(),
      };
      await this.deps.meta.putManifest(record, body, tag);
      this.cache.set(digest, body);
      return { digest, subject: parsed.subject?.digest };
    }, (r) => ({ digest: r.digest }));
  }

  /** Every blob and child manifest must already be in the repository (subject excepted). */
  private async assertReferencesExist(repository: string, blobs: readonly Descriptor[], manifests: readonly Descriptor[]): Promise<void> {
    const missing: string[] = [];
    const wrongSize: string[] = [];
    for (const d of blobs) {
      const size = await this.deps.meta.blobLink(repository, d.digest);
      if (size === undefined) missing.push(d.digest);
      else if (size !== d.size) wrongSize.push(d.digest);
    }
    for (const d of manifests) {
      const m = await this.deps.meta.getManifest(repository, d.digest);
      if (m === undefined) missing.push(d.digest);
      else if (m.size !== d.size) wrongSize.push(d.digest);
    }
    if (missing.length > 0) {
      throw registryError('MANIFEST_BLOB_UNKNOWN', `manifest references ${missing.length} unknown blob(s) or manifest(s)`, { detail: { missing: missing.slice(0, 50) } });
    }
    if (wrongSize.length > 0) {
      throw registryError('MANIFEST_INVALID', 'descriptor size does not match the stored content', { detail: { digests: wrongSize.slice(0, 50) } });
    }
  }

  async delete(ctx: OpContext, repository: string, reference: string): Promise<void> {
    const ref = parseReference(reference);
    const isTagRef = ref !== undefined && 'tag' in ref;
    await observed(this.deps, ctx, isTagRef ? 'tag.delete' : 'manifest.delete', { repository, ...(isTagRef ? { tag: reference } : { digest: reference }) }, async () => {
      if (!this.deps.config.storage.deleteEnabled) throw registryError('METHOD_NOT_ALLOWED', 'deletes are disabled on this registry');
      if (ref === undefined) throw registryError(reference.includes(':') ? 'DIGEST_INVALID' : 'MANIFEST_INVALID', 'reference is neither a valid tag nor a digest');
      const ok = 'tag' in ref ? await this.deps.meta.deleteTag(repository, ref.tag) : await this.deps.meta.deleteManifest(repository, ref.digest);
      if (!ok) throw registryError('MANIFEST_UNKNOWN', undefined, { detail: { name: repository, reference } });
    });
  }
}
