/**
 * MetadataStore: what each repository contains (blob links, manifests, tags, referrers).
 *
 * Contract (every implementation passes test/testkit/metadata-store-suite.ts):
 * - Each method is atomic and durable when it resolves; `putManifest` writes the manifest's bytes,
 *   its record, its tag and its referrer entry in one transaction.
 * - Manifest bytes are kept here, byte-exact and stored once per digest across repositories:
 *   they are small, and one transaction is cheaper and safer than a file plus a row.
 * - Listing is in lexical (byte) order, paginated by `last` (exclusive) and `n`.
 * - Repositories exist from their first blob link or manifest.
 */
import type { Digest } from '../oci/index.js';

export interface ManifestRecord {
  readonly repository: string;
  readonly digest: Digest;
  readonly mediaType: string;
  readonly size: number;
  readonly artifactType?: string | undefined;
  readonly subject?: Digest | undefined;
  readonly annotations?: Readonly<Record<string, string>> | undefined;
  readonly createdAt: number;
}

export interface Page {
  readonly n: number;
  readonly last?: string | undefined;
}

export interface MetadataStore {
  linkBlob(repository: string, digest: Digest, size: number): Promise<void>;
  /** The linked size, or undefined when the repository does not hold the blob. */
  blobLink(repository: string, digest: Digest): Promise<number | undefined>;
  unlinkBlob(repository: string, digest: Digest): Promise<boolean>;
  /** Repositories holding the blob (for cross-repository mount), at most `limit`. */
  repositoriesWithBlob(digest: Digest, limit: number): Promise<string[]>;

  putManifest(record: ManifestRecord, body: Buffer, tag?: string): Promise<void>;
  getManifest(repository: string, digest: Digest): Promise<ManifestRecord | undefined>;
  /** The stored bytes of a manifest, whichever repository pushed them. */
  manifestBody(digest: Digest): Promise<Buffer | undefined>;
  /** Removes the manifest, every tag pointing at it, and its referrer entry. */
  deleteManifest(repository: string, digest: Digest): Promise<boolean>;

  resolveTag(repository: string, tag: string): Promise<Digest | undefined>;
  deleteTag(repository: string, tag: string): Promise<boolean>;
  listTags(repository: string, page: Page): Promise<string[]>;

  repositoryExists(repository: string): Promise<boolean>;
  listRepositories(page: Page): Promise<string[]>;

  /** Manifests whose subject is `subject`, by digest order, optionally of one artifactType. */
  listReferrers(repository: string, subject: Digest, artifactType?: string): Promise<ManifestRecord[]>;

  /** Every blob link and manifest record, for fsck (manifest bytes are checked with manifestBody). */
  referencedDigests(): AsyncIterable<{ repository: string; digest: Digest; kind: 'blob' | 'manifest' }>;

  close(): Promise<void>;
}
