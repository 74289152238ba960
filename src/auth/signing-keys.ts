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
 * opaque here; `id` is the key's kid.
 */
export interface KeySealer {
  seal(id: string, plaintext: Buffer): Promise<object>;
  /** Fails (UNAVAILABLE) when the vault refuses, and when the sealed bytes were altered. */
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
    await this.maintain(now);
    return this;
  }

  /** Rotate when the active key is older than `rotateAfterMs` or uses another algorithm; prune. */
  async maintain(now = Date.now()): Promise<void> {
    const active = this.keys[0];
    const sealer = this.opts.sealer;
    if (active?.record.sealedPrivate !== undefined && sealer === undefined) {
      throw new Error('the token-signing key is sealed by the key vault, but encryption at rest is off: turn it back on (encryption.enabled) to sign tokens');
    }
    // A new key, sealed under the current KEK, when the active one is sealed under a KEK version
    // rotated since (so that the old version can be disabled without stopping token signing), or
    // is in the clear while a sealer exists (encryption turned on, or a store from before ADR
    // 0018): that key is retired, its private half dropped, rather than sealed where it lies, as
    // copies of it in the clear may outlive the record (free pages, backups). It verifies what it
    // signed until retired keys are pruned.
    const outdated = active?.record.sealedPrivate !== undefined && (await sealer?.outdated(active.record.sealedPrivate)) === true;
    const inTheClear = active?.record.privateJwk !== undefined && sealer !== undefined;
    if (active === undefined || active.record.alg !== this.opts.algorithm || now - active.record.createdAt >= this.opts.rotateAfterMs || outdated || inTheClear) {
      await this.rotate(now);
    }
    for (const k of this.keys) {
      const r = k.record;
      if (r.retiredAt !== undefined && now - r.retiredAt > this.opts.retainMs) await this.store.delete('signing-key', r.kid);
      else if (r.retiredAt !== undefined && (r.privateJwk !== undefined || r.sealedPrivate !== undefined)) await this.store.put('signing-key', r.kid, publicOnly(r));
    }
    await this.reload();
  }

  /** Make a new key the signing key; the previous ones keep verifying. */
  async rotate(now = Date.now()): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(this.opts.algorithm, { extractable: true, ...(this.opts.algorithm === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const kid = randomUUID();
    const privateJwk = await exportJWK(privateKey);
    const sealer = this.opts.sealer;
    const record: KeyRecord = {
      kid,
      alg: this.opts.algorithm,
      ...(sealer === undefined ? { privateJwk } : { sealedPrivate: await sealer.seal(kid, jwkBytes(privateJwk)) }),
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
   * lifetime has passed: a disabled or revoked KEK then fails this (UNAVAILABLE), and no token is
   * signed.
   */
  async active(): Promise<{ kid: string; alg: SigningAlgorithm; key: CryptoKey }> {
    const k = this.keys[0];
    if (k === undefined) throw new Error('signing key ring not initialised');
    const { kid, alg } = k.record;
    const o = this.opened;
    if (o !== undefined && o.kid === kid && o.until > this.now()) return { kid, alg, key: o.key };
    this.opened = undefined;
    return { kid, alg, key: await this.open(k.record) };
  }

  private async open(record: KeyRecord): Promise<CryptoKey> {
    const sealer = this.opts.sealer;
    if (record.privateJwk !== undefined) {
      const key = (await importJWK(record.privateJwk, record.alg)) as CryptoKey;
      this.opened = { kid: record.kid, key, until: Number.POSITIVE_INFINITY };
      return key;
    }
    if (record.sealedPrivate === undefined || sealer === undefined) {
      throw new Error(record.sealedPrivate === undefined ? `signing key ${record.kid} has no private half` : 'the token-signing key is sealed by the key vault, but encryption at rest is off');
    }
    const bytes = await sealer.open(record.kid, record.sealedPrivate);
    let jwk: JWK;
    try {
      jwk = JSON.parse(bytes.toString('utf8')) as JWK;
    } finally {
      bytes.fill(0);
    }
    const key = (await importJWK(jwk, record.alg, { extractable: false })) as CryptoKey;
    // Kept no longer than the data key that opened it may be kept (the vault's say on revocation).
    this.opened = { kid: record.kid, key, until: sealer.usableUntil(record.kid) ?? 0 };
    return key;
  }

  /** A verification key by kid; undefined for an unknown kid (the token is refused). */
  verificationKey(kid: string): { alg: SigningAlgorithm; key: CryptoKey } | undefined {
    const k = this.keys.find((x) => x.record.kid === kid);
    return k === undefined ? undefined : { alg: k.record.alg, key: k.publicKey };
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
    if (this.opened !== undefined && this.opened.kid !== this.keys[0]?.record.kid) this.opened = undefined;
  }
}

function jwkBytes(jwk: JWK): Buffer {
  return Buffer.from(JSON.stringify(jwk), 'utf8');
}

/** A retired key's record: what verifies, nothing that signs. */
function publicOnly(r: KeyRecord): KeyRecord {
  const { privateJwk: _p, sealedPrivate: _s, ...rest } = r;
  return rest;
}
