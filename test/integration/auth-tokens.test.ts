/**
 * Tokens (issue 3, "Proof"): forged, tampered, expired, not-yet-valid, wrong-audience,
 * wrong-issuer and wrong-algorithm access tokens are refused with 401 and an `auth.failure`
 * event; lifetimes; the refresh flows (password grant with access_type=offline, the
 * refresh_token grant, the 00000000-... username); revocation by disabling; signing-key
 * rotation; and the access claim as exactly the intersection of asked and allowed.
 *
 * The forged tokens are made with jose. Those signed with the registry's own key (`keys.active()`)
 * are checked first to be accepted when nothing is wrong with them, so that each refusal is due
 * to the one thing the case changes.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { base64url, decodeJwt, decodeProtectedHeader, exportSPKI, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { REFRESH_TOKEN_USERNAME } from '../../src/auth/index.js';
import { MAX_LIVE_REFRESH_TOKENS } from '../../src/auth/auth-service.js';
import {
  accessOf,
  ADMIN_ACTOR,
  authOf,
  bearer,
  bootstrapOf,
  challengeOf,
  EventRecorder,
  fetchToken,
  postToken,
  requestToken,
  TEST_CLIENT,
  withToken,
  type Credentials,
} from '../testkit/auth-client.js';
import { errorCode, pushImage, startApp, type TestApp } from '../testkit/inject.js';

const EXTERNAL_URL = 'https://registry.test';
const REPO = 'tok/app';
const PULL = `repository:${REPO}:pull`;
const MANIFEST = `/v2/${REPO}/manifests/v1`;

const now = (): number => Math.floor(Date.now() / 1000);

/** Valid access-token claims for the bootstrap admin, pull on REPO. */
function claims(extra: JWTPayload = {}): JWTPayload {
  const iat = now();
  return {
    sub: 'admin:bulwark-admin',
    access: [{ type: 'repository', name: REPO, actions: ['pull'] }],
    token_use: 'access',
    iss: EXTERNAL_URL,
    aud: 'bulwark',
    iat,
    nbf: iat,
    exp: iat + 300,
    jti: randomUUID(),
    ...extra,
  };
}

function unsigned(header: object, payload: object): string {
  return `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}`;
}

describe('access tokens: refusals', () => {
  let t: TestApp;
  let events: EventRecorder;
  let ours: { kid: string; sign(payload: JWTPayload, header?: object): Promise<string> };

  before(async () => {
    t = await startApp({ 'auth.enabled': true, externalUrl: EXTERNAL_URL });
    await pushImage(withToken(t, await fetchToken(t, bootstrapOf(t), [`repository:${REPO}:pull,push`])), REPO, 'v1');
    const { kid, key } = await authOf(t).keys.active();
    ours = { kid, sign: (payload, header = {}) => new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header }).sign(key) };
    events = new EventRecorder(t);
  });
  beforeEach(() => events.clear());
  after(async () => {
    events.close();
    await t.close();
  });

  /** The token pulls the manifest: 200, and no failure recorded. */
  async function accepted(token: string): Promise<void> {
    events.clear();
    const res = await t.req('GET', MANIFEST, { headers: bearer(token) });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(events.of('auth.failure').length, 0);
  }

  /** 401 UNAUTHORIZED with an invalid_token challenge, and exactly one auth.failure event that holds no token. */
  async function refused(token: string, why: string): Promise<void> {
    events.clear();
    const res = await t.req('GET', MANIFEST, { headers: bearer(token), remoteAddress: '192.0.2.7' });
    assert.equal(res.statusCode, 401, `${why}: ${res.body}`);
    assert.equal(errorCode(res), 'UNAUTHORIZED');
    assert.deepEqual(challengeOf(res), { realm: `${EXTERNAL_URL}/oauth2/token`, service: 'bulwark', scope: PULL, error: 'invalid_token' }, why);
    const failures = events.of('auth.failure');
    assert.equal(failures.length, 1, `${why}: one auth.failure event, got ${JSON.stringify(events.events.map((e) => e.type))}`);
    assert.equal(failures[0]?.outcome, 'failure');
    assert.equal(failures[0]?.client.address, '192.0.2.7');
    const signature = token.split('.')[2] ?? '';
    const recorded = JSON.stringify(failures[0]);
    assert.ok(!recorded.includes(token) && (signature.length < 16 || !recorded.includes(signature)), 'the event holds no token');
    assert.equal(events.of('manifest.pull').length, 0, `${why}: nothing was served`);
  }

  it('a token forged with our own key and nothing wrong is accepted (the harness below is sound)', async () => {
    await accepted(await ours.sign(claims()));
  });

  it('a token from the endpoint is accepted', async () => {
    await accepted(await fetchToken(t, bootstrapOf(t), [PULL]));
  });

  it('tampered: a claim changed after signing (pull → pull,push,delete)', async () => {
    const [h, , s] = (await fetchToken(t, bootstrapOf(t), [PULL])).split('.');
    const more = { ...claims(), access: [{ type: 'repository', name: REPO, actions: ['pull', 'push', 'delete'] }] };
    await refused(`${h}.${base64url.encode(JSON.stringify(more))}.${s}`, 'changed payload');
  });

  it('tampered: one byte of the payload or of the signature flipped', async () => {
    const token = await fetchToken(t, bootstrapOf(t), [PULL]);
    const [h = '', p = '', s = ''] = token.split('.');
    const flip = (x: string, i: number): string => x.slice(0, i) + (x[i] === 'A' ? 'B' : 'A') + x.slice(i + 1);
    await refused(`${h}.${flip(p, Math.floor(p.length / 2))}.${s}`, 'payload byte');
    await refused(`${h}.${p}.${flip(s, 10)}`, 'signature byte');
    await refused(`${h}.${p}.`, 'signature removed');
  });

  it('re-signed with another key under our kid', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    await refused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: ours.kid }).sign(privateKey), 'foreign key, our kid');
  });

  it('signed with an unknown kid, or without a kid', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    await refused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: randomUUID() }).sign(privateKey), 'unknown kid');
    await refused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256' }).sign(privateKey), 'no kid');
  });

  it('alg none', async () => {
    await refused(`${unsigned({ alg: 'none', typ: 'JWT', kid: ours.kid }, claims())}.`, 'alg none');
    await refused(`${unsigned({ alg: 'none', typ: 'JWT', kid: ours.kid }, claims())}.${base64url.encode('x')}`, 'alg none with a signature');
  });

  it('HS256 with our public key as the HMAC secret (algorithm confusion)', async () => {
    const pub = authOf(t).keys.verificationKey(ours.kid);
    assert.ok(pub !== undefined);
    const pem = await exportSPKI(pub.key);
    const jwk = JSON.stringify(authOf(t).keys.jwks().keys[0]);
    for (const secret of [pem, jwk]) {
      await refused(await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256', kid: ours.kid }).sign(new TextEncoder().encode(secret)), 'HS256 with public key');
    }
  });

  it('another algorithm under our kid (EdDSA, ES384)', async () => {
    const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    await refused(await new SignJWT(claims()).setProtectedHeader({ alg: 'EdDSA', kid: ours.kid }).sign(ed.privateKey), 'EdDSA');
    const es384 = await generateKeyPair('ES384');
    await refused(await new SignJWT(claims()).setProtectedHeader({ alg: 'ES384', kid: ours.kid }).sign(es384.privateKey), 'ES384');
  });

  it('expired beyond the clock skew (60 s) is refused; within it, accepted', async () => {
    await refused(await ours.sign(claims({ iat: now() - 300, nbf: now() - 300, exp: now() - 120 })), 'expired 120 s ago');
    await accepted(await ours.sign(claims({ iat: now() - 300, nbf: now() - 300, exp: now() - 20 })));
  });

  it('not yet valid (nbf) beyond the clock skew is refused; within it, accepted', async () => {
    await refused(await ours.sign(claims({ nbf: now() + 600, exp: now() + 900 })), 'nbf in 600 s');
    await accepted(await ours.sign(claims({ nbf: now() + 20 })));
  });

  it('wrong audience, wrong issuer', async () => {
    await refused(await ours.sign(claims({ aud: 'other-registry' })), 'aud other-registry');
    await refused(await ours.sign(claims({ aud: ['other-registry'] })), 'aud [other-registry]');
    await refused(await ours.sign(claims({ iss: 'https://evil.test' })), 'iss evil');
  });

  it('a token of another registry (service "other", its own keys)', async () => {
    const other = await startApp({ 'auth.enabled': true, 'auth.service': 'other', externalUrl: EXTERNAL_URL });
    try {
      const q = new URLSearchParams({ service: 'other', scope: PULL });
      const res = await other.req('GET', `/oauth2/token?${q.toString()}`, { headers: { authorization: `Basic ${Buffer.from(`${bootstrapOf(other).username}:${bootstrapOf(other).password}`).toString('base64')}` } });
      assert.equal(res.statusCode, 200);
      await refused(res.json<{ token: string }>().token, 'other registry');
    } finally {
      await other.close();
    }
  });

  it('missing or malformed claims: no jti, no sub, no exp, access not a list, token_use missing', async () => {
    const drop = (k: string): JWTPayload => Object.fromEntries(Object.entries(claims()).filter(([x]) => x !== k));
    for (const k of ['jti', 'sub', 'exp', 'nbf', 'iat', 'token_use', 'access']) await refused(await ours.sign(drop(k)), `without ${k}`);
    await refused(await ours.sign(claims({ access: { type: 'repository', name: REPO, actions: ['pull'] } })), 'access an object');
    await refused(await ours.sign(claims({ token_use: 'id' })), 'token_use id');
  });

  it('a refresh token presented as an access token', async () => {
    const res = await postToken(t, { grant_type: 'password', service: 'bulwark', username: bootstrapOf(t).username, password: bootstrapOf(t).password, access_type: 'offline', scope: PULL });
    assert.equal(res.statusCode, 200);
    const refresh = res.json<{ refresh_token?: string }>().refresh_token;
    assert.ok(refresh !== undefined);
    assert.equal(decodeJwt(refresh).token_use, 'refresh');
    await refused(refresh, 'refresh token as access token');
    await refused(await ours.sign(claims({ token_use: 'refresh' })), 'token_use refresh, with access');
  });

  it('garbage, an over-long token, and a malformed Authorization header', async () => {
    await refused('not-a-jwt', 'garbage');
    await refused('a.b.c', 'three garbage segments');
    await refused(await ours.sign(claims({ pad: 'x'.repeat(20_000) })), 'over 16 KiB');
    for (const authorization of ['Bearer a b', 'Bearer', 'Bearer ', 'Bearer tok€n', 'Digest username="x"', 'Bearer\tabc']) {
      events.clear();
      const res = await t.req('GET', MANIFEST, { headers: { authorization } });
      assert.equal(res.statusCode, 401, `${authorization}: ${res.body}`);
      assert.equal(challengeOf(res)?.scope, PULL, authorization);
      assert.equal(events.of('auth.failure').length, 1, `${authorization}: audited`);
    }
  });

  it('the same refusals hold at GET /v2/ (identity only) and for the catalog', async () => {
    const bad = await ours.sign(claims({ aud: 'other-registry' }));
    for (const url of ['/v2/', '/v2/_catalog']) {
      events.clear();
      const res = await t.req('GET', url, { headers: bearer(bad) });
      assert.equal(res.statusCode, 401, url);
      assert.equal(challengeOf(res)?.error, 'invalid_token');
      assert.equal(events.of('auth.failure').length, 1);
    }
  });
});

describe('access tokens: lifetime, refresh, revocation, rotation, grants', () => {
  let t: TestApp;
  let events: EventRecorder;
  let reader: Credentials;
  let teamA: Credentials;

  before(async () => {
    t = await startApp({ 'auth.enabled': true, externalUrl: EXTERNAL_URL });
    await pushImage(withToken(t, await fetchToken(t, bootstrapOf(t), [`repository:${REPO}:pull,push`])), REPO, 'v1');
    const dir = authOf(t).directory;
    const r = await dir.createToken(ADMIN_ACTOR, { name: 'tok-reader', scopeMap: '_repositories_pull' });
    reader = { username: 'tok-reader', password: r.password.value };
    await dir.createScopeMap(ADMIN_ACTOR, { name: 'team-a-read', actions: ['repositories/team-a/*/content/read'] });
    const a = await dir.createToken(ADMIN_ACTOR, { name: 'tok-team-a', scopeMap: 'team-a-read' });
    teamA = { username: 'tok-team-a', password: a.password.value };
    events = new EventRecorder(t);
  });
  beforeEach(() => events.clear());
  after(async () => {
    events.close();
    await t.close();
  });

  const pulls = async (token: string): Promise<number> => (await t.req('GET', MANIFEST, { headers: bearer(token) })).statusCode;

  it('an access token lives 300 s by default: expires_in, exp - iat, issued_at agree', async () => {
    const res = await requestToken(t, [PULL], { creds: reader });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const body = res.json<{ token: string; expires_in: number; issued_at: string; refresh_token?: string }>();
    const c = decodeJwt(body.token);
    assert.equal(body.expires_in, 300);
    assert.equal((c.exp ?? 0) - (c.iat ?? 0), 300);
    assert.equal(Date.parse(body.issued_at), (c.iat ?? 0) * 1000);
    assert.ok(Math.abs((c.iat ?? 0) - now()) <= 5);
    assert.equal(body.refresh_token, undefined, 'no refresh token unless asked');
    assert.deepEqual([c.iss, c.aud, c.sub, c.token_use], [EXTERNAL_URL, 'bulwark', 'token:tok-reader', 'access']);
    assert.deepEqual(decodeProtectedHeader(body.token).alg, 'ES256');
  });

  it('refresh: password grant with access_type=offline, then the refresh_token grant, then the 00000000-... username', async () => {
    const first = await postToken(t, { grant_type: 'password', service: 'bulwark', username: reader.username, password: reader.password, access_type: 'offline', scope: PULL });
    assert.equal(first.statusCode, 200, first.body);
    const { refresh_token: refresh, token } = first.json<{ refresh_token?: string; token: string }>();
    assert.ok(refresh !== undefined);
    assert.equal(await pulls(token), 200);
    const rc = decodeJwt(refresh);
    assert.deepEqual([rc.sub, rc.token_use, (rc.exp ?? 0) - (rc.iat ?? 0)], ['token:tok-reader', 'refresh', 3 * 3600]);
    assert.equal(rc.access, undefined, 'a refresh token grants nothing by itself');

    const second = await postToken(t, { grant_type: 'refresh_token', service: 'bulwark', refresh_token: refresh, scope: PULL });
    assert.equal(second.statusCode, 200, second.body);
    const s = second.json<{ token: string; refresh_token?: string }>();
    assert.equal(s.refresh_token, undefined, 'the client keeps the refresh token it has');
    assert.deepEqual(accessOf(s.token), [{ type: 'repository', name: REPO, actions: ['pull'] }]);
    assert.equal(await pulls(s.token), 200);

    const third = await fetchToken(t, { username: REFRESH_TOKEN_USERNAME, password: refresh }, [PULL]);
    assert.equal(decodeJwt(third).sub, 'token:tok-reader');
    assert.equal(await pulls(third), 200);
    assert.equal(events.of('auth.failure').length, 0);
  });

  it('GET with offline_token=true returns a refresh token too', async () => {
    const res = await requestToken(t, [PULL], { creds: reader, extra: { offline_token: 'true' } });
    assert.equal(res.statusCode, 200);
    const refresh = res.json<{ refresh_token?: string }>().refresh_token;
    assert.ok(refresh !== undefined);
    assert.equal(decodeJwt(refresh).token_use, 'refresh');
  });

  it('an identity holds at most MAX_LIVE_REFRESH_TOKENS live refresh tokens: the oldest is revoked to make room', async () => {
    const auth = authOf(t);
    const subject = { sub: 'service:many-devices' };
    const first = await auth.newRefreshToken(subject, Date.now() - 1000);
    const rest: string[] = [];
    for (let i = 0; i < MAX_LIVE_REFRESH_TOKENS; i++) rest.push(await auth.newRefreshToken(subject));
    await assert.rejects(auth.signInWithRefresh(first, TEST_CLIENT), /revoked or unknown/);
    // the newest MAX_LIVE_REFRESH_TOKENS are live (the service identity does not exist, so sign-in
    // stops at the identity check, after the revocation check passed)
    await assert.rejects(auth.signInWithRefresh(rest[rest.length - 1] ?? '', TEST_CLIENT), /disabled or removed/);
    await assert.rejects(auth.signInWithRefresh(rest[0] ?? '', TEST_CLIENT), /disabled or removed/);
  });

  it('a refresh token used to sign in never yields a new refresh token (it cannot be extended forever)', async () => {
    const first = await requestToken(t, [PULL], { creds: reader, extra: { offline_token: 'true' } });
    const refresh = first.json<{ refresh_token?: string }>().refresh_token;
    assert.ok(refresh !== undefined);
    const again = await requestToken(t, [PULL], { creds: { username: '00000000-0000-0000-0000-000000000000', password: refresh }, extra: { offline_token: 'true' } });
    assert.equal(again.statusCode, 200);
    assert.equal(again.json<{ refresh_token?: string }>().refresh_token, undefined);
    assert.ok(again.json<{ token?: string }>().token !== undefined, 'it still signs in');
    // nor through the POST password grant with access_type=offline
    const post = await postToken(t, { grant_type: 'password', service: 'bulwark', username: '00000000-0000-0000-0000-000000000000', password: refresh, access_type: 'offline', scope: PULL });
    assert.equal(post.statusCode, 200);
    assert.equal(post.json<{ refresh_token?: string }>().refresh_token, undefined);
  });

  it('an access token is not a refresh token, and a forged or revoked refresh token is refused, each audited', async () => {
    const access = await fetchToken(t, reader, [PULL]);
    const bad = [access, 'garbage', `${access.split('.').slice(0, 2).join('.')}.AAAA`];
    const first = await postToken(t, { grant_type: 'password', service: 'bulwark', username: reader.username, password: reader.password, access_type: 'offline' });
    const refresh = first.json<{ refresh_token: string }>().refresh_token;
    assert.equal(await authOf(t).revokeRefreshTokens({ jti: decodeJwt(refresh).jti ?? '' }), 1);
    bad.push(refresh);
    for (const token of bad) {
      events.clear();
      const res = await postToken(t, { grant_type: 'refresh_token', service: 'bulwark', refresh_token: token, scope: PULL });
      assert.equal(res.statusCode, 401, res.body);
      assert.equal(errorCode(res), 'UNAUTHORIZED');
      assert.equal(events.of('auth.failure').length, 1);
      const basic = await requestToken(t, [PULL], { creds: { username: REFRESH_TOKEN_USERNAME, password: token } });
      assert.equal(basic.statusCode, 401, basic.body);
    }
  });

  it('disabling a token: the next /v2 request with an access token it already used is 401, its refresh token is refused', async () => {
    const dir = authOf(t).directory;
    const made = await dir.createToken(ADMIN_ACTOR, { name: 'tok-revoked', scopeMap: '_repositories_pull' });
    const creds = { username: 'tok-revoked', password: made.password.value };
    const res = await postToken(t, { grant_type: 'password', service: 'bulwark', username: creds.username, password: creds.password, access_type: 'offline', scope: PULL });
    const { token, refresh_token: refresh } = res.json<{ token: string; refresh_token: string }>();
    assert.equal(await pulls(token), 200, 'works (and is now in the verified-token cache)');

    await dir.setTokenStatus(ADMIN_ACTOR, 'tok-revoked', 'disabled');
    events.clear();
    const after = await t.req('GET', MANIFEST, { headers: bearer(token) });
    assert.equal(after.statusCode, 401);
    assert.equal(challengeOf(after)?.error, 'invalid_token');
    assert.equal(events.of('auth.failure').length, 1);
    assert.equal((await postToken(t, { grant_type: 'refresh_token', service: 'bulwark', refresh_token: refresh, scope: PULL })).statusCode, 401);
    assert.equal((await requestToken(t, [PULL], { creds: { username: REFRESH_TOKEN_USERNAME, password: refresh } })).statusCode, 401);
    assert.equal((await requestToken(t, [PULL], { creds })).statusCode, 401, 'its password no longer signs in');

    await dir.setTokenStatus(ADMIN_ACTOR, 'tok-revoked', 'enabled');
    assert.equal(await pulls(token), 200, 're-enabled: the same access token works again');
  });

  it('regenerating a password: tokens obtained with the old value stop working, refresh tokens included', async () => {
    const dir = authOf(t).directory;
    const made = await dir.createToken(ADMIN_ACTOR, { name: 'tok-rotated', scopeMap: '_repositories_pull' });
    const res = await postToken(t, { grant_type: 'password', service: 'bulwark', username: 'tok-rotated', password: made.password.value, access_type: 'offline', scope: PULL });
    const { token, refresh_token: refresh } = res.json<{ token: string; refresh_token: string }>();
    assert.equal(await pulls(token), 200);

    const fresh = await dir.generateTokenPassword(ADMIN_ACTOR, 'tok-rotated', 'password1');
    assert.equal((await requestToken(t, [PULL], { creds: { username: 'tok-rotated', password: made.password.value } })).statusCode, 401, 'the old password');
    assert.equal(await pulls(token), 401, 'an access token from the old password');
    assert.equal((await postToken(t, { grant_type: 'refresh_token', service: 'bulwark', refresh_token: refresh, scope: PULL })).statusCode, 401, 'a refresh token from the old password');
    assert.equal(await pulls(await fetchToken(t, { username: 'tok-rotated', password: fresh.value }, [PULL])), 200, 'the new password works');
  });

  it('deleting the service identity behind a token stops it on the next request', async () => {
    const dir = authOf(t).directory;
    await dir.createService(ADMIN_ACTOR, { name: 'svc-short-lived' });
    await dir.assignRole(ADMIN_ACTOR, { principal: 'service:svc-short-lived', role: 'AcrPull', scope: REPO });
    // no federation in this change: the token is issued as the token endpoint would after sign-in
    const { token } = await authOf(t).issue({ sub: 'service:svc-short-lived' }, [{ type: 'repository', name: REPO, actions: ['pull'] }], TEST_CLIENT);
    assert.equal(await pulls(token), 200);
    await dir.deleteService(ADMIN_ACTOR, 'svc-short-lived');
    assert.equal(await pulls(token), 401);
  });

  it('a revoked role assignment, or a request from outside its sourceCidrs, is refused on the next request whatever the token says', async () => {
    const dir = authOf(t).directory;
    await dir.createService(ADMIN_ACTOR, { name: 'svc-conditional' });
    const a = await dir.assignRole(ADMIN_ACTOR, { principal: 'service:svc-conditional', role: 'AcrPull', scope: REPO, conditions: { sourceCidrs: ['10.0.0.0/8'] } });
    // no federation in this change: the token is issued as the token endpoint would after sign-in
    const inside = { ...TEST_CLIENT, address: '10.1.1.1' };
    const { token, granted } = await authOf(t).issue({ sub: 'service:svc-conditional' }, [{ type: 'repository', name: REPO, actions: ['pull'] }], inside);
    assert.deepEqual(granted, [{ type: 'repository', name: REPO, actions: ['pull'] }]);
    const from = async (address: string): Promise<number> => (await t.req('GET', MANIFEST, { headers: bearer(token), remoteAddress: address })).statusCode;
    assert.equal(await from('10.1.1.1'), 200);
    assert.equal(await from('192.0.2.1'), 403, 'the same token from outside the network');
    const outside = await authOf(t).issue({ sub: 'service:svc-conditional' }, [{ type: 'repository', name: REPO, actions: ['pull'] }], { ...TEST_CLIENT, address: '192.0.2.1' });
    assert.deepEqual(outside.granted, [], 'nothing is granted to a sign-in from outside');
    await dir.revokeAssignment(ADMIN_ACTOR, a.id);
    assert.equal(await from('10.1.1.1'), 403, 'revoked');
  });

  it('signing-key rotation: tokens signed before keep working, JWKS lists both keys, new tokens use the new key', async () => {
    const auth = authOf(t);
    const old = await fetchToken(t, reader, [PULL]); // not yet used: not in the verified-token cache
    const oldKid = decodeProtectedHeader(old).kid;
    const newKid = await auth.keys.rotate();
    assert.notEqual(newKid, oldKid);

    const jwks = await t.req('GET', '/oauth2/jwks');
    assert.equal(jwks.statusCode, 200);
    const keys = jwks.json<{ keys: { kid: string; alg: string; use: string; kty: string; d?: string }[] }>().keys;
    assert.deepEqual(keys.map((k) => k.kid).sort(), [newKid, oldKid].sort());
    assert.deepEqual(keys[0]?.kid, newKid, 'newest first');
    for (const k of keys) {
      assert.deepEqual([k.alg, k.use, k.kty], ['ES256', 'sig', 'EC']);
      assert.equal(k.d, undefined, 'never the private half');
    }

    assert.equal(await pulls(old), 200, 'signed by the retired key');
    const fresh = await fetchToken(t, reader, [PULL]);
    assert.equal(decodeProtectedHeader(fresh).kid, newKid);
    assert.equal(await pulls(fresh), 200);
  });

  it('the access claim is the intersection of asked and allowed: pull,push,delete with a pull-only token gives pull', async () => {
    const token = await fetchToken(t, reader, [`repository:${REPO}:pull,push,delete`, 'registry:catalog:*', 'registry:admin:read']);
    assert.deepEqual(accessOf(token), [{ type: 'repository', name: REPO, actions: ['pull'] }]);
    const push = await t.req('POST', `/v2/${REPO}/blobs/uploads/`, { headers: bearer(token) });
    assert.equal(push.statusCode, 403);
    assert.equal(errorCode(push), 'DENIED');
  });

  it('a repository outside the grant yields an empty access claim (200, not an error), whether or not it exists', async () => {
    for (const scope of ['repository:no/such-repo:pull', `repository:${REPO}:pull`]) {
      const res = await requestToken(t, [scope], { creds: teamA });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(accessOf(res.json<{ token: string }>().token), [], scope);
    }
    const inside = await fetchToken(t, teamA, ['repository:team-a/not-yet-pushed:pull,push']);
    assert.deepEqual(accessOf(inside), [{ type: 'repository', name: 'team-a/not-yet-pushed', actions: ['pull'] }], 'decided by name, not by existence');
  });

  it('issuance is audited as auth.token with what was asked and what was granted, never a secret', async () => {
    events.clear();
    const res = await requestToken(t, [`repository:${REPO}:pull,push`], { creds: reader, remoteAddress: '198.51.100.4' });
    assert.equal(res.statusCode, 200);
    const issued = events.of('auth.token');
    assert.equal(issued.length, 1);
    assert.deepEqual([issued[0]?.principal, issued[0]?.target, issued[0]?.reason, issued[0]?.client.address], ['token:tok-reader', `repository:${REPO}:pull,push`, `granted repository:${REPO}:pull`, '198.51.100.4']);
    const text = JSON.stringify(events.events);
    assert.ok(!text.includes(reader.password) && !text.includes(res.json<{ token: string }>().token), 'no password or token in events');
  });

  it('assigning the first Owner disables the bootstrap admin: its token stops working on the next request (last: it changes the app)', async () => {
    const admin = await fetchToken(t, bootstrapOf(t), [PULL]);
    assert.equal(await pulls(admin), 200);
    const dir = authOf(t).directory;
    await dir.createService(ADMIN_ACTOR, { name: 'svc-first-owner' });
    await dir.assignRole(ADMIN_ACTOR, { principal: 'service:svc-first-owner', role: 'Owner' });
    assert.equal(await pulls(admin), 401);
    assert.equal((await requestToken(t, [PULL], { creds: bootstrapOf(t) })).statusCode, 401, 'nor can it sign in');
  });
});

describe('the token-signing key on disk (ADR 0018)', () => {
  it('auth.db holds the private half sealed by the key vault, not as a JWK; the token still verifies with the published key', async () => {
    const t = await startApp({ 'auth.enabled': true, 'storage.metadataDriver': 'sqlite', 'storage.blobDriver': 'filesystem' });
    try {
      const token = await fetchToken(t, bootstrapOf(t), [PULL]);
      const db = new Database(join(t.dataDir, 'auth.db'), { readonly: true });
      let rows: { value: string }[];
      try {
        rows = db.prepare<[], { value: string }>("SELECT value FROM auth_records WHERE kind = 'signing-key'").all();
      } finally {
        db.close();
      }
      assert.equal(rows.length, 1);
      const rec = JSON.parse(rows[0]?.value ?? '{}') as { privateJwk?: unknown; sealedPrivate?: { kek?: { vault?: string } }; publicJwk?: { d?: unknown } };
      assert.equal(rec.privateJwk, undefined);
      assert.equal(rec.publicJwk?.d, undefined);
      assert.equal(typeof rec.sealedPrivate?.kek?.vault, 'string');
      assert.ok(!rows[0]?.value.includes('"d":'), 'no private scalar anywhere in the row');
      const jwks = await t.req('GET', '/oauth2/jwks');
      const { kid } = decodeProtectedHeader(token);
      const jwk = jwks.json<{ keys: (JWK & { kid: string })[] }>().keys.find((k) => k.kid === kid);
      assert.ok(jwk !== undefined);
      await jwtVerify(token, await importJWK(jwk, 'ES256'));
    } finally {
      await t.close();
    }
  });
});
