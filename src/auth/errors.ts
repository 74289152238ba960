/** Auth failures are registry errors (the OCI envelope); this only adds the auth-specific detail. */
import { registryError, type ErrorCode, type RegistryError } from '../oci/index.js';

export function authError(code: ErrorCode, message: string, detail?: Record<string, unknown>, cause?: unknown): RegistryError {
  return registryError(code, message, { ...(detail !== undefined ? { detail } : {}), ...(cause !== undefined ? { cause } : {}) });
}
