/**
 * The HSM vault: KEKs are RSA key pairs generated inside a PKCS#11 token (an HSM; SoftHSM2 in
 * tests), private halves sensitive and never extractable. The vault rules (permissions, audit,
 * soft delete, purge protection) are KeyVaultBase's, as for the memory and local vaults; this
 * class supplies generate, wrap and unwrap on the token and persists the rest.
 *
 * Token objects. Each key version is its own pair: CKA_ID = 16 random bytes, whose hex is the
 * version string, CKA_LABEL = `bulwark:<name>:<version>` for operators' tools. Objects are
 * found by CKA_ID and class, never by label. Purge and retention expiry C_DestroyObject them.
 *
 * Metadata: a state file (pkcs11-state.ts) beside the vault configuration, MAC'd by an
 * HMAC-SHA-256 key on the token, rather than CKO_DATA objects on the token. Why: a mutation
 * must be all or nothing, and one rename(2) of the whole state gives that, while a change spread
 * over several token objects (C_SetAttributeValue, C_CreateObject) can be left half done, and
 * not every HSM offers modifiable data objects. The MAC keeps disk tampering (re-enabling,
 * undeleting) detectable without the PIN. Not covered, as for the local vault: replacing the
 * file with an older genuine copy. Access policies are configuration, as for the local vault:
 * read from the options at open; setAccessPolicy lasts until close.
 *
 * Ordering, so a crash never leaves the state naming objects that are gone: a new version is
 * generated on the token before the state names it (destroyed again if the write fails); a
 * dropped version is destroyed only after the state no longer names it, and stays listed as
 * `doomed` until destroyed, retried at every open. A version the state names but the token lacks
 * (wrong token, restored backup) makes open fail with STORE_CORRUPT.
 *
 * Calls: token wrap (C_EncryptAsync), unwrap (C_DecryptAsync), key generation
 * (C_GenerateKeyPairAsync) and the MAC (C_SignAsync) use pkcs11js's async variants, which run on
 * libuv's thread pool, so the event loop is not blocked by the token; the short calls around
 * them (*Init, find, destroy, login) are synchronous. In host-padding mode a wrap is node:crypto's
 * publicEncrypt with the token's public key. Errors map to codes in pkcs11-session.ts: module
 * and device failures UNAVAILABLE, a failed decryption UNWRAP_FAILED, a bad PIN MASTER_KEY.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyVaultError, type KeySize, type KeyVersionInfo } from './key-vault.js';
import { KeyVaultBase, type KeyRecord, type KeyRecords, type KeyVaultOptions } from './memory-key-vault.js';
import type { TokenSelector } from './pkcs11-session.js';
import { writeAtomically } from './durable-file.js';
import { assertStateBody, loadPin, parseEnvelope, readStateText, type PinSource, type StoredKey } from './pkcs11-state.js';
import { Pkcs11Token, type TokenKeyPair } from './pkcs11-token.js';

export const DEFAULT_PKCS11_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface Pkcs11KeyVaultOptions extends KeyVaultOptions {
  /** The PKCS#11 library; default SoftHSM2's Debian path. */
  readonly modulePath?: string;
  readonly token: TokenSelector;
  /** The user PIN: an environment variable's name or a file (mode 0600). Never the PIN itself. */
  readonly pin: PinSource;
  /** Folder holding state.json (created 0700). */
  readonly stateDir: string;
  /** Let the host do OAEP padding around the token's raw RSA when the token lacks OAEP-256 (see pkcs11-token.ts). Default false. */
  readonly allowRawRsa?: boolean;
  /** Sessions opened at most, i.e. token operations in flight. Default 8. */
  readonly maxSessions?: number;
}

interface TokenVersion extends KeyVersionInfo {
  readonly pair: TokenKeyPair;
}

type Records = KeyRecords<TokenVersion>;

function corrupt(message: string): never {
  throw new KeyVaultError('STORE_CORRUPT', message);
}

const idsOf = (keys: Records): Set<string> => new Set([...keys.values()].flatMap((k) => k.versions.map((v) => v.version)));

function stored(keys: Records): StoredKey[] {
  return [...keys.values()].map(({ versions, ...meta }) => ({ ...meta, versions: versions.map(({ version, createdAt, size }) => ({ version, createdAt, size })) }));
}

/** Finds each version's key pair on the token; STORE_CORRUPT when one is missing or of another size. */
async function revive(keys: readonly StoredKey[], token: Pkcs11Token): Promise<Records> {
  const out = new Map<string, KeyRecord<TokenVersion>>();
  for (const k of keys) {
    const versions: TokenVersion[] = [];
    for (const v of k.versions) {
      const pair = await token.findRsa(Buffer.from(v.version, 'hex'));
      if (pair === undefined) corrupt(`key ${k.name} version ${v.version} is not on the token (wrong token?)`);
      if (pair.bits !== v.size) corrupt(`key ${k.name} version ${v.version} is ${pair.bits} bits on the token, ${v.size} in state.json`);
      versions.push({ ...v, pair });
    }
    out.set(k.name, { ...k, versions });
  }
  return out;
}

export class Pkcs11KeyVault extends KeyVaultBase<TokenVersion> {
  /** The state as last written: what the next write is compared with to find new and dropped versions. */
  private persisted: Records;

  private constructor(
    options: Pkcs11KeyVaultOptions,
    private readonly token: Pkcs11Token,
    private readonly macKeyId: string,
    private readonly macKey: Buffer,
    private readonly file: string,
    keys: Records,
    /** CKA_IDs of dropped versions whose objects are still on the token. */
    private doomed: readonly string[],
  ) {
    super(options, keys);
    this.persisted = keys;
  }

  /** Logs in and loads the state. MASTER_KEY for a bad PIN; STORE_CORRUPT for a tampered or mismatched state; UNAVAILABLE when the token cannot be used. */
  static async open(options: Pkcs11KeyVaultOptions): Promise<Pkcs11KeyVault> {
    const pin = await loadPin(options.pin);
    await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    const file = join(options.stateDir, 'state.json');
    const text = await readStateText(file);
    const pool = { modulePath: options.modulePath ?? DEFAULT_PKCS11_MODULE, token: options.token, maxSessions: options.maxSessions ?? 8 };
    const token = await Pkcs11Token.open(pool, pin, options.allowRawRsa ?? false);
    try {
      if (text === undefined) {
        const id = randomBytes(16);
        const macKey = await token.createMacKey(id, `bulwark:state-mac:${id.toString('hex')}`);
        const vault = new Pkcs11KeyVault(options, token, id.toString('hex'), macKey, file, new Map(), []);
        await vault.persist(new Map()); // a new state is MAC'd from the start
        return vault;
      }
      const envelope = parseEnvelope(text);
      const macKey = (await token.findMacKey(Buffer.from(envelope.body.macKey, 'hex'))) ?? corrupt('the state MAC key is not on the token (wrong token?)');
      const want = await token.hmac(macKey, Buffer.from(JSON.stringify(envelope.body)));
      const got = Buffer.from(envelope.mac, 'hex');
      if (got.length !== want.length || !timingSafeEqual(got, want)) corrupt('state.json failed its integrity check');
      assertStateBody(envelope.body);
      const keys = await revive(envelope.body.keys, token);
      const vault = new Pkcs11KeyVault(options, token, envelope.body.macKey, macKey, file, keys, envelope.body.doomed);
      await vault.destroyDoomed();
      return vault;
    } catch (e) {
      await token.close();
      throw e;
    }
  }

  protected override async generateVersion(name: string, size: KeySize, now: Date): Promise<TokenVersion> {
    const id = randomBytes(16);
    const version = id.toString('hex');
    const pair = await this.token.generateRsa(id, `bulwark:${name}:${version}`, size);
    return { version, createdAt: now.toISOString(), size, pair };
  }

  protected override async wrapWith(_name: string, v: TokenVersion, dataKey: Buffer): Promise<Buffer> {
    return this.token.wrap(v.pair, dataKey);
  }

  protected override async unwrapWith(_name: string, v: TokenVersion, wrapped: Buffer): Promise<Buffer> {
    return this.token.unwrap(v.pair, wrapped);
  }

  /** Writes the next state; then destroys what it no longer names. A failed write destroys what it would have added. */
  protected override async persist(next: Records): Promise<void> {
    const before = idsOf(this.persisted);
    const after = idsOf(next);
    const added = [...after].filter((id) => !before.has(id));
    const doomed = [...new Set([...this.doomed, ...[...before].filter((id) => !after.has(id))])];
    try {
      await this.write(next, doomed);
    } catch (e) {
      for (const id of added) await this.token.destroy(Buffer.from(id, 'hex')).catch(() => undefined);
      throw e;
    }
    this.persisted = next;
    this.doomed = doomed;
    await this.destroyDoomed();
  }

  override async close(): Promise<void> {
    await super.close();
    await this.token.close();
  }

  private async write(keys: Records, doomed: readonly string[]): Promise<void> {
    const body = { macKey: this.macKeyId, keys: stored(keys), doomed };
    const mac = await this.token.hmac(this.macKey, Buffer.from(JSON.stringify(body)));
    await writeAtomically(this.file, JSON.stringify({ format: 1, body, mac: mac.toString('hex') }));
  }

  /** Best effort: the state already disowns these; what fails now is retried at the next write or open. */
  private async destroyDoomed(): Promise<void> {
    const left: string[] = [];
    for (const id of this.doomed) {
      await this.token.destroy(Buffer.from(id, 'hex')).catch(() => left.push(id));
    }
    this.doomed = left;
  }
}
