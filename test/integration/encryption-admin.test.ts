/**
 * Encryption at rest through the admin API, in-process (issue 4): the status shows which KEK
 * version wraps the data keys; a rotation (with a new version of the embedded vault's key)
 * re-wraps them all online, blobs stay readable, and only an identity with admin `access` may
 * start one. `bulwark encryption` drives these same endpoints (test/integration/cli.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, pushBlob, randomBlob, startApp, type Blob, type TestApp } from '../testkit/inject.js';
import { api, bootstrapOf, makeToken, ok, tokenFor } from '../testkit/admin.js';
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

  test('a pinned or unknown key is refused; only admin access may rotate', async () => {
    assertError(await api(t, admin, 'POST', '/encryption/rotate', { key: 'no-such-key' }), 400, 'BAD_REQUEST');
    assertError(await api(t, admin, 'POST', '/encryption/rotate', { key: '../etc' }), 400, 'BAD_REQUEST');
    const reader = await makeToken(t, admin, 'enc-reader', { role: 'AcrPull', scope: 'team/*' });
    const readerToken = await tokenFor(t, reader, 'registry:admin:access').catch(() => undefined);
    const res = await api(t, readerToken, 'POST', '/encryption/rotate', {});
    assert.ok(res.statusCode === 401 || res.statusCode === 403, `rotation refused without admin access: ${res.statusCode}`);
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
});
