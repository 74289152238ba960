/**
 * The client side of the Docker token flow (Docker "Token Authentication Specification" and its
 * OAuth2 variant), for the benchmark: read the Bearer challenge of a 401, fetch access tokens from
 * the realm with Basic credentials or a refresh token, and keep one token per scope until it
 * nears expiry, as docker and containerd do.
 *
 * Credentials and tokens are only ever sent in headers and form bodies, never in a URL, and never
 * end up in an error message (ProtocolError redacts Authorization).
 */
import type { HttpResult, RegistryClient } from './client.js';

export interface Challenge {
  /** the token endpoint, e.g. http://127.0.0.1:5000/oauth2/token */
  realm: string;
  service: string;
  scope?: string;
}

/** Parse `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` of a 401. */
export function parseChallenge(res: HttpResult): Challenge {
  const header = res.headers['www-authenticate'] ?? '';
  const param = (name: string): string | undefined => new RegExp(`[\\s,]${name}="([^"]*)"`).exec(` ${header.replace(/^Bearer\s+/i, '')}`)?.[1];
  const realm = param('realm');
  const service = param('service');
  if (!/^Bearer\s/i.test(header) || realm === undefined || service === undefined) throw new Error(`expected a Bearer challenge, got WWW-Authenticate: ${header}`);
  const scope = param('scope');
  return { realm, service, ...(scope === undefined ? {} : { scope }) };
}

export interface TokenAnswer {
  token: string;
  expiresIn: number;
  refreshToken?: string;
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

function tokenUrl(c: Challenge, scope: string): string {
  const u = new URL(c.realm);
  u.searchParams.set('service', c.service);
  u.searchParams.set('scope', scope);
  return u.href;
}

/** Read the token endpoint's JSON answer; throws on a missing token. */
export function tokenAnswer(res: HttpResult): TokenAnswer {
  const body = JSON.parse(res.body.toString('utf8')) as { token?: unknown; access_token?: unknown; expires_in?: unknown; refresh_token?: unknown };
  const token = body.access_token ?? body.token;
  if (typeof token !== 'string' || token === '') throw new Error(`token endpoint: ${res.status} without a token`);
  // The spec's default lifetime when expires_in is absent: 60 seconds.
  const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
  return { token, expiresIn, ...(typeof body.refresh_token === 'string' ? { refreshToken: body.refresh_token } : {}) };
}

/** Requests to the token endpoint of one registry. */
export class TokenEndpoint {
  constructor(
    private readonly client: RegistryClient,
    readonly challenge: Challenge,
  ) {}

  /** GET <realm>?service=&scope= with Basic credentials (what `docker pull` does after `docker login`). */
  withPassword(username: string, password: string, scope: string): Promise<HttpResult> {
    return this.client.request('GET', tokenUrl(this.challenge, scope), { headers: { authorization: basic(username, password) } });
  }

  /** POST <realm>, grant_type=refresh_token (what docker does with a stored identity token). */
  withRefreshToken(refreshToken: string, scope: string): Promise<HttpResult> {
    const form = new URLSearchParams({ grant_type: 'refresh_token', service: this.challenge.service, scope, refresh_token: refreshToken });
    return this.client.request('POST', this.challenge.realm, { headers: FORM, body: Buffer.from(form.toString()) });
  }

  /** POST <realm>, grant_type=password with access_type=offline: an access token and a refresh token. */
  async refreshToken(username: string, password: string, scope: string): Promise<string> {
    const form = new URLSearchParams({ grant_type: 'password', service: this.challenge.service, scope, username, password, access_type: 'offline' });
    const answer = tokenAnswer(await this.client.request('POST', this.challenge.realm, { headers: FORM, body: Buffer.from(form.toString()) }));
    if (answer.refreshToken === undefined) throw new Error('token endpoint: access_type=offline answered without a refresh_token');
    return answer.refreshToken;
  }
}

/**
 * One access token, fetched on first use and reused until `marginSeconds` before it expires
 * (then fetched again, once, however many requests are waiting). Use `header` as a
 * RegistryClient's `authorization` option.
 */
export class BearerToken {
  /** how many tokens were fetched (1 for a run shorter than a token's lifetime) */
  fetches = 0;
  private current: { header: string; renewAt: number } | undefined;
  private pending: Promise<string> | undefined;

  constructor(
    private readonly fetchToken: () => Promise<TokenAnswer>,
    private readonly marginSeconds = 30,
  ) {}

  readonly header = async (): Promise<string> => {
    const c = this.current;
    if (c !== undefined && performance.now() < c.renewAt) return c.header;
    this.pending ??= this.renew().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  };

  private async renew(): Promise<string> {
    const t0 = performance.now();
    const answer = await this.fetchToken();
    this.fetches++;
    // Renew ahead of expiry; a lifetime shorter than twice the margin is used for half of it.
    const useFor = answer.expiresIn > 2 * this.marginSeconds ? answer.expiresIn - this.marginSeconds : answer.expiresIn / 2;
    this.current = { header: `Bearer ${answer.token}`, renewAt: t0 + useFor * 1000 };
    return this.current.header;
  }
}
