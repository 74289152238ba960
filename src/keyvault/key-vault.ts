/**
 * KeyVault: where key-encryption keys (KEKs) live. The registry never holds a KEK's private
 * half; it asks the vault to wrap a data key (RSA-OAEP with SHA-256 and MGF1-SHA-256, Key Vault's
 * "RSA-OAEP-256") and to unwrap it again. Everything else here exists so an operator can manage
 * those keys the way Azure Key Vault lets them: versions, enable/disable, soft delete with a
 * recovery window, purge protection, and per-identity access policies.
 *
 * Contract (every implementation passes test/testkit/key-vault-suite.ts):
 * - Every method takes the calling `identity` first. The identity's access policy is checked
 *   before anything else, so a caller without the permission learns nothing about which keys
 *   exist: FORBIDDEN, never KEY_NOT_FOUND. `get` covers getKey/listVersions, `wrapKey` and
 *   `unwrapKey` cover themselves, `manage` covers create, rotate, setEnabled, softDelete,
 *   recover, purge and setAccessPolicy. The registry's own identity needs only the first three.
 * - Every call emits exactly one audit event (who, op, key, version when known, outcome, error
 *   code on failure) through the callback given at construction, after the outcome is known. An
 *   audit callback that throws makes the call reject: an unaudited key operation is not allowed
 *   to look like a success.
 * - Key names match KEY_NAME (Key Vault's rule); versions are opaque strings chosen by the vault.
 *   A key without a version argument means its newest version.
 * - A disabled key refuses wrapKey and unwrapKey (KEY_DISABLED); getKey still works.
 * - A soft-deleted key refuses wrapKey, unwrapKey, rotate and setEnabled (KEY_DELETED) until
 *   `recover`; getKey reports it as deleted with the instant it stops being recoverable. After
 *   that instant the vault forgets it (KEY_NOT_FOUND). `purge` removes a soft-deleted key at
 *   once, but is refused with PURGE_PROTECTED while purge protection is on; it cannot be turned
 *   off once on (Azure's rule), so it is an option at construction.
 * - unwrapKey of bytes that were not produced by wrapKey under that exact key version fails with
 *   UNWRAP_FAILED (OAEP's integrity check), never with garbage.
 * - A resolved mutation is durable (persistent vaults) and visible to every later call.
 *   Concurrent mutations are serialized; a mutation that fails to persist changes nothing.
 */

export const KEY_PERMISSIONS = ['get', 'wrapKey', 'unwrapKey', 'manage'] as const;
export type KeyPermission = (typeof KEY_PERMISSIONS)[number];

export const KEY_SIZES = [2048, 3072, 4096] as const;
export type KeySize = (typeof KEY_SIZES)[number];

/** Azure Key Vault's object-name rule; also keeps names safe in file names and audit lines. */
export const KEY_NAME = /^[0-9A-Za-z-]{1,127}$/;

export interface KeyId {
  readonly name: string;
  readonly version: string;
}

export interface KeyVersionInfo {
  readonly version: string;
  /** ISO 8601. */
  readonly createdAt: string;
  readonly size: KeySize;
}

export interface KeyInfo extends KeyVersionInfo {
  readonly name: string;
  readonly enabled: boolean;
  /** Set (ISO 8601) while the key is soft-deleted; absent otherwise. */
  readonly deletedAt?: string;
  /** While soft-deleted: the instant after which the key is gone for good. */
  readonly recoverableUntil?: string;
}

export interface WrappedKey {
  readonly keyId: KeyId;
  readonly wrapped: Buffer;
}

export type KeyVaultOp =
  | 'getKey'
  | 'listVersions'
  | 'createKey'
  | 'rotateKey'
  | 'wrapKey'
  | 'unwrapKey'
  | 'setEnabled'
  | 'softDelete'
  | 'recover'
  | 'purge'
  | 'setAccessPolicy';

export interface KeyVaultAuditEvent {
  readonly op: KeyVaultOp;
  readonly identity: string;
  readonly key: string;
  readonly version?: string;
  readonly outcome: 'success' | 'failure';
  /** The error code on failure. */
  readonly error?: KeyVaultErrorCode;
}

export type KeyVaultAudit = (e: KeyVaultAuditEvent) => void;

export const KEY_VAULT_ERROR_CODES = [
  'KEY_NOT_FOUND',
  'KEY_EXISTS',
  'KEY_DISABLED',
  'KEY_DELETED',
  'KEY_NOT_DELETED',
  'FORBIDDEN',
  'PURGE_PROTECTED',
  'INVALID',
  'UNWRAP_FAILED',
  /** Local vault: the master key is missing, malformed, too widely readable, or wrong. */
  'MASTER_KEY',
  /** Local vault: the stored state cannot be read or fails its integrity check. */
  'STORE_CORRUPT',
  'UNAVAILABLE',
] as const;
export type KeyVaultErrorCode = (typeof KEY_VAULT_ERROR_CODES)[number];

/** Callers switch on `code`, never on the message (STYLE rule 2). */
export class KeyVaultError extends Error {
  override readonly name = 'KeyVaultError';
  constructor(
    readonly code: KeyVaultErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isKeyVaultError(e: unknown, code?: KeyVaultErrorCode): e is KeyVaultError {
  return e instanceof KeyVaultError && (code === undefined || e.code === code);
}

export interface KeyVault {
  /** Info for `version` (default: newest). FORBIDDEN without `get`; KEY_NOT_FOUND. */
  getKey(identity: string, name: string, version?: string): Promise<KeyInfo>;
  /** Every version, oldest first. FORBIDDEN without `get`; KEY_NOT_FOUND. */
  listVersions(identity: string, name: string): Promise<KeyVersionInfo[]>;
  /** Creates a key with its first version. KEY_EXISTS (also when soft-deleted: recover or purge it); INVALID name or size. */
  createKey(identity: string, name: string, options: { size: KeySize }): Promise<KeyInfo>;
  /** Adds a new version (same size) that becomes the newest; older versions keep unwrapping. */
  rotateKey(identity: string, name: string): Promise<KeyInfo>;
  /**
   * Wraps `dataKey` (1..190 bytes, the OAEP-SHA-256 limit for 2048-bit keys) under `version`
   * (default: newest). The returned keyId names the version actually used.
   */
  wrapKey(identity: string, name: string, version: string | undefined, dataKey: Buffer): Promise<WrappedKey>;
  /** UNWRAP_FAILED when `wrapped` was not produced under exactly `keyId`. */
  unwrapKey(identity: string, keyId: KeyId, wrapped: Buffer): Promise<Buffer>;
  setEnabled(identity: string, name: string, enabled: boolean): Promise<KeyInfo>;
  /** KEY_DELETED when already soft-deleted. */
  softDelete(identity: string, name: string): Promise<KeyInfo>;
  /** KEY_NOT_DELETED when the key is not soft-deleted. */
  recover(identity: string, name: string): Promise<KeyInfo>;
  /** PURGE_PROTECTED while purge protection is on; KEY_NOT_DELETED unless soft-deleted first. */
  purge(identity: string, name: string): Promise<void>;
  /** Replaces `target`'s permissions (an empty list revokes all). Audited under key `*`. */
  setAccessPolicy(identity: string, target: string, permissions: readonly KeyPermission[]): Promise<void>;
  /** Waits for pending writes; later calls are undefined behaviour. */
  close(): Promise<void>;
}
