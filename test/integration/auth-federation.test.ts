/**
 * Federated identity at `/oauth2/exchange` (issue 3 item 4, ADR 0005 "Federation"), in-process
 * with authentication on, against a real OpenID provider (test/testkit/oidc-provider.ts):
 * - a CI job trades the ID token its provider gave it for a registry refresh token, with no
 *   stored secret: a federated credential binds (issuer, subject, audience) to a service identity;
 * - every token that does not match a binding, or does not verify, is a 401 and an audited
 *   `auth.exchange` failure; deleting the identity ends its refresh tokens; provider key rotation
 *   is followed;
 * - people: an ID token from a configured user issuer becomes `user:<sub>@<issuer>`, and role
 *   assignment conditions (`requiredAmr`, `sourceCidrs`) decide what that person gets.
 */
import assert from 'node:assert/strict';
import { after, before, describe, mock, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { REFRESH_TOKEN_USERNAME } from '../../src/auth/index.js';
import { ADMIN_ACTOR, accessOf, authOf, bearer, bootstrapOf, EventRecorder, fetchToken, postToken, requestToken, SERVICE, withToken } from '../testkit/auth-client.js';
import { assertError, pushBlob, pushImage, randomBlob, type Res, type TestApp, startApp } from '../testkit/inject.js';
import { startTestIdp, type TestIdp } from '../testkit/oidc-provider.js';

const CI_AUDIENCE = 'bulwark-ci';
const CI_SUBJECT = 'repo:acme/app:ref:refs/heads/main';
const CLI_AUDIENCE = 'bulwark-cli';

function exchange(t: TestApp, idToken: string, remoteAddress?: string): Promise<Res> {
  return t.req('POST', '/oauth2/exchange', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'access_token', service: SERVICE, access_token: idToken }).toString(),
    ...(remoteAddress !== undefined ? { remoteAddress } : {}),
  });
}

/** Exchange and assert 200; the registry refresh token. */
async function refreshTokenFor(t: TestApp, idToken: string): Promise<string> {
  const res = await exchange(t, idToken);
  assert.equal(res.statusCode, 200, `exchange: ${res.body}`);
  assert.equal(res.headers['cache-control'], 'no-store');
  const body = res.json<{ refresh_token?: unknown }>();
  assert.equal(typeof body.refresh_token, 'string');
  return body.refresh_token as string;
}

/** An access token through `GET /oauth2/token` with the refresh token as the password (docker's way). */
function tokenWithRefresh(t: TestApp, refresh: string, scopes: readonly string[], remoteAddress?: string): Promise<Res> {
  return requestToken(t, scopes, { creds: { username: REFRESH_TOKEN_USERNAME, password: refresh }, ...(remoteAddress !== undefined ? { remoteAddress } : {}) });
}

async function accessToken(t: TestApp, refresh: string, scopes: readonly string[], remoteAddress?: string): Promise<string> {
  const res = await tokenWithRefresh(t, refresh, scopes, remoteAddress);
  assert.equal(res.statusCode, 200, `token: ${res.body}`);
  return res.json<{ token: string }>().token;
}

/**
 * Asserts the exchange was refused the way a client sees it (401, the OCI envelope, nothing of
 * the token echoed) and audited as a failed `auth.exchange` whose reason matches.
 */
async function assertRefused(t: TestApp, events: EventRecorder, idToken: string, reason: RegExp): Promise<void> {
  events.clear();
  const res = await exchange(t, idToken);
  assertError(res, 401, 'UNAUTHORIZED');
  for (const part of idToken.split('.')) if (part.length > 8) assert.ok(!res.body.includes(part), 'the answer echoes the token');
  const audited = events.of('auth.exchange');
  assert.equal(audited.length, 1, `expected one auth.exchange event, got ${JSON.stringify(events.events)}`);
  assert.equal(audited[0]?.outcome, 'failure');
  assert.match(audited[0]?.reason ?? '', reason);
  assert.equal(audited[0]?.principal, undefined);
}

/** The middle of the payload replaced by claims of the attacker's choosing; the signature kept. */
function withClaims(token: string, claims: Record<string, unknown>): string {
  const [header, payload, signature] = token.split('.');
  const changed = { ...(JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as Record<string, unknown>), ...claims };
  return [header, Buffer.from(JSON.stringify(changed)).toString('base64url'), signature].join('.');
}

describe('federated workload identity: a CI job exchanges its provider token, no stored secret', () => {
  let idp: TestIdp;
  let t: TestApp;
  let events: EventRecorder;

  before(async () => {
    idp = await startTestIdp();
    t = await startApp({ 'auth.enabled': true });
    events = new EventRecorder(t);
    const dir = authOf(t).directory;
    await dir.createService(ADMIN_ACTOR, { name: 'ci-pipeline', description: 'acme/app main branch' });
    await dir.addFederated(ADMIN_ACTOR, { name: 'acme-app-main', service: 'ci-pipeline', issuer: idp.issuer, subject: CI_SUBJECT, audience: CI_AUDIENCE });
    await dir.assignRole(ADMIN_ACTOR, { principal: 'service:ci-pipeline', role: 'AcrPush', scope: 'ci/*' });
  });
  after(async () => {
    events.close();
    await t.close();
    await idp.close();
  });

  test('the exchanged refresh token gets access tokens (GET with Basic, POST refresh_token) that push and pull ci/app', async () => {
    events.clear();
    const refresh = await refreshTokenFor(t, await idp.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE }));
    assert.equal(decodeJwt(refresh).sub, 'service:ci-pipeline');
    const ok = events.of('auth.exchange');
    assert.deepEqual(ok.map((e) => [e.outcome, e.principal, e.target]), [['success', 'service:ci-pipeline', idp.issuer]]);

    const pushToken = await accessToken(t, refresh, ['repository:ci/app:pull,push']);
    assert.deepEqual(accessOf(pushToken), [{ type: 'repository', name: 'ci/app', actions: ['pull', 'push'] }]);
    const image = await pushImage(withToken(t, pushToken), 'ci/app', 'v1');

    const grant = await postToken(t, { grant_type: 'refresh_token', service: SERVICE, refresh_token: refresh, scope: 'repository:ci/app:pull' });
    assert.equal(grant.statusCode, 200, grant.body);
    const pullToken = grant.json<{ token: string }>().token;
    assert.deepEqual(accessOf(pullToken), [{ type: 'repository', name: 'ci/app', actions: ['pull'] }]);
    const manifest = await t.req('GET', '/v2/ci/app/manifests/v1', { headers: { ...bearer(pullToken), accept: image.manifest.mediaType } });
    assert.equal(manifest.statusCode, 200, manifest.body);
    assert.deepEqual(manifest.rawPayload, image.manifest.body);
    const layer = await t.req('GET', `/v2/ci/app/blobs/${image.layer.digest}`, { headers: bearer(pullToken) });
    assert.equal(layer.statusCode, 200);
    assert.deepEqual(layer.rawPayload, image.layer.data);
  });

  test('the same identity cannot push outside ci/*: other/app is granted nothing and the push is 403 DENIED', async () => {
    const refresh = await refreshTokenFor(t, await idp.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE }));
    const token = await accessToken(t, refresh, ['repository:other/app:pull,push']);
    assert.deepEqual(accessOf(token), []);
    const res = await t.req('POST', '/v2/other/app/blobs/uploads/', { headers: bearer(token) });
    assertError(res, 403, 'DENIED');
  });

  test('a token for another subject of the same provider and audience is refused (401, audited)', async () => {
    await assertRefused(t, events, await idp.token({ subject: 'repo:acme/app:ref:refs/heads/feature', audience: CI_AUDIENCE }), /no federated credential matches the subject/);
  });

  test('a burst of refused tokens from one address cannot slip past the failure limit: of 12 at once, 3 are checked', async () => {
    // Each attempt verifies a real signature (asynchronous) before its failure counts; the
    // attempts of one address run one after the other, so each sees the failures before it.
    const strict = await startApp({ 'auth.enabled': true, 'auth.failures.perIdentity': 3, 'auth.failures.perAddress': 3, 'auth.failures.windowSeconds': 60 });
    try {
      await authOf(strict).directory.createService(ADMIN_ACTOR, { name: 'ci-pipeline', description: 'acme/app main branch' });
      await authOf(strict).directory.addFederated(ADMIN_ACTOR, { name: 'acme-app-main', service: 'ci-pipeline', issuer: idp.issuer, subject: CI_SUBJECT, audience: CI_AUDIENCE });
      const wrongSubject = await idp.token({ subject: 'repo:acme/app:ref:refs/heads/feature', audience: CI_AUDIENCE });
      const burst = await Promise.all(Array.from({ length: 12 }, () => exchange(strict, wrongSubject, '198.51.100.12')));
      const statuses = burst.map((r) => r.statusCode);
      assert.equal(statuses.filter((c) => c === 401).length, 3, statuses.join(' '));
      assert.equal(statuses.filter((c) => c === 429).length, 9, statuses.join(' '));
      assert.equal((await exchange(strict, await idp.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE }), '198.51.100.13')).statusCode, 200, 'another address');
    } finally {
      await strict.close();
    }
  });

  test('a token for the bound subject but another audience is refused (401, audited)', async () => {
    await assertRefused(t, events, await idp.token({ subject: CI_SUBJECT, audience: 'some-other-app' }), /"aud"/);
  });

  test('a token from an issuer nothing is bound to is refused (401, audited)', async () => {
    const stranger = await startTestIdp();
    try {
      await assertRefused(t, events, await stranger.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE }), /no federated credential or user issuer matches the issuer/);
    } finally {
      await stranger.close();
    }
  });

  test('a tampered token (another subject written over a genuine one) is refused (401, audited)', async () => {
    const genuine = await idp.token({ subject: 'repo:mallory/fork:ref:refs/heads/main', audience: CI_AUDIENCE });
    await assertRefused(t, events, withClaims(genuine, { sub: CI_SUBJECT }), /signature is invalid/);
  });

  test('after the provider rotates its signing key, new tokens exchange and tokens of the old key no longer do', async () => {
    const before = await idp.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE });
    await refreshTokenFor(t, before); // the registry now holds the provider's current key set
    await idp.rotateKeys();
    // The registry refetches an issuer's keys for an unknown key id at most once per 30 s
    // (src/auth/oidc.ts, jwksCooldownSeconds); let that much time pass on the clock.
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 31_000 });
    try {
      const after = await idp.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE });
      assert.notEqual(decodeProtectedHeader(after).kid, decodeProtectedHeader(before).kid, 'the provider signs with a new key');
      const refresh = await refreshTokenFor(t, after);
      assert.equal(decodeJwt(refresh).sub, 'service:ci-pipeline');
      await assertRefused(t, events, before, /no key of the issuer matches/);
    } finally {
      mock.timers.reset();
    }
  });

  test('deleting the service identity ends its refresh and access tokens, and its binding', async () => {
    const dir = authOf(t).directory;
    await dir.createService(ADMIN_ACTOR, { name: 'ci-release' });
    await dir.addFederated(ADMIN_ACTOR, { name: 'acme-app-release', service: 'ci-release', issuer: idp.issuer, subject: 'repo:acme/app:environment:release', audience: CI_AUDIENCE });
    await dir.assignRole(ADMIN_ACTOR, { principal: 'service:ci-release', role: 'AcrPush', scope: 'ci/*' });
    const idToken = await idp.token({ subject: 'repo:acme/app:environment:release', audience: CI_AUDIENCE });
    const refresh = await refreshTokenFor(t, idToken);
    const token = await accessToken(t, refresh, ['repository:ci/release:pull,push']);
    await pushBlob(withToken(t, token), 'ci/release', randomBlob(32));

    await dir.deleteService(ADMIN_ACTOR, 'ci-release');
    assertError(await tokenWithRefresh(t, refresh, ['repository:ci/release:pull']), 401, 'UNAUTHORIZED');
    assertError(await postToken(t, { grant_type: 'refresh_token', service: SERVICE, refresh_token: refresh }), 401, 'UNAUTHORIZED');
    const upload = await t.req('POST', '/v2/ci/release/blobs/uploads/', { headers: bearer(token) });
    assert.equal(upload.statusCode, 401, 'the access token issued before the deletion stops working on the next request');
    await assertRefused(t, events, idToken, /no federated credential matches the subject/); // its binding went with it
  });
});

describe('an expired provider token is refused (clock skew 0)', () => {
  let idp: TestIdp;
  let t: TestApp;
  let events: EventRecorder;

  before(async () => {
    idp = await startTestIdp({ idTokenTtlSeconds: 2 });
    t = await startApp({ 'auth.enabled': true, 'auth.clockSkewSeconds': 0 });
    events = new EventRecorder(t);
    const dir = authOf(t).directory;
    await dir.createService(ADMIN_ACTOR, { name: 'ci-pipeline' });
    await dir.addFederated(ADMIN_ACTOR, { name: 'acme-app-main', service: 'ci-pipeline', issuer: idp.issuer, subject: CI_SUBJECT, audience: CI_AUDIENCE });
  });
  after(async () => {
    events.close();
    await t.close();
    await idp.close();
  });

  test('the same token exchanges while valid and is refused (401, audited) once its exp has passed', async () => {
    const idToken = await idp.token({ subject: CI_SUBJECT, audience: CI_AUDIENCE });
    await refreshTokenFor(t, idToken);
    const exp = decodeJwt(idToken).exp ?? assert.fail('no exp');
    await sleep(Math.max(0, exp * 1000 - Date.now()) + 200);
    await assertRefused(t, events, idToken, /expired/);
  });
});

describe('people: ID tokens from a configured user issuer, and assignment conditions', () => {
  let idp: TestIdp;
  let t: TestApp;
  let events: EventRecorder;
  const person = (sub: string): string => `user:${sub}@${idp.issuer}`;
  const cliToken = (subject: string, amr?: string[]): Promise<string> => idp.token({ subject, audience: CLI_AUDIENCE, ...(amr !== undefined ? { amr } : {}) });

  before(async () => {
    idp = await startTestIdp();
    t = await startApp({ 'auth.enabled': true, 'auth.oidc.userIssuers': [`${idp.issuer}=${CLI_AUDIENCE}`] });
    events = new EventRecorder(t);
    const dir = authOf(t).directory;
    await dir.assignRole(ADMIN_ACTOR, { principal: person('alice'), role: 'AcrPull', scope: 'team/*', conditions: { requiredAmr: ['mfa'] } });
    await dir.assignRole(ADMIN_ACTOR, { principal: person('bob'), role: 'AcrPull', scope: 'lab/*', conditions: { sourceCidrs: ['10.20.0.0/16', '2001:db8:20::/48'] } });
    const admin = await fetchToken(t, bootstrapOf(t), ['repository:team/app:push,pull', 'repository:lab/app:push,pull']);
    await pushImage(withToken(t, admin), 'team/app', 'v1');
    await pushImage(withToken(t, admin), 'lab/app', 'v1');
  });
  after(async () => {
    events.close();
    await t.close();
    await idp.close();
  });

  const pull = (token: string, name: string, remoteAddress?: string): Promise<Res> =>
    t.req('GET', `/v2/${name}/manifests/v1`, { headers: bearer(token), ...(remoteAddress !== undefined ? { remoteAddress } : {}) });

  test('an ID token for the configured audience exchanges into user:<sub>@<issuer>', async () => {
    events.clear();
    const refresh = await refreshTokenFor(t, await cliToken('carol'));
    assert.equal(decodeJwt(refresh).sub, person('carol'));
    assert.deepEqual(events.of('auth.exchange').map((e) => [e.outcome, e.principal]), [['success', person('carol')]]);
    const token = await accessToken(t, refresh, []);
    assert.equal(decodeJwt(token).sub, person('carol'));
  });

  test("a person's ID token for another audience is refused (401, audited)", async () => {
    await assertRefused(t, events, await idp.token({ subject: 'carol', audience: 'someone-elses-app' }), /"aud"/);
  });

  test('requiredAmr [mfa]: the assignment grants pull only to tokens whose amr includes mfa', async () => {
    const withMfa = await refreshTokenFor(t, await cliToken('alice', ['pwd', 'mfa']));
    const token = await accessToken(t, withMfa, ['repository:team/app:pull']);
    assert.deepEqual(accessOf(token), [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    assert.equal((await pull(token, 'team/app')).statusCode, 200);

    for (const amr of [['pwd'], undefined]) {
      const without = await refreshTokenFor(t, await cliToken('alice', amr));
      assert.equal(decodeJwt(without).sub, person('alice'), 'the same person');
      const weak = await accessToken(t, without, ['repository:team/app:pull']);
      assert.deepEqual(accessOf(weak), [], `amr ${JSON.stringify(amr)} is granted nothing`);
      assertError(await pull(weak, 'team/app'), 403, 'DENIED');
    }
  });

  test('sourceCidrs: the assignment grants pull only to requests from those networks', async () => {
    const refresh = await refreshTokenFor(t, await cliToken('bob'));
    for (const inside of ['10.20.3.4', '2001:db8:20::7']) {
      const token = await accessToken(t, refresh, ['repository:lab/app:pull'], inside);
      assert.deepEqual(accessOf(token), [{ type: 'repository', name: 'lab/app', actions: ['pull'] }], `from ${inside}`);
      assert.equal((await pull(token, 'lab/app', inside)).statusCode, 200, `pull from ${inside}`);
    }
    for (const outside of ['10.21.0.1', '198.51.100.7', '2001:db8:21::1']) {
      const token = await accessToken(t, refresh, ['repository:lab/app:pull'], outside);
      assert.deepEqual(accessOf(token), [], `from ${outside}`);
      assertError(await pull(token, 'lab/app', outside), 403, 'DENIED');
    }
  });

  test('sourceCidrs holds per request: a token obtained inside the network does not pull from outside it', async () => {
    const refresh = await refreshTokenFor(t, await cliToken('bob'));
    const token = await accessToken(t, refresh, ['repository:lab/app:pull'], '10.20.3.4');
    assert.equal((await pull(token, 'lab/app', '10.20.3.4')).statusCode, 200);
    assertError(await pull(token, 'lab/app', '198.51.100.7'), 403, 'DENIED');
  });

});
