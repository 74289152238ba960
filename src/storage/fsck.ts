/**
 * Integrity check of a data folder: every stored blob against its digest, every metadata
 * reference against the blob store, every manifest's references against its repository.
 * With `repair`, corrupt blobs are quarantined and references to content that is gone are removed.
 */
import { digestAlgorithm, digestOf, isRegistryError, parseManifest, type Digest } from '../oci/index.js';
import type { BlobStore } from './blob-store.js';
import type { ManifestRecord, MetadataStore } from './metadata-store.js';

export type FsckProblemKind =
  | 'corrupt-blob'
  | 'missing-blob'
  | 'missing-manifest-content'
  | 'corrupt-manifest'
  | 'dangling-reference'
  | 'invalid-manifest';

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
    let check;
    try {
      check = await blobs.verify(digest);
    } catch (e) {
      // deleted (garbage collection) between list and verify: gone, not corrupt
      if (isRegistryError(e) && e.code === 'BLOB_UNKNOWN') continue;
      throw e;
    }
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
    if (r.kind === 'manifest') {
      manifestsChecked++;
      problems.push(...(await checkManifest(blobs, meta, r.repository, r.digest, opts.repair)));
      continue;
    }
    // With repair, a corrupt blob is in quarantine: whatever is stored under its digest now was
    // pushed afresh since (and its link is that push's), so only what is stored counts. Without
    // repair the corrupt bytes are still in place, and stat would find them.
    const present = (opts.repair || !corrupt.has(r.digest)) && (await blobs.stat(r.digest)) !== undefined;
    if (!present) {
      if (opts.repair) await meta.unlinkBlob(r.repository, r.digest);
      problems.push({
        kind: 'missing-blob',
        digest: r.digest,
        repository: r.repository,
        message: `${r.repository} links blob content that is not stored`,
        repaired: opts.repair,
      });
    }
  }
  return { blobsChecked, referencesChecked, manifestsChecked, problems };
}

/** A manifest's bytes must hash to its digest, parse, and reference only content its repository holds. */
async function checkManifest(blobs: BlobStore, meta: MetadataStore, repository: string, digest: Digest, repair: boolean): Promise<FsckProblem[]> {
  let record: ManifestRecord | undefined;
  let body: Buffer | undefined;
  try {
    record = await meta.getManifest(repository, digest);
    if (record === undefined) return [];
    body = await meta.manifestBody(digest);
  } catch (e) {
    // An encrypting store refuses content that fails authentication with this code; any other
    // failure (a key vault that is unavailable, I/O) says nothing about the content: fsck stops.
    if ((e as { code?: unknown }).code !== 'STORED_CONTENT_INVALID') throw e;
    if (repair) await meta.deleteManifest(repository, digest);
    return [{ kind: 'corrupt-manifest', digest, repository, message: `${repository} has a manifest that fails verification: ${(e as Error).message}`, repaired: repair }];
  }
  if (body === undefined || digestOf(body, digestAlgorithm(digest)) !== digest) {
    // unrecoverable: the record cannot be served correctly, so repair removes it
    if (repair) await meta.deleteManifest(repository, digest);
    const kind = body === undefined ? 'missing-manifest-content' : 'corrupt-manifest';
    return [{ kind, digest, repository, message: `${repository} has a manifest record whose bytes are ${body === undefined ? 'missing' : 'corrupt'}`, repaired: repair }];
  }
  const out: FsckProblem[] = [];
  let parsed;
  try {
    parsed = parseManifest(body, record.mediaType);
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
