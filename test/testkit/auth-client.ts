/**
 * The client side of token authentication for in-process tests: Basic credentials, the token
 * endpoint, bearer headers, the `WWW-Authenticate` challenge, and a recorder of bus events.
 * Apps come from `startApp({'auth.enabled': true})` (test/testkit/inject.ts).
 */
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import type { ClientInfo, RegistryEvent, RegistryEventType } from '../../src/audit/index.js';
import type { Access, Actor, AuthService } from '../../src/auth/index.js';
import type { Res, TestApp } from './inject.js';

export const SERVICE = 'bulwark';

/** The client setup and admin changes are attributed to in tests. */
export const TEST_CLIENT: ClientInfo = { address: '127.0.0.1', userAgent: 'bulwark-tests/1.0', requestId: 'test-setup' };
export const ADMIN_ACTOR: Actor = { principal: 'admin:bulwark-admin', client: TEST_CLIENT };

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export function basic(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

/** The AuthService of an app started with auth on. */
export function authOf(t: TestApp): AuthService {
  const auth = t.app.auth;
  assert.ok(auth !== undefined, 'the app was started without auth.enabled');
  return auth;
}

export function bootstrapOf(t: TestApp): Credentials {
  const b = t.app.bootstrap;
  assert.ok(b !== undefined, 'the app created no bootstrap admin');
  return b;
}

/** `GET /oauth2/token?service=bulwark&scope=...` as docker sends it; the raw response. */
export function requestToken(t: TestApp, scopes: readonly string[], opts: { creds?: Credentials; remoteAddress?: string; extra?: Record<string, string> } = {}): Promise<Res> {
  const q = new URLSearchParams({ service: SERVICE, ...opts.extra });
  for (const s of scopes) q.append('scope', s);
  return t.req('GET', `/oauth2/token?${q.toString()}`, {
    headers: opts.creds !== undefined ? { authorization: basic(opts.creds) } : {},
    ...(opts.remoteAddress !== undefined ? { remoteAddress: opts.remoteAddress } : {}),
  });
}

/** A token from the endpoint (asserts 200); `creds` undefined is an anonymous request. */
export async function fetchToken(t: TestApp, creds: Credentials | undefined, scopes: readonly string[]): Promise<string> {
  const res = await requestToken(t, scopes, creds === undefined ? {} : { creds });
  assert.equal(res.statusCode, 200, `token request for ${scopes.join(' ')}: ${res.body}`);
  const body = res.json<{ token?: unknown; access_token?: unknown }>();
  assert.equal(typeof body.token, 'string');
  assert.equal(body.access_token, body.token);
  return body.token as string;
}

/** `POST /oauth2/token` with a form body. */
export function postToken(t: TestApp, form: Record<string, string | readonly string[]>, remoteAddress?: string): Promise<Res> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const x of typeof v === 'string' ? [v] : v) q.append(k, x);
  return t.req('POST', '/oauth2/token', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: q.toString(),
    ...(remoteAddress !== undefined ? { remoteAddress } : {}),
  });
}

/** The `access` claim of a token (decoded, not verified: the server verified it). */
export function accessOf(token: string): Access[] {
  const claims = decodeJwt(token);
  assert.ok(Array.isArray(claims.access), 'token without an access claim');
  return claims.access as Access[];
}

/** The same app, every request carrying `Authorization: Bearer <token>` (for the inject.ts push helpers). */
export function withToken(t: TestApp, token: string): TestApp {
  return { ...t, req: (method, url, opts = {}) => t.req(method, url, { ...opts, headers: { ...bearer(token), ...opts.headers } }) };
}

/** The parameters of a `WWW-Authenticate: Bearer k="v",...` challenge; undefined without one. */
export function challengeOf(res: Res): Record<string, string> | undefined {
  const h = res.headers['www-authenticate'];
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer (.*)$/.exec(h);
  if (m === null) return undefined;
  const out: Record<string, string> = {};
  for (const p of (m[1] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)) out[p[1] ?? ''] = p[2] ?? '';
  return out;
}

/** Records every event on the app's bus. */
export class EventRecorder {
  readonly events: RegistryEvent[] = [];
  private readonly stop: () => void;

  constructor(t: TestApp) {
    this.stop = t.app.bus.subscribe((e) => this.events.push(e));
  }

  of(type: RegistryEventType): RegistryEvent[] {
    return this.events.filter((e) => e.type === type);
  }

  clear(): void {
    this.events.length = 0;
  }

  close(): void {
    this.stop();
  }
}
