/**
 * Storage: the conformance suites against every embedded implementation, plus what only the
 * filesystem and SQLite backends promise (atomic rename into blobs/, crash leftovers, durability).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { digestHex, digestOf } from '../../src/oci/index.js';
import type Database from 'better-sqlite3';
import { FsBlobStore, KeyedQueue, MemoryBlobStore, MemoryMetadataStore, PAGE_CACHE_KIB, SqliteMetadataStore, fsck } from '../../src/storage/index.js';
import { SqliteDataKeyStore } from '../../src/encryption/index.js';
import { SqliteAuthStore } from '../../src/auth/index.js';
import { runBlobStoreSuite } from '../testkit/blob-store-suite.js';
import { runMetadataStoreSuite } from '../testkit/metadata-store-suite.js';
import { rejectsWithCode } from '../testkit/assert-registry-error.js';
import { bodyOf, gatedBody } from '../testkit/streams.js';

async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `bulwark-${prefix}-`));
}

/** Every file below `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

runBlobStoreSuite('memory', async () => ({ store: new MemoryBlobStore(), cleanup: async () => {} }));

runBlobStoreSuite('filesystem', async () => {
  const dir = await tempDir('blobs');
  return { store: await new FsBlobStore(dir).init(), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

runMetadataStoreSuite('memory', async () => ({ store: new MemoryMetadataStore(), cleanup: async () => {} }));

runMetadataStoreSuite('sqlite', async () => {
  const dir = await tempDir('meta');
  return { store: new SqliteMetadataStore(join(dir, 'metadata.db')), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('FsBlobStore on disk', () => {
  let dir: string;
  let store: FsBlobStore;
  beforeEach(async () => {
    dir = await tempDir('fs');
    store = await new FsBlobStore(dir).init();
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a blob file appears under blobs/ only when its upload commits', async () => {
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(Buffer.from('part one, ')));
    const g = gatedBody(Buffer.from('part two'));
    const inFlight = store.appendUpload(id, g.body);
    await g.firstChunkTaken;
    assert.deepEqual(await filesUnder(join(dir, 'blobs')), [], 'no partial blob while appending');
    g.finish();
    await inFlight;
    assert.deepEqual(await filesUnder(join(dir, 'blobs')), [], 'no blob before commit');
    const d = digestOf('part one, part two');
    await store.commitUpload(id, d);
    const hex = digestHex(d);
    assert.deepEqual(await filesUnder(join(dir, 'blobs')), [join('sha256', hex.slice(0, 2), hex)]);
    assert.equal(await store.getUpload(id), undefined, 'the session is over');
    // the folder goes after the answer; close() waits for that
    await store.close();
    assert.deepEqual(await readdir(join(dir, 'uploads')), [], 'the session folder is removed');
    store = await new FsBlobStore(dir).init();
  });

  test('a session folder a crash left without its data is purged as stale', async () => {
    const id = randomUUID();
    await mkdir(join(dir, 'uploads', id));
    await writeFile(join(dir, 'uploads', id, 'info.json'), JSON.stringify({ repository: 'team/app', startedAt: 1 }));
    assert.equal(await store.getUpload(id), undefined, 'not a session');
    assert.deepEqual(await store.staleUploads(Date.now() + 1000), [id]);
    assert.equal(await store.cancelUpload(id), false);
    assert.deepEqual(await readdir(join(dir, 'uploads')), []);
  });

  test('a failed background flush ends the session: nothing of it can be resumed or committed', async () => {
    // Linux reports a write-back error once: a later fsync would succeed over lost pages of
    // earlier requests. Make one fdatasync fail, as a disk error would.
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const real = proto.datasync;
    let failures = 1;
    proto.datasync = function (this: unknown) {
      if (failures-- > 0) return Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      return real.call(this);
    };
    try {
      const id = randomUUID();
      await store.startUpload(id, 'team/app');
      await store.appendUpload(id, bodyOf(Buffer.alloc(3 * 1024 * 1024, 1)), { length: 3 * 1024 * 1024 });
      const big = Buffer.alloc(6 * 1024 * 1024, 2);
      const pieces = Array.from({ length: 6 }, (_, i) => big.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
      await rejectsWithCode(store.appendUpload(id, bodyOf(...pieces), { length: big.length, offset: 3 * 1024 * 1024 }), 'BLOB_UPLOAD_INVALID');
      assert.equal(await store.getUpload(id), undefined, 'the session is gone');
      await rejectsWithCode(store.appendUpload(id, bodyOf(big), { offset: 3 * 1024 * 1024 }), 'BLOB_UPLOAD_UNKNOWN');
      await rejectsWithCode(store.commitUpload(id, digestOf(Buffer.concat([Buffer.alloc(3 * 1024 * 1024, 1), big]))), 'BLOB_UPLOAD_UNKNOWN');
      assert.deepEqual(await readdir(join(dir, 'uploads')), []);
    } finally {
      proto.datasync = real;
    }
  });

  test('appends larger than the background-flush interval store every byte, with and without a declared length', async () => {
    const data = Buffer.alloc(9 * 1024 * 1024 + 5);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    const half = 5 * 1024 * 1024;
    await store.appendUpload(id, bodyOf(data.subarray(0, half)), { length: half });
    await store.appendUpload(id, bodyOf(data.subarray(half)));
    const d = digestOf(data);
    assert.deepEqual(await store.commitUpload(id, d), { digest: d, size: data.length });
    assert.deepEqual(await store.readAll(d), data);
  });

  test('a put leaves its bytes under blobs/ and nothing in tmp/', async () => {
    const d = digestOf('manifest bytes', 'sha512');
    await store.put(Buffer.from('manifest bytes'), d);
    const hex = digestHex(d);
    assert.equal(await readFile(join(dir, 'blobs', 'sha512', hex.slice(0, 2), hex), 'utf8'), 'manifest bytes');
    assert.deepEqual(await filesUnder(join(dir, 'tmp')), []);
  });

  test('a failed append leaves no stray bytes in the session file', async () => {
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(Buffer.from('kept')));
    const g = gatedBody(Buffer.alloc(512 * 1024, 1));
    const failing = store.appendUpload(id, g.body, { length: 1024 * 1024 });
    await g.firstChunkTaken;
    g.fail(new Error('connection reset'));
    await assert.rejects(failing);
    assert.equal(await readFile(join(dir, 'uploads', id, 'data'), 'utf8'), 'kept');
  });

  test('init() removes leftovers of interrupted puts from tmp/ and keeps upload sessions', async () => {
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(Buffer.from('survives')));
    await writeFile(join(dir, 'tmp', 'crashed-put'), 'half a manifest');
    await store.close();
    store = await new FsBlobStore(dir).init();
    assert.deepEqual(await filesUnder(join(dir, 'tmp')), []);
    assert.equal((await store.getUpload(id))?.size, 8);
  });

  test('an upload session continues after a restart and its digest is recomputed at commit', async () => {
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(Buffer.from('before restart, ')));
    await store.close();
    store = await new FsBlobStore(dir).init();
    await store.appendUpload(id, bodyOf(Buffer.from('after')), { offset: 16 });
    // the hash state died with the process: a digest of only the new bytes must not pass
    await rejectsWithCode(store.commitUpload(id, digestOf('after')), 'DIGEST_INVALID');
    const id2 = randomUUID();
    await store.startUpload(id2, 'team/app');
    await store.appendUpload(id2, bodyOf(Buffer.from('before restart, ')));
    await store.close();
    store = await new FsBlobStore(dir).init();
    await store.appendUpload(id2, bodyOf(Buffer.from('after')), { offset: 16 });
    const d = digestOf('before restart, after');
    assert.deepEqual(await store.commitUpload(id2, d), { digest: d, size: 21 });
  });

  test('verify reports a blob whose file was altered, and quarantine moves it aside intact', async () => {
    const d = digestOf('original');
    await store.put(Buffer.from('original'), d);
    const hex = digestHex(d);
    await writeFile(join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex), 'tampered');
    const check = await store.verify(d);
    assert.equal(check.ok, false);
    assert.match(check.problem ?? '', new RegExp(digestOf('tampered')));
    await store.quarantine(d);
    assert.equal(await store.stat(d), undefined);
    assert.equal(await readFile(join(dir, 'quarantine', `sha256-${hex}`), 'utf8'), 'tampered');
  });

  test('fsck --repair keeps the link of a blob pushed afresh after its corrupt copy was quarantined', async () => {
    const meta = new MemoryMetadataStore();
    const good = Buffer.from('layer bytes');
    const d = digestOf(good);
    await store.put(good, d);
    await meta.linkBlob('team/app', d, good.length);
    await meta.linkBlob('team/old', d, good.length);
    const hex = digestHex(d);
    await writeFile(join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex), 'tampered');
    // Between the blob pass and the reference pass, a client pushes the content again.
    const racing = Object.create(meta) as MemoryMetadataStore;
    racing.referencedDigests = async function* () {
      await store.put(good, d);
      await meta.linkBlob('team/app', d, good.length);
      yield* meta.referencedDigests();
    };
    const report = await fsck(store, racing, { repair: true });
    assert.deepEqual(
      report.problems.map((p) => p.kind),
      ['corrupt-blob'],
    );
    assert.equal(await meta.blobLink('team/app', d), good.length);
    assert.ok((await store.readAll(d)).equals(good));
    // Without a fresh push, the links to quarantined content are removed, and without repair
    // the corrupt copy is reported behind every link.
    await writeFile(join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex), 'tampered');
    assert.deepEqual(
      (await fsck(store, meta, { repair: false })).problems.map((p) => `${p.kind} ${p.repository ?? ''}`).sort(),
      ['corrupt-blob ', 'missing-blob team/app', 'missing-blob team/old'],
    );
    assert.deepEqual(
      (await fsck(store, meta, { repair: true })).problems.map((p) => `${p.kind} ${p.repository ?? ''}`).sort(),
      ['corrupt-blob ', 'missing-blob team/app', 'missing-blob team/old'],
    );
    assert.equal(await meta.blobLink('team/app', d), undefined);
  });

  test('upload ids that are not server-generated UUIDs never reach the filesystem', async () => {
    for (const id of ['../../etc', '..', 'a/b', '']) {
      assert.equal(await store.getUpload(id), undefined);
      assert.equal(await store.cancelUpload(id), false);
    }
  });
});

describe('SqliteMetadataStore on disk', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('sqlite');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('what a call wrote is there after the store is closed and reopened', async () => {
    const path = join(dir, 'metadata.db');
    const layer = digestOf('layer');
    const m = { repository: 'team/app', digest: digestOf('m'), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, createdAt: 42, annotations: { a: 'b' } };
    const first = new SqliteMetadataStore(path);
    await first.linkBlob('team/app', layer, 5);
    await first.putManifest(m, Buffer.from('m'), 'latest');
    await first.close();
    const second = new SqliteMetadataStore(path);
    try {
      assert.equal(await second.blobLink('team/app', layer), 5);
      assert.equal(await second.resolveTag('team/app', 'latest'), m.digest);
      assert.deepEqual((await second.getManifest('team/app', m.digest))?.annotations, { a: 'b' });
      assert.deepEqual(await second.listRepositories({ n: 10 }), ['team/app']);
      assert.equal((await second.manifestBody(m.digest))?.toString(), 'm');
    } finally {
      await second.close();
    }
  });

  test('a resolved write is visible to another connection while the writer is still open', async () => {
    const path = join(dir, 'metadata.db');
    const writer = new SqliteMetadataStore(path);
    const reader = new SqliteMetadataStore(path);
    try {
      const m = { repository: 'team/app', digest: digestOf('m'), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, createdAt: 1 };
      await writer.putManifest(m, Buffer.from('m'), 'v1');
      assert.equal(await reader.resolveTag('team/app', 'v1'), digestOf('m'));
    } finally {
      await writer.close();
      await reader.close();
    }
  });
});

describe('SQLite connections', () => {
  test('auth.db zeroes what is deleted or overwritten: a dropped private key leaves no copy in the file or its WAL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-sqlite-'));
    try {
      const path = join(dir, 'auth.db');
      const marker = `private-half-${randomUUID()}`;
      const store = new SqliteAuthStore(path);
      await store.put('signing-key', 'k1', { kid: 'k1', privateJwk: { d: marker }, pad: 'x'.repeat(300) });
      await store.put('signing-key', 'k2', { kid: 'k2', publicJwk: {} });
      await store.put('signing-key', 'k1', { kid: 'k1', retiredAt: 1 });
      // While the server runs: neither the file nor its WAL holds the dropped half any more.
      const wal = await readFile(`${path}-wal`).catch(() => Buffer.alloc(0));
      assert.equal(wal.includes(Buffer.from(marker)), false, 'not in the WAL');
      const live = await readFile(path);
      assert.equal(live.includes(Buffer.from(marker)), false, 'not in the file');
      assert.ok(live.includes(Buffer.from('"retiredAt":1')), 'the record itself is there');
      await store.close();
      assert.equal((await readFile(path)).includes(Buffer.from(marker)), false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('every store opens its database with a 2,000 KiB page cache, not better-sqlite3\'s 16 MiB', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-sqlite-'));
    try {
      const stores = [
        new SqliteMetadataStore(join(dir, 'metadata.db')),
        new SqliteDataKeyStore(join(dir, 'data-keys.db')),
        new SqliteAuthStore(join(dir, 'auth.db')),
      ];
      for (const store of stores) {
        // The connection is private: the stores expose no pragma, and should not.
        const db = (store as unknown as { db: Database.Database }).db;
        assert.equal(db.pragma('cache_size', { simple: true }), -PAGE_CACHE_KIB, store.constructor.name);
        assert.equal(db.pragma('busy_timeout', { simple: true }), 5000, store.constructor.name);
        await store.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('KeyedQueue', () => {
  test('tasks of one key run one at a time in order, a failure does not hold up the next, other keys run alongside', async () => {
    const q = new KeyedQueue();
    const log: string[] = [];
    let running = 0;
    const task = (name: string, fail = false) => async (): Promise<string> => {
      running++;
      assert.equal(running <= 2, true);
      log.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, 10));
      log.push(`end ${name}`);
      running--;
      if (fail) throw new Error(`${name} failed`);
      return name;
    };
    const results = await Promise.allSettled([q.run('a', task('a1')), q.run('a', task('a2', true)), q.run('b', task('b1')), q.run('a', task('a3'))]);
    assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)), ['a1', 'a2 failed', 'b1', 'a3']);
    const a = log.filter((l) => l.endsWith('a1') || l.endsWith('a2') || l.endsWith('a3'));
    assert.deepEqual(a, ['start a1', 'end a1', 'start a2', 'end a2', 'start a3', 'end a3']);
    assert.ok(log.indexOf('start b1') < log.indexOf('end a1'), 'another key does not wait');
    await new Promise((r) => setTimeout(r, 0));
    assert.equal((q as unknown as { tails: Map<string, unknown> }).tails.size, 0, 'nothing kept once all settled');
  });
});
