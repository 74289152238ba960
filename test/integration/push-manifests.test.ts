/**
 * Distribution spec v1.1, conformance category "Push" (manifests): OCI image manifests and
 * indexes, Docker schema 2 manifests and manifest lists, reference checks, digest and size
 * limits, and validation errors.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  assertError,
  descriptorOf,
  digestOf,
  header,
  imageIndex,
  imageManifest,
  MT,
  pushBlob,
  pushImage,
  pushManifest,
  putManifest,
  randomBlob,
  startApp,
  type TestApp,
} from '../testkit/inject.js';

describe('push: manifests', () => {
  let t: TestApp;
  before(async () => (t = await startApp()));
  after(() => t.close());

  it('an OCI image manifest PUT by tag is 201 with Location and Docker-Content-Digest, then pullable', async () => {
    const config = randomBlob(40);
    const layer = randomBlob(400);
    await pushBlob(t, 'man/oci', config);
    await pushBlob(t, 'man/oci', layer);
    const m = imageManifest({ config: descriptorOf(config, MT.ociConfig), layers: [descriptorOf(layer, MT.ociLayer)] });
    const res = await putManifest(t, 'man/oci', 'v1', m);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(header(res, 'location'), `/v2/man/oci/manifests/${m.digest}`);
    assert.equal(header(res, 'docker-content-digest'), m.digest);
    assert.equal(header(res, 'oci-subject'), undefined, 'no subject, no OCI-Subject');
    const get = await t.req('GET', '/v2/man/oci/manifests/v1');
    assert.equal(get.statusCode, 200);
    assert.ok(get.rawPayload.equals(m.body));
  });

  it('a PUT by digest that matches the content is 201 and leaves no tag', async () => {
    const img = await pushImage(t, 'man/bydigest');
    const tags = await t.req('GET', '/v2/man/bydigest/tags/list');
    assert.deepEqual(tags.json(), { name: 'man/bydigest', tags: [] });
    assert.equal((await t.req('HEAD', `/v2/man/bydigest/manifests/${img.manifest.digest}`)).statusCode, 200);
  });

  it('a PUT by a digest that does not match the body is 400 DIGEST_INVALID and stores nothing', async () => {
    const img = await pushImage(t, 'man/mismatch', 'base');
    const other = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { x: 'y' } });
    assertError(await putManifest(t, 'man/mismatch', img.manifest.digest.replace(/.$/, (c) => (c === '0' ? '1' : '0')), other), 400, 'DIGEST_INVALID');
    assertError(await putManifest(t, 'man/mismatch', digestOf(other.body, 'sha512').replace(/.$/, (c) => (c === 'f' ? 'e' : 'f')), other), 400, 'DIGEST_INVALID');
    assert.equal((await t.req('HEAD', `/v2/man/mismatch/manifests/${other.digest}`)).statusCode, 404);
  });

  it('a PUT by sha512 digest is accepted and served under that digest', async () => {
    const img = await pushImage(t, 'man/sha512');
    const m = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { alg: 'sha512' } });
    const digest = digestOf(m.body, 'sha512');
    const res = await putManifest(t, 'man/sha512', digest, m);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(header(res, 'docker-content-digest'), digest);
    const get = await t.req('GET', `/v2/man/sha512/manifests/${digest}`);
    assert.equal(get.statusCode, 200);
    assert.equal(header(get, 'docker-content-digest'), digest);
    assert.ok(get.rawPayload.equals(m.body));
  });

  it('a manifest whose config or layer is not in the repository is 404 MANIFEST_BLOB_UNKNOWN', async () => {
    const config = randomBlob(40);
    await pushBlob(t, 'man/missing', config);
    const layer = randomBlob(100);
    const m = imageManifest({ config: descriptorOf(config, MT.ociConfig), layers: [descriptorOf(layer, MT.ociLayer)] });
    const res = await putManifest(t, 'man/missing', 'v1', m);
    assertError(res, 404, 'MANIFEST_BLOB_UNKNOWN');
    assert.deepEqual(res.json<{ errors: Array<{ detail: unknown }> }>().errors[0]?.detail, { missing: [layer.digest] });
    assertError(await t.req('GET', '/v2/man/missing/manifests/v1'), 404, 'MANIFEST_UNKNOWN');
    // a blob present in another repository does not count
    await pushBlob(t, 'man/elsewhere', layer);
    assertError(await putManifest(t, 'man/missing', 'v1', m), 404, 'MANIFEST_BLOB_UNKNOWN');
  });

  it('a descriptor whose size disagrees with the stored blob is 400 MANIFEST_INVALID', async () => {
    const config = randomBlob(40);
    await pushBlob(t, 'man/size', config);
    const m = imageManifest({ config: { ...descriptorOf(config, MT.ociConfig), size: 41 } });
    assertError(await putManifest(t, 'man/size', 'v1', m), 400, 'MANIFEST_INVALID');
  });

  it('an OCI index is accepted when every child manifest exists', async () => {
    const a = await pushImage(t, 'man/index');
    const b = await pushImage(t, 'man/index');
    const index = imageIndex({
      manifests: [
        { ...a.manifest.descriptor, platform: { architecture: 'amd64', os: 'linux' } },
        { ...b.manifest.descriptor, platform: { architecture: 'arm64', os: 'linux' } },
      ],
    });
    await pushManifest(t, 'man/index', 'multi', index);
    const get = await t.req('GET', '/v2/man/index/manifests/multi');
    assert.equal(header(get, 'content-type'), MT.ociIndex);
    assert.ok(get.rawPayload.equals(index.body));
  });

  it('an OCI index with a child manifest that is not in the repository is 404 MANIFEST_BLOB_UNKNOWN', async () => {
    const a = await pushImage(t, 'man/index2');
    const ghost = imageManifest({ config: descriptorOf(randomBlob(5), MT.ociConfig) });
    const index = imageIndex({ manifests: [a.manifest.descriptor, ghost.descriptor] });
    const res = await putManifest(t, 'man/index2', 'multi', index);
    assertError(res, 404, 'MANIFEST_BLOB_UNKNOWN');
    assert.deepEqual(res.json<{ errors: Array<{ detail: unknown }> }>().errors[0]?.detail, { missing: [ghost.digest] });
  });

  it('a Docker schema 2 manifest is stored and served with its Docker media type', async () => {
    const img = await pushImage(t, 'man/docker', 'v2s2', { mediaType: MT.dockerManifest });
    const get = await t.req('GET', '/v2/man/docker/manifests/v2s2', { headers: { accept: MT.dockerManifest } });
    assert.equal(get.statusCode, 200);
    assert.equal(header(get, 'content-type'), MT.dockerManifest);
    assert.ok(get.rawPayload.equals(img.manifest.body));
  });

  it('a Docker manifest list is stored when its children exist, and refused when one is missing', async () => {
    const img = await pushImage(t, 'man/dlist', undefined, { mediaType: MT.dockerManifest });
    const list = imageIndex({ mediaType: MT.dockerList, manifests: [{ ...img.manifest.descriptor, platform: { architecture: 'amd64', os: 'linux' } }] });
    await pushManifest(t, 'man/dlist', 'latest', list);
    const get = await t.req('GET', '/v2/man/dlist/manifests/latest', { headers: { accept: MT.dockerList } });
    assert.equal(header(get, 'content-type'), MT.dockerList);
    assert.ok(get.rawPayload.equals(list.body));
    const ghost = imageManifest({ mediaType: MT.dockerManifest, config: descriptorOf(randomBlob(3), MT.dockerConfig) });
    const bad = imageIndex({ mediaType: MT.dockerList, manifests: [ghost.descriptor] });
    assertError(await putManifest(t, 'man/dlist', 'bad', bad), 404, 'MANIFEST_BLOB_UNKNOWN');
  });

  it('re-tagging moves the tag; the old manifest stays reachable by digest', async () => {
    const one = await pushImage(t, 'man/retag', 'latest');
    const two = await pushImage(t, 'man/retag', 'latest');
    const get = await t.req('GET', '/v2/man/retag/manifests/latest');
    assert.equal(header(get, 'docker-content-digest'), two.manifest.digest);
    assert.equal((await t.req('HEAD', `/v2/man/retag/manifests/${one.manifest.digest}`)).statusCode, 200);
  });

  it('Content-Type parameters are ignored (spec: registries SHOULD ignore them)', async () => {
    const img = await pushImage(t, 'man/params');
    const m = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { p: '1' } });
    const res = await putManifest(t, 'man/params', 'p', m, `${MT.ociManifest}; charset=utf-8`);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(header(await t.req('HEAD', '/v2/man/params/manifests/p'), 'content-type'), MT.ociManifest);
  });
});

describe('push: manifest validation', () => {
  let t: TestApp;
  before(async () => (t = await startApp({ 'limits.manifestMaxBytes': 2048 })));
  after(() => t.close());

  it('a manifest larger than limits.manifestMaxBytes is 413 MANIFEST_TOO_LARGE', async () => {
    const img = await pushImage(t, 'val/big');
    const big = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { pad: 'x'.repeat(3000) } });
    assertError(await putManifest(t, 'val/big', 'big', big), 413, 'MANIFEST_TOO_LARGE');
    assertError(await t.req('GET', '/v2/val/big/manifests/big'), 404, 'MANIFEST_UNKNOWN');
  });

  it('an oversized manifest streamed without Content-Length is also 413 MANIFEST_TOO_LARGE', async () => {
    const img = await pushImage(t, 'val/bigstream');
    const big = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { pad: 'x'.repeat(3000) } });
    const payload = Readable.from([big.body.subarray(0, 1000), big.body.subarray(1000)]);
    const res = await t.req('PUT', '/v2/val/bigstream/manifests/big', { headers: { 'content-type': MT.ociManifest }, payload });
    assertError(res, 413, 'MANIFEST_TOO_LARGE');
  });

  it('a manifest of exactly the limit is accepted', async () => {
    const img = await pushImage(t, 'val/edge');
    const probe = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { pad: '' } });
    const m = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { pad: 'x'.repeat(2048 - probe.body.length) } });
    assert.equal(m.body.length, 2048);
    assert.equal((await putManifest(t, 'val/edge', 'edge', m)).statusCode, 201);
  });

  it('a body that is not JSON is 400 MANIFEST_INVALID', async () => {
    const res = await t.req('PUT', '/v2/val/json/manifests/v1', { headers: { 'content-type': MT.ociManifest }, payload: '{"schemaVersion": 2,' });
    assertError(res, 400, 'MANIFEST_INVALID');
  });

  it('an unknown manifest media type is 400 MANIFEST_INVALID', async () => {
    const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.example.thing.v1+json', config: {}, layers: [] });
    assertError(await t.req('PUT', '/v2/val/type/manifests/v1', { headers: { 'content-type': 'application/vnd.example.thing.v1+json' }, payload: body }), 400, 'MANIFEST_INVALID');
  });

  it('a Content-Type that contradicts the mediaType field is 400 MANIFEST_INVALID', async () => {
    const img = await pushImage(t, 'val/contra');
    const m = imageManifest({ config: descriptorOf(img.config, MT.ociConfig), annotations: { c: '1' } });
    assertError(await putManifest(t, 'val/contra', 'c', m, MT.ociIndex), 400, 'MANIFEST_INVALID');
  });

  it('schemaVersion other than 2 and malformed descriptors are 400 MANIFEST_INVALID, every problem reported', async () => {
    const body = JSON.stringify({ schemaVersion: 1, mediaType: MT.ociManifest, config: { mediaType: 'bad', digest: 'sha256:x', size: -1 }, layers: 'no' });
    const res = await t.req('PUT', '/v2/val/shape/manifests/v1', { headers: { 'content-type': MT.ociManifest }, payload: body });
    assertError(res, 400, 'MANIFEST_INVALID');
    const problems = (res.json<{ errors: Array<{ detail: { problems: string[] } }> }>().errors[0]?.detail.problems ?? []).join('\n');
    for (const p of ['schemaVersion', 'config.mediaType', 'config.digest', 'config.size', 'layers']) assert.ok(problems.includes(p), `${p} in ${problems}`);
  });

  it('a tag that does not match the tag grammar is 400 MANIFEST_INVALID', async () => {
    const img = await pushImage(t, 'val/tag');
    assertError(await putManifest(t, 'val/tag', '-bad', img.manifest), 400, 'MANIFEST_INVALID');
    assertError(await putManifest(t, 'val/tag', 'x'.repeat(129), img.manifest), 400, 'MANIFEST_INVALID');
  });
});
