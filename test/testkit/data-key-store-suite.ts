/**
 * DataKeyStore conformance suite (the contract in src/encryption/data-key-store.ts). A new backend
 * proves itself with one call: `runDataKeyStoreSuite('mine', async () => ({ store, cleanup }))`.
 * A backend that keeps records across restarts also gives `reopen()` and gets the durability
 * tests. Each test gets a fresh, empty store.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { digestOf, type Digest } from '../../src/oci/index.js';
import type { DataKeyRecord, DataKeyStore, KekCount, KekRef, SealedKind } from '../../src/encryption/index.js';

export interface DataKeyStoreHarness {
  readonly store: DataKeyStore;
  /** Close `store` and open the same records again (persistent backends only). */
  reopen?(): Promise<DataKeyStore>;
  cleanup(): Promise<void>;
}

const kek = (version: string, name = 'kek', vault = 'primary'): KekRef => ({ vault, name, version });
const V1 = kek('1');
const V2 = kek('2');
const V3 = kek('3');

/** Deterministic bytes standing in for an RSA-OAEP-wrapped data key. */
function wrappedOf(seed: string): Buffer {
  return createHash('sha512').update(`wrapped:${seed}`).digest();
}

/** A record for `content`; `variant` changes everything but the key, as a racing push would. */
function record(kind: SealedKind, content: string, k: KekRef = V1, variant = ''): DataKeyRecord {
  const seed = `${kind}:${content}:${variant}`;
  return {
    kind,
    digest: digestOf(content),
    cipherDigest: digestOf(`cipher:${seed}`),
    size: content.length,
    objectId: createHash('sha256').update(seed).digest('hex').slice(0, 32),
    segmentSize: 65_536,
    headerLength: 100 + variant.length,
    kek: k,
    wrapped: wrappedOf(`${seed}:${k.version}`),
    createdAt: 1_700_000_000_000 + content.length,
  };
}

const keyOf = (r: { kind: string; digest: string }): string => `${r.kind} ${r.digest}`;
const byKey = (a: { kind: string; digest: string }, b: { kind: string; digest: string }): number =>
  a.kind === b.kind ? (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0) : a.kind < b.kind ? -1 : 1;
const countKey = (c: KekCount): string => `${c.kek.vault}/${c.kek.name}/${c.kek.version} ${c.kind}`;
const sortedCounts = (cs: KekCount[]): KekCount[] => [...cs].sort((a, b) => (countKey(a) < countKey(b) ? -1 : 1));

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** 25 records over both kinds, wrapped by V1 (9), V2 (8) and V3 (8). */
function population(): DataKeyRecord[] {
  return Array.from({ length: 25 }, (_, i) => record(i % 3 === 0 ? 'manifest' : 'blob', `object ${i}`, [V1, V2, V3][i % 3 === 0 ? 0 : i % 3]));
}

export function runDataKeyStoreSuite(name: string, make: () => Promise<DataKeyStoreHarness>): void {
  describe(`DataKeyStore conformance: ${name}`, () => {
    let h: DataKeyStoreHarness;
    let store: DataKeyStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    afterEach(async () => {
      await store.close();
      await h.cleanup();
    });
    const putAll = async (rs: DataKeyRecord[]): Promise<void> => {
      for (const r of rs) await store.putIfAbsent(r);
    };

    describe('records', () => {
      test('get of a record never stored is undefined', async () => {
        assert.equal(await store.get('blob', digestOf('nothing')), undefined);
        await store.putIfAbsent(record('blob', 'a'));
        assert.equal(await store.get('blob', digestOf('b')), undefined);
      });

      test('putIfAbsent stores the record and returns it', async () => {
        const r = record('blob', 'layer');
        assert.deepEqual(await store.putIfAbsent(r), r);
        assert.deepEqual(await store.get('blob', r.digest), r);
        const rewrapped = { ...record('manifest', 'm'), rewrappedAt: 1_800_000_000_000 };
        assert.deepEqual(await store.putIfAbsent(rewrapped), rewrapped, 'rewrappedAt is kept when given');
      });

      test('a second putIfAbsent for the same key returns the first record and writes nothing', async () => {
        const first = record('blob', 'layer', V1);
        const second = record('blob', 'layer', V2, 'racing push');
        await store.putIfAbsent(first);
        assert.deepEqual(await store.putIfAbsent(second), first);
        assert.deepEqual(await store.get('blob', first.digest), first);
      });

      test('kind separates namespaces: a blob and a manifest with one digest are two records', async () => {
        const blob = record('blob', 'same bytes', V1);
        const manifest = record('manifest', 'same bytes', V2);
        assert.equal(blob.digest, manifest.digest);
        assert.deepEqual(await store.putIfAbsent(blob), blob);
        assert.deepEqual(await store.putIfAbsent(manifest), manifest, 'the blob does not shadow the manifest');
        assert.equal(await store.rewrap('blob', blob.digest, manifest, { kek: V3, wrapped: wrappedOf('x'), at: 1 }), false);
        assert.equal(await store.delete('manifest', blob.digest, blob.cipherDigest), false);
        assert.equal(await store.delete('blob', blob.digest, blob.cipherDigest), true);
        assert.equal(await store.get('blob', blob.digest), undefined);
        assert.deepEqual(await store.get('manifest', manifest.digest), manifest);
      });

      test('delete removes the record only while it references that cipherDigest', async () => {
        const r = record('blob', 'layer');
        await store.putIfAbsent(r);
        assert.equal(await store.delete('blob', r.digest, digestOf('another ciphertext')), false);
        assert.deepEqual(await store.get('blob', r.digest), r);
        assert.equal(await store.delete('blob', r.digest, r.cipherDigest), true);
        assert.equal(await store.get('blob', r.digest), undefined);
        assert.equal(await store.delete('blob', r.digest, r.cipherDigest), false, 'already gone');
        const next = record('blob', 'layer', V2, 'pushed again');
        assert.deepEqual(await store.putIfAbsent(next), next, 'the key is free again');
      });
    });

    describe('rewrap', () => {
      const NEXT = { kek: V2, wrapped: wrappedOf('under v2'), at: 1_750_000_000_000 };

      test('succeeds while the record holds the expected KEK and bytes, and sets rewrappedAt', async () => {
        const r = record('blob', 'layer', V1);
        await store.putIfAbsent(r);
        assert.equal((await store.get('blob', r.digest))?.rewrappedAt, undefined, 'never re-wrapped');
        assert.equal(await store.rewrap('blob', r.digest, { kek: V1, wrapped: r.wrapped }, NEXT), true);
        assert.deepEqual(await store.get('blob', r.digest), { ...r, kek: V2, wrapped: NEXT.wrapped, rewrappedAt: NEXT.at });
        const again = { kek: V3, wrapped: wrappedOf('under v3'), at: NEXT.at + 1 };
        assert.equal(await store.rewrap('blob', r.digest, NEXT, again), true);
        assert.deepEqual(await store.get('blob', r.digest), { ...r, kek: V3, wrapped: again.wrapped, rewrappedAt: again.at });
      });

      test('fails and changes nothing when the KEK, the bytes or the record are not as expected', async () => {
        const r = record('blob', 'layer', V1);
        await store.putIfAbsent(r);
        const stale: Array<[string, { kek: KekRef; wrapped: Buffer }]> = [
          ['stale version', { kek: V2, wrapped: r.wrapped }],
          ['other key name', { kek: kek('1', 'other'), wrapped: r.wrapped }],
          ['other vault', { kek: kek('1', 'kek', 'secondary'), wrapped: r.wrapped }],
          ['stale bytes', { kek: V1, wrapped: wrappedOf('something else') }],
          ['truncated bytes', { kek: V1, wrapped: r.wrapped.subarray(0, r.wrapped.length - 1) }],
        ];
        for (const [what, expected] of stale) {
          assert.equal(await store.rewrap('blob', r.digest, expected, NEXT), false, what);
          assert.deepEqual(await store.get('blob', r.digest), r, `${what}: record unchanged`);
        }
        assert.equal(await store.rewrap('blob', digestOf('missing'), { kek: V1, wrapped: r.wrapped }, NEXT), false, 'missing');
        assert.equal(await store.get('blob', digestOf('missing')), undefined, 'rewrap does not create');
        assert.equal(await store.rewrap('manifest', r.digest, { kek: V1, wrapped: r.wrapped }, NEXT), false, 'other kind');
        assert.equal(await store.rewrap('blob', r.digest, { kek: V1, wrapped: r.wrapped }, NEXT), true);
        assert.equal(await store.rewrap('blob', r.digest, { kek: V1, wrapped: r.wrapped }, { ...NEXT, kek: V3 }), false, 'a lost race');
        assert.deepEqual((await store.get('blob', r.digest))?.kek, V2);
      });
    });

    describe('listing', () => {
      test('listNotWrappedBy pages in (kind, digest) order, strictly after `after`', async () => {
        const rs = population();
        await putAll(rs);
        const expected = rs.filter((r) => r.kek.version !== '3').sort(byKey);
        assert.equal(expected.length, 17);
        const pages: DataKeyRecord[][] = [];
        let after: { kind: SealedKind; digest: Digest } | undefined;
        for (let i = 0; i < 10; i++) {
          const page = await store.listNotWrappedBy(V3, 7, after);
          if (page.length === 0) break;
          pages.push(page);
          const last = page[page.length - 1];
          after = last === undefined ? undefined : { kind: last.kind, digest: last.digest };
        }
        assert.deepEqual(pages.map((p) => p.length), [7, 7, 3]);
        const seen = pages.flat();
        assert.equal(new Set(seen.map(keyOf)).size, seen.length, 'no duplicates');
        assert.deepEqual(seen, expected, 'exactly the records not wrapped by V3, whole and in order');
        const mid = expected[8];
        assert.ok(mid !== undefined, 'population has 17 such records');
        assert.deepEqual((await store.listNotWrappedBy(V3, 100, mid)).map(keyOf), expected.slice(9).map(keyOf), 'exclusive');
        const between = { kind: mid.kind, digest: `${mid.digest}0` as Digest };
        assert.deepEqual((await store.listNotWrappedBy(V3, 100, between)).map(keyOf), expected.slice(9).map(keyOf), 'after need not exist');
        assert.deepEqual(await store.listNotWrappedBy(V3, 0), []);
      });

      test('listNotWrappedBy counts a KEK differing in vault, name or version as different', async () => {
        const rs = population();
        await putAll(rs);
        assert.deepEqual((await store.listNotWrappedBy(kek('3', 'kek', 'secondary'), 100)).map(keyOf), rs.sort(byKey).map(keyOf));
        assert.equal((await store.listNotWrappedBy(kek('3', 'other'), 100)).length, 25);
        assert.equal((await store.listNotWrappedBy(V1, 100)).length, 16);
        const rewrapped = rs.filter((r) => r.kek.version !== '3');
        for (const r of rewrapped) assert.ok(await store.rewrap(r.kind, r.digest, r, { kek: V3, wrapped: wrappedOf(`v3 ${keyOf(r)}`), at: 5 }), keyOf(r));
        assert.deepEqual(await store.listNotWrappedBy(V3, 100), [], 'rotation done');
      });

      test('countByKey groups every record by KEK and kind', async () => {
        assert.deepEqual(await store.countByKey(), []);
        const rs = population();
        await putAll(rs);
        const counts = (v: KekRef, blob: number, manifest: number): KekCount[] => [
          ...(blob > 0 ? [{ kek: v, kind: 'blob' as const, count: blob }] : []),
          ...(manifest > 0 ? [{ kek: v, kind: 'manifest' as const, count: manifest }] : []),
        ];
        assert.deepEqual(sortedCounts(await store.countByKey()), sortedCounts([...counts(V1, 0, 9), ...counts(V2, 8, 0), ...counts(V3, 8, 0)]));
        const m = rs[0];
        assert.ok(m !== undefined && m.kind === 'manifest', 'population starts with a manifest');
        assert.ok(await store.rewrap(m.kind, m.digest, m, { kek: V3, wrapped: wrappedOf('m'), at: 5 }), 'rewrap');
        const b = rs[1];
        assert.ok(b !== undefined && b.kind === 'blob', 'then a blob');
        assert.ok(await store.delete(b.kind, b.digest, b.cipherDigest), 'delete');
        assert.deepEqual(sortedCounts(await store.countByKey()), sortedCounts([...counts(V1, 0, 8), ...counts(V2, 7, 0), ...counts(V3, 8, 1)]));
      });

      test('list yields every record once, whole', async () => {
        assert.deepEqual(await all(store.list()), []);
        const rs = population();
        await putAll(rs);
        const listed = await all(store.list());
        assert.equal(new Set(listed.map(keyOf)).size, listed.length, 'no duplicates');
        assert.deepEqual([...listed].sort(byKey), [...rs].sort(byKey));
      });
    });

    describe('settings', () => {
      test('a setting reads back as last written; unknown names are undefined', async () => {
        assert.equal(await store.getSetting('rotation.last'), undefined);
        await store.setSetting('rotation.last', '{"rewrapped":3}');
        await store.setSetting('other', '');
        assert.equal(await store.getSetting('rotation.last'), '{"rewrapped":3}');
        await store.setSetting('rotation.last', '{"rewrapped":25}');
        assert.equal(await store.getSetting('rotation.last'), '{"rewrapped":25}');
        assert.equal(await store.getSetting('other'), '', 'an empty string is a value');
        assert.equal(await store.getSetting('missing'), undefined);
      });
    });

    describe('isolation and concurrency', () => {
      test('Buffers passed in or handed out do not alias stored state', async () => {
        const r = record('blob', 'layer');
        const original = Buffer.from(r.wrapped);
        const putting = store.putIfAbsent(r);
        r.wrapped.fill(0); // the caller reuses its buffer before the write lands
        (await putting).wrapped.fill(1);
        (await store.get('blob', r.digest))?.wrapped.fill(2);
        for (const listed of await store.listNotWrappedBy(V3, 10)) listed.wrapped.fill(3);
        for await (const listed of store.list()) listed.wrapped.fill(4);
        assert.deepEqual((await store.get('blob', r.digest))?.wrapped, original);
        const expected = { kek: V1, wrapped: Buffer.from(original) };
        const next = { kek: V2, wrapped: wrappedOf('next'), at: 9 };
        const rewrapping = store.rewrap('blob', r.digest, expected, next);
        expected.wrapped.fill(5);
        next.wrapped.fill(6);
        assert.equal(await rewrapping, true, 'compared with the bytes given at the call');
        assert.deepEqual((await store.get('blob', r.digest))?.wrapped, wrappedOf('next'));
      });

      test('10 concurrent putIfAbsent calls for one key: one wins, all return its record', async () => {
        const candidates = Array.from({ length: 10 }, (_, i) => record('blob', 'contended', [V1, V2, V3][i % 3], `push ${i}`));
        const results = await Promise.all(candidates.map((c) => store.putIfAbsent(c)));
        const winner = results[0];
        assert.ok(winner !== undefined, 'ten results');
        for (const r of results) assert.deepEqual(r, winner);
        assert.equal(candidates.filter((c) => c.cipherDigest === winner.cipherDigest).length, 1, 'exactly one winner');
        assert.deepEqual(candidates.find((c) => c.cipherDigest === winner.cipherDigest), winner);
        assert.deepEqual(await store.get('blob', winner.digest), winner);
        assert.equal((await all(store.list())).length, 1);
      });

      test('writes issued together all land, each resolving with its own result', async () => {
        const [a, b] = [record('blob', 'a'), record('blob', 'b')];
        await putAll([a, b]);
        const results = await Promise.all([
          store.rewrap('blob', a.digest, a, { kek: V2, wrapped: wrappedOf('a2'), at: 1 }),
          store.rewrap('blob', b.digest, { kek: V3, wrapped: b.wrapped }, { kek: V2, wrapped: wrappedOf('b2'), at: 1 }),
          store.delete('blob', b.digest, a.cipherDigest),
          store.delete('manifest', a.digest, a.cipherDigest),
          store.setSetting('s', 'v'),
          store.putIfAbsent(record('manifest', 'c')),
        ]);
        assert.deepEqual(results.slice(0, 5), [true, false, false, false, undefined]);
        assert.equal((await store.get('blob', a.digest))?.kek.version, '2');
        assert.deepEqual(await store.get('blob', b.digest), b);
        assert.equal(await store.getSetting('s'), 'v');
      });
    });

    describe('durability', () => {
      test('every resolved write survives closing and reopening', async (t) => {
        if (h.reopen === undefined) {
          t.skip('in-memory backend: nothing outlives the process');
          return;
        }
        const rs = population();
        await putAll(rs);
        const [moved, gone, later] = rs;
        assert.ok(moved !== undefined && gone !== undefined && later !== undefined, 'population has 25 records');
        assert.ok(await store.rewrap(moved.kind, moved.digest, moved, { kek: V3, wrapped: wrappedOf('moved'), at: 42 }), 'rewrap');
        assert.ok(await store.delete(gone.kind, gone.digest, gone.cipherDigest), 'delete');
        await store.setSetting('rotation.last', 'first');
        await store.setSetting('rotation.last', 'second');
        // issued together, the last without awaiting before close: resolved means durable
        const last = await Promise.all([store.putIfAbsent(record('manifest', 'final')), store.setSetting('other', 'x')]);
        const before = { list: (await all(store.list())).sort(byKey), counts: sortedCounts(await store.countByKey()) };
        store = await h.reopen();
        assert.deepEqual((await all(store.list())).sort(byKey), before.list);
        assert.deepEqual(sortedCounts(await store.countByKey()), before.counts);
        assert.deepEqual(await store.get(moved.kind, moved.digest), { ...moved, kek: V3, wrapped: wrappedOf('moved'), rewrappedAt: 42 });
        assert.equal(await store.get(gone.kind, gone.digest), undefined);
        assert.deepEqual(await store.get('manifest', digestOf('final')), last[0]);
        assert.equal(await store.getSetting('rotation.last'), 'second');
        assert.equal(await store.getSetting('other'), 'x');
        assert.deepEqual(await store.putIfAbsent(record(later.kind, 'object 2', V1, 'after reopen')), later, 'first writer still wins');
      });
    });
  });
}
