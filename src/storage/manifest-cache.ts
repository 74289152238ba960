import type { Digest } from '../oci/index.js';

export interface ManifestCacheOptions {
  /** How long an entry may be served, in ms; undefined: until evicted, 0: nothing is cached. */
  readonly ttlMs?: number | undefined;
  readonly now?: () => number;
}

interface Entry {
  readonly body: Buffer;
  readonly expires: number;
}

/**
 * A byte-bounded LRU of manifest bodies by digest. Content-addressed, so an entry is never stale;
 * whether a repository may serve it is decided by the metadata lookup before the cache is asked.
 * Used by ManifestService for stored bodies, and by EncryptingMetadataStore for opened ones, each
 * of which may be served only as long as the data key that opened it is (`set`'s `until`).
 */
export class ManifestCache {
  private readonly entries = new Map<Digest, Entry>();
  private bytes = 0;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly maxBytes: number,
    o: ManifestCacheOptions = {},
  ) {
    this.ttlMs = o.ttlMs ?? Infinity;
    this.now = o.now ?? Date.now;
  }

  get(d: Digest): Buffer | undefined {
    const e = this.entries.get(d);
    if (e === undefined) return undefined;
    this.entries.delete(d);
    if (e.expires <= this.now()) {
      this.bytes -= e.body.length;
      return undefined;
    }
    // refresh recency (Map keeps insertion order); the expiry stays where it was
    this.entries.set(d, e);
    return e.body;
  }

  /**
   * Keeps `b` for the cache's lifetime, and never past `until` (a time in ms) when given. A live
   * entry is kept as it is: an entry never outlives the expiry it was given.
   */
  set(d: Digest, b: Buffer, until?: number): void {
    const now = this.now();
    const expires = Math.min(now + this.ttlMs, until ?? Infinity);
    if (expires <= now || b.length > this.maxBytes) return;
    const old = this.entries.get(d);
    if (old !== undefined && old.expires > now) return;
    if (old !== undefined) {
      this.entries.delete(d);
      this.bytes -= old.body.length;
    }
    this.entries.set(d, { body: b, expires });
    this.bytes += b.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.body.length;
    }
  }
}
