/**
 * Distribution spec v1.1, conformance category "Content discovery": tags list and catalog with
 * `n`/`last` pagination and Link headers, and the referrers API (subject, artifactType and its
 * config.mediaType fallback, annotations, the artifactType filter, pagination).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertError,
  header,
  imageIndex,
  imageManifest,
  descriptorOf,
  MT,
  pushBlob,
  pushImage,
  pushManifest,
  pushReferrer,
  randomBlob,
  startApp,
  type Descriptor,
  type PushedImage,
  type Res,
  type TestApp,
} from '../testkit/inject.js';

/** The target of `Link: <url>; rel="next"`, or undefined when there is no next page. */
function nextLink(res: Res): string | undefined {
  const link = header(res, 'link');
  if (link === undefined) return undefined;
  const m = /^<([^>]+)>; rel="next"$/.exec(link);
  assert.ok(m !== null, `malformed Link header: ${link}`);
  return m[1];
}

/** Follow Link headers from `url`, returning every page's response. */
async function allPages(t: TestApp, url: string): Promise<Res[]> {
  const pages: Res[] = [];
  for (let next: string | undefined = url; next !== undefined; next = nextLink(pages[pages.length - 1] as Res)) {
    const res = await t.req('GET', next);
    assert.equal(res.statusCode, 200, res.body);
    pages.push(res);
    assert.ok(pages.length < 50, 'pagination does not terminate');
  }
  return pages;
}

const TAGS = ['b', 'latest', 'A', 'a', '1.0', 'Z', '_x', 'v1.0.0-rc.1'];
const SORTED = [...TAGS].sort(); // Go's sort.Strings: byte order

describe('discovery: tags list', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp();
    const img = await pushImage(t, 'disc/tags');
    for (const tag of TAGS) await pushManifest(t, 'disc/tags', tag, img.manifest);
  });
  after(() => t.close());

  it('lists every tag in lexical (byte) order with the repository name', async () => {
    const res = await t.req('GET', '/v2/disc/tags/tags/list');
    assert.equal(res.statusCode, 200);
    assert.match(header(res, 'content-type') ?? '', /^application\/json/);
    assert.deepEqual(res.json(), { name: 'disc/tags', tags: SORTED });
    assert.equal(header(res, 'link'), undefined);
  });

  it('n limits the page and Link points at the next one: </v2/<name>/tags/list?n=..&last=..>; rel="next"', async () => {
    const res = await t.req('GET', '/v2/disc/tags/tags/list?n=3');
    assert.deepEqual(res.json<{ tags: string[] }>().tags, SORTED.slice(0, 3));
    assert.equal(header(res, 'link'), `</v2/disc/tags/tags/list?n=3&last=${SORTED[2]}>; rel="next"`);
  });

  it('following Link headers yields every tag exactly once, in order, and the last page has no Link', async () => {
    const pages = await allPages(t, '/v2/disc/tags/tags/list?n=3');
    assert.deepEqual(pages.flatMap((p) => p.json<{ tags: string[] }>().tags), SORTED);
    assert.equal(pages.length, 3);
  });

  it('no Link header when the page ends exactly at the last tag', async () => {
    const res = await t.req('GET', `/v2/disc/tags/tags/list?n=${TAGS.length}`);
    assert.deepEqual(res.json<{ tags: string[] }>().tags, SORTED);
    assert.equal(header(res, 'link'), undefined, 'no additional tags are available');
    const tail = await t.req('GET', `/v2/disc/tags/tags/list?n=2&last=${SORTED[SORTED.length - 3]}`);
    assert.deepEqual(tail.json<{ tags: string[] }>().tags, SORTED.slice(-2));
    assert.equal(header(tail, 'link'), undefined);
  });

  it('last alone returns the tags after it, excluding it', async () => {
    const res = await t.req('GET', '/v2/disc/tags/tags/list?last=a');
    assert.deepEqual(res.json<{ tags: string[] }>().tags, SORTED.slice(SORTED.indexOf('a') + 1));
  });

  it('n=0 returns an empty list and no Link header', async () => {
    const res = await t.req('GET', '/v2/disc/tags/tags/list?n=0');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { name: 'disc/tags', tags: [] });
    assert.equal(header(res, 'link'), undefined);
  });

  it('a malformed or repeated n is 400', async () => {
    assertError(await t.req('GET', '/v2/disc/tags/tags/list?n=-1'), 400, 'BAD_REQUEST');
    assertError(await t.req('GET', '/v2/disc/tags/tags/list?n=abc'), 400, 'BAD_REQUEST');
    assertError(await t.req('GET', '/v2/disc/tags/tags/list?n=1&n=2'), 400, 'BAD_REQUEST');
  });

  it('a repository with blobs but no tags lists an empty array', async () => {
    await pushBlob(t, 'disc/notags', randomBlob(10));
    assert.deepEqual((await t.req('GET', '/v2/disc/notags/tags/list')).json(), { name: 'disc/notags', tags: [] });
  });

  it('pages are capped at limits.listMax, with a Link to the rest', async () => {
    const small = await startApp({ 'limits.listMax': 2 });
    try {
      const img = await pushImage(small, 'disc/capped');
      for (const tag of ['t1', 't2', 't3']) await pushManifest(small, 'disc/capped', tag, img.manifest);
      const first = await small.req('GET', '/v2/disc/capped/tags/list?n=100');
      assert.deepEqual(first.json<{ tags: string[] }>().tags, ['t1', 't2']);
      assert.ok(nextLink(first) !== undefined, 'a capped page must announce the next one');
      const pages = await allPages(small, '/v2/disc/capped/tags/list');
      assert.deepEqual(pages.flatMap((p) => p.json<{ tags: string[] }>().tags), ['t1', 't2', 't3']);
    } finally {
      await small.close();
    }
  });
});

describe('discovery: catalog', () => {
  let t: TestApp;
  const repos = ['cat/b', 'cat/a', 'cat/c/deep', 'alpha', 'zeta'];
  before(async () => {
    t = await startApp();
    for (const r of repos) await pushBlob(t, r, randomBlob(8));
  });
  after(() => t.close());

  it('lists every repository in lexical order', async () => {
    const res = await t.req('GET', '/v2/_catalog');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { repositories: [...repos].sort() });
  });

  it('paginates with n, last and a Link header until every repository is seen', async () => {
    const first = await t.req('GET', '/v2/_catalog?n=2');
    assert.equal(header(first, 'link'), '</v2/_catalog?n=2&last=cat%2Fa>; rel="next"');
    const pages = await allPages(t, '/v2/_catalog?n=2');
    assert.deepEqual(pages.flatMap((p) => p.json<{ repositories: string[] }>().repositories), [...repos].sort());
    assert.equal(header(pages[pages.length - 1] as Res, 'link'), undefined);
  });
});

interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: Descriptor[];
}

function referrersOf(res: Res): Descriptor[] {
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(header(res, 'content-type'), MT.ociIndex);
  const doc = res.json<Index>();
  assert.equal(doc.schemaVersion, 2);
  assert.equal(doc.mediaType, MT.ociIndex);
  return doc.manifests;
}

const SBOM = 'application/vnd.example.sbom.v1';
const SIG_CONFIG = 'application/vnd.example.signature.config.v1+json';

describe('discovery: referrers', () => {
  let t: TestApp;
  let subject: PushedImage;
  before(async () => {
    t = await startApp();
    subject = await pushImage(t, 'disc/ref', 'v1');
  });
  after(() => t.close());

  it('a subject with no referrers answers 200 with an empty image index', async () => {
    const res = await t.req('GET', `/v2/disc/ref/referrers/${subject.manifest.digest}`);
    assert.deepEqual(referrersOf(res), []);
    assert.equal(header(res, 'oci-filters-applied'), undefined);
    assert.deepEqual(referrersOf(await t.req('GET', `/v2/disc/ref/referrers/${randomBlob(4).digest}`)), [], 'unknown subject: 200 too');
  });

  it('lists referrers with artifactType (explicit, or config.mediaType), size and annotations; OCI-Subject on PUT', async () => {
    const sbom = await pushReferrer(t, 'disc/ref', subject.manifest.descriptor, { artifactType: SBOM, annotations: { 'org.example.format': 'spdx' } });
    const sig = await pushReferrer(t, 'disc/ref', subject.manifest.descriptor, { configMediaType: SIG_CONFIG, annotations: { 'org.example.key': 'k1' } });
    const index = imageIndex({ manifests: [sig.descriptor], subject: subject.manifest.descriptor, annotations: { 'org.example.bundle': 'yes' } });
    const put = await t.req('PUT', `/v2/disc/ref/manifests/${index.digest}`, { headers: { 'content-type': MT.ociIndex }, payload: index.body });
    assert.equal(put.statusCode, 201, put.body);
    assert.equal(header(put, 'oci-subject'), subject.manifest.digest);

    const got = referrersOf(await t.req('GET', `/v2/disc/ref/referrers/${subject.manifest.digest}`));
    const byDigest = new Map(got.map((d) => [d.digest, d]));
    assert.equal(got.length, 3);
    assert.deepEqual(byDigest.get(sbom.digest), { mediaType: MT.ociManifest, digest: sbom.digest, size: sbom.body.length, artifactType: SBOM, annotations: { 'org.example.format': 'spdx' } });
    assert.deepEqual(byDigest.get(sig.digest), { mediaType: MT.ociManifest, digest: sig.digest, size: sig.body.length, artifactType: SIG_CONFIG, annotations: { 'org.example.key': 'k1' } });
    // an index without artifactType: the descriptor has none (spec "Listing Referrers")
    assert.deepEqual(byDigest.get(index.digest), { mediaType: MT.ociIndex, digest: index.digest, size: index.body.length, annotations: { 'org.example.bundle': 'yes' } });
  });

  it('the artifactType filter keeps matching referrers and says so with OCI-Filters-Applied', async () => {
    const res = await t.req('GET', `/v2/disc/ref/referrers/${subject.manifest.digest}?artifactType=${encodeURIComponent(SBOM)}`);
    const got = referrersOf(res);
    assert.equal(header(res, 'oci-filters-applied'), 'artifactType');
    assert.equal(got.length, 1);
    assert.equal(got[0]?.artifactType, SBOM);
    const none = await t.req('GET', `/v2/disc/ref/referrers/${subject.manifest.digest}?artifactType=application/vnd.example.none`);
    assert.deepEqual(referrersOf(none), []);
    assert.equal(header(none, 'oci-filters-applied'), 'artifactType');
  });

  it('referrers in another repository are not listed', async () => {
    const other = await pushImage(t, 'disc/ref-other');
    await pushReferrer(t, 'disc/ref-other', subject.manifest.descriptor, { artifactType: SBOM });
    assert.equal(referrersOf(await t.req('GET', `/v2/disc/ref/referrers/${subject.manifest.digest}`)).length, 3);
    assert.equal(referrersOf(await t.req('GET', `/v2/disc/ref-other/referrers/${subject.manifest.digest}`)).length, 1);
    assert.deepEqual(referrersOf(await t.req('GET', `/v2/disc/ref-other/referrers/${other.manifest.digest}`)), []);
  });

  it('a referrer may be pushed before its subject exists, and is listed before and after', async () => {
    const config = randomBlob(16);
    await pushBlob(t, 'disc/early', config);
    const future = imageManifest({ config: descriptorOf(config, MT.ociConfig) });
    const ref = await pushReferrer(t, 'disc/early', future.descriptor, { artifactType: SBOM });
    assert.deepEqual(referrersOf(await t.req('GET', `/v2/disc/early/referrers/${future.digest}`)).map((d) => d.digest), [ref.digest]);
    await pushManifest(t, 'disc/early', 'v1', future);
    assert.deepEqual(referrersOf(await t.req('GET', `/v2/disc/early/referrers/${future.digest}`)).map((d) => d.digest), [ref.digest]);
  });

  it('a malformed subject digest is 400 DIGEST_INVALID; a malformed artifactType is 400', async () => {
    assertError(await t.req('GET', '/v2/disc/ref/referrers/sha256:nothex'), 400, 'DIGEST_INVALID');
    assertError(await t.req('GET', `/v2/disc/ref/referrers/${subject.manifest.digest}?artifactType=notamediatype`), 400, 'BAD_REQUEST');
  });

  it('a repository that does not exist is 404 NAME_UNKNOWN', async () => {
    assertError(await t.req('GET', `/v2/disc/nothing-here/referrers/${subject.manifest.digest}`), 404, 'NAME_UNKNOWN');
  });
});

describe('discovery: referrers pagination', () => {
  let t: TestApp;
  let subject: PushedImage;
  const pushed: string[] = [];
  before(async () => {
    t = await startApp({ 'limits.listMax': 2 });
    subject = await pushImage(t, 'disc/page', 'v1');
    for (let i = 0; i < 5; i++) {
      const r = await pushReferrer(t, 'disc/page', subject.manifest.descriptor, { artifactType: i % 2 === 0 ? SBOM : 'application/vnd.example.other', annotations: { i: String(i) } });
      pushed.push(r.digest);
    }
  });
  after(() => t.close());

  it('pages hold at most limits.listMax descriptors and Link walks through all of them once', async () => {
    const pages = await allPages(t, `/v2/disc/page/referrers/${subject.manifest.digest}`);
    assert.equal(pages.length, 3);
    for (const p of pages) assert.ok(referrersOf(p).length <= 2);
    const seen = pages.flatMap((p) => referrersOf(p).map((d) => d.digest));
    assert.deepEqual([...seen].sort(), [...pushed].sort());
    assert.equal(new Set(seen).size, 5);
    assert.match(header(pages[0] as Res, 'link') ?? '', new RegExp(`^</v2/disc/page/referrers/${subject.manifest.digest}\\?last=sha256%3A[a-f0-9]{64}>; rel="next"$`));
    assert.equal(header(pages[2] as Res, 'link'), undefined);
  });

  it('the Link of a filtered page keeps the filter, and every page says OCI-Filters-Applied', async () => {
    const pages = await allPages(t, `/v2/disc/page/referrers/${subject.manifest.digest}?artifactType=${encodeURIComponent(SBOM)}`);
    assert.ok((header(pages[0] as Res, 'link') ?? '').includes(`artifactType=${encodeURIComponent(SBOM)}`));
    for (const p of pages) assert.equal(header(p, 'oci-filters-applied'), 'artifactType');
    const seen = pages.flatMap((p) => referrersOf(p));
    assert.equal(seen.length, 3);
    assert.ok(seen.every((d) => d.artifactType === SBOM));
  });

  it('n smaller than listMax is honoured and carried in the Link', async () => {
    const res = await t.req('GET', `/v2/disc/page/referrers/${subject.manifest.digest}?n=1`);
    assert.equal(referrersOf(res).length, 1);
    assert.match(header(res, 'link') ?? '', /[?&]n=1(&|>)/);
    const pages = await allPages(t, `/v2/disc/page/referrers/${subject.manifest.digest}?n=1`);
    assert.equal(pages.length, 5);
  });
});
