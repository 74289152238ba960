/**
 * DataKeyStore: the conformance suite against both implementations, plus what only the SQLite
 * file promises (owner-only mode, schema version, a second connection as the CLI would open).
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { DataKeyStoreError, MemoryDataKeyStore, SqliteDataKeyStore, type DataKeyRecord, type DataKeyStore } from '../../src/encryption/index.js';
import { digestOf } from '../../src/oci/index.js';
import { runDataKeyStoreSuite } from '../testkit/data-key-store-suite.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'bulwark-datakeys-'));
}

runDataKeyStoreSuite('memory', async () => ({ store: new MemoryDataKeyStore(), cleanup: async () => {} }));

runDataKeyStoreSuite('sqlite', async () => {
  const dir = await tempDir();
  const path = join(dir, 'data-keys.db');
  let current: DataKeyStore = new SqliteDataKeyStore(path);
  return {
    get store() {
      return current;
    },
    reopen: async () => {
      await current.close();
      current = new SqliteDataKeyStore(path);
      return current;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

function record(content: string, kind: 'blob' | 'manifest' = 'blob'): DataKeyRecord {
  return {
    kind,
    digest: digestOf(content),
    cipherDigest: digestOf(`cipher ${content}`),
    size: content.length,
    objectId: '00112233445566778899aabbccddeeff',
    segmentSize: 65_536,
    headerLength: 90,
    kek: { vault: 'primary', name: 'kek', version: '1' },
    wrapped: Buffer.from(`wrapped ${content}`),
    createdAt: 1_700_000_000_000,
  };
}

describe('SqliteDataKeyStore on disk', () => {
  let dir: string;
  let path: string;
  const open: SqliteDataKeyStore[] = [];
  const openStore = (): SqliteDataKeyStore => {
    const s = new SqliteDataKeyStore(path);
    open.push(s);
    return s;
  };
  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir, 'data-keys.db');
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the database and its WAL files are owner-only (0600) whatever the umask', async () => {
    const old = process.umask(0o022);
    try {
      const store = openStore();
      await store.putIfAbsent(record('layer'));
    } finally {
      process.umask(old);
    }
    const files = (await readdir(dir)).sort();
    assert.deepEqual(files, ['data-keys.db', 'data-keys.db-shm', 'data-keys.db-wal'], 'WAL mode, files still open');
    for (const f of files) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
  });

  test('an existing file with a wider mode is narrowed to 0600', async () => {
    await writeFile(path, '');
    await chmod(path, 0o644);
    openStore();
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  test('the schema is version 1 in WAL mode; a newer schema is refused with SCHEMA_VERSION', async () => {
    await openStore().close();
    const db = new Database(path);
    try {
      assert.equal(db.pragma('user_version', { simple: true }), 1);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      db.pragma('user_version = 2');
    } finally {
      db.close();
    }
    assert.throws(() => new SqliteDataKeyStore(path), (e: unknown) => e instanceof DataKeyStoreError && e.code === 'SCHEMA_VERSION');
  });

  test('a second connection (the CLI) sees resolved writes, and the first writer still wins across them', async () => {
    const server = openStore();
    const cli = openStore();
    const r = record('layer');
    await server.putIfAbsent(r);
    assert.deepEqual(await cli.get('blob', r.digest), r);
    assert.deepEqual(await cli.putIfAbsent({ ...r, cipherDigest: digestOf('other') }), r);
    assert.ok(await cli.rewrap('blob', r.digest, r, { kek: { ...r.kek, version: '2' }, wrapped: Buffer.from('v2'), at: 7 }), 'the CLI re-wraps');
    assert.equal((await server.listNotWrappedBy(r.kek, 10)).length, 1);
    await cli.setSetting('rotation.last', 'done');
    assert.equal(await server.getSetting('rotation.last'), 'done');
  });

  test('a write that fails rolls back alone; the writes committed with it land', async () => {
    const store = openStore();
    const bad = { ...record('bad'), kind: 'index' } as unknown as DataKeyRecord; // violates the kind CHECK
    const results = await Promise.allSettled([store.putIfAbsent(record('a')), store.putIfAbsent(bad), store.putIfAbsent(record('b'))]);
    assert.deepEqual(results.map((x) => x.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.equal((await store.countByKey()).reduce((n, c) => n + c.count, 0), 2);
  });

  test('close commits the writes still queued, and they resolve', async () => {
    const store = openStore();
    const writing = Promise.all([store.putIfAbsent(record('queued')), store.setSetting('s', 'v')]);
    await store.close();
    await writing;
    const again = openStore();
    assert.equal((await again.get('blob', digestOf('queued')))?.cipherDigest, digestOf('cipher queued'));
    assert.equal(await again.getSetting('s'), 'v');
  });

  test('list pages through more records than one query returns, with writes between pages', async () => {
    const store = openStore();
    const n = 1300;
    await Promise.all(Array.from({ length: n }, (_, i) => store.putIfAbsent(record(`object ${i}`, i % 2 === 0 ? 'blob' : 'manifest'))));
    let seen = 0;
    for await (const r of store.list()) {
      if (seen++ % 500 === 0) await store.setSetting('progress', r.digest); // the connection is not held busy
    }
    assert.equal(seen, n);
  });
});
