/**
 * Distribution spec v1.1, conformance category "Content management": deleting tags, manifests
 * and blobs, deletes disabled by configuration, and the purge of abandoned upload sessions.
 */
import assert from 'node:assert/strict';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RegistryEvent } from '../../src/audit/index.js';
import { sleep } from '../testkit/streams.js';
import { assertError, header, pushBlob, pushImage, pushManifest, pushReferrer, randomBlob, startApp, startUpload, type TestApp } from '../testkit/inject.js';

async function tagsOf(t: TestApp, name: string): Promise<string[]> {
  const res = await t.req('GET', `/v2/${name}/tags/list`);
  assert.equal(res.statusCode, 200, res.body);
  return res.json<{ tags: string[] }>().tags;
}

describe('management: deletes', () => {
  let t: TestApp;
  before(async () => (t = await startApp()));
  after(() => t.close());

  it('DELETE by tag is 202 and removes only that tag; the manifest stays GETtable by digest', async () => {
    const img = await pushImage(t, 'mgmt/tag', 'v1');
    await pushManifest(t, 'mgmt/tag', 'stable', img.manifest);
    const res = await t.req('DELETE', '/v2/mgmt/tag/manifests/v1');
    assert.equal(res.statusCode, 202);
    assertError(await t.req('GET', '/v2/mgmt/tag/manifests/v1'), 404, 'MANIFEST_UNKNOWN');
    assert.deepEqual(await tagsOf(t, 'mgmt/tag'), ['stable']);
    const byDigest = await t.req('GET', `/v2/mgmt/tag/manifests/${img.manifest.digest}`);
    assert.equal(byDigest.statusCode, 200);
    assert.ok(byDigest.rawPayload.equals(img.manifest.body));
    assert.equal((await t.req('GET', '/v2/mgmt/tag/manifests/stable')).statusCode, 200);
  });

  it('DELETE by digest is 202 and removes the manifest and every tag pointing at it', async () => {
    const img = await pushImage(t, 'mgmt/digest', 'a');
    await pushManifest(t, 'mgmt/digest', 'b', img.manifest);
    const keep = await pushImage(t, 'mgmt/digest', 'keep');
    assert.equal((await t.req('DELETE', `/v2/mgmt/digest/manifests/${img.manifest.digest}`)).statusCode, 202);
    assertError(await t.req('GET', `/v2/mgmt/digest/manifests/${img.manifest.digest}`), 404, 'MANIFEST_UNKNOWN');
    assert.equal((await t.req('HEAD', `/v2/mgmt/digest/manifests/${img.manifest.digest}`)).statusCode, 404);
    assertError(await t.req('GET', '/v2/mgmt/digest/manifests/a'), 404, 'MANIFEST_UNKNOWN');
    assert.deepEqual(await tagsOf(t, 'mgmt/digest'), ['keep']);
    assert.equal(header(await t.req('HEAD', '/v2/mgmt/digest/manifests/keep'), 'docker-content-digest'), keep.manifest.digest);
  });

  it('deleting a manifest in one repository leaves the same manifest in another untouched', async () => {
    const img = await pushImage(t, 'mgmt/shared-a', 'v1');
    await pushBlob(t, 'mgmt/shared-b', img.config);
    await pushBlob(t, 'mgmt/shared-b', img.layer);
    await pushManifest(t, 'mgmt/shared-b', 'v1', img.manifest);
    assert.equal((await t.req('DELETE', `/v2/mgmt/shared-a/manifests/${img.manifest.digest}`)).statusCode, 202);
    const other = await t.req('GET', '/v2/mgmt/shared-b/manifests/v1');
    assert.equal(other.statusCode, 200);
    assert.ok(other.rawPayload.equals(img.manifest.body));
  });

  it('deleting an unknown tag or digest is 404 MANIFEST_UNKNOWN; a second delete too', async () => {
    const img = await pushImage(t, 'mgmt/twice', 'v1');
    assertError(await t.req('DELETE', '/v2/mgmt/twice/manifests/nope'), 404, 'MANIFEST_UNKNOWN');
    assertError(await t.req('DELETE', `/v2/mgmt/twice/manifests/${randomBlob(3).digest}`), 404, 'MANIFEST_UNKNOWN');
    assert.equal((await t.req('DELETE', `/v2/mgmt/twice/manifests/${img.manifest.digest}`)).statusCode, 202);
    assertError(await t.req('DELETE', `/v2/mgmt/twice/manifests/${img.manifest.digest}`), 404, 'MANIFEST_UNKNOWN');
  });

  it('a deleted referrer disappears from the referrers list', async () => {
    const img = await pushImage(t, 'mgmt/ref', 'v1');
    const ref = await pushReferrer(t, 'mgmt/ref', img.manifest.descriptor, { artifactType: 'application/vnd.example.sig' });
    const list = async (): Promise<unknown[]> => (await t.req('GET', `/v2/mgmt/ref/referrers/${img.manifest.digest}`)).json<{ manifests: unknown[] }>().manifests;
    assert.equal((await list()).length, 1);
    assert.equal((await t.req('DELETE', `/v2/mgmt/ref/manifests/${ref.digest}`)).statusCode, 202);
    assert.deepEqual(await list(), []);
  });

  it('DELETE of a blob is 202; afterwards HEAD and GET are 404 BLOB_UNKNOWN and a second DELETE is 404', async () => {
    const blob = randomBlob(100);
    await pushBlob(t, 'mgmt/blob', blob);
    const res = await t.req('DELETE', `/v2/mgmt/blob/blobs/${blob.digest}`);
    assert.equal(res.statusCode, 202);
    assert.equal((await t.req('HEAD', `/v2/mgmt/blob/blobs/${blob.digest}`)).statusCode, 404);
    assertError(await t.req('GET', `/v2/mgmt/blob/blobs/${blob.digest}`), 404, 'BLOB_UNKNOWN');
    assertError(await t.req('DELETE', `/v2/mgmt/blob/blobs/${blob.digest}`), 404, 'BLOB_UNKNOWN');
  });

  it('deleting a blob from one repository leaves it readable where it was mounted', async () => {
    const blob = randomBlob(100);
    await pushBlob(t, 'mgmt/blob-src', blob);
    assert.equal((await t.req('POST', `/v2/mgmt/blob-dst/blobs/uploads/?mount=${blob.digest}&from=mgmt/blob-src`)).statusCode, 201);
    assert.equal((await t.req('DELETE', `/v2/mgmt/blob-src/blobs/${blob.digest}`)).statusCode, 202);
    const res = await t.req('GET', `/v2/mgmt/blob-dst/blobs/${blob.digest}`);
    assert.equal(res.statusCode, 200);
    assert.ok(res.rawPayload.equals(blob.data));
  });

  it('a malformed digest on DELETE is 400 DIGEST_INVALID', async () => {
    assertError(await t.req('DELETE', '/v2/mgmt/blob/blobs/sha256:123'), 400, 'DIGEST_INVALID');
    assertError(await t.req('DELETE', '/v2/mgmt/blob/manifests/sha256:123'), 400, 'DIGEST_INVALID');
  });
});

describe('management: deletes disabled', () => {
  let t: TestApp;
  before(async () => (t = await startApp({ 'storage.deleteEnabled': false })));
  after(() => t.close());

  it('DELETE of a tag, a manifest or a blob is 405 METHOD_NOT_ALLOWED and nothing is removed', async () => {
    const img = await pushImage(t, 'ro/img', 'v1');
    assertError(await t.req('DELETE', '/v2/ro/img/manifests/v1'), 405, 'METHOD_NOT_ALLOWED');
    assertError(await t.req('DELETE', `/v2/ro/img/manifests/${img.manifest.digest}`), 405, 'METHOD_NOT_ALLOWED');
    assertError(await t.req('DELETE', `/v2/ro/img/blobs/${img.layer.digest}`), 405, 'METHOD_NOT_ALLOWED');
    assert.equal((await t.req('GET', '/v2/ro/img/manifests/v1')).statusCode, 200);
    assert.equal((await t.req('GET', `/v2/ro/img/blobs/${img.layer.digest}`)).statusCode, 200);
  });

  it('cancelling an upload session is still allowed (it deletes no content)', async () => {
    const location = await startUpload(t, 'ro/upload');
    assert.equal((await t.req('DELETE', location)).statusCode, 204);
  });
});

describe('management: purge of abandoned uploads', () => {
  const ctx = { client: { address: 'internal', userAgent: 'test', requestId: 'purge-test' } };

  it('purgeStaleUploads removes sessions idle past uploads.purgeAfterSeconds and keeps fresh ones', async () => {
    const t = await startApp({ 'storage.blobDriver': 'filesystem', 'uploads.purgeAfterSeconds': 60 });
    const events: RegistryEvent[] = [];
    t.app.bus.subscribe((e) => events.push(e));
    try {
      const stale = await startUpload(t, 'purge/fs');
      const fresh = await startUpload(t, 'purge/fs');
      await t.req('PATCH', stale, { payload: Buffer.from('abandoned') });
      const staleId = stale.split('/').pop() ?? '';
      const old = new Date(Date.now() - 3600_000);
      await utimes(join(t.dataDir, 'uploads', staleId, 'data'), old, old);

      assert.equal(await t.app.registry.blobs.purgeStaleUploads(ctx), 1);
      assertError(await t.req('GET', stale), 404, 'BLOB_UPLOAD_UNKNOWN');
      assertError(await t.req('PATCH', stale, { payload: Buffer.from('late') }), 404, 'BLOB_UPLOAD_UNKNOWN');
      assert.equal((await t.req('GET', fresh)).statusCode, 204);
      const purged = events.filter((e) => e.type === 'upload.purge');
      assert.deepEqual(purged.map((e) => [e.repository, e.uploadId, e.outcome]), [['purge/fs', staleId, 'success']]);
      assert.equal(await t.app.registry.blobs.purgeStaleUploads(ctx), 0, 'nothing left to purge');
    } finally {
      await t.close();
    }
  });

  it('the background purge removes an idle session after purgeAfterSeconds (memory store, real clock)', async () => {
    const t = await startApp({ 'uploads.purgeAfterSeconds': 1, 'uploads.purgeIntervalSeconds': 1 });
    try {
      const location = await startUpload(t, 'purge/mem');
      assert.equal((await t.req('GET', location)).statusCode, 204);
      const deadline = Date.now() + 5000;
      let status = 204;
      while (status === 204 && Date.now() < deadline) {
        await sleep(200);
        status = (await t.req('GET', location)).statusCode;
      }
      assert.equal(status, 404, 'the idle session should have been purged by the interval job');
    } finally {
      await t.close();
    }
  });
});
