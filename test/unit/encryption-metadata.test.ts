/**
 * Encryption of manifests and their annotations (issue 4): the decorator passes the MetadataStore
 * conformance suite over both real stores, the store below holds neither a manifest's bytes nor
 * its annotations in clear, tampered or moved ciphertext is refused (never served), one manifest
 * pushed to many repositories has one data key, and a revoked key stops manifest reads once the
 * data-key cache lifetime has passed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { EncryptingMetadataStore, SEALED_ANNOTATION, type DataKeyRecord } from '../../src/encryption/index.js';
import { digestOf, MediaType } from '../../src/oci/index.js';
import { MemoryBlobStore, MemoryMetadataStore, SqliteMetadataStore, fsck, type ManifestRecord, type MetadataStore } from '../../src/storage/index.js';
import { ManifestCache } from '../../src/storage/index.js';
import { runMetadataStoreSuite } from '../testkit/metadata-store-suite.js';
import { rejectsWithCode } from '../testkit/assert-registry-error.js';
import { KEK, OPERATOR, encryptionRig, type EncryptionRig } from '../testkit/encryption.js';

const SEG = 16 * 1024;
const BODY_MARKER = 'MARKER-manifest-body-7f3a';
const NOTE_MARKER = 'MARKER-annotation-c91e';

function wrap(rig: EncryptionRig, inner: MetadataStore): EncryptingMetadataStore {
  return new EncryptingMetadataStore({ inner, keys: rig.keys, ring: rig.ring, segmentSize: SEG });
}

runMetadataStoreSuite('encrypted over memory', async () => {
  const rig = await encryptionRig();
  return { store: wrap(rig, new MemoryMetadataStore()), cleanup: async () => {} };
});

runMetadataStoreSuite('encrypted over sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-encmeta-'));
  const rig = await encryptionRig();
  return { store: wrap(rig, new SqliteMetadataStore(join(dir, 'metadata.db'))), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

/** A manifest big enough for several segments, with a marker in its first and last segment. */
function manifest(repository: string, annotations?: Record<string, string>, pad = 40_000): { record: ManifestRecord; body: Buffer } {
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, note: BODY_MARKER, pad: 'x'.repeat(pad), end: BODY_MARKER }));
  const digest = digestOf(body);
  return { body, record: { repository, digest, mediaType: MediaType.OciManifest, size: body.length, subject: digestOf('subject'), artifactType: 'application/spdx+json', annotations, createdAt: 1_700_000_000_000 } };
}

async function manifestRecords(rig: EncryptionRig): Promise<DataKeyRecord[]> {
  const out: DataKeyRecord[] = [];
  for await (const r of rig.keys.list()) if (r.kind === 'manifest') out.push(r);
  return out;
}

/** Every file of a SQLite database folder, concatenated: what someone with the disk would see. */
async function rawFiles(dir: string): Promise<Buffer> {
  const names = await readdir(dir);
  return Buffer.concat(await Promise.all(names.map((n) => readFile(join(dir, n)))));
}

describe('EncryptingMetadataStore over SQLite', () => {
  let dir: string;
  let rig: EncryptionRig;
  let inner: SqliteMetadataStore;
  let store: EncryptingMetadataStore;
  let raw: Database.Database | undefined;
  const path = (): string => join(dir, 'metadata.db');
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulwark-encmeta-'));
    rig = await encryptionRig({ cacheMs: 60_000 });
    inner = new SqliteMetadataStore(path());
    store = wrap(rig, inner);
  });
  afterEach(async () => {
    raw?.close();
    raw = undefined;
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  /** A second connection, as an attacker with write access to the database file has. */
  const db = (): Database.Database => (raw ??= new Database(path()));

  test('the database files hold neither the manifest bytes nor its annotations in clear', async () => {
    const { record, body } = manifest('team/app', { 'org.opencontainers.image.description': NOTE_MARKER });
    await store.putManifest(record, body, 'latest');
    const below = await inner.manifestBody(record.digest);
    assert.ok(below !== undefined && !below.includes(BODY_MARKER), 'the body below the decorator is ciphertext');
    assert.ok(!JSON.stringify(await inner.getManifest('team/app', record.digest)).includes(NOTE_MARKER), 'the record below holds no annotation value');
    assert.deepEqual(Object.keys((await inner.getManifest('team/app', record.digest))?.annotations ?? {}), [SEALED_ANNOTATION]);
    await store.close();
    const bytes = await rawFiles(dir);
    assert.ok(!bytes.includes(BODY_MARKER) && !bytes.includes(NOTE_MARKER), 'no marker anywhere in the SQLite files');
    // The same search finds them when nothing encrypts: the check above can fail.
    const plainDir = await mkdtemp(join(tmpdir(), 'bulwark-plainmeta-'));
    const plain = new SqliteMetadataStore(join(plainDir, 'metadata.db'));
    await plain.putManifest(record, body);
    await plain.close();
    const plainBytes = await rawFiles(plainDir);
    await rm(plainDir, { recursive: true, force: true });
    assert.ok(plainBytes.includes(BODY_MARKER) && plainBytes.includes(NOTE_MARKER), 'the control store holds the markers in clear');
    store = wrap(rig, new SqliteMetadataStore(path()));
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'readable again after a restart');
    assert.deepEqual((await store.getManifest('team/app', record.digest))?.annotations, record.annotations);
  });

  test('a stored body with any byte flipped, or cut short, is refused', async () => {
    const { record, body } = manifest('team/app');
    await store.putManifest(record, body);
    const sealed = await inner.manifestBody(record.digest);
    assert.ok(sealed !== undefined, 'stored');
    const update = db().prepare('UPDATE manifest_content SET body = ? WHERE digest = ?');
    for (const at of [3, 60, 200, 20_000, sealed.length - 40, sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      update.run(bad, record.digest);
      await assert.rejects(store.manifestBody(record.digest), /failed to read the body/, `flipped byte ${at} is refused`);
    }
    update.run(sealed.subarray(0, sealed.length - 10), record.digest);
    await assert.rejects(store.manifestBody(record.digest), /failed to read the body/);
    update.run(sealed, record.digest);
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'the original bytes read again');
  });

  test('fsck reports a tampered body as a corrupt manifest, but stops when the vault refuses', async () => {
    const { record, body } = manifest('team/app');
    await store.putManifest(record, body);
    const sealed = await inner.manifestBody(record.digest);
    assert.ok(sealed !== undefined, 'stored');
    db().prepare('UPDATE manifest_content SET body = ? WHERE digest = ?').run(Buffer.concat([sealed, Buffer.from('x')]), record.digest);
    const report = await fsck(new MemoryBlobStore(), store, { repair: false });
    assert.deepEqual(report.problems.map((p) => `${p.kind} ${p.digest}`), [`corrupt-manifest ${record.digest}`]);
    await rig.vault.setEnabled(OPERATOR, KEK, false);
    rig.clock += 60_001;
    await rejectsWithCode(fsck(new MemoryBlobStore(), store, { repair: true }), 'UNAVAILABLE');
    assert.ok((await inner.getManifest('team/app', record.digest)) !== undefined, 'an unavailable key repairs nothing away');
  });

  test('a body without its data-key record, or another manifest body under its digest, is refused', async () => {
    const a = manifest('team/app', undefined, 100);
    const b = manifest('team/app', undefined, 200);
    await store.putManifest(a.record, a.body);
    await store.putManifest(b.record, b.body);
    const sealedB = await inner.manifestBody(b.record.digest);
    db().prepare('UPDATE manifest_content SET body = ? WHERE digest = ?').run(sealedB, a.record.digest);
    await assert.rejects(store.manifestBody(a.record.digest), /failed to read the body/, 'the terminator binds the digest');
    const [recB] = (await manifestRecords(rig)).filter((r) => r.digest === b.record.digest);
    assert.ok(recB !== undefined, 'b has a data-key record');
    await rig.keys.delete('manifest', recB.digest, recB.cipherDigest);
    await assert.rejects(store.manifestBody(b.record.digest), /no data-key record/);
  });

  test('sealed annotations copied to another repository or manifest are refused', async () => {
    const { record, body } = manifest('team/a', { 'org.example.scan': NOTE_MARKER });
    await store.putManifest(record, body);
    await store.putManifest({ ...record, repository: 'team/b', annotations: { 'org.example.scan': 'clean' } }, body);
    const other = manifest('team/a', { 'org.example.scan': 'other' }, 10);
    await store.putManifest(other.record, other.body);
    const row = db().prepare<[string, string], { annotations: string }>('SELECT annotations FROM manifests WHERE repository = ? AND digest = ?');
    const sealedA = row.get('team/a', record.digest)?.annotations;
    assert.ok(sealedA !== undefined, 'team/a has sealed annotations');
    const move = db().prepare('UPDATE manifests SET annotations = ? WHERE repository = ? AND digest = ?');
    move.run(sealedA, 'team/b', record.digest);
    await assert.rejects(store.getManifest('team/b', record.digest), /failed to read the annotations/, 'moved to another repository');
    await assert.rejects(store.listReferrers('team/b', digestOf('subject')), /failed to read the annotations/);
    move.run(sealedA, 'team/a', other.record.digest);
    await assert.rejects(store.getManifest('team/a', other.record.digest), /failed to read the annotations/, 'moved to another manifest');
    move.run(JSON.stringify({ 'org.example.scan': 'forged' }), 'team/a', other.record.digest);
    await assert.rejects(store.getManifest('team/a', other.record.digest), /not sealed/, 'clear-text annotations are not served');
    assert.deepEqual((await store.getManifest('team/a', record.digest))?.annotations, { 'org.example.scan': NOTE_MARKER });
  });

  test('one manifest pushed to many repositories, even at once, has one data-key record', async () => {
    const { record, body } = manifest('team/r0', { k: 'v' });
    const repos = Array.from({ length: 6 }, (_, i) => `team/r${i}`);
    await Promise.all(repos.map((repository) => store.putManifest({ ...record, repository }, body, 'v1')));
    assert.ok(rig.events.filter((e) => e.op === 'wrapKey').length > 1, 'the pushes raced to create the record');
    await store.putManifest({ ...record, repository: 'team/late' }, body);
    assert.equal((await manifestRecords(rig)).length, 1);
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'the stored body opens under that record');
    for (const repository of [...repos, 'team/late']) assert.deepEqual((await store.getManifest(repository, record.digest))?.annotations, { k: 'v' }, repository);
  });

  test('an opened body is served from memory only while its data key is cached', async () => {
    const { record, body } = manifest('team/app');
    await store.putManifest(record, body);
    const sealed = await inner.manifestBody(record.digest);
    assert.ok(sealed !== undefined, 'stored');
    const update = db().prepare('UPDATE manifest_content SET body = ? WHERE digest = ?');
    const bad = Buffer.from(sealed);
    bad[200] = (bad[200] ?? 0) ^ 0x01;
    // A pushed body is not cached: the first read opens what is stored.
    update.run(bad, record.digest);
    await assert.rejects(store.manifestBody(record.digest), /failed to read the body/, 'not cached by the push');
    update.run(sealed, record.digest);
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'opened');
    update.run(bad, record.digest);
    // The key was cached by the push for 60 s: the opened body with it, and no longer.
    rig.clock += 59_999;
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'served from memory, not from the store');
    rig.clock += 1;
    await assert.rejects(store.manifestBody(record.digest), /failed to read the body/, 'read from the store again once the key expired');

    // With a data-key cache lifetime of 0, nothing opened is kept.
    const uncached = await encryptionRig({ cacheMs: 0 });
    const dir0 = await mkdtemp(join(tmpdir(), 'bulwark-encmeta-'));
    const inner0 = new SqliteMetadataStore(join(dir0, 'metadata.db'));
    const store0 = wrap(uncached, inner0);
    try {
      await store0.putManifest(record, body);
      assert.ok((await store0.manifestBody(record.digest))?.equals(body), 'opened');
      await uncached.vault.setEnabled(OPERATOR, KEK, false);
      await rejectsWithCode(store0.manifestBody(record.digest), 'UNAVAILABLE');
    } finally {
      await store0.close();
      await rm(dir0, { recursive: true, force: true });
    }
  });

  test('a revoked key stops manifest reads after the cache lifetime; enabling it restores them', async () => {
    const { record, body } = manifest('team/app', { k: 'v' });
    await store.putManifest(record, body);
    await rig.vault.setEnabled(OPERATOR, KEK, false);
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'served from the cached data key');
    rig.clock += 60_001;
    await rejectsWithCode(store.manifestBody(record.digest), 'UNAVAILABLE');
    await rejectsWithCode(store.getManifest('team/app', record.digest), 'UNAVAILABLE');
    await rejectsWithCode(store.putManifest({ ...record, repository: 'team/other' }, body), 'UNAVAILABLE');
    assert.equal(await store.resolveTag('team/app', 'latest'), undefined, 'content-free lookups still answer');
    await rig.vault.setEnabled(OPERATOR, KEK, true);
    assert.ok((await store.manifestBody(record.digest))?.equals(body), 'served again');
    assert.deepEqual((await store.getManifest('team/app', record.digest))?.annotations, { k: 'v' });
  });
});

describe('EncryptingMetadataStore over memory', () => {
  test('a data-key record whose body never got stored (a crash between the two) is reused', async () => {
    const rig = await encryptionRig();
    const { record, body } = manifest('team/app', { k: 'v' });
    await wrap(rig, new MemoryMetadataStore()).putManifest(record, body);
    const fresh = wrap(rig, new MemoryMetadataStore());
    await fresh.putManifest(record, body);
    assert.equal((await manifestRecords(rig)).length, 1);
    assert.ok((await fresh.manifestBody(record.digest))?.equals(body), 'sealed again under the existing record');
    assert.deepEqual((await fresh.getManifest('team/app', record.digest))?.annotations, { k: 'v' });
  });

  test('empty or absent annotations are stored as they are; an annotation named like the reserved one round-trips', async () => {
    const rig = await encryptionRig();
    const inner = new MemoryMetadataStore();
    const store = wrap(rig, inner);
    const a = manifest('team/app', {}, 1);
    const b = manifest('team/app', { [SEALED_ANNOTATION]: 'client value' }, 2);
    await store.putManifest(a.record, a.body);
    await store.putManifest(b.record, b.body);
    assert.deepEqual((await store.getManifest('team/app', a.record.digest))?.annotations, {});
    assert.deepEqual((await store.getManifest('team/app', b.record.digest))?.annotations, { [SEALED_ANNOTATION]: 'client value' });
    assert.notEqual((await inner.getManifest('team/app', b.record.digest))?.annotations?.[SEALED_ANNOTATION], 'client value');
  });
});

describe('ManifestCache lifetime', () => {
  const d = digestOf('m');
  test('an entry is served until its lifetime ends, then dropped', () => {
    let now = 0;
    const cache = new ManifestCache(1024, { ttlMs: 1000, now: () => now });
    cache.set(d, Buffer.from('body'));
    now = 999;
    assert.equal(cache.get(d)?.toString(), 'body');
    now = 1000;
    assert.equal(cache.get(d), undefined);
    cache.set(d, Buffer.from('body'));
    assert.equal(cache.get(d)?.toString(), 'body', 'cached again after it expired');
  });

  test('an entry given an expiry of its own is dropped then, even within the lifetime', () => {
    let now = 0;
    const cache = new ManifestCache(1024, { now: () => now });
    cache.set(d, Buffer.from('body'), 500);
    now = 499;
    assert.equal(cache.get(d)?.toString(), 'body');
    now = 500;
    assert.equal(cache.get(d), undefined);
    cache.set(d, Buffer.from('body'), 500);
    assert.equal(cache.get(d), undefined, 'an expiry already past caches nothing');
  });

  test('a lifetime of 0 caches nothing; the byte bound still evicts the least recently used', () => {
    const none = new ManifestCache(1024, { ttlMs: 0 });
    none.set(d, Buffer.from('body'));
    assert.equal(none.get(d), undefined);
    const small = new ManifestCache(10, { ttlMs: 60_000 });
    small.set(digestOf('a'), Buffer.alloc(6));
    small.set(digestOf('b'), Buffer.alloc(6));
    assert.equal(small.get(digestOf('a')), undefined);
    assert.equal(small.get(digestOf('b'))?.length, 6);
  });
});
