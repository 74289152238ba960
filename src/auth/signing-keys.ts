/**
 * The token-signing key ring. Access and refresh tokens are JWTs signed with ES256 or EdDSA
 * (`auth.signingAlgorithm`). Keys live in the AuthStore; the newest is used for signing, older
 * ones keep verifying until every token they signed has expired, then they are dropped. So a
 * rotation never breaks an issued token. `GET /oauth2/jwks` publishes the public halves.
 *
 * With encryption at rest on, the active key's private half is stored sealed by the key vault
 * (`KeySealer`, wired in app.ts; ADR 0018): opened when needed, kept in memory only as long as
 * the unwrapped data key may be (so a revoked KEK stops token signing like it stops reads), and
 * replaced by a key sealed under the current KEK after a KEK rotation. Without it, the private
 * half is a JWK in the store. A retired key keeps only its public half: it verifies, it never
 * signs again.
 */
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { AuthStore } from './store.js';

export type SigningAlgorithm = 'ES256' | 'EdDSA';

/**
 * Seals private keys at rest with the key vault (encryption/secret-sealer.ts). The sealed form is
 * opaque here; `id` names what is sealed (`signing-key/<kid>`).
 */
export interface KeySealer {
  seal(id: string, plaintext: Buffer): Promise<object>;
  /** Fails with UNAVAILABLE when the vault refuses, and with code STORED_CONTENT_INVALID when the sealed bytes were altered. */
  open(id: string, sealed: unknown): Promise<Buffer>;
  /** until when (ms since epoch) what `open(id)` returned may be used without asking the vault */
  usableUntil(id: string): number | undefined;
  /** whether `sealed` is under another key-encryption key version than new secrets get */
  outdated(sealed: unknown): Promise<boolean>;
}

interface KeyRecord {
  kid: string;
  alg: SigningAlgorithm;
  /** the private half in the clear: without a sealer (encryption off) */
  privateJwk?: JWK;
  /** the private half sealed by the key vault (KeySealer) */
  sealedPrivate?: unknown;
  publicJwk: JWK;
  createdAt: number;
  /** when a newer key replaced it; it verifies until retiredAt + the longest token lifetime */
  retiredAt?: number;
}

interface LiveKey {
  readonly record: KeyRecord;
  readonly publicKey: CryptoKey;
}

/** The active key's private half, opened, and until when it may be used without the vault. */
interface OpenedKey {
  readonly kid: string;
  readonly key: CryptoKey;
  readonly until: number;
}

export class SigningKeys {
  private keys: LiveKey[] = [];
  private opened: OpenedKey | undefined;
  /** the opening in progress, shared by the callers that wait for it */
  private opening: { readonly kid: string; readonly key: Promise<CryptoKey> } | undefined;
  private dropTimer: NodeJS.Timeout | undefined;
  /** Why the replacement due at start did not happen (the key vault refused), for the log. */
  deferred: Error | undefined;

  constructor(
    private readonly store: AuthStore,
    private readonly opts: { algorithm: SigningAlgorithm; rotateAfterMs: number; retainMs: number; sealer?: KeySealer | undefined; now?: () => number },
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Load the ring; create the first key, rotate an old one, drop expired ones. */
  async init(now = Date.now()): Promise<this> {
    await this.reload();
    try {
      await this.maintain(now);
    } catch (e) {
      // A replacement the vault refused while a key that can sign remains: start, and say so.
      if (!(e instanceof RotationDeferred)) throw e;
      this.deferred = e;
    }
    return this;
  }

  /**
   * Rotate when the active key is older than `rotateAfterMs`, uses another algorithm, is sealed
   * under a KEK version that is no longer current or fails to open, or is in the clear while a
   * sealer exists; prune and strip retired keys. A rotation the key vault refuses leaves a working
   * active key in place (the next upkeep tries again) and is thrown only when there is none.
   */
  async maintain(now = Date.now()): Promise<void> {
    for (const k of this.keys) {
      const r = k.record;
      if (r.retiredAt !== undefined && now - r.retiredAt > this.opts.retainMs) await this.store.delete('signing-key', r.kid);
      else if (r.retiredAt !== undefined && (r.privateJwk !== undefined || r.sealedPrivate !== undefined)) await this.store.put('signing-key', r.kid, publicOnly(r));
    }
    await this.reload();
    const reason = await this.replaceBecause(now);
    if (reason === undefined) return;
    try {
      await this.rotate(now);
    } catch (e) {
      if (reason === 'none' || reason === 'unopenable') throw e;
      throw new RotationDeferred(`the token-signing key is due for replacement (${reason}) but the key vault refused; it keeps signing: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Why the active key should be replaced now; undefined when it should not. */
  private async replaceBecause(now: number): Promise<'none' | 'algorithm' | 'age' | 'outdated KEK' | 'in the clear' | 'unopenable' | undefined> {
    const active = this.keys[0];
    const sealer = this.opts.sealer;
    if (active === undefined || active.record.retiredAt !== undefined) return 'none';
    const r = active.record;
    if (r.sealedPrivate !== undefined && sealer === undefined) {
      throw new Error('the token-signing key is sealed by the key vault, but encryption at rest is off: turn it back on (encryption.enabled) to sign tokens');
    }
    if (r.privateJwk === undefined && r.sealedPrivate === undefined) return 'unopenable';
    if (r.sealedPrivate !== undefined && sealer !== undefined) {
      // Altered or malformed sealed bytes never open: replaced rather than leaving no key to sign with.
      const broken = await this.active().then(
        () => false,
        (e: unknown) => (e as { code?: unknown }).code === 'STORED_CONTENT_INVALID',
      );
      if (broken) return 'unopenable';
      if (await sealer.outdated(r.sealedPrivate)) return 'outdated KEK';
    }
    // Stored in the clear while a sealer exists (encryption turned on, or a store from before
    // ADR 0018): retired rather than sealed where it lies, as copies of it in the clear may outlive
    // the record (free pages, backups); tokens it signs after retirement are refused (tokens.ts).
    if (r.privateJwk !== undefined && sealer !== undefined) return 'in the clear';
    if (r.alg !== this.opts.algorithm) return 'algorithm';
    if (now - r.createdAt >= this.opts.rotateAfterMs) return 'age';
    return undefined;
  }

  /** Make a new key the signing key; the previous ones keep verifying. */
  async rotate(now = Date.now()): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(this.opts.algorithm, { extractable: true, ...(this.opts.algorithm === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const kid = randomUUID();
    const privateJwk = await exportJWK(privateKey);
    const sealer = this.opts.sealer;
    let sealedPrivate: object | undefined;
    if (sealer !== undefined) {
      const bytes = jwkBytes(privateJwk);
      try {
        sealedPrivate = await sealer.seal(sealedId(kid), bytes);
      } finally {
        bytes.fill(0);
      }
    }
    const record: KeyRecord = {
      kid,
      alg: this.opts.algorithm,
      ...(sealedPrivate === undefined ? { privateJwk } : { sealedPrivate }),
      publicJwk: await exportJWK(publicKey),
      createdAt: now,
    };
    await this.store.put('signing-key', kid, record, 'absent');
    for (const k of this.keys) {
      if (k.record.retiredAt === undefined) await this.store.put('signing-key', k.record.kid, { ...publicOnly(k.record), retiredAt: now });
    }
    await this.reload();
    return kid;
  }

  /**
   * The key to sign with. A sealed one is opened through the key vault when the last opening's
   * lifetime has passed (one opening at a time, shared by every caller waiting for it): a
   * disabled or revoked KEK then fails this (UNAVAILABLE), and no token is signed.
   */
  async active(): Promise<{ kid: string; alg: SigningAlgorithm; key: CryptoKey }> {
    for (;;) {
      const k = this.keys[0];
      if (k === undefined) throw new Error('signing key ring not initialised');
      const { kid, alg } = k.record;
      const o = this.opened;
      if (o !== undefined && o.kid === kid && o.until > this.now()) return { kid, alg, key: o.key };
      this.dropOpened();
      let opening = this.opening;
      if (opening === undefined || opening.kid !== kid) {
        const pending = { kid, key: this.open(k.record) };
        this.opening = opening = pending;
        void pending.key.finally(() => {
          if (this.opening === pending) this.opening = undefined;
        }).catch(() => undefined);
      }
      const key = await opening.key;
      // A rotation while the vault answered: the key just opened is retired and must not sign.
      if (this.keys[0]?.record.kid === kid) return { kid, alg, key };
    }
  }

  private async open(record: KeyRecord): Promise<CryptoKey> {
    const sealer = this.opts.sealer;
    if (record.privateJwk !== undefined) {
      const key = (await importJWK(record.privateJwk, record.alg)) as CryptoKey;
      this.keep({ kid: record.kid, key, until: Number.POSITIVE_INFINITY });
      return key;
    }
    if (record.sealedPrivate === undefined || sealer === undefined) {
      throw new Error(record.sealedPrivate === undefined ? `signing key ${record.kid} has no private half` : 'the token-signing key is sealed by the key vault, but encryption at rest is off');
    }
    const bytes = await sealer.open(sealedId(record.kid), record.sealedPrivate);
    let jwk: JWK;
    try {
      jwk = JSON.parse(bytes.toString('utf8')) as JWK;
    } finally {
      bytes.fill(0);
    }
    const key = (await importJWK(jwk, record.alg, { extractable: false })) as CryptoKey;
    // Kept no longer than the data key that opened it may be kept (the vault's say on revocation).
    this.keep({ kid: record.kid, key, until: sealer.usableUntil(sealedId(record.kid)) ?? 0 });
    return key;
  }

  /** Holds an opened key until `until`, and drops it then even if nothing asks for it. */
  private keep(o: OpenedKey): void {
    this.dropOpened();
    if (this.keys[0]?.record.kid !== o.kid) return; // retired meanwhile: never kept
    this.opened = o;
    const ms = o.until - this.now();
    if (Number.isFinite(ms) && ms > 0) {
      this.dropTimer = setTimeout(() => this.dropOpened(), ms);
      this.dropTimer.unref();
    }
  }

  private dropOpened(): void {
    this.opened = undefined;
    if (this.dropTimer !== undefined) clearTimeout(this.dropTimer);
    this.dropTimer = undefined;
  }

  /** A verification key by kid; undefined for an unknown kid (the token is refused). */
  verificationKey(kid: string): { alg: SigningAlgorithm; key: CryptoKey; retiredAt?: number } | undefined {
    const k = this.keys.find((x) => x.record.kid === kid);
    if (k === undefined) return undefined;
    return { alg: k.record.alg, key: k.publicKey, ...(k.record.retiredAt !== undefined ? { retiredAt: k.record.retiredAt } : {}) };
  }

  /** The public JWK set, newest first. */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => ({ ...k.record.publicJwk, kid: k.record.kid, alg: k.record.alg, use: 'sig' })) };
  }

  private async reload(): Promise<void> {
    const records = (await this.store.list<KeyRecord>('signing-key')).map((s) => s.value);
    // The active key first (two keys may share a millisecond), then newest first.
    records.sort((a, b) => Number(a.retiredAt !== undefined) - Number(b.retiredAt !== undefined) || b.createdAt - a.createdAt);
    this.keys = await Promise.all(records.map(async (record) => ({ record, publicKey: (await importJWK(record.publicJwk, record.alg)) as CryptoKey })));
    if (this.opened !== undefined && this.opened.kid !== this.keys[0]?.record.kid) this.dropOpened();
  }
}

/** A due replacement of the signing key that the key vault refused; the active key still signs. */
export class RotationDeferred extends Error {
  override readonly name = 'RotationDeferred';
}

/** What a sealed private half is bound to (the sealer's associated data and cache entry). */
function sealedId(kid: string): string {
  return `signing-key/${kid}`;
}

function jwkBytes(jwk: JWK): Buffer {
  return Buffer.from(JSON.stringify(jwk), 'utf8');
}

/** A retired key's record: what verifies, nothing that signs. */
function publicOnly(r: KeyRecord): KeyRecord {
  const { privateJwk: _p, sealedPrivate: _s, ...rest } = r;
  return rest;
}
