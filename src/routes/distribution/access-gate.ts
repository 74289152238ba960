/**
 * The access check in front of every `/v2` handler (ARCHITECTURE "authorize"): each resource and
 * method declares the access it needs, as data; the gate authenticates the bearer token, checks
 * its `access` claim, and answers like Distribution's token auth:
 * - no token, or an anonymous one lacking the access: 401 with the Bearer challenge and the scope;
 * - a token lacking access the identity does have: 401 `insufficient_scope` (the client fetches
 *   a new token for the scope and retries);
 * - an identity that does not have the access (from this request's address, now), even with a
 *   token that carries it: 403 DENIED, audited.
 * An unknown repository is answered exactly like a forbidden one: nothing reveals existence.
 */
import type { FastifyRequest } from 'fastify';
import { allows, ANONYMOUS, formatScope, type Access, type AccessClaims, type AuthService } from '../../auth/index.js';
import { registryError } from '../../oci/index.js';
import { opContext } from './http-util.js';
import type { DistributionResources, Method } from './router.js';

/** What a request needs: nothing beyond a valid identity (`/v2/`), or one action among several. */
export type Need = { kind: 'identity' } | { kind: 'access'; type: Access['type']; name: string; anyOf: readonly string[] };

/** The access each resource and method requires (the scope announced is the first action). */
export function needOf(resource: keyof DistributionResources, method: Method, params: Record<string, string>): Need {
  const name = params.name ?? '';
  const repo = (...anyOf: string[]): Need => ({ kind: 'access', type: 'repository', name, anyOf });
  switch (resource) {
    case 'base':
      return { kind: 'identity' };
    case 'catalog':
      return { kind: 'access', type: 'registry', name: 'catalog', anyOf: ['*'] };
    case 'uploadStart':
    case 'uploadSession':
      return repo('push');
    case 'blob':
    case 'manifest':
      return method === 'DELETE' ? repo('delete') : method === 'PUT' ? repo('push') : repo('pull');
    case 'tags':
      return repo('pull', 'metadata_read');
    case 'referrers':
      return repo('pull');
  }
}

const granted = new WeakMap<FastifyRequest, AccessClaims>();

/** The verified token of a request that passed the gate (undefined when auth is off). */
export function claimsOf(req: FastifyRequest): AccessClaims | undefined {
  return granted.get(req);
}

export class AccessGate {
  private readonly realm: string;

  constructor(
    private readonly auth: AuthService,
    externalUrl: string,
  ) {
    this.realm = `${externalUrl}/oauth2/token`;
  }

  async check(req: FastifyRequest, need: Need): Promise<void> {
    const client = opContext(req).client;
    let claims: AccessClaims | undefined;
    try {
      claims = await this.auth.authenticate(req.headers.authorization, client);
    } catch (e) {
      throw this.challenge(need, 'invalid_token', (e as Error).message);
    }
    if (claims === undefined) throw this.challenge(need);
    if (need.kind === 'identity') {
      granted.set(req, claims);
      return;
    }
    // What the identity has for this request, from its address and now: assignment conditions
    // (sourceCidrs, validity) and revocations hold per request, not only when the token was issued.
    const scope = parseNeed(need);
    const has = (await this.auth.policy.decide({ principal: claims.sub, clientAddress: client.address, amr: claims.amr, now: Date.now() }, [scope])).length > 0;
    const inToken = need.anyOf.some((a) => allows(claims.access, need.type, need.name, a));
    if (inToken && has) {
      granted.set(req, claims);
      return;
    }
    // The token lacks it but the identity has it: the client fetches a new token.
    if (has) throw this.challenge(need, 'insufficient_scope');
    if (claims.sub === ANONYMOUS) throw this.challenge(need);
    this.auth.audit('auth.denied', client, { principal: claims.sub, outcome: 'failure', target: formatScope(scope), reason: 'not granted' });
    throw registryError('DENIED', 'requested access to the resource is denied', { detail: [{ Type: need.type, Name: need.name, Action: need.anyOf[0] }] });
  }

  private challenge(need: Need, error?: string, description?: string): Error {
    let header = `Bearer realm="${this.realm}",service="${this.auth.settings.service}"`;
    if (need.kind === 'access') header += `,scope="${need.type}:${need.name}:${need.anyOf[0] ?? ''}"`;
    if (error !== undefined) header += `,error="${error}"`;
    const detail = need.kind === 'access' ? [{ Type: need.type, Name: need.name, Action: need.anyOf[0] }] : undefined;
    return registryError('UNAUTHORIZED', description ?? 'authentication required', { headers: { 'WWW-Authenticate': header }, ...(detail !== undefined ? { detail } : {}) });
  }
}

function parseNeed(need: Extract<Need, { kind: 'access' }>): Access {
  if (need.type === 'registry') return { type: 'registry', name: 'catalog', actions: ['*'] };
  return { type: 'repository', name: need.name, actions: need.anyOf as Extract<Access, { type: 'repository' }>['actions'] };
}
