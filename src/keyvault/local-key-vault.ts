/**
 * The embedded local vault (the default): the in-memory vault's rules, with every change
 * written to disk before it is adopted. Layout:
 *
 *   <dir>/                 mode 0700
 *   └── keys.json          mode 0600, replaced atomically (temp file, fsync, rename, dir fsync)
 *   <masterKey.file>       mode 0600 or the vault refuses to start; base64 of 32 random bytes
 *
 * keys.json = { format: 1, body: { check, keys: [...] }, mac }. Each private key (PKCS#8 DER)
 * is sealed with AES-256-GCM under a key derived from the master key, with a random 96-bit nonce
 * and `name` and `version` bound in as AAD, so a sealed key cannot be moved to another name or
 * version. `check` is a sealed constant that tells a wrong master key (MASTER_KEY) apart from a
 * tampered file; `mac` (HMAC-SHA-256 under a second derived key) covers the metadata too, so
 * nobody with write access to the disk can re-enable, undelete or reorder keys (STORE_CORRUPT).
 * Not covered: replacing the file with an older genuine copy (rollback).
 */
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncPath, writeAtomically } from './durable-file.js';
import { KEY_SIZES, KeyVaultError, type KeySize } from './key-vault.js';
import { MemoryKeyVault, type KeyRecord, type KeyRecords, type KeyVaultOptions, type VersionRecord } from './memory-key-vault.js';

export interface LocalKeyVaultOptions extends KeyVaultOptions {
  /** Folder holding keys.json. */
  readonly dir: string;
  /** A file (created 0600 on first use) or the name of an environment variable holding base64. */
  readonly masterKey: { readonly file: string } | { readonly env: string };
}

interface StoredVersion {
  version: string;
  createdAt: string;
  size: KeySize;
  sealed: string;
}
interface StoredKey {
  name: string;
  enabled: boolean;
  deletedAt?: string;
  recoverableUntil?: string;
  versions: StoredVersion[];
}
interface Body {
  check: string;
  keys: StoredKey[];
}

const CHECK = 'bulwark-keyvault-check';

function corrupt(message: string, cause?: unknown): never {
  throw new KeyVaultError('STORE_CORRUPT', message, cause === undefined ? undefined : { cause });
}
function masterKeyError(message: string, cause?: unknown): never {
  throw new KeyVaultError('MASTER_KEY', message, cause === undefined ? undefined : { cause });
}

function decodeMasterKey(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== 32) masterKeyError(`the master key in ${where} must be 32 bytes, base64-encoded`);
  return key;
}

/** Reads the master key file, creating it on first use; refuses a file others could read. */
async function loadMasterKeyFile(path: string): Promise<Buffer> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.writeFile(`${randomBytes(32).toString('base64')}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncPath(dirname(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') masterKeyError(`failed to create master key file ${path}`, e);
  }
  const st = await stat(path);
  if (!st.isFile()) masterKeyError(`master key ${path} is not a regular file`);
  // A key-encryption key readable by group or others is not under the operator's control.
  if ((st.mode & 0o077) !== 0) masterKeyError(`master key file ${path} has mode ${(st.mode & 0o777).toString(8)}; it must be 0600`);
  return decodeMasterKey(await readFile(path, 'utf8'), path);
}

class Sealer {
  private readonly enc: Buffer;
  private readonly mac: Buffer;
  constructor(master: Buffer) {
    this.enc = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'bulwark keyvault v1 seal', 32));
    this.mac = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'bulwark keyvault v1 mac', 32));
  }

  seal(plain: Buffer, aad: string): string {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.enc, nonce).setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([nonce, ct, c.getAuthTag()]).toString('base64');
  }

  /** Throws (GCM tag mismatch) unless sealed under this key with this AAD. */
  open(sealed: string, aad: string): Buffer {
    const b = Buffer.from(sealed, 'base64');
    if (b.length < 28) throw new Error('sealed value too short');
    const d = createDecipheriv('aes-256-gcm', this.enc, b.subarray(0, 12)).setAAD(Buffer.from(aad));
    d.setAuthTag(b.subarray(b.length - 16));
    return Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]);
  }

  tag(body: string): string {
    return createHmac('sha256', this.mac).update(body).digest('hex');
  }
}

const aadFor = (name: string, version: string): string => `bulwark/keyvault/v1\0${name}\0${version}`;

function parse(text: string, sealer: Sealer): Body {
  let doc: { format?: unknown; body?: Body; mac?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (e) {
    corrupt('keys.json is not JSON', e);
  }
  if (doc.format !== 1 || typeof doc.body !== 'object' || typeof doc.mac !== 'string') corrupt('keys.json has an unknown format');
  try {
    if (sealer.open(doc.body.check, CHECK).toString() !== CHECK) throw new Error('check mismatch');
  } catch (e) {
    masterKeyError('the master key does not open this key store (wrong key?)', e);
  }
  const want = Buffer.from(sealer.tag(JSON.stringify(doc.body)), 'hex');
  const got = Buffer.from(doc.mac, 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want)) corrupt('keys.json failed its integrity check');
  return doc.body;
}

/** Unseals every private key; the sealed forms are remembered so unchanged keys are written back as they were. */
function revive(keys: readonly StoredKey[], sealer: Sealer, sealed: WeakMap<VersionRecord, string>): KeyRecords {
  const out = new Map<string, KeyRecord>();
  for (const k of keys) {
    const versions = k.versions.map((v): VersionRecord => {
      if (!KEY_SIZES.includes(v.size)) corrupt(`key ${k.name} has an invalid size`);
      let privateKey;
      try {
        privateKey = createPrivateKey({ key: sealer.open(v.sealed, aadFor(k.name, v.version)), format: 'der', type: 'pkcs8' });
      } catch (e) {
        corrupt(`failed to unseal key ${k.name} version ${v.version}`, e);
      }
      const rec = { version: v.version, createdAt: v.createdAt, size: v.size, privateKey, publicKey: createPublicKey(privateKey) };
      sealed.set(rec, v.sealed);
      return rec;
    });
    out.set(k.name, { ...k, versions });
  }
  return out;
}

export class LocalKeyVault extends MemoryKeyVault {
  private readonly file: string;
  private readonly sealer: Sealer;
  private readonly check: string;
  /** Sealed form of each version, so unchanged keys are not re-encrypted on every write. */
  private readonly sealed: WeakMap<VersionRecord, string>;

  private constructor(options: LocalKeyVaultOptions, sealer: Sealer, check: string, keys: KeyRecords, sealed = new WeakMap<VersionRecord, string>()) {
    super(options, keys);
    this.file = join(options.dir, 'keys.json');
    this.sealer = sealer;
    this.check = check;
    this.sealed = sealed;
  }

  /** Opens (or creates) the vault. MASTER_KEY for a bad or wrong master key; STORE_CORRUPT for a tampered file. */
  static async open(options: LocalKeyVaultOptions): Promise<LocalKeyVault> {
    const master =
      'file' in options.masterKey
        ? await loadMasterKeyFile(options.masterKey.file)
        : decodeMasterKey(process.env[options.masterKey.env] ?? masterKeyError(`environment variable ${options.masterKey.env} is not set`), options.masterKey.env);
    const sealer = new Sealer(master);
    master.fill(0);
    await mkdir(options.dir, { recursive: true, mode: 0o700 });
    const file = join(options.dir, 'keys.json');
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new KeyVaultError('UNAVAILABLE', `failed to read ${file}`, { cause: e });
    }
    if (text === undefined) {
      const vault = new LocalKeyVault(options, sealer, sealer.seal(Buffer.from(CHECK), CHECK), new Map());
      await vault.persist(new Map()); // a new store carries its check value from the start
      return vault;
    }
    const { check, keys } = parse(text, sealer);
    const sealed = new WeakMap<VersionRecord, string>();
    return new LocalKeyVault(options, sealer, check, revive(keys, sealer, sealed), sealed);
  }

  protected override async persist(next: KeyRecords): Promise<void> {
    const keys = [...next.values()].map(
      (k): StoredKey => ({
        ...(({ versions: _v, ...meta }) => meta)(k),
        versions: k.versions.map((v) => ({ version: v.version, createdAt: v.createdAt, size: v.size, sealed: this.sealOnce(k.name, v) })),
      }),
    );
    const body: Body = { check: this.check, keys };
    const text = JSON.stringify({ format: 1, body, mac: this.sealer.tag(JSON.stringify(body)) });
    await writeAtomically(this.file, text);
  }

  private sealOnce(name: string, v: VersionRecord): string {
    let s = this.sealed.get(v);
    if (s === undefined) {
      const der = v.privateKey.export({ format: 'der', type: 'pkcs8' });
      s = this.sealer.seal(der, aadFor(name, v.version));
      der.fill(0);
      this.sealed.set(v, s);
    }
    return s;
  }
}
