/**
 * Rotation (issue 4): every data key is re-wrapped under the newest KEK version without
 * rewriting blob bytes, while pushes and pulls continue; nothing is lost, an interrupted run
 * leaves work the next run finishes, and `--key` moves new and old data keys to another key.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { beforeEach, describe, test } from 'node:test';
import { digestOf, type Digest } from '../../src/oci/index.js';
import { MemoryBlobStore, type BlobStore } from '../../src/storage/index.js';
import { Rotator, sameKek } from '../../src/encryption/index.js';
import type { KeyVault } from '../../src/keyvault/index.js';
import { bodyOf } from '../testkit/streams.js';
import { KEK, OPERATOR, REGISTRY, encryptionRig, type EncryptionRig } from '../testkit/encryption.js';

async function push(store: BlobStore, data: Buffer): Promise<Digest> {
  const id = randomUUID();
  await store.startUpload(id, 'team/app');
  await store.appendUpload(id, bodyOf(data));
  return (await store.commitUpload(id, digestOf(data))).digest;
}

describe('Rotator', () => {
  let rig: EncryptionRig;
  let inner: MemoryBlobStore;
  let store: BlobStore;
  let rotator: Rotator;
  beforeEach(async () => {
    rig = await encryptionRig();
    inner = new MemoryBlobStore();
    store = rig.store(inner);
    rotator = new Rotator(rig.keys, rig.ring, REGISTRY, `test:${KEK}`);
  });

  test('re-wraps every data key under the newest version without touching blob bytes', async () => {
    const blobs = Array.from({ length: 30 }, () => randomBytes(2000));
    const digests = await Promise.all(blobs.map((b) => push(store, b)));
    const cipherBefore: Digest[] = [];
    for await (const d of inner.list()) cipherBefore.push(d);
    const v1 = (await rotator.resolveTarget()).version;
    await rig.vault.rotateKey(OPERATOR, KEK);
    const target = await rotator.resolveTarget();
    assert.notEqual(target.version, v1, 'the newest version is the target');
    assert.equal(await rotator.pending(target), 30);
    const run = await rotator.start();
    const p = await run.done;
    assert.deepEqual([p.total, p.rewrapped, p.skipped, p.failed], [30, 30, 0, 0]);
    const counts = await rig.keys.countByKey();
    assert.deepEqual(counts.map((c) => [c.kek.version, c.count]), [[target.version, 30]]);
    const cipherAfter: Digest[] = [];
    for await (const d of inner.list()) cipherAfter.push(d);
    assert.deepEqual(cipherAfter.sort(), cipherBefore.sort(), 'no ciphertext object was rewritten');
    rig.ring.clear();
    for (const [i, d] of digests.entries()) assert.ok((await store.readAll(d)).equals(blobs[i] as Buffer), `blob ${i} reads back after rotation`);
    const status = await rotator.status();
    assert.equal(status.lastRotation?.rewrapped, 30, 'the last rotation is recorded');
  });

  test('pulls and pushes running during a rotation lose nothing', async () => {
    const blobs = Array.from({ length: 60 }, () => randomBytes(5000));
    const digests = await Promise.all(blobs.map((b) => push(store, b)));
    await rig.vault.rotateKey(OPERATOR, KEK);
    rig.ring.clear();
    const run = await rotator.start();
    const pulls = (async () => {
      for (let round = 0; round < 5; round++) {
        for (const [i, d] of digests.entries()) {
          rig.ring.forget((await rig.keys.get('blob', d))?.objectId ?? '');
          assert.ok((await store.readAll(d)).equals(blobs[i] as Buffer), `blob ${i} intact during rotation`);
        }
      }
    })();
    const fresh = Array.from({ length: 10 }, () => randomBytes(3000));
    const pushes = Promise.all(fresh.map((b) => push(store, b)));
    const [p] = await Promise.all([run.done, pulls, pushes]);
    assert.equal(p.failed, 0);
    const target = await rotator.resolveTarget();
    assert.equal(await rotator.pending(target), 0, 'every data key, old and new, is under the newest version');
    for (const b of fresh) assert.ok((await store.readAll(digestOf(b))).equals(b), 'a blob pushed during rotation reads back');
  });

  test('an interrupted rotation leaves the rest for the next run', async () => {
    await Promise.all(Array.from({ length: 20 }, () => push(store, randomBytes(100))));
    await rig.vault.rotateKey(OPERATOR, KEK);
    // The vault refuses unwraps after the 8th: the run records failures and goes on.
    const vault = rig.vault as KeyVault & { unwrapKey: KeyVault['unwrapKey'] };
    const unwrap = vault.unwrapKey.bind(vault);
    let calls = 0;
    vault.unwrapKey = async (...args) => {
      if (++calls > 8) throw Object.assign(new Error('vault unreachable'), {});
      return unwrap(...args);
    };
    rig.ring.clear();
    const first = await (await rotator.start()).done;
    assert.equal(first.rewrapped, 8);
    assert.equal(first.failed, 12);
    assert.match(first.error ?? '', /vault unreachable/);
    vault.unwrapKey = unwrap;
    const second = await (await rotator.start()).done;
    assert.deepEqual([second.total, second.rewrapped, second.failed], [12, 12, 0]);
  });

  test('a rotation whose data-key store fails ends with the error, never an unhandled rejection', async () => {
    await push(store, randomBytes(10));
    await rig.vault.rotateKey(OPERATOR, KEK);
    rig.keys.setSetting = () => Promise.reject(new Error('disk full'));
    const p = await (await rotator.start()).done;
    assert.match(p.error ?? '', /rotation stopped: disk full/);
    assert.ok(p.finishedAt !== undefined, 'the run is over');
    await rotator.stop();
    await assert.rejects(rotator.start(), /shutting down/);
  });

  test('two rotations started together are one run', async () => {
    await push(store, randomBytes(10));
    await rig.vault.rotateKey(OPERATOR, KEK);
    const [a, b] = await Promise.all([rotator.start(), rotator.start()]);
    assert.equal(a.done, b.done, 'the second start joins the first');
    assert.equal((await a.done).rewrapped, 1);
    await assert.rejects(Promise.all([rotator.start(), rotator.start({ newVersion: true })]), /rotation is running/);
  });

  test('an upload that began before a rotation commits under the new key version', async () => {
    const id = randomUUID();
    const data = randomBytes(500);
    await store.startUpload(id, 'team/app');
    await store.appendUpload(id, bodyOf(data));
    await rig.vault.rotateKey(OPERATOR, KEK);
    const p = await (await rotator.start()).done;
    assert.equal(p.failed, 0);
    await store.commitUpload(id, digestOf(data));
    assert.equal(await rotator.pending(p.target), 0, 'nothing left under the old version');
    assert.ok((await store.readAll(digestOf(data))).equals(data), 'the blob reads back');
  });

  test('a target saved by --key is dropped when the configuration names another key', async () => {
    await rig.vault.createKey(OPERATOR, 'customer-kek', { size: 2048 });
    await (await rotator.start({ key: 'customer-kek' })).done;
    const restarted = (await encryptionRig({ keys: rig.keys })).ring;
    await new Rotator(rig.keys, restarted, REGISTRY, 'hsm:hsm-kek').restoreTarget();
    assert.equal(restarted.targetKey.name, KEK, 'the configuration wins');
  });

  test('--key moves the target to another key, durably, and re-wraps everything under it', async () => {
    const digest = await push(store, randomBytes(4000));
    await rig.vault.createKey(OPERATOR, 'customer-kek', { size: 2048 });
    await assert.rejects(rotator.start({ key: 'no-such-key' }), /no-such-key/);
    const p = await (await rotator.start({ key: 'customer-kek' })).done;
    assert.equal(p.target.name, 'customer-kek');
    assert.equal(p.rewrapped, 1);
    const second = await push(store, randomBytes(10));
    assert.equal((await rig.keys.get('blob', second))?.kek.name, 'customer-kek', 'new data keys use the new key');
    // A new ring (a restart) adopts the saved target.
    const restarted = (await encryptionRig({ keys: rig.keys })).ring;
    const again = new Rotator(rig.keys, restarted, REGISTRY, `test:${KEK}`);
    assert.equal(restarted.targetKey.name, KEK);
    await again.restoreTarget();
    assert.equal(restarted.targetKey.name, 'customer-kek');
    rig.ring.clear();
    assert.equal((await store.readAll(digest)).length, 4000);
    assert.ok(sameKek((await rig.keys.get('blob', digest))?.kek ?? { vault: '', name: '', version: '' }, p.target), 'the old data key is under the new key');
  });
});
