/**
 * Every registry operation is an event on the bus (ARCHITECTURE principle 6): what was done, to
 * which repository/digest/tag, by which client, and whether it worked. The audit log writes the
 * same events as JSON lines.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { RegistryEvent, RegistryEventType } from '../../src/audit/index.js';
import { pushBlob, pushImage, randomBlob, startApp, startUpload, type TestApp } from '../testkit/inject.js';

const CLIENT = { remoteAddress: '10.20.30.40', headers: { 'user-agent': 'events-test/2.0' } };
const UUID_RE = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

/** The one event of `type` recorded since the last reset, checked for time and client. */
function only(events: RegistryEvent[], type: RegistryEventType): RegistryEvent {
  const found = events.filter((e) => e.type === type);
  assert.equal(found.length, 1, `expected one ${type} event, got ${JSON.stringify(events.map((e) => e.type))}`);
  const e = found[0] as RegistryEvent;
  assert.ok(!Number.isNaN(Date.parse(e.time)) && e.time.endsWith('Z'), `ISO time: ${e.time}`);
  assert.equal(e.client.address, '10.20.30.40');
  assert.equal(e.client.userAgent, 'events-test/2.0');
  assert.match(e.client.requestId, UUID_RE);
  return e;
}

describe('events on the bus', () => {
  let t: TestApp;
  const events: RegistryEvent[] = [];
  before(async () => {
    t = await startApp();
    t.app.bus.subscribe((e) => events.push(e));
  });
  beforeEach(() => {
    events.length = 0;
  });
  after(() => t.close());

  it('a monolithic blob push emits upload.start, upload.finish and blob.push with digest and size', async () => {
    const blob = randomBlob(123);
    const res = await t.req('POST', `/v2/ev/push/blobs/uploads/?digest=${blob.digest}`, { ...CLIENT, payload: blob.data });
    assert.equal(res.statusCode, 201);
    const start = only(events, 'upload.start');
    assert.equal(start.repository, 'ev/push');
    assert.equal(start.outcome, 'success');
    assert.match(start.uploadId ?? '', UUID_RE);
    const finish = only(events, 'upload.finish');
    assert.deepEqual([finish.repository, finish.digest, finish.size, finish.uploadId, finish.outcome], ['ev/push', blob.digest, 123, start.uploadId, 'success']);
    const push = only(events, 'blob.push');
    assert.deepEqual([push.repository, push.digest, push.size, push.outcome], ['ev/push', blob.digest, 123, 'success']);
  });

  it('a cancelled upload emits upload.cancel with its upload id', async () => {
    const location = await startUpload(t, 'ev/cancel');
    events.length = 0;
    assert.equal((await t.req('DELETE', location, CLIENT)).statusCode, 204);
    const e = only(events, 'upload.cancel');
    assert.deepEqual([e.repository, e.uploadId, e.outcome], ['ev/cancel', location.split('/').pop(), 'success']);
  });

  it('a manifest push by tag emits manifest.push with repository, tag, digest and size', async () => {
    const img = await pushImage(t, 'ev/man');
    events.length = 0;
    const res = await t.req('PUT', '/v2/ev/man/manifests/v1', { ...CLIENT, headers: { ...CLIENT.headers, 'content-type': img.manifest.mediaType }, payload: img.manifest.body });
    assert.equal(res.statusCode, 201);
    const e = only(events, 'manifest.push');
    assert.deepEqual([e.repository, e.tag, e.digest, e.size, e.outcome], ['ev/man', 'v1', img.manifest.digest, img.manifest.body.length, 'success']);
  });

  it('pulls emit manifest.pull (tag resolved to digest, media type) and blob.pull', async () => {
    const img = await pushImage(t, 'ev/pull', 'v1');
    events.length = 0;
    assert.equal((await t.req('GET', '/v2/ev/pull/manifests/v1', CLIENT)).statusCode, 200);
    const m = only(events, 'manifest.pull');
    assert.deepEqual([m.repository, m.tag, m.digest, m.mediaType, m.size, m.outcome], ['ev/pull', 'v1', img.manifest.digest, img.manifest.mediaType, img.manifest.body.length, 'success']);
    assert.equal((await t.req('GET', `/v2/ev/pull/blobs/${img.layer.digest}`, CLIENT)).statusCode, 200);
    const b = only(events, 'blob.pull');
    assert.deepEqual([b.repository, b.digest, b.size, b.outcome], ['ev/pull', img.layer.digest, img.layer.data.length, 'success']);
  });

  it('a cross-repository mount emits blob.mount naming the source repository', async () => {
    const blob = randomBlob(40);
    await pushBlob(t, 'ev/src', blob);
    events.length = 0;
    assert.equal((await t.req('POST', `/v2/ev/dst/blobs/uploads/?mount=${blob.digest}&from=ev/src`, CLIENT)).statusCode, 201);
    const e = only(events, 'blob.mount');
    assert.deepEqual([e.repository, e.from, e.digest, e.size, e.outcome], ['ev/dst', 'ev/src', blob.digest, 40, 'success']);
  });

  it('deletes emit tag.delete, manifest.delete and blob.delete', async () => {
    const img = await pushImage(t, 'ev/del', 'v1');
    events.length = 0;
    assert.equal((await t.req('DELETE', '/v2/ev/del/manifests/v1', CLIENT)).statusCode, 202);
    const tag = only(events, 'tag.delete');
    assert.deepEqual([tag.repository, tag.tag, tag.outcome], ['ev/del', 'v1', 'success']);
    assert.equal((await t.req('DELETE', `/v2/ev/del/manifests/${img.manifest.digest}`, CLIENT)).statusCode, 202);
    const man = only(events, 'manifest.delete');
    assert.deepEqual([man.repository, man.digest, man.outcome], ['ev/del', img.manifest.digest, 'success']);
    assert.equal((await t.req('DELETE', `/v2/ev/del/blobs/${img.layer.digest}`, CLIENT)).statusCode, 202);
    const blob = only(events, 'blob.delete');
    assert.deepEqual([blob.repository, blob.digest, blob.outcome], ['ev/del', img.layer.digest, 'success']);
  });

  it('failures are events too, with outcome failure and the registry error code', async () => {
    await pushImage(t, 'ev/fail', 'v1');
    events.length = 0;
    assert.equal((await t.req('GET', '/v2/ev/fail/manifests/missing', CLIENT)).statusCode, 404);
    const pull = only(events, 'manifest.pull');
    assert.deepEqual([pull.repository, pull.tag, pull.outcome, pull.error], ['ev/fail', 'missing', 'failure', 'MANIFEST_UNKNOWN']);

    const blob = randomBlob(10);
    const wrong = randomBlob(10).digest;
    assert.equal((await t.req('POST', `/v2/ev/fail/blobs/uploads/?digest=${wrong}`, { ...CLIENT, payload: blob.data })).statusCode, 400);
    const finish = only(events, 'upload.finish');
    assert.deepEqual([finish.repository, finish.digest, finish.outcome, finish.error], ['ev/fail', wrong, 'failure', 'DIGEST_INVALID']);
    assert.equal(events.filter((e) => e.type === 'blob.push').length, 0, 'no blob.push for a rejected blob');

    events.length = 0;
    assert.equal((await t.req('DELETE', `/v2/ev/fail/blobs/${randomBlob(5).digest}`, CLIENT)).statusCode, 404);
    const del = only(events, 'blob.delete');
    assert.deepEqual([del.outcome, del.error], ['failure', 'BLOB_UNKNOWN']);
  });

  it('a manifest push referencing a missing blob emits manifest.push failure MANIFEST_BLOB_UNKNOWN', async () => {
    const img = await pushImage(t, 'ev/src2');
    events.length = 0;
    const res = await t.req('PUT', '/v2/ev/empty/manifests/v1', { ...CLIENT, headers: { ...CLIENT.headers, 'content-type': img.manifest.mediaType }, payload: img.manifest.body });
    assert.equal(res.statusCode, 404);
    const e = only(events, 'manifest.push');
    assert.deepEqual([e.repository, e.tag, e.outcome, e.error], ['ev/empty', 'v1', 'failure', 'MANIFEST_BLOB_UNKNOWN']);
  });

  it('a denied delete (deletes disabled) is recorded as failure METHOD_NOT_ALLOWED', async () => {
    const ro = await startApp({ 'storage.deleteEnabled': false });
    const seen: RegistryEvent[] = [];
    ro.app.bus.subscribe((e) => seen.push(e));
    try {
      const img = await pushImage(ro, 'ev/ro', 'v1');
      seen.length = 0;
      assert.equal((await ro.req('DELETE', `/v2/ev/ro/manifests/${img.manifest.digest}`, CLIENT)).statusCode, 405);
      const e = only(seen, 'manifest.delete');
      assert.deepEqual([e.repository, e.digest, e.outcome, e.error], ['ev/ro', img.manifest.digest, 'failure', 'METHOD_NOT_ALLOWED']);
    } finally {
      await ro.close();
    }
  });
});

describe('audit log', () => {
  it('writes every bus event as one JSON line, flushed by app.close()', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-audit-'));
    const file = join(dir, 'nested', 'audit.log');
    const t = await startApp({ 'audit.file': file });
    const seen: RegistryEvent[] = [];
    t.app.bus.subscribe((e) => seen.push(e));
    try {
      const img = await pushImage(t, 'audit/repo', 'v1');
      assert.equal((await t.req('GET', '/v2/audit/repo/manifests/v1', CLIENT)).statusCode, 200);
      assert.equal((await t.req('GET', '/v2/audit/repo/manifests/nope', CLIENT)).statusCode, 404);
      assert.equal((await t.req('DELETE', `/v2/audit/repo/blobs/${img.layer.digest}`, CLIENT)).statusCode, 202);
    } finally {
      await t.close();
    }
    try {
      const text = await readFile(file, 'utf8');
      assert.ok(text.endsWith('\n'));
      const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as RegistryEvent);
      assert.deepEqual(lines, JSON.parse(JSON.stringify(seen)), 'the log holds exactly the bus events, in order');
      const pull = lines.find((e) => e.type === 'manifest.pull' && e.outcome === 'success');
      assert.equal(pull?.repository, 'audit/repo');
      assert.equal(pull?.tag, 'v1');
      assert.equal(pull?.client.address, '10.20.30.40');
      assert.equal(pull?.client.userAgent, 'events-test/2.0');
      const failed = lines.find((e) => e.type === 'manifest.pull' && e.outcome === 'failure');
      assert.equal(failed?.error, 'MANIFEST_UNKNOWN');
      assert.ok(lines.some((e) => e.type === 'blob.delete' && e.outcome === 'success'));
      assert.ok(lines.some((e) => e.type === 'manifest.push' && e.tag === 'v1'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
