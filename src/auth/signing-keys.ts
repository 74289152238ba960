/**
 * The token-signing key ring. Access and refresh tokens are JWTs signed with ES256 or EdDSA
 * (`auth.signingAlgorithm`). Keys live in the AuthStore; the newest is used for signing, older
 * ones keep verifying until every token they signed has expired, then they are dropped. So a
 * rotation never breaks an issued token. `GET /oauth2/jwks` publishes the public halves.
 *
 * The private keys are stored as JWKs in auth.db; encrypting them at rest is the job of the
 * customer-managed-keys work (envelope encryption), not done here.
 */
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { AuthStore } from './store.js';

export type SigningAlgorithm = 'ES256' | 'EdDSA';

interface KeyRecord {
  kid: string;
  alg: SigningAlgorithm;
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: number;
  /** when a newer key replaced it; it verifies until retiredAt + the longest token lifetime */
  retiredAt?: number;
}

interface LiveKey {
  readonly record: KeyRecord;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

export class SigningKeys {
  private keys: LiveKey[] = [];

  constructor(
    private readonly store: AuthStore,
    private readonly opts: { algorithm: SigningAlgorithm; rotateAfterMs: number; retainMs: number },
  ) {}

  /** Load the ring; create the first key, rotate an old one, drop expired ones. */
  async init(now = Date.now()): Promise<this> {
    await this.reload();
    await this.maintain(now);
    return this;
  }

  /** Rotate when the active key is older than `rotateAfterMs` or uses another algorithm; prune. */
  async maintain(now = Date.now()): Promise<void> {
    const active = this.keys[0];
    if (active === undefined || active.record.alg !== this.opts.algorithm || now - active.record.createdAt >= this.opts.rotateAfterMs) {
      await this.rotate(now);
    }
    for (const k of this.keys) {
      const r = k.record;
      if (r.retiredAt !== undefined && now - r.retiredAt > this.opts.retainMs) await this.store.delete('signing-key', r.kid);
    }
    await this.reload();
  }

  /** Make a new key the signing key; the previous ones keep verifying. */
  async rotate(now = Date.now()): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair(this.opts.algorithm, { extractable: true, ...(this.opts.algorithm === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const kid = randomUUID();
    const record: KeyRecord = { kid, alg: this.opts.algorithm, privateJwk: await exportJWK(privateKey), publicJwk: await exportJWK(publicKey), createdAt: now };
    await this.store.put('signing-key', kid, record, 'absent');
    for (const k of this.keys) {
      if (k.record.retiredAt === undefined) await this.store.put('signing-key', k.record.kid, { ...k.record, retiredAt: now });
    }
    await this.reload();
    return kid;
  }

  /** The key to sign with. */
  active(): { kid: string; alg: SigningAlgorithm; key: CryptoKey } {
    const k = this.keys[0];
    if (k === undefined) throw new Error('signing key ring not initialised');
    return { kid: k.record.kid, alg: k.record.alg, key: k.privateKey };
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
    records.sort((a, b) => b.createdAt - a.createdAt);
    this.keys = await Promise.all(
      records.map(async (record) => ({
        record,
        privateKey: (await importJWK(record.privateJwk, record.alg)) as CryptoKey,
        publicKey: (await importJWK(record.publicJwk, record.alg)) as CryptoKey,
      })),
    );
  }
}
