/**
 * KeyRing: the registry's side of envelope encryption. It makes data keys (32 random bytes,
 * wrapped at once by the configured key-encryption key) and unwraps stored ones, keeping
 * unwrapped keys in memory for at most `cacheMs` (0: never cached). An evicted key's bytes are
 * overwritten, so a revoked KEK stops every read and write within the cache lifetime (fail
 * closed): nothing here serves data without a key the vault agreed to unwrap recently.
 *
 * Vault failures become registry errors (UNAVAILABLE, 503) naming the vault's code, never the
 * key material; `health()` keeps the last failure for `bulwark check-health` (CMK_ERROR).
 */
import { randomBytes } from 'node:crypto';
import { isKeyVaultError, type KeyVault } from '../keyvault/index.js';
import { registryError } from '../oci/index.js';
import type { KekRef } from './data-key-store.js';
import { DATA_KEY_BYTES } from './format.js';

export interface KeyRingOptions {
  /** vaults by configured name; `target.vault` must be one of them */
  readonly vaults: ReadonlyMap<string, KeyVault>;
  /** the identity the registry presents to its vaults */
  readonly identity: string;
  /** the KEK new data keys are wrapped by; no version = the key's newest version */
  readonly target: { readonly vault: string; readonly name: string; readonly version?: string | undefined };
  /** how long an unwrapped data key stays in memory (0 = not at all) */
  readonly cacheMs: number;
  /** most cached keys; the oldest is evicted first */
  readonly cacheEntries?: number;
  readonly now?: () => number;
}

export interface KeyRingHealth {
  readonly ok: boolean;
  /** the vault's error code and message of the last failure, when the last call failed */
  readonly error?: string;
  readonly at?: number;
}

interface Cached {
  readonly key: Buffer;
  readonly expires: number;
}

export interface NewDataKey {
  readonly key: Buffer;
  readonly kek: KekRef;
  readonly wrapped: Buffer;
}

export class KeyRing {
  private readonly cache = new Map<string, Cached>();
  /** the clock cache lifetimes are measured by (ms); what caches by this ring's keys uses it too */
  readonly now: () => number;
  private readonly maxEntries: number;
  private lastHealth: KeyRingHealth = { ok: true };
  private target: KeyRingOptions['target'];
  private current: KekRef | undefined;
  /** wipes expired keys even when no request comes to evict them */
  private readonly sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly o: KeyRingOptions) {
    if (!o.vaults.has(o.target.vault)) throw new Error(`unknown key vault "${o.target.vault}"`);
    this.now = o.now ?? Date.now;
    this.maxEntries = o.cacheEntries ?? 10_000;
    this.target = o.target;
    if (o.cacheMs > 0) {
      this.sweeper = setInterval(() => this.sweepExpired(), Math.min(o.cacheMs, 60_000));
      this.sweeper.unref();
    }
  }

  /**
   * The KEK version new data keys were last wrapped by (or a rotation's target): an upload that
   * started under an older version re-wraps its data key before it commits (see
   * EncryptingBlobStore.commitUpload), so a rotation never misses it.
   */
  get currentKek(): KekRef | undefined {
    return this.current;
  }

  noteCurrent(kek: KekRef): void {
    this.current = kek;
  }

  get targetKey(): KeyRingOptions['target'] {
    return this.target;
  }

  /** Switches the KEK that new data keys are wrapped by (rotation to another key or vault). */
  retarget(target: KeyRingOptions['target']): void {
    if (!this.o.vaults.has(target.vault)) throw new Error(`unknown key vault "${target.vault}"`);
    this.target = target;
    this.current = undefined;
  }

  vault(name: string): KeyVault {
    const v = this.o.vaults.get(name);
    if (v === undefined) throw registryError('UNAVAILABLE', `data key is wrapped by key vault "${name}", which is not configured`);
    return v;
  }

  /** The target KEK's info through the vault (the version it resolves to); vault errors as UNAVAILABLE. */
  async describeTarget(): Promise<KekRef> {
    const t = this.target;
    // getKey answers for a disabled key too: its success says nothing about health.
    const info = await this.call(() => this.vault(t.vault).getKey(this.o.identity, t.name, t.version), false);
    return { vault: t.vault, name: info.name, version: info.version };
  }

  /** How many unwrapped keys are in memory (for tests and metrics). */
  get cachedKeys(): number {
    return this.cache.size;
  }

  health(): KeyRingHealth {
    return this.lastHealth;
  }

  /** A fresh data key, wrapped by the target KEK (or `kek`), cached under `cacheId`. */
  async newDataKey(cacheId: string, kek: KeyRingOptions['target'] = this.target): Promise<NewDataKey> {
    const key = randomBytes(DATA_KEY_BYTES);
    try {
      const w = await this.call(() => this.vault(kek.vault).wrapKey(this.o.identity, kek.name, kek.version, key));
      this.remember(cacheId, key);
      const ref = { vault: kek.vault, name: w.keyId.name, version: w.keyId.version };
      if (kek === this.target) this.current = ref;
      return { key: Buffer.from(key), kek: ref, wrapped: w.wrapped };
    } finally {
      key.fill(0);
    }
  }

  /** The unwrapped data key of a stored record, from the cache or the vault. */
  async dataKey(cacheId: string, kek: KekRef, wrapped: Buffer): Promise<Buffer> {
    const hit = this.cache.get(cacheId);
    if (hit !== undefined && hit.expires > this.now()) return Buffer.from(hit.key);
    if (hit !== undefined) this.evict(cacheId);
    this.sweepExpired();
    const key = await this.call(() => this.vault(kek.vault).unwrapKey(this.o.identity, { name: kek.name, version: kek.version }, wrapped));
    try {
      if (key.length !== DATA_KEY_BYTES) throw registryError('UNAVAILABLE', 'the key vault returned a data key of the wrong length');
      this.remember(cacheId, key);
      return Buffer.from(key);
    } finally {
      key.fill(0);
    }
  }

  /** Wraps an existing data key again (rotation). Not cached: rotation reads each key once. */
  async rewrap(kek: KekRef, wrapped: Buffer, to: KeyRingOptions['target']): Promise<{ kek: KekRef; wrapped: Buffer }> {
    const key = await this.call(() => this.vault(kek.vault).unwrapKey(this.o.identity, { name: kek.name, version: kek.version }, wrapped));
    try {
      const w = await this.call(() => this.vault(to.vault).wrapKey(this.o.identity, to.name, to.version, key));
      return { kek: { vault: to.vault, name: w.keyId.name, version: w.keyId.version }, wrapped: w.wrapped };
    } finally {
      key.fill(0);
    }
  }

  /**
   * Asks the vault for a round trip with the target KEK (wrap, then unwrap, 32 random bytes), as
   * `bulwark check-health` does; throws UNAVAILABLE with the vault's code when it fails.
   */
  async probe(): Promise<void> {
    const t = this.target;
    const probe = randomBytes(DATA_KEY_BYTES);
    try {
      const w = await this.call(() => this.vault(t.vault).wrapKey(this.o.identity, t.name, t.version, probe));
      const back = await this.call(() => this.vault(t.vault).unwrapKey(this.o.identity, w.keyId, w.wrapped));
      const same = back.equals(probe);
      back.fill(0);
      if (!same) throw registryError('UNAVAILABLE', 'the key vault unwrapped a probe to different bytes');
    } finally {
      probe.fill(0);
    }
  }

  /**
   * When the cached key of `cacheId` expires (ms), or undefined when it is not cached. Whatever
   * that key opened may be kept in memory until then and no longer: that is what bounds
   * revocation (EncryptingMetadataStore's opened manifests).
   */
  cachedUntil(cacheId: string): number | undefined {
    const c = this.cache.get(cacheId);
    return c !== undefined && c.expires > this.now() ? c.expires : undefined;
  }

  forget(cacheId: string): void {
    this.evict(cacheId);
  }

  /** Wipes every cached key. */
  clear(): void {
    for (const id of [...this.cache.keys()]) this.evict(id);
  }

  /** Wipes every cached key and stops the sweeper. */
  close(): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.clear();
  }

  private remember(cacheId: string, key: Buffer): void {
    if (this.o.cacheMs <= 0) {
      return;
    }
    this.evict(cacheId);
    while (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next();
      if (oldest.done === true) break;
      this.evict(oldest.value);
    }
    // A backing store of its own: a 32-byte copy from Buffer's shared 8 KiB pool keeps that whole
    // slab alive for the cache lifetime (10,000 cached keys pinned up to 80 MiB).
    const own = Buffer.allocUnsafeSlow(key.length);
    key.copy(own);
    this.cache.set(cacheId, { key: own, expires: this.now() + this.o.cacheMs });
    this.sweepExpired();
  }

  /** Drops expired entries from the front (insertion order is expiry order). */
  private sweepExpired(): void {
    const now = this.now();
    for (const [id, c] of this.cache) {
      if (c.expires > now) break;
      this.evict(id);
    }
  }

  private evict(cacheId: string): void {
    const c = this.cache.get(cacheId);
    if (c === undefined) return;
    c.key.fill(0);
    this.cache.delete(cacheId);
  }

  /** Runs a vault call; its failure always marks the ring unhealthy, its success only when `healthy`. */
  private async call<T>(op: () => Promise<T>, healthy = true): Promise<T> {
    try {
      const r = await op();
      if (healthy) this.lastHealth = { ok: true, at: this.now() };
      return r;
    } catch (e) {
      if (isKeyVaultError(e)) {
        this.lastHealth = { ok: false, error: `${e.code}: ${e.message}`, at: this.now() };
        // Fail closed, with the cause an operator needs and nothing a client could misuse.
        throw registryError('UNAVAILABLE', `encryption key unavailable (${e.code})`, { cause: e });
      }
      this.lastHealth = { ok: false, error: e instanceof Error ? e.message : String(e), at: this.now() };
      throw e;
    }
  }
}
