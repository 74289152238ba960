/**
 * Distribution spec v1.1, conformance category "Push" (blobs): monolithic POST and POST+PUT,
 * chunked PATCH uploads with their Location/Range headers, session status and cancel, digest
 * verification, cross-repository mounts, and hostile upload ids and names.
 * Manifest pushes are in push-manifests.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, errorCode, header, pushBlob, pushBlobChunked, randomBlob, startApp, startUpload, type Res, type TestApp } from '../testkit/inject.js';

const UUID_RE = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

/** Every upload-session response: Location of the session, Range 0-<last byte>, Docker-Upload-UUID. */
function assertSession(res: Res, status: number, name: string, lastByte: number): string {
  assert.equal(res.statusCode, status, res.body);
  const location = header(res, 'location') ?? '';
  const m = new RegExp(`^/v2/${name}/blobs/uploads/([^/?]+)$`).exec(location);
  assert.ok(m !== null, `Location ${location}`);
  assert.match(m[1] ?? '', UUID_RE);
  assert.equal(header(res, 'docker-upload-uuid'), m[1]);
  assert.equal(header(res, 'range'), `0-${lastByte}`);
  return location;
}

async function assertBlobStored(t: TestApp, name: string, data: Buffer, digest: string): Promise<void> {
  const res = await t.req('GET', `/v2/${name}/blobs/${digest}`);
  assert.equal(res.statusCode, 200);
  assert.ok(res.rawPayload.equals(data));
}

describe('push: blobs', () => {
  let t: TestApp;
  before(async () => (t = await startApp()));
  after(() => t.close());

  it('single POST ?digest= stores the blob: 201 with Location and Docker-Content-Digest', async () => {
    const blob = randomBlob(500);
    const res = await t.req('POST', `/v2/push/mono/blobs/uploads/?digest=${blob.digest}`, { payload: blob.data, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(res.statusCode, 201);
    assert.equal(header(res, 'location'), `/v2/push/mono/blobs/${blob.digest}`);
    assert.equal(header(res, 'docker-content-digest'), blob.digest);
    await assertBlobStored(t, 'push/mono', blob.data, blob.digest);
  });

  it('POST then PUT ?digest= with the whole body stores the blob', async () => {
    const blob = randomBlob(700);
    const post = await t.req('POST', '/v2/push/postput/blobs/uploads/');
    const location = assertSession(post, 202, 'push/postput', 0);
    const put = await t.req('PUT', `${location}?digest=${blob.digest}`, { payload: blob.data, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(put.statusCode, 201, put.body);
    assert.equal(header(put, 'location'), `/v2/push/postput/blobs/${blob.digest}`);
    assert.equal(header(put, 'docker-content-digest'), blob.digest);
    await assertBlobStored(t, 'push/postput', blob.data, blob.digest);
    assertError(await t.req('GET', location), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('chunked PATCHes report Location, Range 0-<size-1> and Docker-Upload-UUID at every step', async () => {
    const blob = randomBlob(300);
    let location = await startUpload(t, 'push/chunked');
    for (const [start, end] of [[0, 99], [100, 199], [200, 299]] as const) {
      const res = await t.req('PATCH', location, {
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end}` },
        payload: blob.data.subarray(start, end + 1),
      });
      location = assertSession(res, 202, 'push/chunked', end);
      assertSession(await t.req('GET', location), 204, 'push/chunked', end);
    }
    const put = await t.req('PUT', `${location}?digest=${blob.digest}`);
    assert.equal(put.statusCode, 201, put.body);
    assert.equal(header(put, 'docker-content-digest'), blob.digest);
    await assertBlobStored(t, 'push/chunked', blob.data, blob.digest);
  });

  it('the last chunk may come with the closing PUT, with its Content-Range', async () => {
    const blob = randomBlob(200);
    const location = await startUpload(t, 'push/lastput');
    assertSession(await t.req('PATCH', location, { headers: { 'content-range': '0-149' }, payload: blob.data.subarray(0, 150) }), 202, 'push/lastput', 149);
    const put = await t.req('PUT', `${location}?digest=${blob.digest}`, { headers: { 'content-range': '150-199' }, payload: blob.data.subarray(150) });
    assert.equal(put.statusCode, 201, put.body);
    await assertBlobStored(t, 'push/lastput', blob.data, blob.digest);
  });

  it('a PATCH without Content-Range (streamed upload) appends', async () => {
    const blob = randomBlob(64);
    const location = await startUpload(t, 'push/streamed');
    assertSession(await t.req('PATCH', location, { payload: blob.data }), 202, 'push/streamed', 63);
    assert.equal((await t.req('PUT', `${location}?digest=${blob.digest}`)).statusCode, 201);
  });

  it('an out-of-order chunk is 416 with the current Range, and the session stays usable', async () => {
    const blob = randomBlob(200);
    const location = await startUpload(t, 'push/ooo');
    await t.req('PATCH', location, { headers: { 'content-range': '0-99' }, payload: blob.data.subarray(0, 100) });
    const gap = await t.req('PATCH', location, { headers: { 'content-range': '150-199' }, payload: blob.data.subarray(150) });
    assertError(gap, 416, 'RANGE_INVALID');
    assert.equal(header(gap, 'range'), '0-99');
    const overlap = await t.req('PATCH', location, { headers: { 'content-range': '50-149' }, payload: blob.data.subarray(50, 150) });
    assertError(overlap, 416, 'RANGE_INVALID');
    assertSession(await t.req('GET', location), 204, 'push/ooo', 99);
    await t.req('PATCH', location, { headers: { 'content-range': '100-199' }, payload: blob.data.subarray(100) });
    assert.equal((await t.req('PUT', `${location}?digest=${blob.digest}`)).statusCode, 201);
    await assertBlobStored(t, 'push/ooo', blob.data, blob.digest);
  });

  it('a Content-Range that disagrees with Content-Length or is malformed is 416', async () => {
    const location = await startUpload(t, 'push/badrange');
    assertError(await t.req('PATCH', location, { headers: { 'content-range': '0-9' }, payload: Buffer.alloc(5) }), 416, 'RANGE_INVALID');
    assertError(await t.req('PATCH', location, { headers: { 'content-range': '9-0' }, payload: Buffer.alloc(5) }), 416, 'RANGE_INVALID');
    assertSession(await t.req('GET', location), 204, 'push/badrange', 0);
  });

  it('DELETE of a session is 204; afterwards the session is 404 BLOB_UPLOAD_UNKNOWN', async () => {
    const location = await startUpload(t, 'push/cancel');
    await t.req('PATCH', location, { payload: Buffer.from('partial') });
    assert.equal((await t.req('DELETE', location)).statusCode, 204);
    assertError(await t.req('GET', location), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await t.req('PATCH', location, { payload: Buffer.from('more') }), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await t.req('PUT', `${location}?digest=${randomBlob(1).digest}`), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await t.req('DELETE', location), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('a session is only reachable through the repository that opened it', async () => {
    const location = await startUpload(t, 'push/owner');
    const id = location.split('/').pop() ?? '';
    assertError(await t.req('GET', `/v2/push/intruder/blobs/uploads/${id}`), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertError(await t.req('PATCH', `/v2/push/intruder/blobs/uploads/${id}`, { payload: Buffer.from('x') }), 404, 'BLOB_UPLOAD_UNKNOWN');
    assertSession(await t.req('GET', location), 204, 'push/owner', 0);
  });

  it('a wrong digest on single POST is 400 DIGEST_INVALID and stores nothing', async () => {
    const blob = randomBlob(100);
    const wrong = randomBlob(100).digest;
    assertError(await t.req('POST', `/v2/push/wrong/blobs/uploads/?digest=${wrong}`, { payload: blob.data }), 400, 'DIGEST_INVALID');
    assert.equal((await t.req('HEAD', `/v2/push/wrong/blobs/${wrong}`)).statusCode, 404);
    assert.equal((await t.req('HEAD', `/v2/push/wrong/blobs/${blob.digest}`)).statusCode, 404);
    assert.equal(await t.app.blobs.stat(wrong as `sha256:${string}`), undefined);
    const sessions = await Promise.all((await t.app.blobs.staleUploads(Date.now() + 60_000)).map((id) => t.app.blobs.getUpload(id)));
    assert.deepEqual(sessions.filter((u) => u?.repository === 'push/wrong'), [], 'the failed session must not linger');
  });

  it('a wrong digest on the closing PUT is DIGEST_INVALID, stores nothing and ends the session', async () => {
    const blob = randomBlob(100);
    const wrong = randomBlob(100).digest;
    const location = await startUpload(t, 'push/wrongput');
    await t.req('PATCH', location, { payload: blob.data });
    assertError(await t.req('PUT', `${location}?digest=${wrong}`), 400, 'DIGEST_INVALID');
    assert.equal((await t.req('HEAD', `/v2/push/wrongput/blobs/${wrong}`)).statusCode, 404);
    assert.equal((await t.req('HEAD', `/v2/push/wrongput/blobs/${blob.digest}`)).statusCode, 404);
    assertError(await t.req('GET', location), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('a closing PUT without ?digest= is DIGEST_INVALID; a malformed one too', async () => {
    const location = await startUpload(t, 'push/nodigest');
    assertError(await t.req('PUT', location, { payload: Buffer.from('abc') }), 400, 'DIGEST_INVALID');
    const other = await startUpload(t, 'push/nodigest');
    assertError(await t.req('PUT', `${other}?digest=sha256:zz`), 400, 'DIGEST_INVALID');
  });

  it('a body longer or shorter than Content-Length is 400 SIZE_INVALID and stores nothing', async () => {
    const blob = randomBlob(100);
    for (const declared of ['90', '110']) {
      const res = await t.req('POST', `/v2/push/size/blobs/uploads/?digest=${blob.digest}`, { payload: blob.data, headers: { 'content-length': declared } });
      assertError(res, 400, 'SIZE_INVALID');
    }
    assert.equal((await t.req('HEAD', `/v2/push/size/blobs/${blob.digest}`)).statusCode, 404);
  });

  it('a failed PATCH is rolled back: the session keeps its previous size', async () => {
    const location = await startUpload(t, 'push/rollback');
    await t.req('PATCH', location, { payload: Buffer.alloc(10, 1) });
    assertError(await t.req('PATCH', location, { payload: Buffer.alloc(20, 2), headers: { 'content-length': '25' } }), 400, 'SIZE_INVALID');
    assertSession(await t.req('GET', location), 204, 'push/rollback', 9);
  });

  it('a sha512 blob is accepted and served under its sha512 digest', async () => {
    const blob = randomBlob(333, 'sha512');
    await pushBlob(t, 'push/sha512', blob);
    const head = await t.req('HEAD', `/v2/push/sha512/blobs/${blob.digest}`);
    assert.equal(head.statusCode, 200);
    assert.equal(header(head, 'docker-content-digest'), blob.digest);
    await assertBlobStored(t, 'push/sha512', blob.data, blob.digest);
    const chunked = randomBlob(200, 'sha512');
    await pushBlobChunked(t, 'push/sha512', chunked, 64);
    await assertBlobStored(t, 'push/sha512', chunked.data, chunked.digest);
  });

  it('pushing content that is already stored succeeds (deduplicated)', async () => {
    const blob = randomBlob(50);
    await pushBlob(t, 'push/dedupe-a', blob);
    await pushBlob(t, 'push/dedupe-b', blob);
    await assertBlobStored(t, 'push/dedupe-b', blob.data, blob.digest);
  });
});

describe('push: cross-repository mount', () => {
  let t: TestApp;
  const blob = randomBlob(400);
  before(async () => {
    t = await startApp();
    await pushBlob(t, 'mount/source', blob);
  });
  after(() => t.close());

  it('mount with from= is 201 with Location and Docker-Content-Digest, and the blob is readable', async () => {
    const res = await t.req('POST', `/v2/mount/target/blobs/uploads/?mount=${blob.digest}&from=mount/source`);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(header(res, 'location'), `/v2/mount/target/blobs/${blob.digest}`);
    assert.equal(header(res, 'docker-content-digest'), blob.digest);
    await assertBlobStored(t, 'mount/target', blob.data, blob.digest);
  });

  it('mount from a repository that lacks the blob falls back to 202 and an upload session', async () => {
    const missing = randomBlob(10);
    const res = await t.req('POST', `/v2/mount/target2/blobs/uploads/?mount=${missing.digest}&from=mount/source`);
    const location = assertSession(res, 202, 'mount/target2', 0);
    assert.equal((await t.req('PUT', `${location}?digest=${missing.digest}`, { payload: missing.data })).statusCode, 201);
    assert.equal((await t.req('HEAD', `/v2/mount/target2/blobs/${blob.digest}`)).statusCode, 404, 'nothing else was mounted');
  });

  it('mount from a repository that does not exist falls back to 202', async () => {
    const res = await t.req('POST', `/v2/mount/target3/blobs/uploads/?mount=${blob.digest}&from=mount/nowhere`);
    assertSession(res, 202, 'mount/target3', 0);
    assert.equal((await t.req('HEAD', `/v2/mount/target3/blobs/${blob.digest}`)).statusCode, 404);
  });

  it('mount without from= finds a source automatically (201)', async () => {
    const res = await t.req('POST', `/v2/mount/auto/blobs/uploads/?mount=${blob.digest}`);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(header(res, 'docker-content-digest'), blob.digest);
    await assertBlobStored(t, 'mount/auto', blob.data, blob.digest);
  });

  it('an invalid from= name is 400 NAME_INVALID', async () => {
    assertError(await t.req('POST', `/v2/mount/t4/blobs/uploads/?mount=${blob.digest}&from=Bad..Name`), 400, 'NAME_INVALID');
  });
});

describe('push: upload options and hostile input', () => {
  it('OCI-Chunk-Min-Length is announced on POST when uploads.chunkMinLength is set, and absent otherwise', async () => {
    const t = await startApp({ 'uploads.chunkMinLength': 4096 });
    const plain = await startApp();
    try {
      const res = await t.req('POST', '/v2/opts/min/blobs/uploads/');
      assertSession(res, 202, 'opts/min', 0);
      assert.equal(header(res, 'oci-chunk-min-length'), '4096');
      assert.equal(header(await plain.req('POST', '/v2/opts/min/blobs/uploads/'), 'oci-chunk-min-length'), undefined);
    } finally {
      await t.close();
      await plain.close();
    }
  });

  it('upload ids that try path traversal are 404 BLOB_UPLOAD_UNKNOWN, never touch the filesystem', async () => {
    const t = await startApp({ 'storage.blobDriver': 'filesystem' });
    try {
      for (const id of ['..%2F..%2Fetc', '..%2F..%2Fmetadata.db', '..', '%00', 'not-a-uuid']) {
        for (const method of ['GET', 'PATCH', 'PUT', 'DELETE'] as const) {
          const res = await t.req(method, `/v2/a/blobs/uploads/${id}?digest=${randomBlob(1).digest}`, method === 'PATCH' ? { payload: Buffer.from('x') } : {});
          assert.equal(res.statusCode, 404, `${method} ${id}: ${res.body}`);
          // `..` alone is resolved away by the URL parser and reaches no endpoint (NOT_FOUND)
          assert.ok(['BLOB_UPLOAD_UNKNOWN', 'NOT_FOUND'].includes(errorCode(res)), `${method} ${id}: ${res.body}`);
        }
      }
    } finally {
      await t.close();
    }
  });

  it('invalid repository names are 400 NAME_INVALID on every endpoint', async () => {
    const t = await startApp();
    try {
      const long = `${'a'.repeat(200)}/${'b'.repeat(60)}`;
      for (const name of ['UPPER', 'a..b', '-lead', 'trail-', 'a//b', '..%2Fetc', 'a%2Fb', long]) {
        assertError(await t.req('POST', `/v2/${name}/blobs/uploads/`), 400, 'NAME_INVALID');
        assertError(await t.req('GET', `/v2/${name}/tags/list`), 400, 'NAME_INVALID');
        assertError(await t.req('GET', `/v2/${name}/manifests/latest`), 400, 'NAME_INVALID');
      }
    } finally {
      await t.close();
    }
  });
});
