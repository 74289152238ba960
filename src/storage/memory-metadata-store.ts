/** In-memory MetadataStore: the reference implementation of the contract, for tests. */
import type { Digest } from '../oci/index.js';
import type { ManifestRecord, MetadataStore, Page } from './metadata-store.js';

interface Repo {
  blobs: Map<Digest, number>;
  manifests: Map<Digest, ManifestRecord>;
  tags: Map<string, Digest>;
}

function page(sorted: string[], p: Page): string[] {
  const last = p.last;
  return (last === undefined ? sorted : sorted.filter((x) => x > last)).slice(0, p.n);
}

/** Byte-order comparison, as SQLite's BINARY collation does (not locale order). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export class MemoryMetadataStore implements MetadataStore {
  private readonly repos = new Map<string, Repo>();
  private readonly bodies = new Map<Digest, Buffer>();

  private repo(name: string): Repo {
    let r = this.repos.get(name);
    if (r === undefined) {
      r = { blobs: new Map(), manifests: new Map(), tags: new Map() };
      this.repos.set(name, r);
    }
    return r;
  }

  async linkBlob(repository: string, digest: Digest, size: number): Promise<void> {
    this.repo(repository).blobs.set(digest, size);
  }

  async blobLink(repository: string, digest: Digest): Promise<number | undefined> {
    return this.repos.get(repository)?.blobs.get(digest);
  }

  async unlinkBlob(repository: string, digest: Digest): Promise<boolean> {
    return this.repos.get(repository)?.blobs.delete(digest) ?? false;
  }

  async repositoriesWithBlob(digest: Digest, limit: number): Promise<string[]> {
    return [...this.repos.entries()].filter(([, r]) => r.blobs.has(digest)).map(([n]) => n).slice(0, limit);
  }

  async putManifest(record: ManifestRecord, body: Buffer, tag?: string): Promise<void> {
    if (!this.bodies.has(record.digest)) this.bodies.set(record.digest, Buffer.from(body));
    const r = this.repo(record.repository);
    if (!r.manifests.has(record.digest)) r.manifests.set(record.digest, record);
    if (tag !== undefined) r.tags.set(tag, record.digest);
  }

  async getManifest(repository: string, digest: Digest): Promise<ManifestRecord | undefined> {
    return this.repos.get(repository)?.manifests.get(digest);
  }

  async manifestBody(digest: Digest): Promise<Buffer | undefined> {
    return this.bodies.get(digest);
  }

  async deleteManifest(repository: string, digest: Digest): Promise<boolean> {
    const r = this.repos.get(repository);
    if (r === undefined) return false;
    for (const [t, d] of r.tags) if (d === digest) r.tags.delete(t);
    return r.manifests.delete(digest);
  }

  async resolveTag(repository: string, tag: string): Promise<Digest | undefined> {
    return this.repos.get(repository)?.tags.get(tag);
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.repos.get(repository)?.tags.delete(tag) ?? false;
  }

  async listTags(repository: string, p: Page): Promise<string[]> {
    return page([...(this.repos.get(repository)?.tags.keys() ?? [])].sort(byteOrder), p);
  }

  async repositoryExists(repository: string): Promise<boolean> {
    return this.repos.has(repository);
  }

  async listRepositories(p: Page): Promise<string[]> {
    return page([...this.repos.keys()].sort(byteOrder), p);
  }

  async listReferrers(repository: string, subject: Digest, artifactType?: string): Promise<ManifestRecord[]> {
    const all = [...(this.repos.get(repository)?.manifests.values() ?? [])];
    return all
      .filter((m) => m.subject === subject && (artifactType === undefined || m.artifactType === artifactType))
      .sort((a, b) => byteOrder(a.digest, b.digest));
  }

  async *referencedDigests(): AsyncIterable<{ repository: string; digest: Digest; kind: 'blob' | 'manifest' }> {
    for (const [repository, r] of this.repos) {
      for (const digest of r.blobs.keys()) yield { repository, digest, kind: 'blob' };
      for (const digest of r.manifests.keys()) yield { repository, digest, kind: 'manifest' };
    }
  }

  async close(): Promise<void> {
    this.repos.clear();
    this.bodies.clear();
  }
}
