/**
 * Just-in-time access through the admin API: an identity asks for a role for a while, an Owner
 * approves (never the requester itself), the requester's next token carries the elevation, and
 * it ends on its own. Every step is an audit event.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { RegistryEvent } from '../../src/audit/index.js';
import { assertError, startApp, type TestApp } from '../testkit/inject.js';
import { api, bootstrapOf, grantedBy, makeToken, ok, problemsOf, signIn, tokenFor, type Creds } from '../testkit/admin.js';

interface AccessRequest {
  id: string;
  principal: string;
  status: string;
  expiresAt?: string;
  assignment?: string;
  decidedBy?: string;
  reason?: string;
}

const PUSH = 'repository:app/web:push';
const ASK = { role: 'RepositoryContributor', scope: 'app/*', durationSeconds: 3600, justification: 'hotfix for incident 4711' };

describe('just-in-time access', () => {
  let t: TestApp;
  let admin: string;
  let robot: Creds;
  const events: RegistryEvent[] = [];
  const ofType = (type: string): RegistryEvent[] => events.filter((e) => e.type === type);
  before(async () => {
    t = await startApp({ 'auth.enabled': true });
    admin = await tokenFor(t, bootstrapOf(t));
    robot = await makeToken(t, admin, 'jit-robot', { scopeMap: '_repositories_pull' });
    t.app.bus.subscribe((e) => events.push(e));
  });
  beforeEach(() => {
    events.length = 0;
  });
  after(() => t.close());

  test('request → approve → the next token has the elevation → it expires and the access is gone', async () => {
    assert.deepEqual(grantedBy(await tokenFor(t, robot, PUSH)), [], 'push before the elevation');
    const asked = ok<AccessRequest>(await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', ASK), 201);
    assert.equal(asked.status, 'pending');
    assert.equal(asked.principal, 'token:jit-robot');
    assert.equal(ofType('access.request').length, 1);
    assert.equal(ofType('access.request')[0]?.reason, ASK.justification);

    const approved = ok<AccessRequest>(await api(t, admin, 'POST', `/access-requests/${asked.id}/approve`));
    assert.equal(approved.status, 'approved');
    assert.equal(approved.decidedBy, 'admin:bulwark-admin');
    const expiresAt = Date.parse(approved.expiresAt ?? '');
    assert.ok(Math.abs(expiresAt - (Date.now() + 3_600_000)) < 10_000, `expiresAt ${approved.expiresAt}`);
    assert.equal(ofType('access.approve').length, 1);
    const assignment = ok<{ items: { id: string; accessRequest?: string }[] }>(await api(t, admin, 'GET', '/role-assignments?principal=token%3Ajit-robot')).items;
    assert.deepEqual(assignment.map((a) => [a.id, a.accessRequest]), [[approved.assignment, asked.id]]);

    assert.deepEqual(grantedBy(await tokenFor(t, robot, PUSH)), [PUSH]);
    const used = ofType('access.use');
    assert.equal(used.length, 1);
    assert.equal(used[0]?.principal, 'token:jit-robot');
    assert.match(used[0]?.target ?? '', new RegExp(asked.id));
    events.length = 0;
    await tokenFor(t, robot, 'repository:lib/base:pull');
    assert.equal(ofType('access.use').length, 0, 'a token the elevation adds nothing to is not a use');

    // The assignment stops applying at expiresAt by itself; the sweep records it and cleans up.
    const policy = t.app.auth?.policy;
    assert.ok(policy !== undefined);
    const later = { principal: 'token:jit-robot', clientAddress: '127.0.0.1', now: expiresAt + 1 };
    assert.deepEqual(await policy.decide(later, [{ type: 'repository', name: 'app/web', actions: ['push'] }]), []);
    assert.equal(await t.app.auth?.accessRequests.expireDue(expiresAt - 1000), 0);
    assert.equal(await t.app.auth?.accessRequests.expireDue(expiresAt + 1), 1);
    assert.equal(ofType('access.expire').length, 1);
    assert.equal(ok<AccessRequest>(await api(t, admin, 'GET', `/access-requests/${asked.id}`)).status, 'expired');
    assert.deepEqual(ok<{ items: unknown[] }>(await api(t, admin, 'GET', '/role-assignments?principal=token%3Ajit-robot')).items, []);
    assert.deepEqual(grantedBy(await tokenFor(t, robot, PUSH)), []);
  });

  test('a request cannot be approved by its requester, nor by anyone without the access right', async () => {
    const own = ok<AccessRequest>(await api(t, admin, 'POST', '/access-requests', { ...ASK, role: 'Contributor', scope: '*' }), 201);
    assertError(await api(t, admin, 'POST', `/access-requests/${own.id}/approve`), 403, 'DENIED');
    const contributor = await tokenFor(t, await makeToken(t, admin, 'jit-contrib', { role: 'Contributor' }));
    assertError(await api(t, contributor, 'POST', `/access-requests/${own.id}/approve`), 403, 'DENIED');
    assertError(await api(t, contributor, 'POST', `/access-requests/${own.id}/deny`), 403, 'DENIED');
    assert.equal(ofType('access.approve').length, 0);
    assert.equal(ok<AccessRequest>(await api(t, admin, 'GET', `/access-requests/${own.id}`)).status, 'pending');
  });

  test('deny records the reason; a decided request cannot be decided again', async () => {
    const asked = ok<AccessRequest>(await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', ASK), 201);
    const denied = ok<AccessRequest>(await api(t, admin, 'POST', `/access-requests/${asked.id}/deny`, { reason: 'use the release pipeline' }));
    assert.equal(denied.status, 'denied');
    assert.equal(denied.reason, 'use the release pipeline');
    assert.equal(ofType('access.deny')[0]?.reason, 'use the release pipeline');
    assertError(await api(t, admin, 'POST', `/access-requests/${asked.id}/approve`), 400, 'BAD_REQUEST');
    const bare = ok<AccessRequest>(await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', ASK), 201);
    assert.equal(ok<AccessRequest>(await api(t, admin, 'POST', `/access-requests/${bare.id}/deny`)).status, 'denied');
    assertError(await api(t, admin, 'POST', '/access-requests/00000000-0000-4000-8000-000000000000/approve'), 404, 'NOT_FOUND');
  });

  test('requests are validated: role, scope, duration 60 s to 24 h, justification', async () => {
    const robotToken = await tokenFor(t, robot, '');
    const schema = problemsOf(await api(t, robotToken, 'POST', '/access-requests', { role: 'God', scope: 'app/*', durationSeconds: 30, justification: 'short' }));
    assert.equal(schema.length, 3, schema.join(' | '));
    problemsOf(await api(t, robotToken, 'POST', '/access-requests', { ...ASK, durationSeconds: 86_401 }));
    const meaning = problemsOf(await api(t, robotToken, 'POST', '/access-requests', { ...ASK, role: 'Contributor', justification: 'hidden \u202e text here' }));
    assert.equal(meaning.length, 2, meaning.join(' | '));
  });

  test('an identity without admin read sees only its own requests', async () => {
    const robotToken = await tokenFor(t, robot, 'registry:admin:read');
    const all = ok<{ items: AccessRequest[] }>(await api(t, admin, 'GET', '/access-requests')).items;
    assert.ok(all.some((r) => r.principal === 'admin:bulwark-admin'));
    const mine = ok<{ items: AccessRequest[] }>(await api(t, robotToken, 'GET', '/access-requests')).items;
    assert.ok(mine.length > 0 && mine.every((r) => r.principal === 'token:jit-robot'));
    const other = all.find((r) => r.principal !== 'token:jit-robot');
    assertError(await api(t, robotToken, 'GET', `/access-requests/${other?.id ?? ''}`), 404, 'NOT_FOUND');
    assertError(await api(t, undefined, 'GET', '/access-requests'), 401, 'UNAUTHORIZED');
  });

  test('an undecided request lapses after 24 h', async () => {
    const asked = ok<AccessRequest>(await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', ASK), 201);
    await t.app.auth?.accessRequests.expireDue(Date.now() + 86_400_001);
    assert.equal(ok<AccessRequest>(await api(t, admin, 'GET', `/access-requests/${asked.id}`)).status, 'expired');
    assert.ok(ofType('access.expire').some((e) => e.target?.includes(asked.id) === true && e.reason === 'not decided within 24 h'));
  });

  test('an approved Owner elevation does not disable the bootstrap admin (it would leave no Owner when it ends)', async () => {
    const asked = ok<AccessRequest>(await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', { ...ASK, role: 'Owner', scope: '*' }), 201);
    ok(await api(t, admin, 'POST', `/access-requests/${asked.id}/approve`));
    assert.equal(ok<{ admins: { enabled: boolean }[] }>(await api(t, admin, 'GET', '/admin')).admins[0]?.enabled, true);
  });
});

describe('just-in-time access while the key vault refuses to sign (ADR 0018)', () => {
  test('no token is issued (503) and no use of the elevation is audited; once the key is enabled, both happen', async () => {
    // No data-key cache: the signing key is opened through the vault for every token.
    const t = await startApp({ 'auth.enabled': true, 'encryption.dataKeyCacheSeconds': 0 });
    const events: RegistryEvent[] = [];
    try {
      const admin = await tokenFor(t, bootstrapOf(t));
      const robot = await makeToken(t, admin, 'jit-vault-robot', { scopeMap: '_repositories_pull' });
      const asked = ok<AccessRequest>(await api(t, await tokenFor(t, robot, ''), 'POST', '/access-requests', ASK), 201);
      ok(await api(t, admin, 'POST', `/access-requests/${asked.id}/approve`));
      t.app.bus.subscribe((e) => events.push(e));
      const vault = t.app.encryption?.vaults.get('local');
      assert.ok(vault !== undefined, 'the app has its embedded vault');
      await vault.setEnabled('bulwark-registry', 'bulwark-kek', false);
      assertError(await signIn(t, robot, PUSH), 503, 'UNAVAILABLE');
      assert.deepEqual(events.filter((e) => e.type === 'access.use'), [], 'no token, no use');
      await vault.setEnabled('bulwark-registry', 'bulwark-kek', true);
      assert.deepEqual(grantedBy(await tokenFor(t, robot, PUSH)), [PUSH]);
      assert.equal(events.filter((e) => e.type === 'access.use').length, 1);
    } finally {
      await t.close();
    }
  });
});
