/**
 * The admin API (/api/v1) as a client sees it: bearer tokens from /oauth2/token with the
 * registry:admin scopes, JSON in and out, every problem of a bad body reported at once, and
 * changes that take effect on the very next request.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, header, startApp, type TestApp } from '../testkit/inject.js';
import { api, bootstrapOf, grantedBy, makeToken, ok, problemsOf, signIn, tokenFor } from '../testkit/admin.js';

describe('admin API', () => {
  let t: TestApp;
  let admin: string;
  before(async () => {
    t = await startApp({ 'auth.enabled': true });
    admin = await tokenFor(t, bootstrapOf(t));
  });
  after(() => t.close());

  test('without a token: 401 with a Bearer challenge naming the scope the endpoint needs', async () => {
    const realm = `${t.app.auth?.settings.issuer ?? ''}/oauth2/token`;
    const read = await api(t, undefined, 'GET', '/tokens');
    assertError(read, 401, 'UNAUTHORIZED');
    assert.equal(header(read, 'www-authenticate'), `Bearer realm="${realm}",service="bulwark",scope="registry:admin:read"`);
    const assign = await api(t, undefined, 'POST', '/role-assignments', { principal: 'token:x', role: 'Owner' });
    assert.equal(header(assign, 'www-authenticate'), `Bearer realm="${realm}",service="bulwark",scope="registry:admin:access"`);
    const basic = Buffer.from(`${bootstrapOf(t).username}:${bootstrapOf(t).password}`).toString('base64');
    assertError(await t.req('GET', '/api/v1/tokens', { headers: { authorization: `Basic ${basic}` } }), 401, 'UNAUTHORIZED');
    const forged = await api(t, 'not.a.jwt', 'GET', '/tokens');
    assertError(forged, 401, 'UNAUTHORIZED');
    assert.match(header(forged, 'www-authenticate') ?? '', /error="invalid_token"/);
  });

  test('a bad body is refused with 400 listing every problem; non-JSON, bad JSON and oversized bodies too', async () => {
    const problems = problemsOf(await api(t, admin, 'POST', '/tokens', { name: 'x', scopeMap: 5, colour: 'red' }));
    assert.equal(problems.length, 3, problems.join(' | '));
    assert.ok(problems.some((p) => p.startsWith('body.name:')));
    assert.ok(problems.some((p) => p.startsWith('body.scopeMap:')));
    assert.ok(problems.includes('body.colour: unknown field'));
    assert.deepEqual(problemsOf(await api(t, admin, 'POST', '/scope-maps', {})).sort(), ['body.actions: required', 'body.name: required']);
    problemsOf(await api(t, admin, 'GET', '/access-requests?status=granted'));
    // the directory checks meaning, again all at once
    const meaning = problemsOf(await api(t, admin, 'POST', '/role-assignments', { principal: 'nobody', role: 'AcrPull', scope: 'app/*', conditions: { sourceCidrs: ['10.0.0.0/33'] } }));
    assert.equal(meaning.length, 2, meaning.join(' | '));
    const headers = { authorization: `Bearer ${admin}` };
    assertError(await t.req('POST', '/api/v1/scope-maps', { headers: { ...headers, 'content-type': 'text/plain' }, payload: 'name=x' }), 415, 'UNSUPPORTED');
    assertError(await t.req('POST', '/api/v1/scope-maps', { headers: { ...headers, 'content-type': 'application/json' }, payload: '{"name":' }), 400, 'BAD_REQUEST');
    assertError(await t.req('POST', '/api/v1/scope-maps', { headers: { ...headers, 'content-type': 'application/json' }, payload: '{"__proto__":{"x":1}}' }), 400, 'BAD_REQUEST');
    const big = JSON.stringify({ name: 'big-map', actions: Array.from({ length: 3000 }, () => 'repositories/app/content/read') });
    assertError(await t.req('POST', '/api/v1/scope-maps', { headers: { ...headers, 'content-type': 'application/json' }, payload: big }), 400, 'SIZE_INVALID');
  });

  test('scope maps: create, read, update, list, delete; system maps cannot change', async () => {
    const created = ok(await api(t, admin, 'POST', '/scope-maps', { name: 'app-pull', description: 'CI pulls', actions: ['repositories/app/*/content/read'] }), 201);
    assert.equal(created.system, false);
    assertError(await api(t, admin, 'POST', '/scope-maps', { name: 'app-pull', actions: ['repositories/app/*/content/read'] }), 400, 'BAD_REQUEST');
    const updated = ok<{ actions: string[] }>(await api(t, admin, 'PATCH', '/scope-maps/app-pull', { add: ['repositories/app/*/metadata/read'] }));
    assert.deepEqual(updated.actions, ['repositories/app/*/content/read', 'repositories/app/*/metadata/read']);
    assert.equal(ok(await api(t, admin, 'GET', '/scope-maps/app-pull')).description, 'CI pulls');
    const names = ok<{ items: { name: string }[] }>(await api(t, admin, 'GET', '/scope-maps')).items.map((m) => m.name);
    assert.ok(names.includes('_repositories_pull') && names.includes('app-pull'));
    assertError(await api(t, admin, 'PATCH', '/scope-maps/_repositories_pull', { description: 'mine now' }), 400, 'BAD_REQUEST');
    assertError(await api(t, admin, 'DELETE', '/scope-maps/_repositories_pull'), 400, 'BAD_REQUEST');
    assert.equal((await api(t, admin, 'DELETE', '/scope-maps/app-pull')).statusCode, 204);
    assertError(await api(t, admin, 'GET', '/scope-maps/app-pull'), 404, 'NOT_FOUND');
  });

  test('a token: its password works once created, and stops at once when disabled or deleted, with the access tokens it got', async () => {
    const robot = await makeToken(t, admin, 'ci-robot', { scopeMap: '_repositories_pull' });
    const list = ok<{ items: Record<string, unknown>[] }>(await api(t, admin, 'GET', '/tokens'));
    assert.ok(!JSON.stringify(list).includes(robot.password), 'a listing shows a password');
    assert.ok(!JSON.stringify(list).includes('scrypt'), 'a listing shows a password hash');
    const access = await tokenFor(t, robot, 'repository:app/web:pull');
    assert.deepEqual(grantedBy(access), ['repository:app/web:pull']);
    assert.equal((await t.req('GET', '/v2/', { headers: { authorization: `Bearer ${access}` } })).statusCode, 200);

    assert.equal(ok(await api(t, admin, 'POST', '/tokens/ci-robot/disable')).status, 'disabled');
    assertError(await signIn(t, robot, ''), 401, 'UNAUTHORIZED');
    assertError(await t.req('GET', '/v2/', { headers: { authorization: `Bearer ${access}` } }), 401, 'UNAUTHORIZED');
    ok(await api(t, admin, 'POST', '/tokens/ci-robot/enable'));
    const again = await tokenFor(t, robot, '');

    const second = ok<{ name: string; value: string }>(await api(t, admin, 'POST', '/tokens/ci-robot/passwords', { name: 'password2' }), 201);
    assert.equal(second.name, 'password2');
    assert.equal((await api(t, admin, 'DELETE', '/tokens/ci-robot/passwords/password1')).statusCode, 204);
    assertError(await signIn(t, robot, ''), 401, 'UNAUTHORIZED');
    assertError(await t.req('GET', '/v2/', { headers: { authorization: `Bearer ${again}` } }), 401, 'UNAUTHORIZED');
    await tokenFor(t, { username: 'ci-robot', password: second.value }, '');

    assert.equal((await api(t, admin, 'DELETE', '/tokens/ci-robot')).statusCode, 204);
    assertError(await api(t, admin, 'GET', '/tokens/ci-robot'), 404, 'NOT_FOUND');
  });

  test('service identities, federated credentials and role assignments: create, list, delete', async () => {
    ok(await api(t, admin, 'POST', '/service-identities', { name: 'build-svc', description: 'CI builds' }), 201);
    ok(await api(t, admin, 'POST', '/federated-credentials', { name: 'gh-main', service: 'build-svc', issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:org/app:ref:refs/heads/main', audience: 'bulwark' }), 201);
    assert.deepEqual(ok<{ items: { name: string }[] }>(await api(t, admin, 'GET', '/federated-credentials')).items.map((f) => f.name), ['gh-main']);
    const roles = ok<{ items: { name: string; admin: string[] }[] }>(await api(t, admin, 'GET', '/roles')).items;
    assert.deepEqual(roles.find((r) => r.name === 'Owner')?.admin, ['read', 'write', 'access']);
    const until = new Date(Date.now() + 86_400_000).toISOString();
    const a = ok<{ id: string; expiresAt: string; conditions: unknown }>(
      await api(t, admin, 'POST', '/role-assignments', { principal: 'service:build-svc', role: 'AcrPush', scope: 'app/*', conditions: { requiredAmr: ['mfa'] }, expiresAt: until }),
      201,
    );
    assert.equal(a.expiresAt, until);
    assert.deepEqual(a.conditions, { requiredAmr: ['mfa'] });
    const mine = ok<{ items: { id: string }[] }>(await api(t, admin, 'GET', `/role-assignments?principal=${encodeURIComponent('service:build-svc')}`)).items;
    assert.deepEqual(mine.map((x) => x.id), [a.id]);
    assert.equal((await api(t, admin, 'DELETE', `/role-assignments/${a.id}`)).statusCode, 204);
    assert.equal((await api(t, admin, 'DELETE', '/federated-credentials/gh-main')).statusCode, 204);
    assert.equal((await api(t, admin, 'DELETE', '/service-identities/build-svc')).statusCode, 204);
    assert.deepEqual(ok<{ items: unknown[] }>(await api(t, admin, 'GET', '/service-identities')).items, []);
  });

  test('a Reader reads but may not write; a Contributor writes but may not manage access', async () => {
    const readerCreds = await makeToken(t, admin, 'reader-bot', { role: 'Reader' });
    const reader = await tokenFor(t, readerCreds);
    assert.deepEqual(grantedBy(reader), ['registry:admin:read']);
    ok(await api(t, reader, 'GET', '/tokens'));
    assertError(await api(t, reader, 'POST', '/scope-maps', { name: 'sneaky', actions: ['repositories/*/content/write'] }), 403, 'DENIED');
    // asked for no admin scope: the identity has read, so the challenge says insufficient_scope
    const noScope = await api(t, await tokenFor(t, readerCreds, ''), 'GET', '/tokens');
    assertError(noScope, 403, 'DENIED');
    assert.match(header(noScope, 'www-authenticate') ?? '', /scope="registry:admin:read",error="insufficient_scope"/);

    const contributor = await tokenFor(t, await makeToken(t, admin, 'contrib-bot', { role: 'Contributor' }));
    assert.deepEqual(grantedBy(contributor), ['registry:admin:read,write']);
    ok(await api(t, contributor, 'POST', '/scope-maps', { name: 'contrib-map', actions: ['repositories/lib/*/content/read'] }), 201);
    for (const [method, path, body] of [
      ['POST', '/role-assignments', { principal: 'token:contrib-bot', role: 'Owner' }],
      ['POST', '/federated-credentials', { name: 'gh-x1', service: 'nobody', issuer: 'https://x.example', subject: 's', audience: 'a' }],
      ['POST', '/admin/disable', undefined],
      ['POST', '/signing-keys/rotate', undefined],
      ['POST', '/refresh-tokens/revoke', { principal: 'admin:bulwark-admin' }],
    ] as const) {
      assertError(await api(t, contributor, method, path, body), 403, 'DENIED');
    }
  });

  test('signing keys rotate without breaking issued tokens; refresh tokens are revoked by principal', async () => {
    const before = admin;
    const { kid } = ok<{ kid: string }>(await api(t, admin, 'POST', '/signing-keys/rotate'));
    const jwks = ok<{ keys: { kid: string }[] }>(await t.req('GET', '/oauth2/jwks'));
    assert.equal(jwks.keys[0]?.kid, kid);
    ok(await api(t, before, 'GET', '/findings'));
    const offline = await signIn(t, bootstrapOf(t), '', { access_type: 'offline' });
    const refresh = ok<{ refresh_token: string }>(offline).refresh_token;
    const revoked = ok<{ revoked: number }>(await api(t, admin, 'POST', '/refresh-tokens/revoke', { principal: 'admin:bulwark-admin' }));
    assert.ok(revoked.revoked >= 1);
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh }).toString();
    assertError(await t.req('POST', '/oauth2/token', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form }), 401, 'UNAUTHORIZED');
    problemsOf(await api(t, admin, 'POST', '/refresh-tokens/revoke', { principal: 'admin:bulwark-admin', jti: '00000000-0000-0000-0000-000000000000' }));
  });
});

describe('the bootstrap admin', () => {
  test('is a compliance finding while enabled; disabling it ends its tokens at once', async () => {
    const t = await startApp({ 'auth.enabled': true });
    try {
      const admin = await tokenFor(t, bootstrapOf(t));
      assert.equal(ok<{ admins: { enabled: boolean }[] }>(await api(t, admin, 'GET', '/admin')).admins[0]?.enabled, true);
      assert.deepEqual(ok<{ items: { id: string }[] }>(await api(t, admin, 'GET', '/findings')).items.map((f) => f.id), ['BOOTSTRAP_ADMIN_ENABLED']);
      const reader = await tokenFor(t, await makeToken(t, admin, 'reader-bot', { role: 'Reader' }));
      assert.equal(ok<{ admins: { enabled: boolean }[] }>(await api(t, admin, 'POST', '/admin/disable')).admins[0]?.enabled, false);
      assertError(await api(t, admin, 'GET', '/admin'), 401, 'UNAUTHORIZED');
      assertError(await signIn(t, bootstrapOf(t), ''), 401, 'UNAUTHORIZED');
      assert.deepEqual(ok<{ items: unknown[] }>(await api(t, reader, 'GET', '/findings')).items, []);
    } finally {
      await t.close();
    }
  });

  test('is disabled when the first Owner is assigned', async () => {
    const t = await startApp({ 'auth.enabled': true });
    try {
      const admin = await tokenFor(t, bootstrapOf(t));
      const creds = await makeToken(t, admin, 'first-owner', { role: 'Owner' });
      const owner = await tokenFor(t, creds);
      assert.equal(ok<{ admins: { enabled: boolean }[] }>(await api(t, owner, 'GET', '/admin')).admins[0]?.enabled, false);
      assert.deepEqual(ok<{ items: unknown[] }>(await api(t, owner, 'GET', '/findings')).items, []);
    } finally {
      await t.close();
    }
  });
});
