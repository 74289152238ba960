/**
 * An admin API endpoint as data (STYLE rule 6): method, path, the admin right it needs, its
 * schemas and its handler. The plugin mounts these and the OpenAPI document is generated from
 * them, so what is served and what is documented cannot drift apart.
 */
import type { AccessClaims, AdminAction, Approver, AuthService } from '../../auth/index.js';
import type { JsonSchema } from './schemas.js';
import type { KeyRing, Rotator } from '../../encryption/index.js';
import type { HealthReport } from '../../registry/index.js';

/** What the encryption endpoints work with; absent when encryption is off. */
export interface EncryptionAdmin {
  readonly ring: KeyRing;
  readonly rotator: Rotator;
}

/** `identity`: any signed-in identity (e.g. asking for just-in-time access); else `registry:admin:<action>`. */
export type Need = 'identity' | AdminAction;

export interface Call<B, P, Q> {
  readonly body: B;
  readonly params: P;
  readonly query: Q;
  readonly claims: AccessClaims;
  /** the caller, for the audit record and `createdBy` */
  readonly actor: Approver;
  readonly auth: AuthService;
  readonly encryption: EncryptionAdmin | undefined;
  /** runs the health checks (registry/health.ts) */
  readonly health: () => Promise<HealthReport>;
}

/** What the composition root hands the admin API besides the auth service. */
export interface AdminServices {
  readonly encryption?: EncryptionAdmin | undefined;
  readonly health: () => Promise<HealthReport>;
}

export interface Endpoint<B = unknown, P = unknown, Q = unknown> {
  /** OpenAPI operationId */
  readonly id: string;
  readonly method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** under /api/v1, fastify syntax (`/tokens/:name`) */
  readonly path: string;
  readonly need: Need;
  readonly tag: string;
  readonly summary: string;
  readonly params?: JsonSchema;
  readonly query?: JsonSchema;
  readonly body?: JsonSchema;
  /** the body may be left out entirely */
  readonly bodyOptional?: boolean;
  readonly status: 200 | 201 | 204;
  /** absent for 204 */
  readonly response?: JsonSchema;
  handle(call: Call<B, P, Q>): Promise<unknown>;
}

/** Type the handler's body, params and query by what the schemas guarantee. */
export function endpoint<B = undefined, P = Record<string, never>, Q = Record<string, never>>(e: Endpoint<B, P, Q>): Endpoint {
  return e;
}
