/** Builds EncryptingBlobStores for tests: an in-memory vault with one KEK, a data-key store, a ring. */
import { MemoryKeyVault, type KeyVault, type KeyVaultAuditEvent } from '../../src/keyvault/index.js';
import { EncryptingBlobStore, KeyRing, MemoryDataKeyStore, type DataKeyStore } from '../../src/encryption/index.js';
import type { BlobStore } from '../../src/storage/index.js';

export const OPERATOR = 'operator';
export const REGISTRY = 'registry';
export const KEK = 'registry-kek';

export interface EncryptionRig {
  readonly vault: KeyVault;
  readonly keys: DataKeyStore;
  readonly ring: KeyRing;
  readonly events: KeyVaultAuditEvent[];
  /** the fake clock the ring's cache reads, ms */
  clock: number;
  /** a decorator over `inner` sharing this rig's vault, keys and ring */
  store(inner: BlobStore, segmentSize?: number): EncryptingBlobStore;
}

export async function encryptionRig(opts: { cacheMs?: number; keys?: DataKeyStore } = {}): Promise<EncryptionRig> {
  const events: KeyVaultAuditEvent[] = [];
  const vault = new MemoryKeyVault({
    audit: (e) => events.push(e),
    accessPolicies: { [OPERATOR]: ['manage', 'get'], [REGISTRY]: ['get', 'wrapKey', 'unwrapKey'] },
  });
  await vault.createKey(OPERATOR, KEK, { size: 2048 });
  const rig: EncryptionRig = {
    vault,
    keys: opts.keys ?? new MemoryDataKeyStore(),
    events,
    clock: 1_000_000,
    ring: undefined as unknown as KeyRing,
    store: (inner, segmentSize = 16 * 1024) => new EncryptingBlobStore({ inner, keys: rig.keys, ring: rig.ring, segmentSize }),
  };
  (rig as { ring: KeyRing }).ring = new KeyRing({
    vaults: new Map([['test', vault]]),
    identity: REGISTRY,
    target: { vault: 'test', name: KEK },
    cacheMs: opts.cacheMs ?? 300_000,
    now: () => rig.clock,
  });
  return rig;
}
