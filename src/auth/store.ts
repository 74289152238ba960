/**
 * AuthStore: where identities and policy live. Every auth entity (bootstrap admin, tokens,
 * service identities, scope maps, role assignments, federated credentials, refresh-token
 * records, signing keys, access requests) is a small JSON record of a kind, addressed by id.
 * The rules live in the services (auth/*.ts); the store only keeps records safely.
 *
 * Contract (every implementation passes test/testkit/auth-store-suite.ts):
 * - `put` with `expect` is a compare-and-set: `'absent'` creates only if no record exists, a
 *   number replaces only that version; otherwise it throws CONFLICT. Without `expect` it writes
 *   unconditionally. Versions start at 1 and grow by one per write.
 * - A resolved write is durable and visible to every later call, from any caller.
 * - `list` returns records of one kind ordered by id.
 * - Values round-trip as JSON: what is read is a copy, never the stored object.
 */

export const AUTH_KINDS = [
  'admin',
  'token',
  'service',
  'scope-map',
  'role-assignment',
  'federated-credential',
  'refresh-token',
  'signing-key',
  'access-request',
] as const;
export type AuthKind = (typeof AUTH_KINDS)[number];

export interface Stored<T> {
  readonly id: string;
  readonly version: number;
  readonly value: T;
}

export class AuthStoreConflict extends Error {
  readonly code = 'CONFLICT';
  constructor(kind: AuthKind, id: string) {
    super(`${kind} ${id} was changed concurrently`);
  }
}

export interface AuthStore {
  get<T>(kind: AuthKind, id: string): Promise<Stored<T> | undefined>;
  list<T>(kind: AuthKind): Promise<Stored<T>[]>;
  /** Returns the new version. */
  put<T>(kind: AuthKind, id: string, value: T, expect?: number | 'absent'): Promise<number>;
  /** Returns false when there was nothing to delete (or `expect` did not match, which throws CONFLICT). */
  delete(kind: AuthKind, id: string, expect?: number): Promise<boolean>;
  close(): Promise<void>;
}
