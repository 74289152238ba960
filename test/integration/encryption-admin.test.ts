/**
 * Encryption at rest through the admin API, in-process (issue 4): the status shows which KEK
 * version wraps the data keys; a rotation (with a new version of the embedded vault's key)
 * re-wraps them all online, blobs stay readable, and only an identity with admin `access` may
 * start one. `bulwark encryption` drives these same endpoints (test/integration/cli.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, pushBlob, randomBlob, startApp, type Blob, type TestApp } from '../testkit/inject.js';
import { api, bootstrapOf, ok, tokenFor } from '../testkit/admin.js';
import { fetchToken, withToken } from '../testkit/auth-client.js';

interface Kek {
  vault: string;
  name: string;
  version: string;
}
interface Status {
  enabled: boolean;
  target: Kek;
  followsNewest: boolean;
  health: { ok: boolean };
  dataKeys: { kek: Kek; kind: string; count: number }[];
  lastRotation?: { finishedAt?: string; rewrapped: number; failed: number; target: Kek };
  running?: unknown;
}

describe('encryption admin API', () => {
  let t: TestApp;
  let admin: string;
  let blobs: Blob[];
  before(async () => {
    t = await startApp({ 'auth.enabled': true });
    admin = await tokenFor(t, bootstrapOf(t));
    const pusher = withToken(t, await fetchToken(t, bootstrapOf(t), ['repository:team/app:push,pull']));
    blobs = Array.from({ length: 12 }, () => randomBlob(3000));
    for (const b of blobs) await pushBlob(pusher, 'team/app', b);
  });
  after(() => t.close());

  async function status(): Promise<Status> {
    return ok<Status>(await api(t, admin, 'GET', '/encryption'));
  }

  test('status: every data key is wrapped by the current version of the embedded vault\'s key', async () => {
    const s = await status();
    assert.equal(s.enabled, true);
    assert.deepEqual([s.target.vault, s.target.name, s.followsNewest, s.health.ok], ['local', 'bulwark-kek', true, true]);
    assert.deepEqual(s.dataKeys.map((d) => [d.kek.version, d.kind, d.count]), [[s.target.version, 'blob', 12]]);
  });

  test('rotate with a new version re-wraps every data key online; blobs still read back', async () => {
    const before = await status();
    const started = ok<{ total: number; target: Kek }>(await api(t, admin, 'POST', '/encryption/rotate', { newVersion: true }));
    assert.notEqual(started.target.version, before.target.version, 'the rotation targets the new version');
    let s = await status();
    for (let i = 0; i < 200 && s.lastRotation?.finishedAt === undefined; i++) {
      await new Promise((r) => setTimeout(r, 25));
      s = await status();
    }
    assert.equal(s.lastRotation?.rewrapped, 12, 'all data keys re-wrapped');
    assert.equal(s.lastRotation.failed, 0);
    assert.deepEqual(s.dataKeys.map((d) => [d.kek.version, d.count]), [[started.target.version, 12]]);
    const puller = withToken(t, await fetchToken(t, bootstrapOf(t), ['repository:team/app:pull']));
    for (const b of blobs) {
      const res = await puller.req('GET', `/v2/team/app/blobs/${b.digest}`);
      assert.equal(res.statusCode, 200, `pull ${b.digest}`);
      assert.ok(res.rawPayload.equals(b.data), `blob ${b.digest} intact after rotation`);
    }
  });

  test('an unknown key is refused; a token that may only read the status cannot rotate', async () => {
    assertError(await api(t, admin, 'POST', '/encryption/rotate', { key: 'no-such-key' }), 400, 'BAD_REQUEST');
    assertError(await api(t, admin, 'POST', '/encryption/rotate', { key: '../etc' }), 400, 'BAD_REQUEST');
    const readOnly = await tokenFor(t, bootstrapOf(t), 'registry:admin:read');
    assert.equal(ok<Status>(await api(t, readOnly, 'GET', '/encryption')).enabled, true, 'read suffices for the status');
    const res = await api(t, readOnly, 'POST', '/encryption/rotate', {});
    assertError(res, 403, 'DENIED');
    assert.match(res.body, /registry:admin:access/);
  });

  test('every key-vault call is an audit event on the bus: who, which key and version, the outcome', async () => {
    const seen: { principal?: string | undefined; target?: string | undefined; reason?: string | undefined; outcome: string }[] = [];
    const off = t.app.bus.subscribe((e) => {
      if (e.type === 'key.operation') seen.push(e);
    });
    try {
      const pusher = withToken(t, await fetchToken(t, bootstrapOf(t), ['repository:team/audit:push']));
      await pushBlob(pusher, 'team/audit', randomBlob(100));
    } finally {
      off();
    }
    const wraps = seen.filter((e) => e.reason === 'wrapKey');
    assert.equal(wraps.length, 1, `one wrap per pushed blob: ${JSON.stringify(seen)}`);
    assert.equal(wraps[0]?.principal, 'bulwark-registry');
    assert.match(wraps[0]?.target ?? '', /^bulwark-kek\/\S+$/);
    assert.equal(wraps[0]?.outcome, 'success');
  });
});

describe('encryption failure modes through the API', () => {
  let t: TestApp;
  let admin: string;
  before(async () => {
    // No data-key cache: revocation takes effect at the next request.
    t = await startApp({ 'auth.enabled': true, 'encryption.dataKeyCacheSeconds': 0 });
    admin = await tokenFor(t, bootstrapOf(t));
  });
  after(() => t.close());

  test('a disabled key: pushes and pulls fail closed with 503, check-health says CMK_ERROR; enabling it restores service without a restart', async () => {
    const token = await fetchToken(t, bootstrapOf(t), ['repository:team/app:push,pull']);
    const client = withToken(t, token);
    const blob = randomBlob(5000);
    await pushBlob(client, 'team/app', blob);
    const healthy = ok<{ ok: boolean; checks: { name: string; ok: boolean }[] }>(await api(t, admin, 'GET', '/health'));
    assert.deepEqual(healthy.checks.map((c) => [c.name, c.ok]), [['METADATA', true], ['BLOBS', true], ['CMK', true]]);

    const vault = t.app.encryption?.vaults.get('local');
    assert.ok(vault !== undefined, 'the app has its embedded vault');
    await vault.setEnabled('bulwark-registry', 'bulwark-kek', false);
    const pull = await client.req('GET', `/v2/team/app/blobs/${blob.digest}`);
    assertError(pull, 503, 'UNAVAILABLE');
    assert.match(pull.body, /KEY_DISABLED/);
    assert.ok(!pull.body.includes(blob.data.subarray(0, 16).toString('latin1')), 'no plaintext in the error');
    assertError(await client.req('POST', '/v2/team/app/blobs/uploads/'), 503, 'UNAVAILABLE');
    const status = ok<{ health: { ok: boolean; error?: string } }>(await api(t, admin, 'GET', '/encryption'));
    assert.equal(status.health.ok, false, 'the status shows the failure (getKey still answers for a disabled key)');
    assert.match(status.health.error ?? '', /KEY_DISABLED/);
    const sick = ok<{ ok: boolean; checks: { name: string; ok: boolean; code?: string; message?: string }[] }>(await api(t, admin, 'GET', '/health'));
    assert.equal(sick.ok, false);
    const cmk = sick.checks.find((c) => c.name === 'CMK');
    assert.equal(cmk?.code, 'CMK_ERROR');
    assert.match(cmk.message ?? '', /KEY_DISABLED/);

    await vault.setEnabled('bulwark-registry', 'bulwark-kek', true);
    const again = await client.req('GET', `/v2/team/app/blobs/${blob.digest}`);
    assert.equal(again.statusCode, 200, 'service is back without a restart');
    assert.ok(again.rawPayload.equals(blob.data), 'and the data is intact');
    assert.equal(ok<{ ok: boolean }>(await api(t, admin, 'GET', '/health')).ok, true);
  });

  test('the registry losing unwrapKey fails closed; restoring the permission restores service', async () => {
    const client = withToken(t, await fetchToken(t, bootstrapOf(t), ['repository:team/perm:push,pull']));
    const blob = randomBlob(2000);
    await pushBlob(client, 'team/perm', blob);
    const vault = t.app.encryption?.vaults.get('local');
    assert.ok(vault !== undefined, 'the app has its embedded vault');
    await vault.setAccessPolicy('bulwark-registry', 'bulwark-registry', ['get', 'wrapKey', 'manage']);
    const refused = await client.req('GET', `/v2/team/perm/blobs/${blob.digest}`);
    assertError(refused, 503, 'UNAVAILABLE');
    assert.match(refused.body, /FORBIDDEN/);
    await vault.setAccessPolicy('bulwark-registry', 'bulwark-registry', ['get', 'wrapKey', 'unwrapKey', 'manage']);
    const back = await client.req('GET', `/v2/team/perm/blobs/${blob.digest}`);
    assert.equal(back.statusCode, 200, 'service is back');
    assert.ok(back.rawPayload.equals(blob.data), 'and the data is intact');
  });
});

describe('automatic rotation', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'encryption.rotationCheckSeconds': 10 });
  });
  after(() => t.close());

  test('a new version of the key in the vault is adopted and every data key re-wrapped within the check interval', async () => {
    const client = withToken(t, await fetchToken(t, bootstrapOf(t), ['repository:team/auto:push,pull']));
    const blobs = Array.from({ length: 5 }, () => randomBlob(1000));
    for (const b of blobs) await pushBlob(client, 'team/auto', b);
    const vault = t.app.encryption?.vaults.get('local');
    assert.ok(vault !== undefined, 'the app has its embedded vault');
    // As an operator rotating the key in the vault itself (not through Bulwark).
    const newest = (await vault.rotateKey('bulwark-registry', 'bulwark-kek')).version;
    const admin = await tokenFor(t, bootstrapOf(t));
    let s = ok<Status>(await api(t, admin, 'GET', '/encryption'));
    const deadline = Date.now() + 25_000;
    while (!(s.dataKeys.length === 1 && s.dataKeys[0]?.kek.version === newest) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      s = ok<Status>(await api(t, admin, 'GET', '/encryption'));
    }
    assert.deepEqual(s.dataKeys.map((d) => [d.kek.version, d.count]), [[newest, 5]], 'all data keys under the new version');
    for (const b of blobs) assert.equal((await client.req('GET', `/v2/team/auto/blobs/${b.digest}`)).statusCode, 200);
  });
});
