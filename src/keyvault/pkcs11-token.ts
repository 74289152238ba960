/**
 * The key operations the HSM vault asks of a PKCS#11 token. Every private-key operation runs on
 * the token; the host only ever sees public keys and the data keys it asked to unwrap.
 *
 * "Wrap" and "unwrap" here are C_Encrypt and C_Decrypt, not C_WrapKey and C_UnwrapKey: the
 * registry needs a data key's bytes on the host, and C_UnwrapKey would create a token object
 * that had to be extractable to give them back.
 *
 * Padding. RSA-OAEP-256 (CKM_RSA_PKCS_OAEP, hashAlg CKM_SHA256, mgf CKG_MGF1_SHA256, empty
 * label) is used when the token accepts it, which is probed once at open. SoftHSM2 2.6 (Debian
 * 12's) accepts OAEP with SHA-1 only; with `allowRawRsa` such a token decrypts with raw RSA
 * (CKM_RSA_X_509) and the host does the OAEP-256 decoding (oaep.ts) and encrypts with the
 * public key through node:crypto. The wrapped bytes are standard RSA-OAEP-256 either way. The
 * price: the private key then also permits raw RSA, a decryption oracle for anyone holding the
 * PIN, so it is opt-in. Private keys list only the mechanisms they need (CKA_ALLOWED_MECHANISMS).
 */
import { createPublicKey, constants, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import type { Handle, Mechanism, PKCS11, RsaOAEP, Template } from 'pkcs11js';
import { KeyVaultError, type KeySize } from './key-vault.js';
import { oaepSha256Decode } from './oaep.js';
import { SessionPool, tokenError, ulongs, type SessionPoolOptions } from './pkcs11-session.js';

const p = pkcs11js;
/** CKZ_DATA_SPECIFIED (PKCS#11 v2.40 §2.1.8); pkcs11js does not export it. */
const CKZ_DATA_SPECIFIED = 1;
// Every field set: pkcs11js 2.1.7 frees an uninitialized pointer when one is missing.
const OAEP_256_PARAMS: RsaOAEP = { type: p.CK_PARAMS_RSA_OAEP, hashAlg: p.CKM_SHA256, mgf: p.CKG_MGF1_SHA256, source: CKZ_DATA_SPECIFIED };
const OAEP_256: Mechanism = { mechanism: p.CKM_RSA_PKCS_OAEP, parameter: OAEP_256_PARAMS };
const RAW_RSA: Mechanism = { mechanism: p.CKM_RSA_X_509 };
const F4 = Buffer.from([1, 0, 1]);

export type Padding = 'token' | 'host';

/** Both halves of one RSA key pair on the token, found by their shared CKA_ID. */
export interface TokenKeyPair {
  readonly privateKey: Handle;
  readonly publicKeyHandle: Handle;
  readonly publicKey: KeyObject;
  readonly bits: number;
}

function findAll(p11: PKCS11, session: Handle, template: Template): Handle[] {
  p11.C_FindObjectsInit(session, template);
  try {
    return p11.C_FindObjects(session, 16);
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

function readPublicKey(p11: PKCS11, session: Handle, handle: Handle): KeyObject {
  const [n, e] = p11.C_GetAttributeValue(session, handle, [{ type: p.CKA_MODULUS }, { type: p.CKA_PUBLIC_EXPONENT }]).map((a) => a.value);
  if (!Buffer.isBuffer(n) || !Buffer.isBuffer(e)) throw new KeyVaultError('UNAVAILABLE', 'the token returned no RSA public key');
  return createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' });
}

export class Pkcs11Token {
  private constructor(
    private readonly pool: SessionPool,
    readonly padding: Padding,
  ) {}

  /** Logs in and probes the padding. UNAVAILABLE when the token lacks OAEP-256 and raw RSA is not allowed. */
  static async open(options: SessionPoolOptions, pin: string, allowRawRsa: boolean): Promise<Pkcs11Token> {
    const pool = SessionPool.open(options, pin);
    try {
      const oaep = await pool.use((s) => Pkcs11Token.probeOaep256(pool.p11, s));
      if (!oaep && !allowRawRsa) {
        throw new KeyVaultError('UNAVAILABLE', 'the token cannot do RSA-OAEP with SHA-256; allowRawRsa lets the host do the OAEP padding around its raw RSA');
      }
      return new Pkcs11Token(pool, oaep ? 'token' : 'host');
    } catch (e) {
      await pool.close();
      throw tokenError(e, 'probe the token');
    }
  }

  /** Tries C_EncryptInit with OAEP-256 on a throwaway session object; any odd modulus will do for that. */
  private static probeOaep256(p11: PKCS11, s: Handle): boolean {
    const n = randomBytes(256);
    n[0] = (n[0] ?? 0) | 0x80;
    n[255] = (n[255] ?? 0) | 1;
    const pub = p11.C_CreateObject(s, [
      { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY },
      { type: p.CKA_KEY_TYPE, value: p.CKK_RSA },
      { type: p.CKA_TOKEN, value: false },
      { type: p.CKA_ENCRYPT, value: true },
      { type: p.CKA_MODULUS, value: n },
      { type: p.CKA_PUBLIC_EXPONENT, value: F4 },
    ]);
    try {
      p11.C_EncryptInit(s, OAEP_256, pub);
      p11.C_Encrypt(s, Buffer.alloc(1), Buffer.alloc(256)); // ends the operation
      return true;
    } catch (e) {
      const code = e instanceof p.Pkcs11Error ? e.code : undefined;
      if (code === p.CKR_MECHANISM_PARAM_INVALID || code === p.CKR_ARGUMENTS_BAD || code === p.CKR_MECHANISM_INVALID) return false;
      throw e;
    } finally {
      p11.C_DestroyObject(s, pub);
    }
  }

  /** Generates a persistent key pair inside the token; the private half never leaves it. */
  async generateRsa(id: Buffer, label: string, bits: KeySize): Promise<TokenKeyPair> {
    const common: Template = [
      { type: p.CKA_TOKEN, value: true },
      { type: p.CKA_ID, value: id },
      { type: p.CKA_LABEL, value: label },
      { type: p.CKA_MODIFIABLE, value: false },
    ];
    const allowed = this.padding === 'token' ? [p.CKM_RSA_PKCS_OAEP] : [p.CKM_RSA_PKCS_OAEP, p.CKM_RSA_X_509];
    return this.call('generate a key pair', async (s) => {
      const pair = await this.pool.p11.C_GenerateKeyPairAsync(
        s,
        { mechanism: p.CKM_RSA_PKCS_KEY_PAIR_GEN },
        [...common, { type: p.CKA_PRIVATE, value: false }, { type: p.CKA_MODULUS_BITS, value: bits }, { type: p.CKA_PUBLIC_EXPONENT, value: F4 }, { type: p.CKA_ENCRYPT, value: true }, { type: p.CKA_VERIFY, value: false }, { type: p.CKA_WRAP, value: false }],
        [
          ...common,
          { type: p.CKA_PRIVATE, value: true },
          { type: p.CKA_SENSITIVE, value: true },
          { type: p.CKA_EXTRACTABLE, value: false },
          { type: p.CKA_DECRYPT, value: true },
          { type: p.CKA_SIGN, value: false },
          { type: p.CKA_SIGN_RECOVER, value: false },
          { type: p.CKA_UNWRAP, value: false },
          { type: p.CKA_DERIVE, value: false },
          { type: p.CKA_ALLOWED_MECHANISMS, value: ulongs(allowed) },
        ],
      );
      return { privateKey: pair.privateKey, publicKeyHandle: pair.publicKey, publicKey: readPublicKey(this.pool.p11, s, pair.publicKey), bits };
    });
  }

  /** The RSA pair with this CKA_ID, or undefined when either half is missing. */
  async findRsa(id: Buffer): Promise<TokenKeyPair | undefined> {
    return this.call('find a key pair', (s) => {
      const p11 = this.pool.p11;
      const [priv, ...morePriv] = findAll(p11, s, [{ type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_RSA }, { type: p.CKA_ID, value: id }]);
      const [pub, ...morePub] = findAll(p11, s, [{ type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_RSA }, { type: p.CKA_ID, value: id }]);
      if (priv === undefined || pub === undefined || morePriv.length + morePub.length > 0) return undefined;
      const publicKey = readPublicKey(p11, s, pub);
      return { privateKey: priv, publicKeyHandle: pub, publicKey, bits: publicKey.asymmetricKeyDetails?.modulusLength ?? 0 };
    });
  }

  async wrap(key: TokenKeyPair, dataKey: Buffer): Promise<Buffer> {
    if (this.padding === 'host') {
      return publicEncrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, dataKey);
    }
    return this.call('wrap a data key', async (s) => {
      this.pool.p11.C_EncryptInit(s, OAEP_256, key.publicKeyHandle);
      return Buffer.from(await this.pool.p11.C_EncryptAsync(s, dataKey, Buffer.alloc(key.bits / 8)));
    });
  }

  /** UNWRAP_FAILED for bytes that are not an OAEP-256 encryption under this key. */
  async unwrap(key: TokenKeyPair, wrapped: Buffer): Promise<Buffer> {
    return this.call('unwrap a data key', async (s) => {
      const p11 = this.pool.p11;
      p11.C_DecryptInit(s, this.padding === 'token' ? OAEP_256 : RAW_RSA, key.privateKey);
      const out = Buffer.alloc(key.bits / 8);
      let plain: Buffer;
      try {
        plain = await p11.C_DecryptAsync(s, wrapped, out);
      } catch (e) {
        throw tokenError(e, 'unwrap a data key', 'decrypt');
      }
      try {
        if (this.padding === 'token') return Buffer.from(plain);
        // Raw RSA gives the k-byte encoded message; a token may drop its leading zero bytes.
        const em = Buffer.alloc(out.length);
        plain.copy(em, em.length - plain.length);
        try {
          return oaepSha256Decode(em);
        } finally {
          em.fill(0);
        }
      } finally {
        out.fill(0);
      }
    });
  }

  /** The state MAC key with this CKA_ID, or undefined. */
  async findMacKey(id: Buffer): Promise<Handle | undefined> {
    return this.call('find the state MAC key', (s) => {
      const found = findAll(this.pool.p11, s, [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }, { type: p.CKA_KEY_TYPE, value: p.CKK_GENERIC_SECRET }, { type: p.CKA_ID, value: id }]);
      return found.length === 1 ? found[0] : undefined;
    });
  }

  /** Generates an HMAC-SHA-256 key on the token; it never leaves it. */
  async createMacKey(id: Buffer, label: string): Promise<Handle> {
    return this.call('create the state MAC key', (s) =>
      this.pool.p11.C_GenerateKeyAsync(s, { mechanism: p.CKM_GENERIC_SECRET_KEY_GEN }, [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_GENERIC_SECRET },
        { type: p.CKA_TOKEN, value: true },
        { type: p.CKA_PRIVATE, value: true },
        { type: p.CKA_SENSITIVE, value: true },
        { type: p.CKA_EXTRACTABLE, value: false },
        { type: p.CKA_MODIFIABLE, value: false },
        { type: p.CKA_VALUE_LEN, value: 32 },
        { type: p.CKA_SIGN, value: true },
        { type: p.CKA_VERIFY, value: true },
        { type: p.CKA_ID, value: id },
        { type: p.CKA_LABEL, value: label },
      ]),
    );
  }

  async hmac(key: Handle, data: Buffer): Promise<Buffer> {
    return this.call('compute the state MAC', async (s) => {
      this.pool.p11.C_SignInit(s, { mechanism: p.CKM_SHA256_HMAC }, key);
      return Buffer.from(await this.pool.p11.C_SignAsync(s, data, Buffer.alloc(32)));
    });
  }

  /** Destroys every object with this CKA_ID (C_DestroyObject); a missing object is not an error. */
  async destroy(id: Buffer): Promise<void> {
    await this.call('destroy a key pair', (s) => {
      for (const h of findAll(this.pool.p11, s, [{ type: p.CKA_ID, value: id }])) this.pool.p11.C_DestroyObject(s, h);
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private async call<T>(what: string, fn: (session: Handle) => Promise<T> | T): Promise<T> {
    try {
      return await this.pool.use(fn);
    } catch (e) {
      throw tokenError(e, what);
    }
  }
}
