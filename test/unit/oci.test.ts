/**
 * The pure OCI domain: digests, repository and tag grammars (distribution-spec v1.1), and manifest
 * validation (image-spec v1.1, Docker schema 2). Everything here sees attacker-controlled input.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  assertRepositoryName,
  digestAlgorithm,
  digestHex,
  digestOf,
  isDigest,
  isRepositoryName,
  isTag,
  MediaType,
  parseDigest,
  parseManifest,
} from '../../src/oci/index.js';
import { throwsWithCode } from '../testkit/assert-registry-error.js';

const HEX64 = 'a'.repeat(64);
const HEX128 = 'b'.repeat(128);

describe('digests', () => {
  test('sha256 and sha512 digests of the right length parse unchanged', () => {
    for (const d of [`sha256:${HEX64}`, `sha512:${HEX128}`, digestOf('x'), digestOf('x', 'sha512')]) {
      assert.equal(parseDigest(d), d);
      assert.equal(isDigest(d), true);
    }
  });

  for (const [why, s] of [
    ['sha256 one hex short', `sha256:${HEX64.slice(1)}`],
    ['sha256 one hex long', `sha256:${HEX64}a`],
    ['sha256 with a sha512-length hex', `sha256:${HEX128}`],
    ['sha512 with a sha256-length hex', `sha512:${HEX64}`],
    ['uppercase hex', `sha256:${'A'.repeat(64)}`],
    ['uppercase algorithm', `SHA256:${HEX64}`],
    ['unknown algorithm', `md5:${'c'.repeat(32)}`],
    ['unregistered algorithm of plausible length', `sha384:${'c'.repeat(96)}`],
    ['non-hex characters', `sha256:${'g'.repeat(64)}`],
    ['no algorithm', HEX64],
    ['empty encoded part', 'sha256:'],
    ['surrounding whitespace', ` sha256:${HEX64}`],
    ['trailing newline', `sha256:${HEX64}\n`],
    ['empty string', ''],
  ] as const) {
    test(`a digest with ${why} throws DIGEST_INVALID`, () => {
      assert.equal(isDigest(s), false);
      const err = throwsWithCode(() => parseDigest(s), 'DIGEST_INVALID');
      assert.equal(err.httpStatus, 400);
    });
  }

  test('DIGEST_INVALID detail echoes at most 200 characters of the input', () => {
    const err = throwsWithCode(() => parseDigest(`sha256:${'z'.repeat(10_000)}`), 'DIGEST_INVALID');
    assert.equal((err.detail as { digest: string }).digest.length, 200);
  });

  test('digestOf matches the published empty-input vectors; algorithm and hex split the digest', () => {
    const e256 = digestOf('');
    const e512 = digestOf(Buffer.alloc(0), 'sha512');
    assert.equal(e256, 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.ok(e512.startsWith('sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce'));
    assert.equal(digestAlgorithm(e256), 'sha256');
    assert.equal(digestAlgorithm(e512), 'sha512');
    assert.equal(digestHex(e256), e256.slice('sha256:'.length));
  });
});

describe('repository names', () => {
  const valid = ['a', 'library/alpine', 'a/b/c/d', 'my-app', 'my--app', 'my.app', 'my_app', 'my__app', 'a0/1b', 'x'.repeat(255)];
  const invalid: Array<[string, string]> = [
    ['path traversal component', 'a/../b'],
    ['parent directory', '..'],
    ['current directory', '.'],
    ['current-directory component', 'a/./b'],
    ['leading parent component', '../a'],
    ['uppercase', 'Library/alpine'],
    ['longer than 255 characters', 'x'.repeat(256)],
    ['more than 255 characters across components', `${'x'.repeat(200)}/${'y'.repeat(55)}`],
    ['leading slash', '/a'],
    ['trailing slash', 'a/'],
    ['empty component', 'a//b'],
    ['leading separator', '-a'],
    ['trailing separator', 'a-'],
    ['leading underscore', '_a'],
    ['trailing dot', 'a.'],
    ['two dots', 'a..b'],
    ['three underscores', 'a___b'],
    ['mixed separators', 'a._b'],
    ['space', 'a b'],
    ['backslash', 'a\\b'],
    ['percent-encoding', 'a%2f..'],
    ['non-ASCII letter', 'caf\u00e9'],
    ['newline', 'a\n'],
    ['empty', ''],
  ];

  test('names following the grammar are accepted', () => {
    for (const n of valid) {
      assert.equal(isRepositoryName(n), true, n);
      assert.doesNotThrow(() => assertRepositoryName(n));
    }
  });

  for (const [why, n] of invalid) {
    test(`a name with ${why} is rejected with NAME_INVALID`, () => {
      assert.equal(isRepositoryName(n), false);
      throwsWithCode(() => assertRepositoryName(n), 'NAME_INVALID');
    });
  }
});

describe('tags', () => {
  test('tags following [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} are accepted', () => {
    for (const t of ['latest', 'v1.0.0', 'V1', '_private', '1', 'sha256-abc.sig', 'a--b__c..d', 'x'.repeat(128)]) assert.equal(isTag(t), true, t);
  });

  test('tags breaking the grammar are rejected', () => {
    for (const t of ['', '.hidden', '-x', 'x'.repeat(129), 'a/b', 'a:b', 'a b', 'a@b', '\u00fc', 'latest\n', '..']) {
      assert.equal(isTag(t), false, JSON.stringify(t));
    }
  });
});

describe('parseManifest', () => {
  const desc = (content: string, mediaType: string): { mediaType: string; digest: string; size: number } => ({
    mediaType,
    digest: digestOf(content),
    size: content.length,
  });
  const CONFIG = desc('{"config":1}', 'application/vnd.oci.image.config.v1+json');
  const LAYER = desc('layer', 'application/vnd.oci.image.layer.v1.tar+gzip');
  const body = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc));
  const problemsOf = (b: Buffer, ct: string | undefined): string[] => {
    const err = throwsWithCode(() => parseManifest(b, ct), 'MANIFEST_INVALID');
    return (err.detail as { problems?: string[] } | undefined)?.problems ?? [err.message];
  };
  const ociManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: CONFIG, layers: [LAYER] };

  test('an OCI image manifest yields its config and layers as blobs, artifactType from config.mediaType', () => {
    const p = parseManifest(body(ociManifest), MediaType.OciManifest);
    assert.equal(p.mediaType, MediaType.OciManifest);
    assert.deepEqual(p.blobs, [CONFIG, LAYER]);
    assert.deepEqual(p.manifests, []);
    assert.equal(p.subject, undefined);
    assert.equal(p.artifactType, CONFIG.mediaType);
  });

  test('Content-Type parameters are ignored, and a missing Content-Type falls back to the mediaType field', () => {
    assert.equal(parseManifest(body(ociManifest), `${MediaType.OciManifest}; charset=utf-8`).mediaType, MediaType.OciManifest);
    assert.equal(parseManifest(body(ociManifest), undefined).mediaType, MediaType.OciManifest);
  });

  test('an OCI index yields its entries as manifests and its own artifactType', () => {
    const m = desc('manifest', MediaType.OciManifest);
    const doc = { schemaVersion: 2, mediaType: MediaType.OciIndex, artifactType: 'application/vnd.example+type', manifests: [m] };
    const p = parseManifest(body(doc), MediaType.OciIndex);
    assert.equal(p.mediaType, MediaType.OciIndex);
    assert.deepEqual(p.manifests, [m]);
    assert.deepEqual(p.blobs, []);
    assert.equal(p.artifactType, 'application/vnd.example+type');
    const noField = { schemaVersion: 2, manifests: [m] };
    assert.equal(parseManifest(body(noField), undefined).mediaType, MediaType.OciIndex, 'a manifests array means an index');
    assert.equal(parseManifest(body(noField), undefined).artifactType, undefined);
  });

  test('a Docker schema 2 manifest and manifest list are accepted', () => {
    const dockerConfig = desc('{}', 'application/vnd.docker.container.image.v1+json');
    const docker = { schemaVersion: 2, mediaType: MediaType.DockerManifest, config: dockerConfig, layers: [desc('l', 'application/vnd.docker.image.rootfs.diff.tar.gzip')] };
    const p = parseManifest(body(docker), MediaType.DockerManifest);
    assert.equal(p.mediaType, MediaType.DockerManifest);
    assert.equal(p.blobs.length, 2);
    assert.equal(p.artifactType, dockerConfig.mediaType);
    const entry = { ...desc('m', MediaType.DockerManifest), platform: { architecture: 'amd64', os: 'linux' } };
    const list = { schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [entry] };
    const l = parseManifest(body(list), MediaType.DockerManifestList);
    assert.equal(l.mediaType, MediaType.DockerManifestList);
    assert.equal(l.manifests[0]?.digest, entry.digest);
  });

  test('a Content-Type that contradicts the mediaType field is MANIFEST_INVALID', () => {
    const problems = problemsOf(body(ociManifest), MediaType.DockerManifest);
    assert.ok(problems.some((p) => p.includes(MediaType.DockerManifest) && p.includes(MediaType.OciManifest)), problems.join('; '));
  });

  test('every missing or malformed field is reported at once', () => {
    const doc = { schemaVersion: 1, config: { mediaType: 'not a media type', size: -1 }, layers: [LAYER, { ...LAYER, digest: 'sha256:abc' }], annotations: { n: 1 } };
    const problems = problemsOf(body(doc), MediaType.OciManifest);
    for (const expected of ['schemaVersion', 'config.mediaType', 'config.digest', 'config.size', 'layers[1].digest', 'manifest.annotations']) {
      assert.ok(problems.some((p) => p.startsWith(expected)), `${expected} not reported in: ${problems.join('; ')}`);
    }
    assert.ok(problemsOf(body({ schemaVersion: 2, mediaType: MediaType.OciManifest }), undefined).some((p) => p.startsWith('layers')));
  });

  test('bytes that are not a JSON object are MANIFEST_INVALID', () => {
    for (const raw of ['{"schemaVersion": 2,', '', 'null', '[]', '"manifest"', '\ufeff{}']) {
      throwsWithCode(() => parseManifest(Buffer.from(raw), MediaType.OciManifest), 'MANIFEST_INVALID');
    }
  });

  test('a media type that is not a manifest type is MANIFEST_INVALID', () => {
    const asConfig = { ...ociManifest, mediaType: 'application/vnd.oci.image.config.v1+json' };
    assert.ok(problemsOf(body(asConfig), undefined).some((p) => p.includes('unsupported manifest media type')));
    const { mediaType: _omit, ...noField } = ociManifest;
    assert.ok(problemsOf(body(noField), 'application/json').some((p) => p.includes('unsupported manifest media type')));
  });

  test('subject and an explicit artifactType are extracted; artifactType wins over config.mediaType', () => {
    const subject = desc('image', MediaType.OciManifest);
    const doc = { ...ociManifest, config: desc('{}', MediaType.OciEmpty), artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json', subject, annotations: { k: 'v' } };
    const p = parseManifest(body(doc), MediaType.OciManifest);
    assert.deepEqual(p.subject, subject);
    assert.equal(p.artifactType, 'application/vnd.dev.sigstore.bundle.v0.3+json');
    assert.deepEqual(p.annotations, { k: 'v' });
  });

  test('a malformed subject or artifactType is reported', () => {
    const doc = { ...ociManifest, subject: { mediaType: MediaType.OciManifest, digest: 'sha256:nope', size: 1 }, artifactType: 'nope' };
    const problems = problemsOf(body(doc), MediaType.OciManifest);
    assert.ok(problems.some((p) => p.startsWith('subject.digest')), problems.join('; '));
    assert.ok(problems.some((p) => p.startsWith('artifactType')), problems.join('; '));
  });
});
