/**
 * The upload-session half of the BlobStore conformance suite (see blob-store-suite.ts): chunked
 * appends, all-or-nothing rollback, refusal of concurrent writers, commit verification, expiry.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { beforeEach, describe, test } from 'node:test';
import { digestOf, type Digest } from '../../src/oci/index.js';
import type { BlobStore } from '../../src/storage/index.js';
import { assertRegistryError, rejectsWithCode } from './assert-registry-error.js';
import { bodyOf, collect, gatedBody, sleep } from './streams.js';

export async function listAll(store: BlobStore): Promise<Digest[]> {
  const out: Digest[] = [];
  for await (const d of store.list()) out.push(d);
  return out.sort();
}

/** Registers the upload tests; `current()` is the fresh store the enclosing suite made for this test. */
export function describeUploadSessions(current: () => BlobStore): void {
  describe('upload sessions', () => {
    let store: BlobStore;
    beforeEach(() => {
      store = current();
    });

    /** start a session holding `data`, appended in one request */
    async function sessionWith(data: Buffer): Promise<string> {
      const id = randomUUID();
      await store.startUpload(id, 'library/test');
      if (data.length > 0) await store.appendUpload(id, bodyOf(data), { offset: 0, length: data.length });
      return id;
    }

    test('startUpload creates an empty session that getUpload reports', async () => {
      const id = randomUUID();
      const before = Date.now();
      const info = await store.startUpload(id, 'library/alpine');
      assert.equal(info.id, id);
      assert.equal(info.size, 0);
      const got = await store.getUpload(id);
      assert.ok(got !== undefined);
      assert.equal(got.repository, 'library/alpine');
      assert.equal(got.size, 0);
      assert.ok(got.startedAt >= before - 1000 && got.startedAt <= Date.now() + 1000);
    });

    test('chunks appended at the right offsets commit as one blob, streamed back intact', async () => {
      const parts = [randomBytes(1 << 20), randomBytes((1 << 20) + 7), randomBytes(12345)];
      const whole = Buffer.concat(parts);
      const id = randomUUID();
      await store.startUpload(id, 'library/big');
      let offset = 0;
      for (const p of parts) {
        const size = await store.appendUpload(id, bodyOf(p.subarray(0, 1000), p.subarray(1000)), { offset, length: p.length });
        offset += p.length;
        assert.equal(size, offset);
        assert.equal((await store.getUpload(id))?.size, offset);
      }
      const d = digestOf(whole);
      assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: whole.length });
      assert.ok((await collect(await store.read(d))).equals(whole));
      const tail = await collect(await store.read(d, { start: whole.length - 100, end: whole.length - 1 }));
      assert.ok(tail.equals(whole.subarray(whole.length - 100)));
    });

    test('an empty session commits the empty blob', async () => {
      const id = await sessionWith(Buffer.alloc(0));
      const d = digestOf('');
      assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: 0 });
      assert.equal((await store.readAll(d)).length, 0);
    });

    test('append at the wrong offset throws RANGE_INVALID with the Range already received', async () => {
      const id = await sessionWith(Buffer.from('hello'));
      const err = await rejectsWithCode(store.appendUpload(id, bodyOf(Buffer.from('x')), { offset: 3 }), 'RANGE_INVALID');
      assert.equal(err.headers.Range, '0-4');
      assert.equal((await store.getUpload(id))?.size, 5);
      assert.equal(await store.appendUpload(id, bodyOf(Buffer.from(' world')), { offset: 5 }), 11);
    });

    for (const [label, body, length] of [
      ['longer than', 'abcdefghij', 4],
      ['shorter than', 'abc', 10],
    ] as const) {
      test(`a body ${label} its declared length throws SIZE_INVALID and rolls the session back`, async () => {
        const id = await sessionWith(Buffer.from('kept-'));
        await rejectsWithCode(store.appendUpload(id, bodyOf(Buffer.from(body)), { length }), 'SIZE_INVALID');
        assert.equal((await store.getUpload(id))?.size, 5);
        assert.equal(await store.appendUpload(id, bodyOf(Buffer.from('tail')), { offset: 5, length: 4 }), 9);
        const d = digestOf('kept-tail');
        assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: 9 });
      });
    }

    test('a body that fails midway rolls the session back and leaves it usable', async () => {
      const id = await sessionWith(Buffer.from('kept-'));
      const g = gatedBody(randomBytes(256 * 1024));
      const append = store.appendUpload(id, g.body);
      await g.firstChunkTaken;
      g.fail(new Error('client went away'));
      await assert.rejects(append);
      assert.equal((await store.getUpload(id))?.size, 5);
      await store.appendUpload(id, bodyOf(Buffer.from('tail')), { offset: 5 });
      const d = digestOf('kept-tail');
      assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: 9 });
    });

    test('an append aborted by its signal rolls the session back', async () => {
      const id = await sessionWith(Buffer.from('kept-'));
      const g = gatedBody(randomBytes(256 * 1024));
      const ac = new AbortController();
      const append = store.appendUpload(id, g.body, { signal: ac.signal });
      await g.firstChunkTaken;
      ac.abort();
      await assert.rejects(append);
      assert.equal((await store.getUpload(id))?.size, 5);
      assert.equal(await store.appendUpload(id, bodyOf(Buffer.from('tail'))), 9);
    });

    test('a second append or a commit while one append is in flight is refused with BLOB_UPLOAD_INVALID', async () => {
      const id = await sessionWith(Buffer.alloc(0));
      const g = gatedBody(Buffer.from('first-'));
      const first = store.appendUpload(id, g.body);
      await g.started;
      await rejectsWithCode(store.appendUpload(id, bodyOf(Buffer.from('intruder'))), 'BLOB_UPLOAD_INVALID');
      await rejectsWithCode(store.commitUpload(id, digestOf('first-')), 'BLOB_UPLOAD_INVALID');
      g.finish(Buffer.from('request'));
      assert.equal(await first, 13);
      const d = digestOf('first-request');
      assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: 13 });
    });

    test('an append issued while another is finishing is refused or reports the true session size', async () => {
      // Timing-dependent by nature: repeat so an implementation that reads the size before
      // taking the session lock is caught (it reports a stale size most of the time).
      for (let i = 0; i < 20; i++) {
        const id = await sessionWith(Buffer.alloc(0));
        const g = gatedBody(Buffer.alloc(1000, 1));
        const first = store.appendUpload(id, g.body);
        await g.started;
        g.finish();
        for (let k = 0; k < i % 5; k++) await Promise.resolve();
        const [a, b] = await Promise.allSettled([first, store.appendUpload(id, bodyOf(Buffer.alloc(10, 2)))]);
        assert.deepEqual(a, { status: 'fulfilled', value: 1000 });
        const size = (await store.getUpload(id))?.size;
        if (b.status === 'rejected') {
          assertRegistryError(b.reason, 'BLOB_UPLOAD_INVALID');
          assert.equal(size, 1000);
        } else {
          assert.equal(b.value, 1010, 'the second append reports the size including the first');
          assert.equal(size, 1010);
        }
      }
    });

    test('commit with a wrong digest throws DIGEST_INVALID, stores nothing and ends the session', async () => {
      const id = await sessionWith(Buffer.from('actual'));
      const claimed = digestOf('claimed');
      await rejectsWithCode(store.commitUpload(id, claimed), 'DIGEST_INVALID');
      assert.equal(await store.stat(claimed), undefined);
      assert.equal(await store.stat(digestOf('actual')), undefined);
      assert.equal(await store.getUpload(id), undefined);
      await rejectsWithCode(store.appendUpload(id, bodyOf(Buffer.from('x'))), 'BLOB_UPLOAD_UNKNOWN');
    });

    test('commit of content that is already stored succeeds and keeps one copy', async () => {
      const data = Buffer.from('already here');
      const d = digestOf(data);
      await store.put(data, d);
      const id = await sessionWith(data);
      assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: data.length });
      assert.deepEqual(await listAll(store), [d]);
      assert.equal(await store.getUpload(id), undefined);
    });

    test('commit verifies and stores under a sha512 digest', async () => {
      const data = randomBytes(70000);
      const id = await sessionWith(data);
      await rejectsWithCode(store.commitUpload(id, digestOf(randomBytes(8), 'sha512')), 'DIGEST_INVALID');
      const id2 = await sessionWith(data);
      const d = digestOf(data, 'sha512');
      assert.deepEqual(await store.commitUpload(id2, d), { digest: d, size: data.length });
      assert.ok((await store.readAll(d)).equals(data));
    });

    test('a committed session is gone', async () => {
      const id = await sessionWith(Buffer.from('done'));
      await store.commitUpload(id, digestOf('done'));
      assert.equal(await store.getUpload(id), undefined);
      await rejectsWithCode(store.commitUpload(id, digestOf('done')), 'BLOB_UPLOAD_UNKNOWN');
    });

    test('a session started with initial bytes holds them; appends follow them and the commit covers all', async () => {
      const head = randomBytes(600);
      const body = randomBytes(70_000);
      const id = randomUUID();
      assert.equal((await store.startUpload(id, 'library/test', head)).size, 600);
      assert.equal((await store.getUpload(id))?.size, 600);
      assert.ok((await collect(await store.readUploadData(id, { start: 0, end: 599 }))).equals(head));
      await rejectsWithCode(store.appendUpload(id, bodyOf(body), { offset: 0, length: body.length }), 'RANGE_INVALID');
      assert.equal(await store.appendUpload(id, bodyOf(body), { offset: 600, length: body.length }), 70_600);
      const whole = Buffer.concat([head, body]);
      assert.deepEqual(await store.commitUpload(id, digestOf(whole)), { digest: digestOf(whole), size: whole.length });
      assert.ok((await store.readAll(digestOf(whole))).equals(whole));
    });

    test('a trailer given to the commit ends the blob: its digest and size cover it, and a wrong digest still stores nothing', async () => {
      const body = randomBytes(5000);
      const trailer = randomBytes(77);
      const whole = Buffer.concat([body, trailer]);
      const wrong = await sessionWith(body);
      await rejectsWithCode(store.commitUpload(wrong, digestOf(body), { trailer }), 'DIGEST_INVALID');
      assert.equal(await store.stat(digestOf(body)), undefined);
      const id = await sessionWith(body);
      assert.deepEqual(await store.commitUpload(id, digestOf(whole), { trailer }), { digest: digestOf(whole), size: 5077 });
      assert.ok((await store.readAll(digestOf(whole))).equals(whole));
      const named = await sessionWith(Buffer.alloc(0));
      assert.deepEqual(await store.commitUpload(named, undefined, { trailer }), { digest: digestOf(trailer), size: 77 });
    });

    test('commit without a digest names the blob by the sha256 of its content', async () => {
      const data = randomBytes(3000);
      const id = await sessionWith(data);
      assert.deepEqual(await store.commitUpload(id), { digest: digestOf(data), size: 3000 });
      assert.ok((await store.readAll(digestOf(data))).equals(data));
    });

    test('readUploadData returns a byte range of the session so far', async () => {
      const data = randomBytes(70_000);
      const id = await sessionWith(data);
      assert.ok((await collect(await store.readUploadData(id, { start: 0, end: 69_999 }))).equals(data));
      assert.ok((await collect(await store.readUploadData(id, { start: 65_530, end: 65_540 }))).equals(data.subarray(65_530, 65_541)));
      await rejectsWithCode(store.readUploadData(randomUUID(), { start: 0, end: 0 }), 'BLOB_UPLOAD_UNKNOWN');
    });

    test('truncateUpload shrinks the session; appends continue at the new end', async () => {
      const data = randomBytes(70_000);
      const id = await sessionWith(data);
      await rejectsWithCode(store.truncateUpload(id, 70_001), 'RANGE_INVALID');
      await store.truncateUpload(id, 65_537);
      assert.equal((await store.getUpload(id))?.size, 65_537);
      const tail = randomBytes(1000);
      await rejectsWithCode(store.appendUpload(id, bodyOf(tail), { offset: 70_000 }), 'RANGE_INVALID');
      assert.equal(await store.appendUpload(id, bodyOf(tail), { offset: 65_537, length: 1000 }), 66_537);
      const whole = Buffer.concat([data.subarray(0, 65_537), tail]);
      assert.deepEqual(await store.commitUpload(id, digestOf(whole)), { digest: digestOf(whole), size: 66_537 });
      assert.ok((await collect(await store.read(digestOf(whole)))).equals(whole));
    });

    test('truncateUpload to zero leaves an empty, usable session', async () => {
      const id = await sessionWith(randomBytes(5000));
      await store.truncateUpload(id, 0);
      assert.equal((await store.getUpload(id))?.size, 0);
      assert.deepEqual(await store.commitUpload(id, digestOf(Buffer.alloc(0))), { digest: digestOf(Buffer.alloc(0)), size: 0 });
    });

    test('cancelUpload ends the session and returns false the second time', async () => {
      const id = await sessionWith(Buffer.from('abandoned'));
      assert.equal(await store.cancelUpload(id), true);
      assert.equal(await store.getUpload(id), undefined);
      assert.equal(await store.cancelUpload(id), false);
      await rejectsWithCode(store.commitUpload(id, digestOf('abandoned')), 'BLOB_UPLOAD_UNKNOWN');
      assert.deepEqual(await listAll(store), []);
    });

    test('a missing session: getUpload is undefined, append and commit throw BLOB_UPLOAD_UNKNOWN', async () => {
      const id = randomUUID();
      assert.equal(await store.getUpload(id), undefined);
      await rejectsWithCode(store.appendUpload(id, bodyOf(Buffer.from('x'))), 'BLOB_UPLOAD_UNKNOWN');
      await rejectsWithCode(store.commitUpload(id, digestOf('x')), 'BLOB_UPLOAD_UNKNOWN');
      assert.equal(await store.cancelUpload(id), false);
    });

    test('staleUploads lists sessions untouched since the cutoff, not newer, appended-to or busy ones', async () => {
      const old = await sessionWith(Buffer.alloc(0));
      const refreshed = await sessionWith(Buffer.alloc(0));
      const cancelled = await sessionWith(Buffer.alloc(0));
      await sleep(40);
      const cutoff = Date.now();
      await sleep(40);
      const fresh = await sessionWith(Buffer.alloc(0));
      await store.appendUpload(refreshed, bodyOf(Buffer.from('still here')));
      await store.cancelUpload(cancelled);
      assert.deepEqual(await store.staleUploads(cutoff), [old]);
      assert.deepEqual(await store.staleUploads(0), []);
      const g = gatedBody(Buffer.from('busy'));
      const busy = store.appendUpload(old, g.body);
      await g.started;
      assert.deepEqual((await store.staleUploads(Date.now() + 60_000)).sort(), [fresh, refreshed].sort());
      g.finish();
      await busy;
    });
  });
}
