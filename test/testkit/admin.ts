/**
 * Driving the admin API in-process like a client would: sign in at /oauth2/token, call /api/v1
 * with the bearer token, read what a token grants.
 */
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import type { HTTPMethods } from 'fastify';
import type { Res, TestApp } from './inject.js';

export interface Creds {
  readonly username: string;
  readonly password: string;
}

/** The bootstrap admin of an in-memory app (created at its first start). */
export function bootstrapOf(t: TestApp): Creds {
  assert.ok(t.app.bootstrap !== undefined, 'the app created no bootstrap admin');
  return t.app.bootstrap;
}

/** POST /oauth2/token with the password grant; the raw response. */
export function signIn(t: TestApp, c: Creds, scope: string, extra: Record<string, string> = {}): Promise<Res> {
  const form = new URLSearchParams({ grant_type: 'password', username: c.username, password: c.password, ...(scope !== '' ? { scope } : {}), ...extra });
  return t.req('POST', '/oauth2/token', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form.toString() });
}

/** An access token for `scope` (space-separated scopes); asserts the sign-in worked. */
export async function tokenFor(t: TestApp, c: Creds, scope = 'registry:admin:read,write,access'): Promise<string> {
  const res = await signIn(t, c, scope);
  assert.equal(res.statusCode, 200, `sign-in of ${c.username}: ${res.body}`);
  return res.json<{ access_token: string }>().access_token;
}

/** What a token grants, as `type:name:actions` strings. */
export function grantedBy(token: string): string[] {
  const access = decodeJwt(token).access as { type: string; name: string; actions: string[] }[];
  return access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`);
}

/** Call /api/v1<path> with a bearer token (or none) and an optional JSON body. */
export function api(t: TestApp, token: string | undefined, method: HTTPMethods, path: string, body?: unknown): Promise<Res> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return t.req(method, `/api/v1${path}`, { headers, ...(body !== undefined ? { payload: JSON.stringify(body) } : {}) });
}

/** Assert the status and return the JSON body. */
export function ok<T = Record<string, unknown>>(res: Res, status = 200): T {
  assert.equal(res.statusCode, status, `expected ${status}, got ${res.statusCode}: ${res.body}`);
  return res.json<T>();
}

/** Create a token with a scope map (and, when given, a role); returns its credentials. */
export async function makeToken(t: TestApp, admin: string, name: string, opts: { scopeMap?: string; role?: string; scope?: string } = {}): Promise<Creds> {
  const created = ok<{ password: { value: string } }>(await api(t, admin, 'POST', '/tokens', { name, scopeMap: opts.scopeMap ?? '_repositories_pull' }), 201);
  if (opts.role !== undefined) ok(await api(t, admin, 'POST', '/role-assignments', { principal: `token:${name}`, role: opts.role, scope: opts.scope ?? '*' }), 201);
  return { username: name, password: created.password.value };
}

/** The problems listed by a 400 BAD_REQUEST. */
export function problemsOf(res: Res): string[] {
  assert.equal(res.statusCode, 400, `expected 400, got ${res.statusCode}: ${res.body}`);
  const e = res.json<{ errors: { code: string; detail?: { problems?: string[] } }[] }>().errors[0];
  assert.equal(e?.code, 'BAD_REQUEST');
  assert.ok(Array.isArray(e.detail?.problems), `no detail.problems in ${res.body}`);
  return e.detail.problems;
}
