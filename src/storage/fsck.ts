/**
 * Integrity check of a data folder: every stored blob against its digest, every metadata
 * reference against the blob store, every manifest's references against its repository.
 * With `repair`, corrupt blobs are quarantined and references to content that is gone are removed.
 */
import { parseManifest, type Digest } from '../oci/index.js';
import type { BlobStore } from './blob-store.js';
import type { MetadataStore } from './metadata-store.js';

export type FsckProblemKind = 'corrupt-blob' | 'missing-blob' | 'missing-manifest-content' | 'dangling-reference' | 'invalid-manifest';

export interface FsckProblem {
  readonly kind: FsckProblemKind;
  readonly digest: Digest;
  readonly repository?: string;
  readonly message: string;
  readonly repaired: boolean;
}

export interface FsckReport {
  readonly blobsChecked: number;
  readonly referencesChecked: number;
  readonly manifestsChecked: number;
  readonly problems: FsckProblem[];
}

export async function fsck(blobs: BlobStore, meta: MetadataStore, opts: { repair: boolean }): Promise<FsckReport> {
  const problems: FsckProblem[] = [];
  let blobsChecked = 0;
  const corrupt = new Set<Digest>();
  for await (const digest of blobs.list()) {
    blobsChecked++;
    const check = await blobs.verify(digest);
    if (check.ok) continue;
    corrupt.add(digest);
    if (opts.repair) await blobs.quarantine(digest);
    problems.push({ kind: 'corrupt-blob', digest, message: check.problem ?? 'content does not match digest', repaired: opts.repair });
  }

  let referencesChecked = 0;
  let manifestsChecked = 0;
  const refs: Array<{ repository: string; digest: Digest; kind: 'blob' | 'manifest' }> = [];
  for await (const r of meta.referencedDigests()) refs.push(r);
  for (const r of refs) {
    referencesChecked++;
    const present = !corrupt.has(r.digest) && (await blobs.stat(r.digest)) !== undefined;
    if (!present) {
      if (opts.repair) {
        if (r.kind === 'blob') await meta.unlinkBlob(r.repository, r.digest);
        else await meta.deleteManifest(r.repository, r.digest);
      }
      problems.push({
        kind: r.kind === 'blob' ? 'missing-blob' : 'missing-manifest-content',
        digest: r.digest,
        repository: r.repository,
        message: `${r.repository} refers to ${r.kind} content that is not stored`,
        repaired: opts.repair,
      });
      continue;
    }
    if (r.kind === 'manifest') {
      manifestsChecked++;
      problems.push(...(await checkManifest(blobs, meta, r.repository, r.digest)));
    }
  }
  return { blobsChecked, referencesChecked, manifestsChecked, problems };
}

async function checkManifest(blobs: BlobStore, meta: MetadataStore, repository: string, digest: Digest): Promise<FsckProblem[]> {
  const record = await meta.getManifest(repository, digest);
  if (record === undefined) return [];
  const out: FsckProblem[] = [];
  let parsed;
  try {
    parsed = parseManifest(await blobs.readAll(digest), record.mediaType);
  } catch (e) {
    return [{ kind: 'invalid-manifest', digest, repository, message: (e as Error).message, repaired: false }];
  }
  for (const d of parsed.blobs) {
    const linked = await meta.blobLink(repository, d.digest);
    if (linked === undefined || (await blobs.stat(d.digest)) === undefined) {
      out.push({ kind: 'dangling-reference', digest, repository, message: `manifest references blob ${d.digest}, which is not in the repository`, repaired: false });
    }
  }
  for (const d of parsed.manifests) {
    if ((await meta.getManifest(repository, d.digest)) === undefined) {
      out.push({ kind: 'dangling-reference', digest, repository, message: `index references manifest ${d.digest}, which is not in the repository`, repaired: false });
    }
  }
  return out;
}
