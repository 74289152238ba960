/**
 * Envelope encryption of blobs (issue 4): the decorator passes the BlobStore conformance suite
 * over both real stores, the store below never holds plaintext, and every kind of tampering with
 * the stored ciphertext (flipped bytes, reordered, duplicated, truncated or swapped segments, a
 * database row pointing at another blob's object) is refused on read, never served.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { digestOf, type Digest } from '../../src/oci/index.js';
import { FsBlobStore, MemoryBlobStore, isRecycling, type BlobStore, type ByteRange } from '../../src/storage/index.js';
import { EncryptingBlobStore, Layout, SEGMENT_OVERHEAD } from '../../src/encryption/index.js';
import { runBlobStoreSuite } from '../testkit/blob-store-suite.js';
import { rejectsWithCode } from '../testkit/assert-registry-error.js';
import { bodyOf, collect } from '../testkit/streams.js';
import { KEK, OPERATOR, encryptionRig, type EncryptionRig } from '../testkit/encryption.js';

const SEG = 16 * 1024;

runBlobStoreSuite('encrypted over memory', async () => {
  const rig = await encryptionRig();
  return { store: rig.store(new MemoryBlobStore()), cleanup: async () => {} };
});

runBlobStoreSuite('encrypted over filesystem', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-enc-'));
  const rig = await encryptionRig();
  return { store: rig.store(await new FsBlobStore(dir).init()), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

async function push(store: BlobStore, data: Buffer, chunks: number[] = [data.length]): Promise<Digest> {
  const id = randomUUID();
  await store.startUpload(id, 'team/app');
  let at = 0;
  for (const n of chunks) {
    await store.appendUpload(id, bodyOf(data.subarray(at, at + n)), { offset: at, length: n });
    at += n;
  }
  return (await store.commitUpload(id, digestOf(data))).digest;
}

describe('EncryptingBlobStore over the filesystem', () => {
  let dir: string;
  let rig: EncryptionRig;
  let inner: FsBlobStore;
  let store: EncryptingBlobStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulwark-enc-fs-'));
    rig = await encryptionRig();
    inner = await new FsBlobStore(dir).init();
    store = rig.store(inner, SEG);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** the one ciphertext file of a blob */
  async function cipherFile(digest: Digest): Promise<string> {
    const rec = await rig.keys.get('blob', digest);
    assert.ok(rec !== undefined);
    const hex = rec.cipherDigest.slice('sha256:'.length);
    return join(dir, 'blobs', 'sha256', hex.slice(0, 2), hex);
  }

  test('no plaintext reaches the disk, in sessions or in stored blobs', async () => {
    const marker = Buffer.from('PLAINTEXT-MARKER-'.repeat(4));
    const data = Buffer.concat(Array.from({ length: 3000 }, () => marker));
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(data.subarray(0, 100_001)));
    for (const f of await filesUnder(dir)) assert.equal((await readFile(f)).indexOf(marker.subarray(0, 24)), -1, `plaintext in session file ${f}`);
    await store.appendUpload(id, bodyOf(data.subarray(100_001)));
    await store.commitUpload(id, digestOf(data));
    await store.close();
    store = rig.store(await new FsBlobStore(dir).init(), SEG);
    for (const f of await filesUnder(dir)) assert.equal((await readFile(f)).indexOf(marker.subarray(0, 24)), -1, `plaintext in ${f}`);
    assert.ok((await store.readAll(digestOf(data))).equals(data));
  });

  test('each ciphertext object is named by the sha256 of its bytes, however its session was hashed', async () => {
    // One body (the decorator hashes the ciphertext and vouches for it), whole segments in
    // several requests (likewise), a chunk that ends inside a segment (the tail is resealed, so
    // the store below hashes at commit), and a session resumed by a new process (likewise).
    const cases: [string, Buffer, number[]][] = [
      ['one body', randomBytes(5 * SEG + 77), [5 * SEG + 77]],
      ['whole segments per request', randomBytes(4 * SEG), [2 * SEG, SEG, SEG]],
      ['a chunk ending inside a segment', randomBytes(3 * SEG + 5), [SEG + 10, 2 * SEG - 5]],
    ];
    for (const [what, data, chunks] of cases) {
      const digest = await push(store, data, chunks);
      const rec = await rig.keys.get('blob', digest);
      assert.ok(rec !== undefined, what);
      const bytes = await readFile(await cipherFile(digest));
      assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, rec.cipherDigest, `${what}: the object's name is not its hash`);
      assert.equal((await inner.verify(rec.cipherDigest)).ok, true, what);
      assert.ok((await store.readAll(digest)).equals(data), what);
    }
    const data = randomBytes(3 * SEG);
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(data.subarray(0, SEG)), { offset: 0, length: SEG });
    await store.close();
    inner = await new FsBlobStore(dir).init();
    store = rig.store(inner, SEG);
    await store.appendUpload(id, bodyOf(data.subarray(SEG)), { offset: SEG, length: 2 * SEG });
    const digest = (await store.commitUpload(id, digestOf(data))).digest;
    const rec = await rig.keys.get('blob', digest);
    assert.ok(rec !== undefined);
    assert.equal(`sha256:${createHash('sha256').update(await readFile(await cipherFile(digest))).digest('hex')}`, rec.cipherDigest, 'a resumed session');
  });

  test('a pull whose consumer recycles its chunks decrypts into a few reused buffers', async () => {
    const data = randomBytes(40 * SEG + 3);
    const digest = await push(store, data);
    const s = await store.read(digest);
    assert.ok(isRecycling(s), 'the decrypted stream takes chunks back');
    const memories = new Set<ArrayBufferLike>();
    const got: Buffer[] = [];
    for await (const c of s as AsyncIterable<Buffer>) {
      memories.add(c.buffer);
      got.push(Buffer.from(c));
      c.fill(0xee); // a buffer reused while still in use would corrupt what follows
      s.recycle(c);
    }
    assert.ok(Buffer.concat(got).equals(data));
    assert.ok(memories.size < 8, `41 segments decrypted into ${memories.size} buffers`);
  });

  test('a pull comes out in chunks of whole segments, 1 MiB at a time, with a range cut to its bytes', async () => {
    const MiB = 1024 * 1024;
    const data = randomBytes(3 * MiB + 5);
    const digest = await push(store, data);
    const sizes = async (range?: ByteRange): Promise<{ sizes: number[]; bytes: Buffer }> => {
      // 'data' events, as the HTTP pump takes them (an async iterator joins what is queued).
      const parts: Buffer[] = [];
      const s = await store.read(digest, range);
      s.on('data', (c: Buffer) => parts.push(Buffer.from(c)));
      await finished(s);
      return { sizes: parts.map((p) => p.length), bytes: Buffer.concat(parts) };
    };
    const whole = await sizes();
    assert.deepEqual(whole.sizes, [MiB, MiB, MiB, 5]);
    assert.ok(whole.bytes.equals(data));
    const range = await sizes({ start: SEG + 3, end: 2 * MiB + 10 });
    // From segment 1 on: 1 MiB of segments less the 3 bytes skipped, then the rest.
    assert.deepEqual(range.sizes, [MiB - 3, MiB + 11 - SEG]);
    assert.ok(range.bytes.equals(data.subarray(SEG + 3, 2 * MiB + 11)));
  });

  test('flipping any stored byte is detected on read: no corrupted byte is served', async () => {
    const data = randomBytes(2 * SEG + 1234);
    const digest = await push(store, data);
    const file = await cipherFile(digest);
    const good = await readFile(file);
    // Every header and terminator byte, the edges of every segment, and random positions.
    const rec = await rig.keys.get('blob', digest);
    assert.ok(rec !== undefined);
    const layout = new Layout(rec.headerLength, SEG);
    const positions = new Set<number>();
    for (let i = 0; i < rec.headerLength; i++) positions.add(i);
    for (let i = layout.terminatorOffset(data.length); i < good.length; i++) positions.add(i);
    for (let s = 0; s < 3; s++) for (let k = 0; k < 40; k++) positions.add(layout.segmentOffset(s) + k).add(layout.segmentOffset(s) + layout.segmentPlainLength(s, data.length) + SEGMENT_OVERHEAD - 1 - k);
    for (let k = 0; k < 300; k++) positions.add(Math.floor(Math.random() * good.length));
    for (const p of positions) {
      const bad = Buffer.from(good);
      bad[p] = (bad[p] as number) ^ (1 << (p % 8));
      await writeFile(file, bad);
      const served: Buffer[] = [];
      await assert.rejects(async () => {
        for await (const c of await store.read(digest)) served.push(c as Buffer);
      }, `byte ${p} flipped but the read succeeded`);
      // Whatever left before the failure is authentic plaintext, a prefix of the blob.
      const prefix = Buffer.concat(served);
      assert.ok(data.subarray(0, prefix.length).equals(prefix), `byte ${p}: corrupted bytes were served`);
    }
    await writeFile(file, good);
    assert.ok((await store.readAll(digest)).equals(data));
  });

  test('reordered, duplicated, truncated and cross-blob segments are refused', async () => {
    const a = randomBytes(3 * SEG);
    const b = randomBytes(3 * SEG);
    const da = await push(store, a);
    const db = await push(store, b);
    const fa = await cipherFile(da);
    const fb = await cipherFile(db);
    const ga = await readFile(fa);
    const gb = await readFile(fb);
    const rec = await rig.keys.get('blob', da);
    assert.ok(rec !== undefined);
    const layout = new Layout(rec.headerLength, SEG);
    const seg = (buf: Buffer, i: number): Buffer => buf.subarray(layout.segmentOffset(i), layout.segmentOffset(i + 1));
    const head = ga.subarray(0, rec.headerLength);
    const term = ga.subarray(layout.terminatorOffset(a.length));
    const cases: Record<string, Buffer> = {
      'segments 0 and 1 swapped': Buffer.concat([head, seg(ga, 1), seg(ga, 0), seg(ga, 2), term]),
      'segment 0 duplicated over segment 1': Buffer.concat([head, seg(ga, 0), seg(ga, 0), seg(ga, 2), term]),
      'terminator dropped': ga.subarray(0, layout.terminatorOffset(a.length)),
      'last segment and terminator dropped': ga.subarray(0, layout.segmentOffset(2)),
      'segment 1 taken from the other blob': Buffer.concat([head, seg(ga, 0), seg(gb, 1), seg(ga, 2), term]),
      'the other blob in its place': gb,
    };
    for (const [what, bytes] of Object.entries(cases)) {
      await writeFile(fa, bytes);
      await assert.rejects(store.readAll(da), `${what}: whole read`);
      // A range read fails, or (when it touches only intact segments) serves the right bytes.
      const range = await (async () => collect(await store.read(da, { start: SEG + 5, end: SEG + 10 })))().catch(() => undefined);
      if (range !== undefined) assert.ok(range.equals(a.subarray(SEG + 5, SEG + 11)), `${what}: range read served wrong bytes`);
    }
    await writeFile(fa, ga);
    await writeFile(fb, gb);
    assert.ok((await store.readAll(da)).equals(a));
  });

  test('a database row pointing a digest at another blob\'s object is refused', async () => {
    const a = randomBytes(SEG + 10);
    const b = randomBytes(SEG + 10);
    const da = await push(store, a);
    const db = await push(store, b);
    const ra = await rig.keys.get('blob', da);
    const rb = await rig.keys.get('blob', db);
    assert.ok(ra !== undefined && rb !== undefined);
    await rig.keys.delete('blob', da, ra.cipherDigest);
    await rig.keys.putIfAbsent({ ...rb, digest: da });
    // Refused before the first byte: the read itself fails, not the stream halfway.
    await assert.rejects(store.read(da), /another digest/);
    await assert.rejects(store.readAll(da));
    await assert.rejects(async () => collect(await store.read(da, { start: 0, end: 9 })));
  });

  test('a blob this store committed is read once on its first pull; another process checks its terminator first', async () => {
    const data = randomBytes(3 * SEG + 7);
    const digest = await push(store, data);
    const reads = (below: FsBlobStore): ByteRange[] => {
      const seen: ByteRange[] = [];
      const read = below.read.bind(below);
      below.read = async (d, r) => {
        if (r !== undefined) seen.push(r);
        return read(d, r);
      };
      return seen;
    };
    const first = reads(inner);
    assert.ok((await store.readAll(digest)).equals(data));
    assert.equal(first.length, 1, `the first pull read ${JSON.stringify(first)}`);
    await store.close();
    inner = await new FsBlobStore(dir).init();
    store = rig.store(inner, SEG);
    const restarted = reads(inner);
    assert.ok((await store.readAll(digest)).equals(data));
    assert.equal(restarted.length, 2, 'a store that did not write the object reads its terminator before serving it');
    assert.ok((await store.readAll(digest)).equals(data));
    assert.equal(restarted.length, 3, 'and only once');
  });

  test('a range read decrypts only the segments it needs', async () => {
    const data = randomBytes(10 * SEG);
    const digest = await push(store, data);
    const ranges: ByteRange[] = [];
    const read = inner.read.bind(inner);
    inner.read = async (d, r) => {
      if (r !== undefined) ranges.push(r);
      return read(d, r);
    };
    const got = await collect(await store.read(digest, { start: 3 * SEG + 100, end: 3 * SEG + 199 }));
    assert.ok(got.equals(data.subarray(3 * SEG + 100, 3 * SEG + 200)));
    const rec = await rig.keys.get('blob', digest);
    assert.ok(rec !== undefined);
    const layout = new Layout(rec.headerLength, SEG);
    const bytes = ranges.reduce((n, r) => n + r.end - r.start + 1, 0);
    assert.ok(bytes < 2 * (SEG + SEGMENT_OVERHEAD), `read ${bytes} ciphertext bytes for a 100-byte range`);
    assert.ok(ranges.some((r) => r.start === layout.segmentOffset(3) && r.end === layout.segmentOffset(4) - 1));
  });

  test('identical content pushed twice is stored once', async () => {
    const data = randomBytes(40_000);
    await push(store, data);
    await push(store, data, [10_000, 30_000]);
    assert.equal((await filesUnder(join(dir, 'blobs'))).length, 1);
    let records = 0;
    for await (const r of rig.keys.list()) if (r.digest === digestOf(data)) records++;
    assert.equal(records, 1);
  });

  test('identical content committed by concurrent sessions and puts at once is stored once, and reads back', async () => {
    // Records are written beside their objects (ADR 0017). The first commit's object is slow to
    // land here: without the per-digest exclusion, the later commits and puts would take its record,
    // whose object is still being written, for a stale one, replace it, and leave its object
    // behind (and a crash then would lose a push already acknowledged).
    const slow = Object.create(inner) as FsBlobStore;
    let first = true;
    const firstWaits = async (): Promise<void> => {
      if (!first) return;
      first = false;
      await new Promise((r) => setTimeout(r, 150));
    };
    slow.commitUpload = async (id, expected, opts) => {
      await firstWaits();
      return inner.commitUpload(id, expected, opts);
    };
    slow.put = async (bytes, digest) => {
      await firstWaits();
      return inner.put(bytes, digest);
    };
    const racing = rig.store(slow, SEG);
    const data = randomBytes(3 * SEG + 5);
    const digest = digestOf(data);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const id = randomUUID();
      await racing.startUpload(id, 'team/app');
      await racing.appendUpload(id, bodyOf(data), { length: data.length });
      ids.push(id);
    }
    // The commits first (the first one's object is then the slow one), the puts once it is being written.
    const commits = ids.map((id) => racing.commitUpload(id, digest));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(first, false, 'the first commit has reached the store below');
    const done = await Promise.all([...commits, racing.put(data, digest), racing.put(data, digest)]);
    for (const info of done) assert.deepEqual(info, { digest, size: data.length });
    assert.equal((await filesUnder(join(dir, 'blobs'))).length, 1);
    let records = 0;
    for await (const r of rig.keys.list()) if (r.digest === digest) records++;
    assert.equal(records, 1);
    assert.ok((await racing.readAll(digest)).equals(data));
    assert.ok((await store.readAll(digest)).equals(data));
  });

  test('a delete that arrives while the same content is being committed waits for it, and leaves nothing behind', async () => {
    // The record is written before the slow object lands: a delete running then would remove the
    // record and find no object, and the object would land afterwards, unreachable.
    const slow = Object.create(inner) as FsBlobStore;
    slow.commitUpload = async (id, expected, opts) => {
      await new Promise((r) => setTimeout(r, 150));
      return inner.commitUpload(id, expected, opts);
    };
    const racing = rig.store(slow, SEG);
    const data = randomBytes(2 * SEG + 3);
    const id = randomUUID();
    await racing.startUpload(id, 'team/app');
    await racing.appendUpload(id, bodyOf(data), { length: data.length });
    const commit = racing.commitUpload(id, digestOf(data));
    await new Promise((r) => setTimeout(r, 30));
    const [committed, deleted] = await Promise.all([commit, racing.delete(digestOf(data))]);
    assert.equal(committed.digest, digestOf(data));
    assert.equal(deleted, true);
    assert.deepEqual(await filesUnder(join(dir, 'blobs')), []);
    assert.equal(await rig.keys.get('blob', digestOf(data)), undefined);
  });

  test('a record that cannot be written takes its object with it', async () => {
    const keys = rig.keys;
    const failingKeys = Object.create(keys) as typeof keys;
    failingKeys.putIfAbsent = () => Promise.reject(new Error('injected: the database refused the write'));
    const faulty = new EncryptingBlobStore({ inner, keys: failingKeys, ring: rig.ring, segmentSize: SEG });
    const data = randomBytes(SEG + 11);
    await assert.rejects(push(faulty, data), /injected/);
    assert.deepEqual(await filesUnder(join(dir, 'blobs')), []);
  });

  test('a commit whose object the store below fails to keep leaves no record, and the next push succeeds', async () => {
    const failing = Object.create(inner) as FsBlobStore;
    let fail = true;
    failing.commitUpload = async (id, expected, opts) => {
      const info = await inner.commitUpload(id, expected, opts);
      if (!fail) return info;
      await inner.delete(info.digest); // as if the rename had never reached the disk
      throw new Error('injected: the disk refused the rename');
    };
    const faulty = rig.store(failing, SEG);
    const data = randomBytes(2 * SEG + 9);
    await assert.rejects(push(faulty, data), /injected/);
    assert.equal(await rig.keys.get('blob', digestOf(data)), undefined);
    await rejectsWithCode(faulty.readAll(digestOf(data)), 'BLOB_UNKNOWN');
    fail = false;
    assert.equal(await push(faulty, data), digestOf(data));
    assert.ok((await faulty.readAll(digestOf(data))).equals(data));
  });

  test('a record whose object never reached the disk (a crash between the two) is replaced by the next push', async () => {
    const data = randomBytes(SEG + 1);
    const digest = await push(store, data);
    const rec = await rig.keys.get('blob', digest);
    assert.ok(rec !== undefined);
    await inner.delete(rec.cipherDigest);
    await rejectsWithCode(store.readAll(digest), 'BLOB_UNKNOWN');
    assert.equal(await push(store, data), digest);
    assert.ok((await store.readAll(digest)).equals(data));
    assert.notEqual((await rig.keys.get('blob', digest))?.cipherDigest, rec.cipherDigest);
  });

  test('chunks that end inside a segment are sealed again and the blob reads back whole', async () => {
    const data = randomBytes(5 * SEG + 77);
    const digest = await push(store, data, [1, SEG - 1, 1000, 2 * SEG, 17, data.length - 3 * SEG - 1017]);
    assert.ok((await store.readAll(digest)).equals(data));
    assert.ok((await collect(await store.read(digest, { start: SEG - 3, end: 3 * SEG + 4 }))).equals(data.subarray(SEG - 3, 3 * SEG + 5)));
  });

  // A last segment of SEG - 120 bytes plus the terminator has the length of a torn segment.
  for (const tail of [333, SEG - 120]) {
    test(`a crash between the terminator and the commit (last segment ${tail} bytes): after a restart the session is as the client left it`, async () => {
      const data = randomBytes(SEG + tail);
      const id = randomUUID();
      await store.startUpload(id, 'team/app');
      await store.appendUpload(id, bodyOf(data));
      const commit = inner.commitUpload.bind(inner);
      inner.commitUpload = () => Promise.reject(new Error('power cut'));
      await assert.rejects(store.commitUpload(id, digestOf(data)), /power cut/);
      inner.commitUpload = commit;
      await store.close();
      inner = await new FsBlobStore(dir).init();
      store = rig.store(inner, SEG);
      assert.equal((await store.getUpload(id))?.size, data.length, 'the terminator is not counted as data');
      assert.deepEqual(await store.commitUpload(id, digestOf(data)), { digest: digestOf(data), size: data.length });
      assert.ok((await store.readAll(digestOf(data))).equals(data), 'the blob reads back');
    });
  }

  test('a session survives a restart, and a torn last segment is cut back to a whole one', async () => {
    const data = randomBytes(3 * SEG + 500);
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(data.subarray(0, 2 * SEG + 100)));
    await store.close();
    store = rig.store(await new FsBlobStore(dir).init(), SEG);
    assert.equal((await store.getUpload(id))?.size, 2 * SEG + 100);
    await store.appendUpload(id, bodyOf(data.subarray(2 * SEG + 100)), { offset: 2 * SEG + 100 });
    await store.close();
    // A crash mid-write leaves a few bytes of a segment that never completed.
    await writeFile(join(dir, 'uploads', id, 'data'), randomBytes(9), { flag: 'a' });
    store = rig.store(await new FsBlobStore(dir).init(), SEG);
    assert.equal((await store.getUpload(id))?.size, 3 * SEG, 'cut back to the last whole segment');
    await store.appendUpload(id, bodyOf(data.subarray(3 * SEG)), { offset: 3 * SEG });
    assert.deepEqual(await store.commitUpload(id, digestOf(data)), { digest: digestOf(data), size: data.length });
    assert.ok((await store.readAll(digestOf(data))).equals(data));
  });
});

describe('EncryptingBlobStore and its key-encryption key', () => {
  let rig: EncryptionRig;
  let store: EncryptingBlobStore;
  beforeEach(async () => {
    rig = await encryptionRig({ cacheMs: 60_000 });
    store = rig.store(new MemoryBlobStore(), SEG);
  });

  test('a disabled key fails closed once the cache lifetime has passed; enabling it restores service', async () => {
    const data = randomBytes(50_000);
    const digest = await push(store, data);
    await rig.vault.setEnabled(OPERATOR, KEK, false);
    assert.ok((await store.readAll(digest)).equals(data), 'served from the cached data key');
    await rejectsWithCode(store.startUpload(randomUUID(), 'team/app'), 'UNAVAILABLE');
    rig.clock += 60_001;
    await rejectsWithCode(store.readAll(digest), 'UNAVAILABLE');
    assert.match(rig.ring.health().error ?? '', /KEY_DISABLED/);
    await rig.vault.setEnabled(OPERATOR, KEK, true);
    assert.ok((await store.readAll(digest)).equals(data));
    assert.equal(rig.ring.health().ok, true);
  });

  test('an upload in progress stops when its key is revoked', async () => {
    const id = randomUUID();
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(randomBytes(1000)));
    await rig.vault.softDelete(OPERATOR, KEK);
    rig.clock += 60_001;
    await rejectsWithCode(store.appendUpload(id, bodyOf(randomBytes(1000))), 'UNAVAILABLE');
    await rig.vault.recover(OPERATOR, KEK);
    assert.equal(await store.appendUpload(id, bodyOf(randomBytes(1000))), 2000);
  });

  test('verify (fsck) reports a refusing vault as an error, never as corrupt content', async () => {
    const digest = await push(store, randomBytes(100));
    await rig.vault.setEnabled(OPERATOR, KEK, false);
    rig.clock += 60_001;
    await rejectsWithCode(store.verify(digest), 'UNAVAILABLE');
    await rig.vault.setEnabled(OPERATOR, KEK, true);
    assert.deepEqual(await store.verify(digest), { digest, ok: true });
  });

  test('expired data keys are wiped even when no request comes', async () => {
    const real = await encryptionRig({ cacheMs: 50 });
    real.clock = Date.now();
    const ring = real.ring;
    const s = real.store(new MemoryBlobStore(), SEG);
    await push(s, randomBytes(10));
    assert.ok(ring.cachedKeys > 0, 'a key is cached after the push');
    real.clock = Date.now() + 10_000;
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(ring.cachedKeys, 0, 'the sweeper wiped it');
    ring.close();
  });

  test('with a cache lifetime of 0 every read asks the vault', async () => {
    rig = await encryptionRig({ cacheMs: 0 });
    store = rig.store(new MemoryBlobStore(), SEG);
    const digest = await push(store, randomBytes(100));
    const before = rig.events.filter((e) => e.op === 'unwrapKey').length;
    await store.readAll(digest);
    await store.readAll(digest);
    assert.equal(rig.events.filter((e) => e.op === 'unwrapKey').length - before, 2);
  });

  test('a blob wrapped under an older key version still reads after the key rotates', async () => {
    const data = randomBytes(20_000);
    const digest = await push(store, data);
    await rig.vault.rotateKey(OPERATOR, KEK);
    rig.ring.clear();
    assert.ok((await store.readAll(digest)).equals(data));
    const second = randomBytes(100);
    await push(store, second);
    const versions = (await rig.vault.listVersions(OPERATOR, KEK)).map((v) => v.version);
    assert.equal((await rig.keys.get('blob', digestOf(second)))?.kek.version, versions[1]);
    assert.equal((await rig.keys.get('blob', digest))?.kek.version, versions[0]);
  });
});
