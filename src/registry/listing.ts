/** Tags list, catalog and referrers (distribution-spec "Content discovery"). */
import { MediaType, registryError, type Digest } from '../oci/index.js';
import type { RegistryDeps } from './context.js';

export interface ListPage<T> {
  readonly items: T[];
  /** the `last` value of the next page, when there may be one */
  readonly next: string | undefined;
}

export interface ReferrerDescriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export class ListingService {
  constructor(private readonly deps: RegistryDeps) {}

  private clamp(n: number | undefined): number {
    const max = this.deps.config.limits.listMax;
    return n === undefined ? max : Math.min(n, max);
  }

  async tags(repository: string, n: number | undefined, last: string | undefined): Promise<ListPage<string>> {
    if (!(await this.deps.meta.repositoryExists(repository))) throw registryError('NAME_UNKNOWN', undefined, { detail: { name: repository } });
    return this.page(this.clamp(n), (page) => this.deps.meta.listTags(repository, { n: page, last }));
  }

  /**
   * Repositories in lexical order; with `visible`, only those the caller may see (the catalog is
   * filtered by access, and pages are filled from further down the list, never short-changed).
   */
  async catalog(n: number | undefined, last: string | undefined, visible?: (name: string) => boolean): Promise<ListPage<string>> {
    if (visible === undefined) return this.page(this.clamp(n), (page) => this.deps.meta.listRepositories({ n: page, last }));
    return this.page(this.clamp(n), async (want) => {
      const out: string[] = [];
      let cursor = last;
      const batch = Math.max(100, want * 2);
      for (;;) {
        const names = await this.deps.meta.listRepositories({ n: batch, last: cursor });
        for (const name of names) {
          if (visible(name)) out.push(name);
          if (out.length >= want) return out;
        }
        if (names.length < batch) return out;
        cursor = names[names.length - 1];
      }
    });
  }

  /**
   * Fetch one entry more than the page holds, so a Link is announced only when more entries
   * exist (spec "Listing Tags": a Link header when additional tags are available; n=0 gets none).
   */
  private async page(size: number, list: (n: number) => Promise<string[]>): Promise<ListPage<string>> {
    if (size === 0) return { items: [], next: undefined };
    const items = await list(size + 1);
    if (items.length <= size) return { items, next: undefined };
    const page = items.slice(0, size);
    return { items: page, next: page[page.length - 1] };
  }

  /** An image index of the manifests whose subject is `subject` (spec "Listing Referrers"). */
  async referrers(repository: string, subject: Digest, artifactType: string | undefined, last: string | undefined, n: number | undefined): Promise<ListPage<ReferrerDescriptor>> {
    if (!(await this.deps.meta.repositoryExists(repository))) throw registryError('NAME_UNKNOWN', undefined, { detail: { name: repository } });
    const size = this.clamp(n);
    const all = await this.deps.meta.listReferrers(repository, subject, artifactType);
    const from = last === undefined ? all : all.filter((m) => m.digest > last);
    const page = from.slice(0, size);
    const items = page.map((m) => {
      const d: ReferrerDescriptor = { mediaType: m.mediaType, digest: m.digest, size: m.size };
      if (m.artifactType !== undefined) d.artifactType = m.artifactType;
      if (m.annotations !== undefined) d.annotations = { ...m.annotations };
      return d;
    });
    return { items, next: from.length > size ? page[page.length - 1]?.digest : undefined };
  }
}

export const REFERRERS_MEDIA_TYPE = MediaType.OciIndex;
