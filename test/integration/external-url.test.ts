/**
 * External URL (issue 5, item 3): with `externalUrl` configured (a custom domain in front of a
 * private registry), every header that names the registry points there: Location of upload
 * sessions, blobs and manifests, the Link of every paginated list, and the token realm. Without
 * it they stay relative (the spec allows it), resolved by the client against the address it used.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startServer, type RunningServer } from '../testkit/server.js';

const PUBLIC = 'https://registry.example.test';
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The path and query of a Location, after checking it is on the public URL. */
function onPublic(location: string | null, what: string): string {
  assert.ok(location !== null, `${what}: a Location`);
  assert.ok(location.startsWith(`${PUBLIC}/v2/`), `${what}: ${location} is on ${PUBLIC}`);
  return location.slice(PUBLIC.length);
}

describe('Location and Link on the configured external URL', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({ env: { BULWARK_EXTERNAL_URL: PUBLIC, BULWARK_LIMITS_LIST_MAX: '1' } });
  });
  after(async () => {
    await server?.dispose();
  });

  test('upload sessions, blobs, manifests and every paginated list name the public URL', async () => {
    const at = (path: string): string => `${server.url}${path}`;
    const blob = Buffer.from('external url layer');
    const config = Buffer.from('{}');
    // POST, PATCH, PUT: each Location is absolute on the public URL, and works when followed here.
    let r = await fetch(at('/v2/ext/app/blobs/uploads/'), { method: 'POST' });
    assert.equal(r.status, 202);
    let path = onPublic(r.headers.get('location'), 'POST upload');
    r = await fetch(at(path), { method: 'PATCH', body: blob, headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${blob.length - 1}` } });
    assert.equal(r.status, 202);
    path = onPublic(r.headers.get('location'), 'PATCH');
    r = await fetch(at(`${path}${path.includes('?') ? '&' : '?'}digest=${sha(blob)}`), { method: 'PUT' });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('location'), `${PUBLIC}/v2/ext/app/blobs/${sha(blob)}`);
    r = await fetch(at(`/v2/ext/app/blobs/uploads/?digest=${sha(config)}`), { method: 'POST', body: config, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(r.status, 201, 'monolithic POST');
    assert.equal(r.headers.get('location'), `${PUBLIC}/v2/ext/app/blobs/${sha(config)}`);
    r = await fetch(at(`/v2/ext/other/blobs/uploads/?mount=${sha(blob)}&from=ext/app`), { method: 'POST' });
    assert.equal(r.status, 201, 'mount');
    assert.equal(r.headers.get('location'), `${PUBLIC}/v2/ext/other/blobs/${sha(blob)}`);

    const manifest = (tag: string): Buffer =>
      Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(blob), size: blob.length }], annotations: { tag } }));
    for (const tag of ['a', 'b']) {
      const m = manifest(tag);
      r = await fetch(at(`/v2/ext/app/manifests/${tag}`), { method: 'PUT', body: m, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(r.status, 201);
      assert.equal(r.headers.get('location'), `${PUBLIC}/v2/ext/app/manifests/${sha(m)}`);
    }
    const subject = manifest('a');
    const referrer = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/example', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha(config), size: config.length }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(blob), size: blob.length }], subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(subject), size: subject.length } }));
    for (const n of [1, 2]) {
      const ref = n === 1 ? referrer : Buffer.concat([referrer.subarray(0, referrer.length - 1), Buffer.from(', "annotations": {"n": "2"}}')]);
      r = await fetch(at(`/v2/ext/app/manifests/${sha(ref)}`), { method: 'PUT', body: ref, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(r.status, 201, `referrer ${n}: ${await r.text()}`);
    }

    // The lists are one entry per page (limits.listMax=1): every Link is absolute on the public URL.
    for (const [list, expected] of [
      ['/v2/ext/app/tags/list', '/v2/ext/app/tags/list?'],
      ['/v2/_catalog', '/v2/_catalog?'],
      [`/v2/ext/app/referrers/${sha(subject)}`, `/v2/ext/app/referrers/${sha(subject)}?`],
    ] as const) {
      r = await fetch(at(list));
      assert.equal(r.status, 200, list);
      const link = r.headers.get('link') ?? '';
      assert.ok(link.startsWith(`<${PUBLIC}${expected}`) && link.endsWith('>; rel="next"'), `${list}: Link ${link}`);
    }
  });
});

describe('without an external URL', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.dispose();
  });

  test('Location stays relative', async () => {
    const r = await fetch(`${server.url}/v2/ext/app/blobs/uploads/`, { method: 'POST' });
    assert.equal(r.status, 202);
    assert.match(r.headers.get('location') ?? '', /^\/v2\/ext\/app\/blobs\/uploads\/[0-9a-f-]+$/);
  });
});

describe('the token realm', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({ auth: true, env: { BULWARK_EXTERNAL_URL: PUBLIC } });
  });
  after(async () => {
    await server?.dispose();
  });

  test('names the public URL', async () => {
    const r = await fetch(`${server.url}/v2/`);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', new RegExp(`^Bearer realm="${PUBLIC}/oauth2/token"`));
  });
});
