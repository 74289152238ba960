import type { Digest } from '../oci/index.js';

/**
 * A byte-bounded LRU of manifest bodies by digest. Content-addressed, so an entry is never stale;
 * whether a repository may serve it is decided by the metadata lookup before the cache is asked.
 */
export class ManifestCache {
  private readonly entries = new Map<Digest, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(d: Digest): Buffer | undefined {
    const b = this.entries.get(d);
    if (b !== undefined) {
      // refresh recency: Map keeps insertion order
      this.entries.delete(d);
      this.entries.set(d, b);
    }
    return b;
  }

  set(d: Digest, b: Buffer): void {
    if (b.length > this.maxBytes || this.entries.has(d)) return;
    this.entries.set(d, b);
    this.bytes += b.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }
}
