/**
 * Authentication and authorization of the admin API. A caller presents an access token from
 * `/oauth2/token` (`Authorization: Bearer`), obtained like any other client, with the scope
 * `registry:admin:<read|write|access>`. The token is verified and checked against the directory
 * on every request (a disabled identity stops at once), then its `access` claim must hold the
 * right the endpoint declares, and the policy must still grant it for this request:
 * - no token (or an anonymous one): 401 with the Bearer challenge naming the scope;
 * - a token without the right: 403 DENIED, with `error="insufficient_scope"` in the challenge
 *   when the identity would get the right on a new token (RFC 6750 §3.1), audited otherwise.
 */
import type { FastifyRequest } from 'fastify';
import { allows, ANONYMOUS, type AccessClaims, type AuthService } from '../../auth/index.js';
import { clientInfo } from '../../http/index.js';
import { registryError, type RegistryError } from '../../oci/index.js';
import type { Need } from './endpoint.js';

export class AdminGate {
  private readonly realm: string;

  constructor(
    private readonly auth: AuthService,
    externalUrl: string,
  ) {
    this.realm = `${externalUrl}/oauth2/token`;
  }

  async check(req: FastifyRequest, need: Need): Promise<AccessClaims> {
    const client = clientInfo(req);
    let claims: AccessClaims | undefined;
    try {
      claims = await this.auth.authenticate(req.headers.authorization, client);
    } catch (e) {
      throw this.challenge(need, 'invalid_token', (e as Error).message);
    }
    if (claims === undefined || claims.sub === ANONYMOUS) throw this.challenge(need);
    if (need === 'identity') return claims;
    const scope = `registry:admin:${need}`;
    // Decided again for this request, as on /v2 (ADR 0005): a revoked or expired assignment, or a
    // request from outside its sourceCidrs, loses the right now, not when the token expires.
    const would = await this.auth.policy.decide({ principal: claims.sub, clientAddress: client.address, amr: claims.amr, now: Date.now() }, [{ type: 'registry', name: 'admin', actions: [need] }]);
    if (would.length > 0 && allows(claims.access, 'registry', 'admin', need)) return claims;
    if (would.length > 0) {
      throw registryError('DENIED', `the token lacks ${scope}; request a token with that scope`, {
        headers: { 'WWW-Authenticate': `${this.challengeHeader(need)},error="insufficient_scope"` },
        detail: [{ Type: 'registry', Name: 'admin', Action: need }],
      });
    }
    this.auth.audit('auth.denied', client, { principal: claims.sub, outcome: 'failure', target: scope, reason: 'not granted' });
    throw registryError('DENIED', `${scope} is not granted to ${claims.sub}`, { detail: [{ Type: 'registry', Name: 'admin', Action: need }] });
  }

  private challengeHeader(need: Need): string {
    const scope = need === 'identity' ? '' : `,scope="registry:admin:${need}"`;
    return `Bearer realm="${this.realm}",service="${this.auth.settings.service}"${scope}`;
  }

  private challenge(need: Need, error?: string, description?: string): RegistryError {
    const header = this.challengeHeader(need) + (error !== undefined ? `,error="${error}"` : '');
    return registryError('UNAUTHORIZED', description ?? 'authentication required', { headers: { 'WWW-Authenticate': header } });
  }
}
