export { type DataKeyStore, type DataKeyRecord, type KekRef, type KekCount, type SealedKind, sameKek } from './data-key-store.js';
export { MemoryDataKeyStore } from './memory-data-key-store.js';
export { SqliteDataKeyStore, DataKeyStoreError } from './sqlite-data-key-store.js';
export { EncryptingBlobStore, type EncryptingBlobStoreOptions } from './encrypting-blob-store.js';
export { EncryptingMetadataStore, StoredContentError, SEALED_ANNOTATION, type EncryptingMetadataStoreOptions } from './encrypting-metadata-store.js';
export { KeyRing, type KeyRingOptions, type KeyRingHealth } from './key-ring.js';
export { SealError, MIN_SEGMENT_SIZE, MAX_SEGMENT_SIZE, Layout, SEGMENT_OVERHEAD } from './format.js';
export { assertNotEncrypted, createEncryption, keyVaultAudit, type Encryption, type EncryptionDeps, type VaultDriver } from './setup.js';
export { Rotator, type RotationProgress, type EncryptionStatus } from './rotation.js';
