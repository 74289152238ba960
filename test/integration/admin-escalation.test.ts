/**
 * Privilege escalation through the admin API, each case from the security review:
 * - a Contributor (admin read, write) must not become what a token's roles make it by taking
 *   over the token's credentials (a password, enabling it, creating it under a name that holds
 *   roles): that is the `access` right's business (Owner);
 * - deleting a token or a service identity takes its role assignments and refresh tokens with
 *   it, so an identity re-created under the name starts with nothing; roles are assigned only to
 *   identities that exist;
 * - a just-in-time or conditioned Contributor must not mint standing credentials (tokens,
 *   passwords, scope maps) that outlast its elevation.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { buildApp } from '../../src/app.js';
import type { RegistryEvent } from '../../src/audit/index.js';
import { MemoryAuthStore, type RoleAssignmentRecord } from '../../src/auth/index.js';
import { loadConfig } from '../../src/config/index.js';
import { assertError, startApp, type TestApp } from '../testkit/inject.js';
import { api, bootstrapOf, grantedBy, makeToken, ok, problemsOf, signIn, tokenFor } from '../testkit/admin.js';

const ROLE_HOLDER = /token:[a-z0-9-]+ holds role assignments \([A-Za-z, ]+\): only an identity with registry:admin:access \(Owner\) may/;
const LASTING = /standing credentials need a lasting Owner or Contributor assignment/;

function refreshGrant(t: TestApp, refreshToken: string): ReturnType<TestApp['req']> {
  const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }).toString();
  return t.req('POST', '/oauth2/token', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form });
}

async function assignments(t: TestApp, admin: string, principal: string): Promise<{ role: string }[]> {
  return ok<{ items: { role: string }[] }>(await api(t, admin, 'GET', `/role-assignments?principal=${encodeURIComponent(principal)}`)).items;
}

describe('a Contributor cannot take over a token that holds a role', () => {
  let t: TestApp;
  let admin: string;
  let contributor: string;
  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.disableAdminOnFirstOwner': false });
    admin = await tokenFor(t, bootstrapOf(t));
    contributor = await tokenFor(t, await makeToken(t, admin, 'contrib-bot', { role: 'Contributor' }));
    assert.deepEqual(grantedBy(contributor), ['registry:admin:read,write']);
  });
  after(() => t.close());

  test('generating a password of an Owner token: 403 for a Contributor (the review’s P1), 201 for an Owner', async () => {
    await makeToken(t, admin, 'ops-owner', { role: 'Owner' });
    const denied = await api(t, contributor, 'POST', '/tokens/ops-owner/passwords', { name: 'password2' });
    assertError(denied, 403, 'DENIED');
    assert.match(denied.body, ROLE_HOLDER);
    assert.deepEqual(ok<{ passwords: { name: string }[] }>(await api(t, admin, 'GET', '/tokens/ops-owner')).passwords.map((p) => p.name), ['password1'], 'no password was added');
    // any role counts, also one scoped to some repositories
    await makeToken(t, admin, 'lib-puller', { role: 'AcrPull', scope: 'lib/*' });
    assertError(await api(t, contributor, 'POST', '/tokens/lib-puller/passwords', { name: 'password1' }), 403, 'DENIED');

    // an Owner may: it could assign the roles anyway
    const owner = await tokenFor(t, await makeToken(t, admin, 'other-owner', { role: 'Owner' }));
    const pw = ok<{ value: string }>(await api(t, owner, 'POST', '/tokens/ops-owner/passwords', { name: 'password2' }), 201);
    assert.deepEqual(grantedBy(await tokenFor(t, { username: 'ops-owner', password: pw.value })), ['registry:admin:read,write,access']);
  });

  test('enabling a disabled token that holds a role: 403 for a Contributor, 200 for an Owner; disabling and deleting a password stay write', async () => {
    await makeToken(t, admin, 'paused-owner', { role: 'Owner' });
    ok(await api(t, contributor, 'POST', '/tokens/paused-owner/disable'));
    const denied = await api(t, contributor, 'POST', '/tokens/paused-owner/enable');
    assertError(denied, 403, 'DENIED');
    assert.match(denied.body, ROLE_HOLDER);
    assert.equal(ok<{ status: string }>(await api(t, admin, 'GET', '/tokens/paused-owner')).status, 'disabled');
    assert.equal((await api(t, contributor, 'DELETE', '/tokens/paused-owner/passwords/password1')).statusCode, 204);
    assert.equal(ok<{ status: string }>(await api(t, admin, 'POST', '/tokens/paused-owner/enable')).status, 'enabled');
  });

  test('deleting a token that holds a role (which deletes its assignments) needs the access right: 403 for a Contributor', async () => {
    await makeToken(t, admin, 'owner-to-keep', { role: 'Owner' });
    const res = await api(t, contributor, 'DELETE', '/tokens/owner-to-keep');
    assertError(res, 403, 'DENIED');
    assert.match(res.body, ROLE_HOLDER);
    assert.deepEqual((await assignments(t, admin, 'token:owner-to-keep')).map((a) => a.role), ['Owner'], 'the Owner assignment is still there');
  });

  test('a token without roles is still the Contributor’s to manage', async () => {
    const creds = await makeToken(t, contributor, 'plain-robot');
    ok(await api(t, contributor, 'POST', '/tokens/plain-robot/disable'));
    ok(await api(t, contributor, 'POST', '/tokens/plain-robot/enable'));
    const pw = ok<{ value: string }>(await api(t, contributor, 'POST', '/tokens/plain-robot/passwords', { name: 'password2' }), 201);
    await tokenFor(t, creds, '');
    await tokenFor(t, { username: 'plain-robot', password: pw.value }, '');
  });

  test('deleting a token deletes its role assignments and revokes its refresh tokens: re-created under the name, it starts with nothing', async () => {
    const creds = await makeToken(t, admin, 'gone-owner', { role: 'Owner' });
    const refresh = ok<{ refresh_token: string }>(await signIn(t, creds, '', { access_type: 'offline' })).refresh_token;
    assert.equal((await refreshGrant(t, refresh)).statusCode, 200);

    assert.equal((await api(t, contributor, 'DELETE', '/tokens/gone-owner')).statusCode, 403, 'a Contributor may not (it deletes an Owner assignment)');
    assert.equal((await api(t, admin, 'DELETE', '/tokens/gone-owner')).statusCode, 204);
    assert.deepEqual(await assignments(t, admin, 'token:gone-owner'), []);
    const again = ok<{ password: { value: string } }>(await api(t, contributor, 'POST', '/tokens', { name: 'gone-owner', scopeMap: '_repositories_pull' }), 201);
    assert.deepEqual(grantedBy(await tokenFor(t, { username: 'gone-owner', password: again.password.value })), [], 'the new token has no admin right');
    assertError(await refreshGrant(t, refresh), 401, 'UNAUTHORIZED');
  });

  test('deleting a service identity deletes its role assignments and revokes its refresh tokens', async () => {
    const auth = t.app.auth;
    assert.ok(auth !== undefined);
    ok(await api(t, admin, 'POST', '/service-identities', { name: 'svc-gone' }), 201);
    ok(await api(t, admin, 'POST', '/role-assignments', { principal: 'service:svc-gone', role: 'AcrPush', scope: 'app/*' }), 201);
    const refresh = await auth.newRefreshToken({ sub: 'service:svc-gone' });
    assert.equal((await refreshGrant(t, refresh)).statusCode, 200);

    assert.equal((await api(t, admin, 'DELETE', '/service-identities/svc-gone')).statusCode, 204);
    assert.deepEqual(await assignments(t, admin, 'service:svc-gone'), []);
    ok(await api(t, admin, 'POST', '/service-identities', { name: 'svc-gone' }), 201);
    assertError(await refreshGrant(t, refresh), 401, 'UNAUTHORIZED');
    const push = await auth.policy.decide({ principal: 'service:svc-gone', clientAddress: '127.0.0.1', now: Date.now() }, [{ type: 'repository', name: 'app/web', actions: ['push'] }]);
    assert.deepEqual(push, []);
  });

  test('roles are assigned only to tokens, service identities and admins that exist (people are not recorded)', async () => {
    for (const principal of ['token:no-such-token', 'service:no-such-svc', 'admin:someone-else']) {
      const problems = problemsOf(await api(t, admin, 'POST', '/role-assignments', { principal, role: 'Owner' }));
      assert.deepEqual(problems, [`principal: ${principal} does not exist`]);
    }
    ok(await api(t, admin, 'POST', '/role-assignments', { principal: 'admin:bulwark-admin', role: 'Reader' }), 201);
    ok(await api(t, admin, 'POST', '/role-assignments', { principal: 'user:alice@https://login.example.com', role: 'Reader' }), 201);
  });
});

describe('a token name whose principal still holds role assignments (data from before deletes cleaned up)', () => {
  let t: TestApp;
  before(async () => {
    const store = new MemoryAuthStore();
    const orphan: RoleAssignmentRecord = { id: randomUUID(), principal: 'token:old-owner', role: 'Owner', scope: '*', createdAt: Date.now(), createdBy: 'admin:bulwark-admin' };
    await store.put('role-assignment', orphan.id, orphan, 'absent');
    const dataDir = await mkdtemp(join(tmpdir(), 'bulwark-escalation-'));
    const config = loadConfig({
      overrides: { 'storage.blobDriver': 'memory', 'storage.metadataDriver': 'memory', 'audit.file': '', 'log.level': 'silent', 'auth.enabled': true, 'auth.disableAdminOnFirstOwner': false, dataDir },
    });
    const app = await buildApp(config, { authStore: store });
    t = {
      app,
      dataDir,
      req: (method, url, opts = {}) => app.http.inject({ method, url, headers: { 'user-agent': 'bulwark-tests/1.0', ...opts.headers }, ...(opts.payload !== undefined ? { payload: opts.payload } : {}) }),
      close: async () => {
        await app.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  });
  after(() => t.close());

  test('creating the token needs the access right: 403 for a Contributor, 201 for an Owner', async () => {
    const admin = await tokenFor(t, bootstrapOf(t));
    const contributor = await tokenFor(t, await makeToken(t, admin, 'contrib-bot', { role: 'Contributor' }));
    const denied = await api(t, contributor, 'POST', '/tokens', { name: 'old-owner', scopeMap: '_repositories_pull' });
    assertError(denied, 403, 'DENIED');
    assert.match(denied.body, ROLE_HOLDER);
    assertError(await api(t, admin, 'GET', '/tokens/old-owner'), 404, 'NOT_FOUND');
    ok(await api(t, admin, 'POST', '/tokens', { name: 'old-owner', scopeMap: '_repositories_pull' }), 201);
  });
});

describe('standing credentials need admin write from a lasting assignment', () => {
  let t: TestApp;
  let admin: string;
  const events: RegistryEvent[] = [];
  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.disableAdminOnFirstOwner': false });
    admin = await tokenFor(t, bootstrapOf(t));
    ok(await api(t, admin, 'POST', '/scope-maps', { name: 'team-map', actions: ['repositories/team/*/content/read'] }), 201);
    await makeToken(t, admin, 'some-robot');
    t.app.bus.subscribe((e) => events.push(e));
  });
  beforeEach(() => {
    events.length = 0;
  });
  after(() => t.close());

  /** Every minting or widening call is refused with the clear message; narrowing ones still work. */
  async function cannotMint(who: string, caller: string): Promise<void> {
    for (const [method, path, body] of [
      ['POST', '/tokens', { name: `minted-${who}`, scopeMap: '_repositories_admin' }],
      ['POST', '/tokens/some-robot/passwords', { name: 'password2' }],
      ['POST', '/tokens/some-robot/enable', undefined],
      ['POST', '/scope-maps', { name: `map-${who}`, actions: ['repositories/*/content/write'] }],
      ['PATCH', '/scope-maps/team-map', { add: ['repositories/*/content/write'] }],
    ] as const) {
      const res = await api(t, caller, method, path, body);
      assertError(res, 403, 'DENIED');
      assert.match(res.body, LASTING, `${who}: ${method} ${path}`);
    }
    assertError(await api(t, admin, 'GET', `/tokens/minted-${who}`), 404, 'NOT_FOUND');
    assertError(await api(t, admin, 'GET', `/scope-maps/map-${who}`), 404, 'NOT_FOUND');
    assert.deepEqual(ok<{ actions: string[] }>(await api(t, admin, 'GET', '/scope-maps/team-map')).actions, ['repositories/team/*/content/read']);
    assert.ok(events.some((e) => e.type === 'auth.denied' && e.reason !== undefined && LASTING.test(e.reason)), 'the refusal is audited');
    // what does not mint or widen stays with the write right it has now
    ok(await api(t, caller, 'GET', '/tokens'));
    ok(await api(t, caller, 'POST', '/tokens/some-robot/disable'));
    ok(await api(t, caller, 'PATCH', '/scope-maps/team-map', { description: `touched by ${who}` }));
    ok(await api(t, admin, 'POST', '/tokens/some-robot/enable'));
  }

  test('a just-in-time Contributor (approved access request) cannot mint a permanent token (the review’s P7), a password or a scope map', async () => {
    const robot = await makeToken(t, admin, 'jit-robot');
    const asked = ok<{ id: string }>(
      await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', { role: 'Contributor', scope: '*', durationSeconds: 60, justification: 'hotfix for INC-1' }),
      201,
    );
    ok(await api(t, admin, 'POST', `/access-requests/${asked.id}/approve`));
    const elevated = await tokenFor(t, robot, 'registry:admin:read,write');
    assert.deepEqual(grantedBy(elevated), ['registry:admin:read,write']);
    await cannotMint('jit', elevated);
  });

  test('a Contributor with an expiry, a source network, or a validity window cannot either, though it has write now', async () => {
    const now = Date.now();
    const cases = {
      expiring: { expiresAt: new Date(now + 3_600_000).toISOString() },
      network: { conditions: { sourceCidrs: ['127.0.0.0/8', '::1/128'] } },
      window: { conditions: { notBefore: new Date(now - 60_000).toISOString(), notAfter: new Date(now + 3_600_000).toISOString() } },
    };
    for (const [who, extra] of Object.entries(cases)) {
      const created = ok<{ password: { value: string } }>(await api(t, admin, 'POST', '/tokens', { name: `contrib-${who}`, scopeMap: '_repositories_pull' }), 201);
      ok(await api(t, admin, 'POST', '/role-assignments', { principal: `token:contrib-${who}`, role: 'Contributor', ...extra }), 201);
      const caller = await tokenFor(t, { username: `contrib-${who}`, password: created.password.value }, 'registry:admin:read,write');
      assert.deepEqual(grantedBy(caller), ['registry:admin:read,write'], who);
      await cannotMint(who, caller);
    }
  });

  test('a just-in-time Owner may approve requests but not make a role assignment (it would outlive the elevation)', async () => {
    const robot = await makeToken(t, admin, 'jit-owner');
    const asked = ok<{ id: string }>(
      await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', { role: 'Owner', scope: '*', durationSeconds: 60, justification: 'rotate keys for INC-2' }),
      201,
    );
    ok(await api(t, admin, 'POST', `/access-requests/${asked.id}/approve`));
    const elevated = await tokenFor(t, robot, 'registry:admin:read,write,access');
    assert.deepEqual(grantedBy(elevated), ['registry:admin:read,write,access']);
    const res = await api(t, elevated, 'POST', '/role-assignments', { principal: 'token:jit-owner', role: 'Owner' });
    assertError(res, 403, 'DENIED');
    assert.match(res.body, /role assignments need a lasting Owner assignment/);
    assert.deepEqual((await assignments(t, admin, 'token:jit-owner')).map((a) => a.role), ['Owner'], 'only the expiring elevation');
  });

  test('a lasting Contributor, and the bootstrap admin, can', async () => {
    const lasting = await tokenFor(t, await makeToken(t, admin, 'contrib-lasting', { role: 'Contributor' }));
    ok(await api(t, lasting, 'POST', '/tokens', { name: 'minted-lasting', scopeMap: '_repositories_admin' }), 201);
    ok(await api(t, lasting, 'POST', '/tokens/minted-lasting/passwords', { name: 'password2' }), 201);
    ok(await api(t, lasting, 'POST', '/scope-maps', { name: 'map-lasting', actions: ['repositories/*/content/write'] }), 201);
    ok(await api(t, lasting, 'PATCH', '/scope-maps/map-lasting', { add: ['repositories/*/content/read'] }));
    ok(await api(t, admin, 'POST', '/tokens', { name: 'minted-admin', scopeMap: '_repositories_admin' }), 201);
  });

  test('AccessPolicy.lastingAdminRights: the enabled bootstrap admin and unconditioned, unexpiring, registry-wide assignments only', async () => {
    const policy = t.app.auth?.policy;
    assert.ok(policy !== undefined);
    const rights = async (principal: string): Promise<string[]> => [...(await policy.lastingAdminRights({ principal, clientAddress: '127.0.0.1', now: Date.now() }))].sort();
    assert.deepEqual(await rights('admin:bulwark-admin'), ['access', 'read', 'write']);
    assert.deepEqual(await rights('token:contrib-lasting'), ['read', 'write']);
    for (const p of ['token:jit-robot', 'token:contrib-expiring', 'token:contrib-network', 'token:contrib-window', 'token:some-robot', 'anonymous']) assert.deepEqual(await rights(p), [], p);
  });
});
