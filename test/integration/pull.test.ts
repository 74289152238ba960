/**
 * Distribution spec v1.1, conformance category "Pull": the API base, blob HEAD/GET with ranges,
 * manifest HEAD/GET by tag and digest with content negotiation, and the 404 codes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, header, imageIndex, MT, pushBlob, pushImage, pushManifest, randomBlob, startApp, type PushedImage, type TestApp } from '../testkit/inject.js';

describe('pull: API base', () => {
  let t: TestApp;
  before(async () => (t = await startApp()));
  after(() => t.close());

  it('GET /v2/ answers 200 with Docker-Distribution-API-Version: registry/2.0', async () => {
    const res = await t.req('GET', '/v2/');
    assert.equal(res.statusCode, 200);
    assert.equal(header(res, 'docker-distribution-api-version'), 'registry/2.0');
    assert.deepEqual(res.json(), {});
  });

  it('HEAD /v2/ and GET /v2 (no slash) also answer 200', async () => {
    assert.equal((await t.req('HEAD', '/v2/')).statusCode, 200);
    assert.equal((await t.req('GET', '/v2')).statusCode, 200);
  });

  it('a path that is not an endpoint is 404 NOT_FOUND in the error envelope', async () => {
    assertError(await t.req('GET', '/v2/a/unknown-resource/x'), 404, 'NOT_FOUND');
    assertError(await t.req('GET', '/nope'), 404, 'NOT_FOUND');
  });

  it('a method an endpoint does not support is 405 METHOD_NOT_ALLOWED with Allow', async () => {
    const res = await t.req('POST', '/v2/a/tags/list');
    assertError(res, 405, 'METHOD_NOT_ALLOWED');
    assert.equal(header(res, 'allow'), 'GET');
  });
});

describe('pull: blobs', () => {
  let t: TestApp;
  const blob = randomBlob(1000);
  before(async () => {
    t = await startApp();
    await pushBlob(t, 'pull/blobs', blob);
  });
  after(() => t.close());

  it('HEAD answers 200 with Content-Length and Docker-Content-Digest and no body', async () => {
    const res = await t.req('HEAD', `/v2/pull/blobs/blobs/${blob.digest}`);
    assert.equal(res.statusCode, 200);
    assert.equal(header(res, 'content-length'), '1000');
    assert.equal(header(res, 'docker-content-digest'), blob.digest);
    assert.equal(res.rawPayload.length, 0);
  });

  it('GET returns the exact bytes with Content-Length, Docker-Content-Digest and Accept-Ranges', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`);
    assert.equal(res.statusCode, 200);
    assert.ok(res.rawPayload.equals(blob.data));
    assert.equal(header(res, 'content-length'), '1000');
    assert.equal(header(res, 'docker-content-digest'), blob.digest);
    assert.equal(header(res, 'accept-ranges'), 'bytes');
  });

  it('Range bytes=start-end answers 206 with that slice and Content-Range', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(res.statusCode, 206);
    assert.equal(header(res, 'content-range'), 'bytes 10-19/1000');
    assert.equal(header(res, 'content-length'), '10');
    assert.ok(res.rawPayload.equals(blob.data.subarray(10, 20)));
  });

  it('an open-ended Range bytes=start- serves to the end', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=990-' } });
    assert.equal(res.statusCode, 206);
    assert.equal(header(res, 'content-range'), 'bytes 990-999/1000');
    assert.ok(res.rawPayload.equals(blob.data.subarray(990)));
  });

  it('a suffix Range bytes=-N serves the last N bytes', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=-100' } });
    assert.equal(res.statusCode, 206);
    assert.equal(header(res, 'content-range'), 'bytes 900-999/1000');
    assert.ok(res.rawPayload.equals(blob.data.subarray(900)));
  });

  it('a suffix longer than the blob serves the whole blob as 206', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=-5000' } });
    assert.equal(res.statusCode, 206);
    assert.equal(header(res, 'content-range'), 'bytes 0-999/1000');
    assert.ok(res.rawPayload.equals(blob.data));
  });

  it('an end past the blob is clamped to the last byte', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=995-5000' } });
    assert.equal(res.statusCode, 206);
    assert.equal(header(res, 'content-range'), 'bytes 995-999/1000');
    assert.equal(res.rawPayload.length, 5);
  });

  it('a Range starting past the end is 416 with Content-Range: bytes */size', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=1000-1010' } });
    assertError(res, 416, 'RANGE_INVALID');
    assert.equal(header(res, 'content-range'), 'bytes */1000');
  });

  it('a zero-length suffix bytes=-0 is 416', async () => {
    const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range: 'bytes=-0' } });
    assertError(res, 416, 'RANGE_INVALID');
    assert.equal(header(res, 'content-range'), 'bytes */1000');
  });

  it('a malformed or multi-part Range is ignored and the whole blob served (RFC 9110 §14.2)', async () => {
    for (const range of ['items=0-1', 'bytes=0-1,5-6', 'bytes=9-3']) {
      const res = await t.req('GET', `/v2/pull/blobs/blobs/${blob.digest}`, { headers: { range } });
      assert.equal(res.statusCode, 200, range);
      assert.equal(res.rawPayload.length, 1000, range);
    }
  });

  it('an unknown blob is 404 BLOB_UNKNOWN on GET, and 404 without a body on HEAD', async () => {
    const missing = randomBlob(10).digest;
    assertError(await t.req('GET', `/v2/pull/blobs/blobs/${missing}`), 404, 'BLOB_UNKNOWN');
    const head = await t.req('HEAD', `/v2/pull/blobs/blobs/${missing}`);
    assert.equal(head.statusCode, 404);
    assert.equal(head.rawPayload.length, 0);
  });

  it('a blob stored in another repository is BLOB_UNKNOWN here (repositories are isolated)', async () => {
    assertError(await t.req('GET', `/v2/pull/other/blobs/${blob.digest}`), 404, 'BLOB_UNKNOWN');
    assert.equal((await t.req('HEAD', `/v2/pull/other/blobs/${blob.digest}`)).statusCode, 404);
  });

  it('a malformed digest is 400 DIGEST_INVALID', async () => {
    assertError(await t.req('GET', '/v2/pull/blobs/blobs/sha256:abc'), 400, 'DIGEST_INVALID');
    assertError(await t.req('GET', `/v2/pull/blobs/blobs/md5:${'a'.repeat(32)}`), 400, 'DIGEST_INVALID');
  });
});

describe('pull: manifests', () => {
  let t: TestApp;
  let img: PushedImage;
  before(async () => {
    t = await startApp();
    img = await pushImage(t, 'pull/img', 'v1');
  });
  after(() => t.close());

  for (const ref of ['tag', 'digest'] as const) {
    it(`GET by ${ref} returns the byte-exact body with Content-Type = stored media type`, async () => {
      const res = await t.req('GET', `/v2/pull/img/manifests/${ref === 'tag' ? 'v1' : img.manifest.digest}`, { headers: { accept: MT.ociManifest } });
      assert.equal(res.statusCode, 200);
      assert.ok(res.rawPayload.equals(img.manifest.body), 'body must be the pushed bytes, not a re-serialisation');
      assert.equal(header(res, 'content-type'), MT.ociManifest);
      assert.equal(header(res, 'content-length'), String(img.manifest.body.length));
      assert.equal(header(res, 'docker-content-digest'), img.manifest.digest);
    });

    it(`HEAD by ${ref} answers 200 with the headers of GET and no body`, async () => {
      const res = await t.req('HEAD', `/v2/pull/img/manifests/${ref === 'tag' ? 'v1' : img.manifest.digest}`);
      assert.equal(res.statusCode, 200);
      assert.equal(header(res, 'content-type'), MT.ociManifest);
      assert.equal(header(res, 'content-length'), String(img.manifest.body.length));
      assert.equal(header(res, 'docker-content-digest'), img.manifest.digest);
      assert.equal(res.rawPayload.length, 0);
    });
  }

  it('Accept listing several types, with q-values, or */* admits the stored type', async () => {
    for (const accept of [`${MT.dockerManifest}, ${MT.ociManifest};q=0.9`, '*/*', `${MT.ociIndex},${MT.ociManifest}`]) {
      const res = await t.req('GET', '/v2/pull/img/manifests/v1', { headers: { accept } });
      assert.equal(res.statusCode, 200, accept);
      assert.equal(header(res, 'content-type'), MT.ociManifest);
    }
  });

  it('an Accept that excludes the stored type is 404 MANIFEST_UNKNOWN naming the stored type', async () => {
    const res = await t.req('GET', '/v2/pull/img/manifests/v1', { headers: { accept: MT.dockerManifest } });
    assertError(res, 404, 'MANIFEST_UNKNOWN');
    assert.deepEqual(res.json<{ errors: Array<{ detail: unknown }> }>().errors[0]?.detail, { mediaType: MT.ociManifest });
    assert.equal((await t.req('HEAD', '/v2/pull/img/manifests/v1', { headers: { accept: MT.dockerManifest } })).statusCode, 404);
  });

  it('an index is served with the index media type', async () => {
    const index = imageIndex({ manifests: [img.manifest.descriptor] });
    await pushManifest(t, 'pull/img', 'multi', index);
    const res = await t.req('GET', '/v2/pull/img/manifests/multi', { headers: { accept: `${MT.ociManifest}, ${MT.ociIndex}` } });
    assert.equal(res.statusCode, 200);
    assert.equal(header(res, 'content-type'), MT.ociIndex);
    assert.ok(res.rawPayload.equals(index.body));
  });

  it('an unknown tag or digest in a known repository is 404 MANIFEST_UNKNOWN', async () => {
    assertError(await t.req('GET', '/v2/pull/img/manifests/nope'), 404, 'MANIFEST_UNKNOWN');
    assertError(await t.req('GET', `/v2/pull/img/manifests/${randomBlob(8).digest}`), 404, 'MANIFEST_UNKNOWN');
    assert.equal((await t.req('HEAD', '/v2/pull/img/manifests/nope')).statusCode, 404);
  });

  it('a manifest in an unknown repository is 404 NAME_UNKNOWN; so is its tag list', async () => {
    assertError(await t.req('GET', '/v2/no/such/repo/manifests/latest'), 404, 'NAME_UNKNOWN');
    assertError(await t.req('GET', '/v2/no/such/repo/tags/list'), 404, 'NAME_UNKNOWN');
  });

  it('a reference that is neither a tag nor a digest is 400', async () => {
    assertError(await t.req('GET', '/v2/pull/img/manifests/sha256:short'), 400, 'DIGEST_INVALID');
    assertError(await t.req('GET', `/v2/pull/img/manifests/${'t'.repeat(129)}`), 400, 'MANIFEST_INVALID');
  });
});
