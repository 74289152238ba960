/**
 * BlobStore conformance suite (the contract in src/storage/blob-store.ts). A new backend proves
 * itself with one call: `runBlobStoreSuite('mine', async () => ({ store, cleanup }))`.
 * Each test gets a fresh, empty store.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { digestOf, type Digest } from '../../src/oci/index.js';
import type { BlobStore } from '../../src/storage/index.js';
import { rejectsWithCode } from './assert-registry-error.js';
import { describeUploadSessions, listAll } from './blob-store-upload-tests.js';
import { collect } from './streams.js';

export interface BlobStoreHarness {
  readonly store: BlobStore;
  cleanup(): Promise<void>;
}

const MISSING: Digest = digestOf('never stored');

export function runBlobStoreSuite(name: string, make: () => Promise<BlobStoreHarness>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let h: BlobStoreHarness;
    let store: BlobStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    afterEach(async () => {
      await store.close();
      await h.cleanup();
    });

    describe('stored blobs', () => {
      test('put makes the bytes visible to stat, read and readAll', async () => {
        const data = randomBytes(1000);
        const d = digestOf(data);
        assert.deepEqual(await store.put(data, d), { digest: d, size: 1000 });
        assert.deepEqual(await store.stat(d), { digest: d, size: 1000 });
        assert.ok((await store.readAll(d)).equals(data));
        assert.ok((await collect(await store.read(d))).equals(data));
      });

      test('read with a range returns bytes start..end inclusive', async () => {
        const data = Buffer.from('0123456789');
        const d = digestOf(data);
        await store.put(data, d);
        assert.equal((await collect(await store.read(d, { start: 2, end: 5 }))).toString(), '2345');
        assert.equal((await collect(await store.read(d, { start: 9, end: 9 }))).toString(), '9');
        assert.equal((await collect(await store.read(d, { start: 0, end: 9 }))).toString(), '0123456789');
      });

      test('putting the same content twice stores it once', async () => {
        const data = Buffer.from('same bytes');
        const d = digestOf(data);
        await store.put(data, d);
        assert.deepEqual(await store.put(Buffer.from(data), d), { digest: d, size: data.length });
        assert.deepEqual(await listAll(store), [d]);
      });

      test('put with a digest that does not match the bytes throws DIGEST_INVALID and stores nothing', async () => {
        const claimed = digestOf('other bytes');
        await rejectsWithCode(store.put(Buffer.from('some bytes'), claimed), 'DIGEST_INVALID');
        assert.equal(await store.stat(claimed), undefined);
        assert.deepEqual(await listAll(store), []);
      });

      test('put accepts sha512 digests and keeps them apart from sha256', async () => {
        const data = Buffer.from('hashed twice');
        const d512 = digestOf(data, 'sha512');
        await store.put(data, d512);
        assert.deepEqual(await store.stat(d512), { digest: d512, size: data.length });
        assert.equal(await store.stat(digestOf(data)), undefined);
        assert.ok((await store.readAll(d512)).equals(data));
      });

      test('a missing blob: stat is undefined, reads and verify throw BLOB_UNKNOWN, delete returns false', async () => {
        assert.equal(await store.stat(MISSING), undefined);
        await rejectsWithCode(store.read(MISSING), 'BLOB_UNKNOWN');
        await rejectsWithCode(store.read(MISSING, { start: 0, end: 1 }), 'BLOB_UNKNOWN');
        await rejectsWithCode(store.readAll(MISSING), 'BLOB_UNKNOWN');
        await rejectsWithCode(store.verify(MISSING), 'BLOB_UNKNOWN');
        await rejectsWithCode(store.quarantine(MISSING), 'BLOB_UNKNOWN');
        assert.equal(await store.delete(MISSING), false);
      });

      test('delete removes the blob and returns true once', async () => {
        const data = Buffer.from('to delete');
        const d = digestOf(data);
        await store.put(data, d);
        assert.equal(await store.delete(d), true);
        assert.equal(await store.stat(d), undefined);
        await rejectsWithCode(store.readAll(d), 'BLOB_UNKNOWN');
        assert.equal(await store.delete(d), false);
      });

      test('list yields every stored digest exactly once', async () => {
        const digests: Digest[] = [];
        for (const s of ['a', 'b', 'c']) {
          const d = digestOf(s);
          await store.put(Buffer.from(s), d);
          digests.push(d);
        }
        const d512 = digestOf('a', 'sha512');
        await store.put(Buffer.from('a'), d512);
        assert.deepEqual(await listAll(store), [...digests, d512].sort());
      });

      test('verify reports an intact blob as ok', async () => {
        const data = randomBytes(5000);
        const d = digestOf(data);
        await store.put(data, d);
        assert.deepEqual(await store.verify(d), { digest: d, ok: true });
      });

      test('quarantine stops the blob being served or listed', async () => {
        const data = Buffer.from('suspect');
        const d = digestOf(data);
        await store.put(data, d);
        await store.quarantine(d);
        assert.equal(await store.stat(d), undefined);
        await rejectsWithCode(store.read(d), 'BLOB_UNKNOWN');
        assert.deepEqual(await listAll(store), []);
      });
    });

    describeUploadSessions(() => store);
  });
}
