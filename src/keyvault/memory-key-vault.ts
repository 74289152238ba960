/**
 * In-memory KeyVault: RSA keys as node:crypto KeyObjects. Tests use it directly; the local
 * vault extends it and overrides `persist` to write every new state to disk before it is
 * adopted, so the rules (permissions, audit, soft delete, purge protection) live here once.
 * The rules sit in KeyVaultBase, generic over what a key version holds; the private-key work
 * (generate, wrap, unwrap) is three hooks, so a vault whose keys live elsewhere (an HSM: the
 * PKCS#11 vault) reuses the rules without ever holding a private key.
 */
import { constants, generateKeyPair, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import {
  KEY_NAME,
  KEY_SIZES,
  KeyVaultError,
  type KeyId,
  type KeyInfo,
  type KeyPermission,
  type KeySize,
  type KeyVault,
  type KeyVaultAudit,
  type KeyVaultOp,
  type KeyVersionInfo,
  type WrappedKey,
} from './key-vault.js';

const generateRsa = promisify(generateKeyPair);
const DAY_MS = 86_400_000;
/** RSA-OAEP-256 on a 2048-bit modulus carries at most 256 - 2*32 - 2 bytes. */
const MAX_DATA_KEY = 190;

export interface KeyVaultOptions {
  readonly audit: KeyVaultAudit;
  /** identity -> permissions. Resolved at construction; changed later only by setAccessPolicy. */
  readonly accessPolicies: Readonly<Record<string, readonly KeyPermission[]>>;
  /** Default true, as a registry's KEK should be. */
  readonly purgeProtection?: boolean;
  /** How long a soft-deleted key stays recoverable: 7..90 days (Azure's range), default 90. */
  readonly retentionDays?: number;
  readonly now?: () => Date;
}

export interface VersionRecord extends KeyVersionInfo {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export interface KeyRecord<V extends KeyVersionInfo = VersionRecord> {
  readonly name: string;
  readonly enabled: boolean;
  readonly deletedAt?: string;
  readonly recoverableUntil?: string;
  readonly versions: readonly V[];
}

export type KeyRecords<V extends KeyVersionInfo = VersionRecord> = ReadonlyMap<string, KeyRecord<V>>;

interface Event {
  op: KeyVaultOp;
  identity: string;
  key: string;
  version?: string;
}

function fail(code: KeyVaultError['code'], message: string, cause?: unknown): never {
  throw new KeyVaultError(code, message, cause === undefined ? undefined : { cause });
}

async function newVersion(size: KeySize, now: Date): Promise<VersionRecord> {
  const { privateKey, publicKey } = await generateRsa('rsa', { modulusLength: size, publicExponent: 0x10001 });
  return { version: randomBytes(16).toString('hex'), createdAt: now.toISOString(), size, privateKey, publicKey };
}

function info(rec: KeyRecord<KeyVersionInfo>, v: KeyVersionInfo): KeyInfo {
  return {
    name: rec.name,
    version: v.version,
    createdAt: v.createdAt,
    size: v.size,
    enabled: rec.enabled,
    ...(rec.deletedAt !== undefined ? { deletedAt: rec.deletedAt } : {}),
    ...(rec.recoverableUntil !== undefined ? { recoverableUntil: rec.recoverableUntil } : {}),
  };
}

function newest<V extends KeyVersionInfo>(rec: KeyRecord<V>): V {
  const v = rec.versions[rec.versions.length - 1];
  if (v === undefined) fail('STORE_CORRUPT', `key ${rec.name} has no versions`);
  return v;
}

/** The vault rules (permissions, audit, soft delete, purge protection) over versions of type V. */
export abstract class KeyVaultBase<V extends KeyVersionInfo> implements KeyVault {
  private keys: KeyRecords<V>;
  private readonly policies = new Map<string, ReadonlySet<KeyPermission>>();
  private readonly audit: KeyVaultAudit;
  private readonly purgeProtection: boolean;
  private readonly retentionMs: number;
  private readonly now: () => Date;
  /** Mutations run one at a time: check, persist, adopt. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: KeyVaultOptions, initial: KeyRecords<V>) {
    const days = options.retentionDays ?? 90;
    if (!Number.isInteger(days) || days < 7 || days > 90) fail('INVALID', `retentionDays must be an integer in 7..90, got ${days}`);
    this.keys = initial;
    this.audit = options.audit;
    this.purgeProtection = options.purgeProtection ?? true;
    this.retentionMs = days * DAY_MS;
    this.now = options.now ?? (() => new Date());
    for (const [id, perms] of Object.entries(options.accessPolicies)) this.policies.set(id, new Set(perms));
  }

  /** Called with the complete next state before it is adopted; a rejection aborts the change. */
  protected async persist(_next: KeyRecords<V>): Promise<void> {}

  /** Makes a new version of key `name`; the hook chooses the version string. */
  protected abstract generateVersion(name: string, size: KeySize, now: Date): Promise<V>;
  /** RSA-OAEP-256 of `dataKey` (1..190 bytes, already checked) under `v`. */
  protected abstract wrapWith(name: string, v: V, dataKey: Buffer): Promise<Buffer>;
  /** Inverse of wrapWith; `wrapped` has the modulus length (checked). UNWRAP_FAILED on any decoding failure. */
  protected abstract unwrapWith(name: string, v: V, wrapped: Buffer): Promise<Buffer>;

  async getKey(identity: string, name: string, version?: string): Promise<KeyInfo> {
    return this.run({ op: 'getKey', identity, key: name }, 'get', async (ev) => {
      const rec = this.find(name);
      const v = version === undefined ? newest(rec) : this.findVersion(rec, version);
      ev.version = v.version;
      return info(rec, v);
    });
  }

  async listVersions(identity: string, name: string): Promise<KeyVersionInfo[]> {
    return this.run({ op: 'listVersions', identity, key: name }, 'get', async () =>
      this.find(name).versions.map((v) => ({ version: v.version, createdAt: v.createdAt, size: v.size })),
    );
  }

  async createKey(identity: string, name: string, options: { size: KeySize }): Promise<KeyInfo> {
    return this.mutate({ op: 'createKey', identity, key: name }, async (keys, ev) => {
      if (!KEY_NAME.test(name)) fail('INVALID', 'key names are 1-127 letters, digits and dashes');
      if (!KEY_SIZES.includes(options.size)) fail('INVALID', `key size must be one of ${KEY_SIZES.join(', ')}`);
      if (keys.has(name)) fail('KEY_EXISTS', `key ${name} already exists (possibly soft-deleted)`);
      const v = await this.generateVersion(name, options.size, this.now());
      ev.version = v.version;
      return { name, enabled: true, versions: [v] };
    });
  }

  async rotateKey(identity: string, name: string): Promise<KeyInfo> {
    return this.mutate({ op: 'rotateKey', identity, key: name }, async (_keys, ev) => {
      const rec = this.live(name);
      const v = await this.generateVersion(name, newest(rec).size, this.now());
      ev.version = v.version;
      return { ...rec, versions: [...rec.versions, v] };
    });
  }

  async setEnabled(identity: string, name: string, enabled: boolean): Promise<KeyInfo> {
    return this.mutate({ op: 'setEnabled', identity, key: name }, async () => ({ ...this.live(name), enabled }));
  }

  async softDelete(identity: string, name: string): Promise<KeyInfo> {
    return this.mutate({ op: 'softDelete', identity, key: name }, async () => {
      const rec = this.live(name);
      const now = this.now();
      return { ...rec, deletedAt: now.toISOString(), recoverableUntil: new Date(now.getTime() + this.retentionMs).toISOString() };
    });
  }

  async recover(identity: string, name: string): Promise<KeyInfo> {
    return this.mutate({ op: 'recover', identity, key: name }, async () => {
      const { deletedAt, recoverableUntil: _until, ...rec } = this.find(name);
      if (deletedAt === undefined) fail('KEY_NOT_DELETED', `key ${name} is not deleted`);
      return rec;
    });
  }

  async purge(identity: string, name: string): Promise<void> {
    await this.mutate({ op: 'purge', identity, key: name }, async () => {
      const rec = this.find(name);
      if (rec.deletedAt === undefined) fail('KEY_NOT_DELETED', `key ${name} must be soft-deleted before it is purged`);
      if (this.purgeProtection) fail('PURGE_PROTECTED', `purge protection is on: key ${name} is purged when its retention ends`);
      return null;
    });
  }

  async setAccessPolicy(identity: string, target: string, permissions: readonly KeyPermission[]): Promise<void> {
    await this.run({ op: 'setAccessPolicy', identity, key: '*' }, 'manage', async () => {
      if (target === '') fail('INVALID', 'identity must not be empty');
      this.policies.set(target, new Set(permissions));
    });
  }

  async wrapKey(identity: string, name: string, version: string | undefined, dataKey: Buffer): Promise<WrappedKey> {
    return this.run({ op: 'wrapKey', identity, key: name }, 'wrapKey', async (ev) => {
      if (dataKey.length === 0 || dataKey.length > MAX_DATA_KEY) fail('INVALID', `data keys are 1..${MAX_DATA_KEY} bytes`);
      const rec = this.usable(name);
      const v = version === undefined ? newest(rec) : this.findVersion(rec, version);
      ev.version = v.version;
      return { keyId: { name, version: v.version }, wrapped: await this.wrapWith(name, v, dataKey) };
    });
  }

  async unwrapKey(identity: string, keyId: KeyId, wrapped: Buffer): Promise<Buffer> {
    return this.run({ op: 'unwrapKey', identity, key: keyId.name, version: keyId.version }, 'unwrapKey', async () => {
      const v = this.findVersion(this.usable(keyId.name), keyId.version);
      // Attacker-controlled bytes: OAEP decoding is the integrity check; any failure is one code.
      if (wrapped.length !== v.size / 8) fail('UNWRAP_FAILED', 'wrapped key does not match this key version');
      return this.unwrapWith(keyId.name, v, wrapped);
    });
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined);
  }

  /** Checks the permission, runs `body`, and audits the outcome either way. */
  private async run<T>(ev: Event, perm: KeyPermission, body: (ev: Event) => Promise<T>): Promise<T> {
    let result: T;
    try {
      if (this.policies.get(ev.identity)?.has(perm) !== true) fail('FORBIDDEN', `${ev.identity} lacks the ${perm} permission`);
      result = await body(ev);
    } catch (e) {
      const code = e instanceof KeyVaultError ? e.code : 'UNAVAILABLE';
      this.audit({ ...ev, outcome: 'failure', error: code });
      throw e;
    }
    this.audit({ ...ev, outcome: 'success' });
    return result;
  }

  /** Serialized: drops expired soft-deleted keys, computes the next record (null = remove), persists, adopts. */
  private async mutate(ev: Event, change: (keys: KeyRecords<V>, ev: Event) => Promise<KeyRecord<V> | null>): Promise<KeyInfo> {
    const task = this.queue.then(() =>
      this.run(ev, 'manage', async () => {
        const next = new Map(this.keys);
        for (const [name, rec] of next) if (this.expired(rec)) next.delete(name);
        const rec = await change(next, ev);
        if (rec === null) next.delete(ev.key);
        else next.set(ev.key, rec);
        await this.persist(next);
        this.keys = next;
        return rec === null ? undefined : info(rec, newest(rec));
      }),
    );
    this.queue = task.catch(() => undefined);
    return (await task) as KeyInfo;
  }

  private expired(rec: KeyRecord<V>): boolean {
    return rec.recoverableUntil !== undefined && Date.parse(rec.recoverableUntil) <= this.now().getTime();
  }

  /** The key, deleted or not; KEY_NOT_FOUND once its retention ended. */
  private find(name: string): KeyRecord<V> {
    const rec = this.keys.get(name);
    if (rec === undefined || this.expired(rec)) fail('KEY_NOT_FOUND', `key ${name} not found`);
    return rec;
  }

  private live(name: string): KeyRecord<V> {
    const rec = this.find(name);
    if (rec.deletedAt !== undefined) fail('KEY_DELETED', `key ${name} is soft-deleted`);
    return rec;
  }

  private usable(name: string): KeyRecord<V> {
    const rec = this.live(name);
    if (!rec.enabled) fail('KEY_DISABLED', `key ${name} is disabled`);
    return rec;
  }

  private findVersion(rec: KeyRecord<V>, version: string): V {
    const v = rec.versions.find((x) => x.version === version);
    if (v === undefined) fail('KEY_NOT_FOUND', `key ${rec.name} has no version ${version}`);
    return v;
  }
}

/** Keys as node:crypto KeyObjects in this process. */
export class MemoryKeyVault extends KeyVaultBase<VersionRecord> {
  constructor(options: KeyVaultOptions, initial: KeyRecords = new Map()) {
    super(options, initial);
  }

  protected override async generateVersion(_name: string, size: KeySize, now: Date): Promise<VersionRecord> {
    return newVersion(size, now);
  }

  protected override async wrapWith(_name: string, v: VersionRecord, dataKey: Buffer): Promise<Buffer> {
    return publicEncrypt({ key: v.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, dataKey);
  }

  protected override async unwrapWith(_name: string, v: VersionRecord, wrapped: Buffer): Promise<Buffer> {
    try {
      return privateDecrypt({ key: v.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, wrapped);
    } catch (e) {
      fail('UNWRAP_FAILED', 'wrapped key does not match this key version', e);
    }
  }
}
