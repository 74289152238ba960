/**
 * Builds envelope encryption from validated configuration: the key vault (chosen by name from a
 * typed table, STYLE rule 5), the data-key store, the key ring, and the decorators that wrap the
 * blob store and the metadata store (manifest bodies and annotations). The embedded local vault is the registry's own (a service-managed key): the
 * registry may manage it and creates its key on first start. Any other vault holds a
 * customer-managed key that must exist already; the registry only gets, wraps and unwraps.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AzureKeyVault, LocalKeyVault, MemoryKeyVault, Pkcs11KeyVault, isKeyVaultError, type KeySize, type KeyVault, type KeyVaultAudit } from '../keyvault/index.js';
import type { Config } from '../config/index.js';
import type { EventBus } from '../audit/index.js';
import type { BlobStore, MetadataStore } from '../storage/index.js';
import type { DataKeyStore } from './data-key-store.js';
import { EncryptingBlobStore } from './encrypting-blob-store.js';
import { EncryptingMetadataStore } from './encrypting-metadata-store.js';
import { KeyRing } from './key-ring.js';
import { MemoryDataKeyStore } from './memory-data-key-store.js';
import { SqliteDataKeyStore } from './sqlite-data-key-store.js';

export type VaultDriver = Config['encryption']['vault'];

export interface Encryption {
  readonly ring: KeyRing;
  readonly keys: DataKeyStore;
  readonly vaults: ReadonlyMap<string, KeyVault>;
  /** the configured key: name, and version when pinned */
  readonly key: { readonly vault: VaultDriver; readonly name: string; readonly version?: string | undefined };
  wrap(inner: BlobStore): BlobStore;
  /** manifest bodies and annotations, sealed under the same vault, data-key store and ring */
  wrapMeta(inner: MetadataStore): MetadataStore;
  close(): Promise<void>;
}

export interface EncryptionDeps {
  readonly audit: KeyVaultAudit;
  /** false: in-memory data keys and vault (the memory storage drivers, for tests) */
  readonly persistent: boolean;
  /** a vault to use instead of building the configured one (tests) */
  readonly vault?: KeyVault;
}

/** Every key-vault operation becomes an audit event (who, which key and version, outcome). */
export function keyVaultAudit(bus: EventBus): KeyVaultAudit {
  return (e) =>
    bus.emit({
      type: 'key.operation',
      time: new Date().toISOString(),
      repository: '',
      client: { address: 'internal', userAgent: 'bulwark', requestId: 'key-vault' },
      principal: e.identity,
      target: e.version === undefined ? e.key : `${e.key}/${e.version}`,
      reason: e.op,
      outcome: e.outcome,
      error: e.error,
    });
}

type VaultFactory = (config: Config, deps: EncryptionDeps) => Promise<KeyVault>;

const vaultDrivers: Record<VaultDriver, VaultFactory> = {
  local: async (config, deps) => {
    const accessPolicies = { [config.encryption.identity]: ['get', 'wrapKey', 'unwrapKey', 'manage'] as const };
    if (!deps.persistent) return new MemoryKeyVault({ audit: deps.audit, accessPolicies });
    const local = config.encryption.local;
    return LocalKeyVault.open({
      audit: deps.audit,
      accessPolicies,
      dir: local.dir,
      masterKey: local.masterKeyEnv !== '' ? { env: local.masterKeyEnv } : { file: local.masterKeyFile },
    });
  },
  // Customer-managed keys: the registry gets, wraps and unwraps; the operator manages the key.
  pkcs11: async (config, deps) => {
    const o = config.encryption.pkcs11;
    return Pkcs11KeyVault.open({
      audit: deps.audit,
      accessPolicies: { [config.encryption.identity]: ['get', 'wrapKey', 'unwrapKey'] },
      modulePath: o.module,
      token: { label: o.token },
      pin: o.pinFile !== '' ? { file: o.pinFile } : { env: o.pinEnv },
      stateDir: o.stateDir,
      allowRawRsa: o.allowRawRsa,
    });
  },
  azure: async (config, deps) => {
    if (config.encryption.azure.vaultUrl === '') throw new Error('encryption.vault=azure needs encryption.azure.vaultUrl');
    return AzureKeyVault.open({ vaultUrl: config.encryption.azure.vaultUrl, audit: deps.audit, identity: config.encryption.identity });
  },
};

function parseKey(config: Config): Encryption['key'] {
  const [name = '', version] = config.encryption.key.split('/');
  return { vault: config.encryption.vault, name, version };
}

/** The local vault creates its key on first start; any other vault must already hold it. */
async function ensureKey(vault: KeyVault, config: Config, key: Encryption['key']): Promise<void> {
  const id = config.encryption.identity;
  try {
    await vault.getKey(id, key.name, key.version);
  } catch (e) {
    if (!isKeyVaultError(e, 'KEY_NOT_FOUND') || key.vault !== 'local' || key.version !== undefined) {
      throw new Error(`failed to open the key-encryption key "${config.encryption.key}" in the ${key.vault} vault: ${(e as Error).message}`, { cause: e });
    }
    await vault.createKey(id, key.name, { size: Number(config.encryption.local.keySize) as KeySize });
  }
}

/**
 * Refuses to run without encryption on a data folder that holds encrypted content: clients would
 * be served ciphertext, and `fsck --repair` would throw away every record as corrupt.
 */
export function assertNotEncrypted(config: Config): void {
  if (existsSync(join(config.dataDir, 'data-keys.db'))) {
    throw new Error(`${config.dataDir} holds encrypted content (data-keys.db): encryption.enabled=false cannot serve it. Turn encryption back on.`);
  }
}

/**
 * Refuses to turn encryption on over a data folder that already holds plaintext blobs (one that
 * ran with encryption off): they would look missing, and `fsck --repair` would unlink them.
 * Migrating such a folder is not built yet; keep encryption off for it, or start afresh.
 */
function assertNoPlaintext(config: Config): void {
  if (existsSync(join(config.dataDir, 'data-keys.db'))) return;
  const blobs = join(config.dataDir, 'blobs');
  // The fan-out folders exist from the first start on (FsBlobStore.init); a blob is a file in one.
  const holds = (dir: string): boolean =>
    existsSync(dir) && readdirSync(dir, { withFileTypes: true }).some((e) => !e.isDirectory() || readdirSync(join(dir, e.name)).length > 0);
  if (['sha256', 'sha512'].some((alg) => holds(join(blobs, alg)))) {
    throw new Error(`${config.dataDir} holds unencrypted blobs (it ran with encryption.enabled=false): encryption cannot be turned on over it. Keep encryption.enabled=false for this folder, or push into a new one.`);
  }
}

export async function createEncryption(config: Config, deps: EncryptionDeps): Promise<Encryption> {
  const key = parseKey(config);
  const vault = deps.vault ?? (await vaultDrivers[key.vault](config, deps));
  const vaults = new Map<string, KeyVault>([[key.vault, vault]]);
  let keys: DataKeyStore | undefined;
  // Whatever fails below, nothing opened so far stays open.
  const undo = async (): Promise<void> => {
    await keys?.close();
    for (const v of vaults.values()) await v.close();
  };
  try {
    await ensureKey(vault, config, key);
    if (deps.persistent) assertNoPlaintext(config);
    keys = deps.persistent ? new SqliteDataKeyStore(join(config.dataDir, 'data-keys.db')) : new MemoryDataKeyStore();
    // Moving off the embedded vault: data keys it wrapped stay readable (and can be re-wrapped by
    // `bulwark encryption rotate`) as long as its files are here, so open it beside the new one.
    if (deps.persistent && deps.vault === undefined && key.vault !== 'local' && (await keys.countByKey()).some((c) => c.kek.vault === 'local')) {
      vaults.set('local', await vaultDrivers.local(config, deps));
    }
  } catch (e) {
    await undo();
    throw e;
  }
  const store = keys;
  const ring = new KeyRing({ vaults, identity: config.encryption.identity, target: key, cacheMs: config.encryption.dataKeyCacheSeconds * 1000 });
  return {
    ring,
    keys: store,
    vaults,
    key,
    wrap: (inner) => new EncryptingBlobStore({ inner, keys: store, ring, segmentSize: config.encryption.segmentBytes }),
    wrapMeta: (inner) => new EncryptingMetadataStore({ inner, keys: store, ring, segmentSize: config.encryption.segmentBytes }),
    close: async () => {
      ring.close();
      await undo();
    },
  };
}
