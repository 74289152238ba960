/** Key-encryption keys: the KeyVault contract and its implementations. */
export {
  KEY_NAME,
  KEY_PERMISSIONS,
  KEY_SIZES,
  KEY_VAULT_ERROR_CODES,
  KeyVaultError,
  isKeyVaultError,
  type KeyId,
  type KeyInfo,
  type KeyPermission,
  type KeySize,
  type KeyVault,
  type KeyVaultAudit,
  type KeyVaultAuditEvent,
  type KeyVaultErrorCode,
  type KeyVaultOp,
  type KeyVersionInfo,
  type WrappedKey,
} from './key-vault.js';
export { MemoryKeyVault, type KeyVaultOptions } from './memory-key-vault.js';
export { LocalKeyVault, type LocalKeyVaultOptions } from './local-key-vault.js';
export { AzureKeyVault, type AzureKeyVaultOptions } from './azure-key-vault.js';
export { DEFAULT_PKCS11_MODULE, Pkcs11KeyVault, type Pkcs11KeyVaultOptions } from './pkcs11-key-vault.js';
export type { TokenSelector } from './pkcs11-session.js';
export type { PinSource } from './pkcs11-state.js';
