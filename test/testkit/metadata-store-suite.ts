/**
 * MetadataStore conformance suite (the contract in src/storage/metadata-store.ts). A new backend
 * proves itself with one call: `runMetadataStoreSuite('mine', async () => ({ store, cleanup }))`.
 * Each test gets a fresh, empty store.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { digestOf, MediaType, type Digest } from '../../src/oci/index.js';
import type { ManifestRecord, MetadataStore } from '../../src/storage/index.js';

export interface MetadataStoreHarness {
  readonly store: MetadataStore;
  cleanup(): Promise<void>;
}

const SIG = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const SBOM = 'application/spdx+json';

/** manifest bytes by digest, so a test can put a record built by `manifest()` with its body */
const bodies = new Map<Digest, Buffer>();

function manifest(repository: string, content: string, extra: Partial<ManifestRecord> = {}): ManifestRecord {
  const body = Buffer.from(content);
  bodies.set(digestOf(body), body);
  return { repository, digest: digestOf(body), mediaType: MediaType.OciManifest, size: body.length, createdAt: 1_700_000_000_000, ...extra };
}

function bodyOf(m: ManifestRecord): Buffer {
  const b = bodies.get(m.digest);
  assert.ok(b !== undefined, 'manifest records come from manifest()');
  return b;
}

/** Records compared by value: an absent optional field and one set to undefined are the same. */
function plain(r: ManifestRecord | undefined): unknown {
  return r === undefined ? undefined : JSON.parse(JSON.stringify(r));
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export function runMetadataStoreSuite(name: string, make: () => Promise<MetadataStoreHarness>): void {
  describe(`MetadataStore conformance: ${name}`, () => {
    let h: MetadataStoreHarness;
    let store: MetadataStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    /** putManifest with the record's own bytes */
    const put = (m: ManifestRecord, tag?: string): Promise<void> => store.putManifest(m, bodyOf(m), tag);
    afterEach(async () => {
      await store.close();
      await h.cleanup();
    });

    describe('blob links', () => {
      test('linkBlob records the size for that repository only', async () => {
        const d = digestOf('layer');
        await store.linkBlob('team/app', d, 5);
        assert.equal(await store.blobLink('team/app', d), 5);
        assert.equal(await store.blobLink('team/other', d), undefined);
        assert.equal(await store.blobLink('team/app', digestOf('other')), undefined);
      });

      test('unlinkBlob removes the link and says whether it existed', async () => {
        const d = digestOf('layer');
        await store.linkBlob('team/app', d, 5);
        assert.equal(await store.unlinkBlob('team/app', d), true);
        assert.equal(await store.blobLink('team/app', d), undefined);
        assert.equal(await store.unlinkBlob('team/app', d), false);
        assert.equal(await store.unlinkBlob('nobody/here', d), false);
      });

      test('repositoriesWithBlob lists the repositories holding the blob, at most limit', async () => {
        const d = digestOf('shared');
        for (const r of ['a/one', 'b/two', 'c/three']) await store.linkBlob(r, d, 6);
        await store.linkBlob('d/four', digestOf('unrelated'), 9);
        assert.deepEqual((await store.repositoriesWithBlob(d, 10)).sort(), ['a/one', 'b/two', 'c/three']);
        const limited = await store.repositoriesWithBlob(d, 2);
        assert.equal(limited.length, 2);
        assert.ok(limited.every((r) => ['a/one', 'b/two', 'c/three'].includes(r)));
        assert.deepEqual(await store.repositoriesWithBlob(digestOf('nowhere'), 10), []);
      });

      test('a repository exists from its first blob link or manifest', async () => {
        assert.equal(await store.repositoryExists('team/app'), false);
        await store.linkBlob('team/app', digestOf('x'), 1);
        assert.equal(await store.repositoryExists('team/app'), true);
        assert.equal(await store.repositoryExists('team/web'), false);
        await put(manifest('team/web', '{}'));
        assert.equal(await store.repositoryExists('team/web'), true);
        assert.equal(await store.repositoryExists('team'), false);
      });
    });

    describe('manifests and tags', () => {
      test('getManifest returns the record as stored, in its repository only', async () => {
        const subject = digestOf('subject');
        const m = manifest('team/app', 'm1', { artifactType: SIG, subject, annotations: { 'org.example.k': 'v' } });
        await put(m);
        assert.deepEqual(plain(await store.getManifest('team/app', m.digest)), plain(m));
        assert.equal(await store.getManifest('team/other', m.digest), undefined);
        assert.equal(await store.getManifest('team/app', digestOf('unknown')), undefined);
        const bare = manifest('team/app', 'm2');
        await put(bare);
        assert.deepEqual(plain(await store.getManifest('team/app', bare.digest)), plain(bare));
      });

      test('putManifest with a tag makes the manifest and the tag visible together', async () => {
        const m = manifest('team/app', 'm1');
        const writing = put(m, 'latest');
        const during = Promise.all([store.resolveTag('team/app', 'latest'), store.getManifest('team/app', m.digest)]);
        await writing;
        const [tag, rec] = await during;
        assert.equal(tag === undefined, rec === undefined, 'a tag never resolves to a manifest that is not stored');
        assert.equal(await store.resolveTag('team/app', 'latest'), m.digest);
        assert.ok((await store.getManifest('team/app', m.digest)) !== undefined);
        assert.equal(await store.resolveTag('team/other', 'latest'), undefined);
      });

      test('tagging another manifest with an existing tag moves the tag', async () => {
        const m1 = manifest('team/app', 'm1');
        const m2 = manifest('team/app', 'm2');
        await put(m1, 'latest');
        await put(m2, 'latest');
        assert.equal(await store.resolveTag('team/app', 'latest'), m2.digest);
        assert.ok((await store.getManifest('team/app', m1.digest)) !== undefined, 'the untagged manifest stays');
        assert.deepEqual(await store.listTags('team/app', { n: 10 }), ['latest']);
      });

      test('putting a stored manifest again with a new tag adds the tag', async () => {
        const m = manifest('team/app', 'm1');
        await put(m, 'v1');
        await put(m, 'stable');
        assert.equal(await store.resolveTag('team/app', 'v1'), m.digest);
        assert.equal(await store.resolveTag('team/app', 'stable'), m.digest);
      });

      test('deleteManifest removes the manifest and every tag pointing at it, and nothing else', async () => {
        const m1 = manifest('team/app', 'm1');
        const m2 = manifest('team/app', 'm2');
        await put(m1, 'v1');
        await put(m1, 'latest');
        await put(m2, 'v2');
        await put(manifest('team/fork', 'm1'), 'v1');
        assert.equal(await store.deleteManifest('team/app', m1.digest), true);
        assert.equal(await store.getManifest('team/app', m1.digest), undefined);
        assert.equal(await store.resolveTag('team/app', 'v1'), undefined);
        assert.equal(await store.resolveTag('team/app', 'latest'), undefined);
        assert.deepEqual(await store.listTags('team/app', { n: 10 }), ['v2']);
        assert.equal(await store.resolveTag('team/fork', 'v1'), m1.digest);
        assert.equal(await store.deleteManifest('team/app', m1.digest), false);
      });

      test('deleteTag removes only the tag; the manifest and its other tags stay', async () => {
        const m = manifest('team/app', 'm1');
        await put(m, 'v1');
        await put(m, 'latest');
        assert.equal(await store.deleteTag('team/app', 'v1'), true);
        assert.equal(await store.resolveTag('team/app', 'v1'), undefined);
        assert.equal(await store.resolveTag('team/app', 'latest'), m.digest);
        assert.ok((await store.getManifest('team/app', m.digest)) !== undefined);
        assert.equal(await store.deleteTag('team/app', 'v1'), false);
      });
    });

    describe('manifest bytes', () => {
      test('manifestBody returns the exact bytes stored with the manifest', async () => {
        const raw = '{ "schemaVersion" :\t2,\n  "annotations": {"k": "caf\u00e9 \u2603"} }\n';
        const m = manifest('team/app', raw);
        await put(m, 'latest');
        const got = await store.manifestBody(m.digest);
        assert.ok(got !== undefined && got.equals(Buffer.from(raw)), 'byte-exact, never re-serialised');
        assert.equal(await store.manifestBody(digestOf('never pushed')), undefined);
      });

      test('manifest bytes are shared by every repository holding the manifest', async () => {
        const a = manifest('team/a', 'shared manifest');
        await put(a);
        await put({ ...a, repository: 'team/b' });
        assert.equal((await store.manifestBody(a.digest))?.toString(), 'shared manifest');
        assert.ok((await store.getManifest('team/b', a.digest)) !== undefined);
      });
    });

    describe('concurrent writes', () => {
      test('writes issued together all land, each resolving with its own result', async () => {
        const d = digestOf('layer');
        await store.linkBlob('team/app', d, 5);
        const links = Array.from({ length: 30 }, (_, i) => store.linkBlob(`team/r${String(i).padStart(2, '0')}`, d, i));
        const [unlinked, missing, deletedTag] = await Promise.all([
          store.unlinkBlob('team/app', d),
          store.unlinkBlob('team/app', digestOf('never linked')),
          store.deleteTag('team/app', 'no-such-tag'),
          ...links,
        ]);
        assert.deepEqual([unlinked, missing, deletedTag], [true, false, false]);
        assert.equal((await store.repositoriesWithBlob(d, 100)).length, 30);
        assert.equal(await store.blobLink('team/r29', d), 29);
      });
    });

    describe('listing', () => {
      const tags = ['v1_0', 'latest', 'Latest', 'v10', '_x', 'v1.0', 'Z', '1', 'v1-0'];
      // byte order: '-' 0x2d < '.' 0x2e < '0' 0x30 < 'A'..'Z' < '_' 0x5f < 'a'..'z' (not locale order)
      const tagsInByteOrder = ['1', 'Latest', 'Z', '_x', 'latest', 'v1-0', 'v1.0', 'v10', 'v1_0'];

      test('listTags returns tags in byte order', async () => {
        for (const [i, t] of tags.entries()) await put(manifest('team/app', `m${i}`), t);
        await put(manifest('team/other', 'x'), 'other-tag');
        assert.deepEqual(await store.listTags('team/app', { n: 100 }), tagsInByteOrder);
        assert.deepEqual(await store.listTags('nobody/here', { n: 100 }), []);
      });

      test('listTags pages with n and an exclusive last', async () => {
        for (const [i, t] of tags.entries()) await put(manifest('team/app', `m${i}`), t);
        const pages: string[][] = [];
        let last: string | undefined;
        for (let i = 0; i < 10; i++) {
          const page = await store.listTags('team/app', { n: 4, last });
          if (page.length === 0) break;
          assert.ok(page.length <= 4);
          pages.push(page);
          last = page[page.length - 1];
        }
        assert.deepEqual(pages, [tagsInByteOrder.slice(0, 4), tagsInByteOrder.slice(4, 8), tagsInByteOrder.slice(8)]);
        assert.deepEqual(await store.listTags('team/app', { n: 100, last: 'M' }), ['Z', '_x', 'latest', 'v1-0', 'v1.0', 'v10', 'v1_0']);
        assert.deepEqual(await store.listTags('team/app', { n: 0 }), []);
      });

      test('listRepositories returns repositories in byte order, paged with n and last', async () => {
        const repos = ['b', 'ab', 'a_b', 'a0', 'a/b', 'a.b', 'a-b', 'a'];
        const inByteOrder = ['a', 'a-b', 'a.b', 'a/b', 'a0', 'a_b', 'ab', 'b'];
        for (const [i, r] of repos.entries()) {
          if (i % 2 === 0) await store.linkBlob(r, digestOf(r), r.length);
          else await put(manifest(r, r));
        }
        assert.deepEqual(await store.listRepositories({ n: 100 }), inByteOrder);
        assert.deepEqual(await store.listRepositories({ n: 3 }), inByteOrder.slice(0, 3));
        assert.deepEqual(await store.listRepositories({ n: 3, last: 'a.b' }), ['a/b', 'a0', 'a_b']);
        assert.deepEqual(await store.listRepositories({ n: 3, last: 'b' }), []);
      });
    });

    describe('referrers and references', () => {
      test('listReferrers returns manifests with that subject in digest order, optionally of one artifactType', async () => {
        const subject = digestOf('image');
        const refs = ['sig-a', 'sbom-a', 'sig-b', 'sbom-b', 'sig-c'].map((c) =>
          manifest('team/app', c, { subject, artifactType: c.startsWith('sig') ? SIG : SBOM }),
        );
        for (const r of refs) await put(r);
        await put(manifest('team/app', 'unrelated', { subject: digestOf('other image'), artifactType: SIG }));
        await put(manifest('team/fork', 'sig-a', { subject, artifactType: SIG }));
        await put(manifest('team/app', 'no subject', { artifactType: SIG }));
        const byDigest = (xs: ManifestRecord[]): Digest[] => xs.map((r) => r.digest).sort();
        const all_ = await store.listReferrers('team/app', subject);
        assert.deepEqual(all_.map((r) => r.digest), byDigest(refs));
        assert.ok(all_.every((r) => r.repository === 'team/app' && r.subject === subject));
        const sigs = await store.listReferrers('team/app', subject, SIG);
        assert.deepEqual(sigs.map((r) => r.digest), byDigest(refs.filter((r) => r.artifactType === SIG)));
        assert.deepEqual(await store.listReferrers('team/app', subject, 'application/x-none'), []);
        assert.deepEqual(await store.listReferrers('team/app', digestOf('no referrers')), []);
      });

      test('a deleted manifest is no longer listed as a referrer', async () => {
        const subject = digestOf('image');
        const sig = manifest('team/app', 'sig', { subject, artifactType: SIG });
        await put(sig);
        await store.deleteManifest('team/app', sig.digest);
        assert.deepEqual(await store.listReferrers('team/app', subject), []);
      });

      test('referencedDigests yields every blob link and manifest with its repository and kind', async () => {
        const layer = digestOf('layer');
        const m = manifest('team/app', 'm1');
        await store.linkBlob('team/app', layer, 5);
        await store.linkBlob('team/web', layer, 5);
        await put(m, 'latest');
        await store.linkBlob('team/gone', digestOf('gone'), 4);
        await store.unlinkBlob('team/gone', digestOf('gone'));
        const key = (r: { repository: string; digest: Digest; kind: string }): string => `${r.kind} ${r.repository} ${r.digest}`;
        assert.deepEqual((await all(store.referencedDigests())).map(key).sort(), [
          `blob team/app ${layer}`,
          `blob team/web ${layer}`,
          `manifest team/app ${m.digest}`,
        ]);
      });
    });
  });
}
