/**
 * The registry's own security controls: the bootstrap admin (a shared secret, so it is meant to
 * be turned off once an Owner exists, and is a compliance finding while on), compliance
 * findings, signing-key rotation and refresh-token revocation (answers to a leaked key or
 * token).
 */
import type { AuthService } from '../../auth/index.js';
import { endpoint, type Endpoint } from './endpoint.js';
import { AdminStatus, Finding, listOf, object, PRINCIPAL, UUID } from './schemas.js';

async function adminStatus(auth: AuthService): Promise<unknown> {
  const admins = (await auth.directory.admins()).map((a) => ({
    username: a.username,
    enabled: a.enabled,
    createdAt: new Date(a.createdAt).toISOString(),
    ...(a.disabledAt !== undefined ? { disabledAt: new Date(a.disabledAt).toISOString() } : {}),
  }));
  return { admins };
}

interface FindingView {
  readonly id: string;
  readonly severity: 'low' | 'medium' | 'high' | 'critical';
  readonly title: string;
  readonly remediation: string;
}

/** Compliance findings about the access configuration (more checks join this list later). */
export async function findings(auth: AuthService): Promise<FindingView[]> {
  const out: FindingView[] = [];
  if ((await auth.directory.admins()).some((a) => a.enabled)) {
    out.push({
      id: 'BOOTSTRAP_ADMIN_ENABLED',
      severity: 'high',
      title: 'The bootstrap admin (a shared password with every right) is enabled.',
      remediation: 'Assign the Owner role to a named identity, then run `bulwark admin disable`.',
    });
  }
  return out;
}

export const securityEndpoints: readonly Endpoint[] = [
  endpoint({
    id: 'getBootstrapAdmin',
    method: 'GET',
    path: '/admin',
    need: 'read',
    tag: 'security',
    summary: 'Whether the bootstrap admin is enabled.',
    status: 200,
    response: AdminStatus,
    handle: async ({ auth }) => adminStatus(auth),
  }),
  endpoint({
    id: 'disableBootstrapAdmin',
    method: 'POST',
    path: '/admin/disable',
    need: 'access',
    tag: 'security',
    summary: 'Disable the bootstrap admin for good; its tokens stop working at once.',
    status: 200,
    response: AdminStatus,
    handle: async ({ auth, actor }) => {
      await auth.directory.disableAdmin(actor, `through the admin API by ${actor.principal}`);
      return adminStatus(auth);
    },
  }),
  endpoint({
    id: 'listFindings',
    method: 'GET',
    path: '/findings',
    need: 'read',
    tag: 'security',
    summary: 'Compliance findings about the access configuration.',
    status: 200,
    response: listOf(Finding),
    handle: async ({ auth }) => ({ items: await findings(auth) }),
  }),
  endpoint({
    id: 'rotateSigningKey',
    method: 'POST',
    path: '/signing-keys/rotate',
    need: 'access',
    tag: 'security',
    summary: 'Sign new tokens with a new key now; tokens signed before keep verifying until they expire.',
    status: 200,
    response: object({ kid: { type: 'string' } }, ['kid']),
    handle: async ({ auth, actor }) => ({ kid: await auth.rotateSigningKey(actor) }),
  }),
  endpoint<{ principal?: string; jti?: string }>({
    id: 'revokeRefreshTokens',
    method: 'POST',
    path: '/refresh-tokens/revoke',
    need: 'access',
    tag: 'security',
    summary: 'Revoke the refresh tokens of a principal, or one by its jti.',
    body: object({ principal: PRINCIPAL, jti: UUID }, [], { minProperties: 1, maxProperties: 1 }),
    status: 200,
    response: object({ revoked: { type: 'integer' } }, ['revoked']),
    handle: async ({ auth, actor, body }) => ({
      revoked: await auth.revokeRefreshTokens(body.principal !== undefined ? { sub: body.principal } : { jti: body.jti ?? '' }, actor),
    }),
  }),
];
