/**
 * Encrypted manifests through the Distribution API (issue 4): with encryption at rest on (the
 * default), a client pushing a manifest and a referrer with annotations reads back the exact bytes
 * and the annotations, and a revoked key-encryption key stops manifest pulls and the referrers
 * list once the data-key cache lifetime has passed (here 0: at once), with nothing served from
 * the in-memory manifest cache.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Digest } from '../../src/oci/index.js';
import { assertError, header, MT, pushImage, pushReferrer, startApp, type Descriptor, type TestApp } from '../testkit/inject.js';

const SBOM = 'application/vnd.example.sbom.v1';
const IDENTITY = 'itest-registry';

interface Index {
  manifests: Descriptor[];
}

describe('encrypted manifests', () => {
  let t: TestApp;
  before(async () => (t = await startApp({ 'encryption.identity': IDENTITY })));
  after(() => t.close());

  it('a manifest and a referrer with annotations read back byte-exact, with their annotations', async () => {
    assert.ok(t.app.encryption !== undefined, 'encryption at rest is on by default');
    const img = await pushImage(t, 'enc/app', 'v1', { annotations: { 'org.opencontainers.image.description': 'internal billing service' } });
    const sbom = await pushReferrer(t, 'enc/app', img.manifest.descriptor, { artifactType: SBOM, annotations: { 'org.example.sbom.packages': 'openssl 3.0.13' } });

    for (const ref of ['v1', img.manifest.digest]) {
      const get = await t.req('GET', `/v2/enc/app/manifests/${ref}`);
      assert.equal(get.statusCode, 200, get.body);
      assert.equal(header(get, 'docker-content-digest'), img.manifest.digest);
      assert.ok(get.rawPayload.equals(img.manifest.body), `GET ${ref} is byte-exact`);
    }
    const ref = await t.req('GET', `/v2/enc/app/manifests/${sbom.digest}`);
    assert.ok(ref.rawPayload.equals(sbom.body), 'the referrer is byte-exact');

    const list = await t.req('GET', `/v2/enc/app/referrers/${img.manifest.digest}`);
    assert.equal(list.statusCode, 200, list.body);
    assert.deepEqual(list.json<Index>().manifests, [
      { mediaType: MT.ociManifest, digest: sbom.digest, size: sbom.body.length, artifactType: SBOM, annotations: { 'org.example.sbom.packages': 'openssl 3.0.13' } },
    ]);
    for (const digest of [img.manifest.digest, sbom.digest]) {
      assert.ok((await t.app.encryption.keys.get('manifest', digest as Digest)) !== undefined, `${digest} has a data key`);
    }
  });
});

describe('encrypted manifests and a revoked key', () => {
  let t: TestApp;
  before(async () => (t = await startApp({ 'encryption.identity': IDENTITY, 'encryption.dataKeyCacheSeconds': 0 })));
  after(() => t.close());

  it('a disabled key stops manifest pulls and referrers (503) until it is enabled again', async () => {
    const enc = t.app.encryption;
    assert.ok(enc !== undefined, 'encryption at rest is on by default');
    const img = await pushImage(t, 'enc/revoke', 'v1');
    await pushReferrer(t, 'enc/revoke', img.manifest.descriptor, { artifactType: SBOM, annotations: { k: 'v' } });
    assert.equal((await t.req('GET', '/v2/enc/revoke/manifests/v1')).statusCode, 200, 'pulled once, so a cache would hold it');
    const vault = enc.vaults.get(enc.key.vault);
    assert.ok(vault !== undefined, 'the configured vault is open');

    await vault.setEnabled(IDENTITY, enc.key.name, false);
    assertError(await t.req('GET', '/v2/enc/revoke/manifests/v1'), 503, 'UNAVAILABLE');
    assertError(await t.req('GET', `/v2/enc/revoke/referrers/${img.manifest.digest}`), 503, 'UNAVAILABLE');

    await vault.setEnabled(IDENTITY, enc.key.name, true);
    const get = await t.req('GET', '/v2/enc/revoke/manifests/v1');
    assert.equal(get.statusCode, 200, get.body);
    assert.ok(get.rawPayload.equals(img.manifest.body), 'served again, byte-exact');
    assert.equal((await t.req('GET', `/v2/enc/revoke/referrers/${img.manifest.digest}`)).statusCode, 200);
  });
});
