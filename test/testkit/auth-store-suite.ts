/**
 * AuthStore conformance suite (the contract in src/auth/store.ts). A new backend proves itself
 * with one call: `runAuthStoreSuite('mine', async () => ({ store, cleanup }))`; a backend that
 * keeps records across restarts also gives `reopen()` (close, then open the same data again) and
 * gets the durability tests. Each test gets a fresh, empty store.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { AUTH_KINDS, AuthStoreConflict, type AuthStore, type Stored } from '../../src/auth/index.js';

export interface AuthStoreHarness {
  readonly store: AuthStore;
  /** Close `store` and open the same data again (persistent backends only). */
  reopen?(): Promise<AuthStore>;
  cleanup(): Promise<void>;
}

interface Rec {
  name: string;
  n: number;
  tags?: string[];
  nested?: { deep: { list: number[] } };
}

/** Asserts `p` rejects with CONFLICT (an AuthStoreConflict). */
async function conflicts(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AuthStoreConflict, `${what}: expected AuthStoreConflict, got ${String(e)}`);
    assert.equal(e.code, 'CONFLICT');
    return true;
  });
}

export function runAuthStoreSuite(name: string, make: () => Promise<AuthStoreHarness>): void {
  describe(`AuthStore conformance: ${name}`, () => {
    let h: AuthStoreHarness;
    let store: AuthStore;
    beforeEach(async () => {
      h = await make();
      store = h.store;
    });
    afterEach(async () => {
      await store.close();
      await h.cleanup();
    });

    describe('get and list', () => {
      test('get of a missing record is undefined; list of an empty kind is []', async () => {
        assert.equal(await store.get('token', 'nope'), undefined);
        for (const kind of AUTH_KINDS) assert.deepEqual(await store.list(kind), [], kind);
      });

      test('a put record is read back with its id, version 1 and value', async () => {
        assert.equal(await store.put<Rec>('token', 'ci', { name: 'ci', n: 1 }), 1);
        assert.deepEqual(await store.get<Rec>('token', 'ci'), { id: 'ci', version: 1, value: { name: 'ci', n: 1 } });
      });

      test('list returns the records of one kind only, ordered by id (code-point order)', async () => {
        for (const id of ['b', 'a', 'B', 'a-2', 'a/1', 'z', '10', '9']) await store.put<Rec>('service', id, { name: id, n: 0 });
        await store.put<Rec>('token', 'a', { name: 'other kind', n: 0 });
        const listed = await store.list<Rec>('service');
        assert.deepEqual(
          listed.map((s) => s.id),
          ['10', '9', 'B', 'a', 'a-2', 'a/1', 'b', 'z'],
        );
        assert.ok(listed.every((s) => s.value.name === s.id && s.version === 1));
        assert.deepEqual((await store.list<Rec>('token')).map((s) => s.value.name), ['other kind']);
      });

      test('the same id under two kinds is two records', async () => {
        await store.put<Rec>('token', 'x', { name: 'token', n: 1 });
        await store.put<Rec>('service', 'x', { name: 'service', n: 2 });
        assert.equal((await store.get<Rec>('token', 'x'))?.value.name, 'token');
        assert.equal((await store.get<Rec>('service', 'x'))?.value.name, 'service');
        assert.equal(await store.delete('token', 'x'), true);
        assert.equal((await store.get<Rec>('service', 'x'))?.value.name, 'service');
      });

      test('ids with any characters round-trip (they are data, not paths or SQL)', async () => {
        const ids = ["it's", 'a\u0000b', '../../etc/passwd', 'ünï©ødé', '%', '_', "'; DROP TABLE auth_records; --", ' '];
        for (const id of ids) await store.put<Rec>('scope-map', id, { name: id, n: 0 });
        for (const id of ids) assert.equal((await store.get<Rec>('scope-map', id))?.value.name, id, JSON.stringify(id));
        assert.equal((await store.list('scope-map')).length, ids.length);
        assert.equal(await store.get('scope-map', '%x'), undefined, 'no pattern matching on ids');
      });
    });

    describe('put: versions and compare-and-set', () => {
      test('each write increments the version by one', async () => {
        assert.equal(await store.put<Rec>('admin', 'a', { name: 'a', n: 1 }), 1);
        assert.equal(await store.put<Rec>('admin', 'a', { name: 'a', n: 2 }), 2);
        assert.equal(await store.put<Rec>('admin', 'a', { name: 'a', n: 3 }, 2), 3);
        assert.deepEqual(await store.get<Rec>('admin', 'a'), { id: 'a', version: 3, value: { name: 'a', n: 3 } });
      });

      test("'absent' creates only when no record exists", async () => {
        assert.equal(await store.put<Rec>('token', 't', { name: 't', n: 1 }, 'absent'), 1);
        await conflicts(store.put<Rec>('token', 't', { name: 't', n: 2 }, 'absent'), 'second absent');
        assert.equal((await store.get<Rec>('token', 't'))?.value.n, 1, 'the losing write changed nothing');
      });

      test('a version creates nothing and replaces only that version', async () => {
        await conflicts(store.put<Rec>('token', 'new', { name: 'new', n: 1 }, 1), 'version on a missing record');
        assert.equal(await store.get('token', 'new'), undefined);
        await store.put<Rec>('token', 't', { name: 't', n: 1 });
        await store.put<Rec>('token', 't', { name: 't', n: 2 });
        await conflicts(store.put<Rec>('token', 't', { name: 't', n: 99 }, 1), 'stale version');
        await conflicts(store.put<Rec>('token', 't', { name: 't', n: 99 }, 3), 'future version');
        assert.deepEqual(await store.get<Rec>('token', 't'), { id: 't', version: 2, value: { name: 't', n: 2 } });
      });

      test('of two writers holding the same version, exactly one wins', async () => {
        await store.put<Rec>('role-assignment', 'r', { name: 'r', n: 0 });
        const results = await Promise.allSettled([1, 2, 3, 4].map((n) => store.put<Rec>('role-assignment', 'r', { name: 'r', n }, 1)));
        const won = results.filter((r) => r.status === 'fulfilled');
        assert.equal(won.length, 1);
        assert.ok(results.every((r) => r.status === 'fulfilled' || r.reason instanceof AuthStoreConflict));
        const final = await store.get<Rec>('role-assignment', 'r');
        assert.equal(final?.version, 2);
        assert.equal(final?.value.n, [1, 2, 3, 4][results.findIndex((r) => r.status === 'fulfilled')]);
      });

      test("of concurrent 'absent' creators, exactly one wins", async () => {
        const results = await Promise.allSettled([1, 2, 3].map((n) => store.put<Rec>('refresh-token', 'jti', { name: 'jti', n }, 'absent')));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      });

      test('a deleted record can be created again, starting over at version 1', async () => {
        await store.put<Rec>('service', 's', { name: 's', n: 1 });
        await store.put<Rec>('service', 's', { name: 's', n: 2 });
        assert.equal(await store.delete('service', 's'), true);
        assert.equal(await store.put<Rec>('service', 's', { name: 's', n: 3 }, 'absent'), 1);
      });
    });

    describe('delete', () => {
      test('returns whether there was a record', async () => {
        assert.equal(await store.delete('token', 'nope'), false);
        await store.put<Rec>('token', 't', { name: 't', n: 1 });
        assert.equal(await store.delete('token', 't'), true);
        assert.equal(await store.get('token', 't'), undefined);
        assert.deepEqual(await store.list('token'), []);
        assert.equal(await store.delete('token', 't'), false);
      });

      test('with a version, deletes only that version; a mismatch throws CONFLICT and deletes nothing', async () => {
        await store.put<Rec>('scope-map', 'm', { name: 'm', n: 1 });
        await store.put<Rec>('scope-map', 'm', { name: 'm', n: 2 });
        await conflicts(store.delete('scope-map', 'm', 1), 'stale version');
        assert.equal((await store.get<Rec>('scope-map', 'm'))?.version, 2);
        assert.equal(await store.delete('scope-map', 'm', 2), true);
        assert.equal(await store.get('scope-map', 'm'), undefined);
        assert.equal(await store.delete('scope-map', 'm', 2), false, 'nothing left to delete is false, not CONFLICT');
      });
    });

    describe('values are JSON copies', () => {
      test('changing the object after put, or a value read back, changes nothing stored', async () => {
        const value: Rec = { name: 'x', n: 1, tags: ['a'], nested: { deep: { list: [1, 2] } } };
        await store.put<Rec>('token', 'x', value);
        value.tags?.push('mutated');
        value.nested?.deep.list.push(3);
        const read = (await store.get<Rec>('token', 'x')) as Stored<Rec>;
        assert.deepEqual(read.value, { name: 'x', n: 1, tags: ['a'], nested: { deep: { list: [1, 2] } } });
        read.value.tags?.push('again');
        const listed = await store.list<Rec>('token');
        listed[0]?.value.nested?.deep.list.push(9);
        assert.deepEqual((await store.get<Rec>('token', 'x'))?.value, { name: 'x', n: 1, tags: ['a'], nested: { deep: { list: [1, 2] } } });
      });

      test('values round-trip as JSON: undefined fields vanish, Dates become strings, unicode survives', async () => {
        await store.put('token', 'j', { a: undefined, d: new Date(0), s: 'ünï\u0000©', big: 2 ** 53 - 1, neg: -0.5, arr: [null, true] });
        assert.deepEqual((await store.get('token', 'j'))?.value, { d: '1970-01-01T00:00:00.000Z', s: 'ünï\u0000©', big: 2 ** 53 - 1, neg: -0.5, arr: [null, true] });
      });
    });

    describe('durability', () => {
      test('resolved writes and deletes survive closing and reopening', async (t) => {
        if (h.reopen === undefined) {
          t.skip('in-memory backend: nothing outlives the process');
          return;
        }
        await store.put<Rec>('admin', 'root', { name: 'root', n: 1 });
        await store.put<Rec>('admin', 'root', { name: 'root', n: 2 }, 1);
        await store.put<Rec>('token', 'gone', { name: 'gone', n: 0 });
        await store.delete('token', 'gone');
        for (const kind of AUTH_KINDS) await store.put<Rec>(kind, `${kind}-1`, { name: kind, n: 7 });
        store = await h.reopen();
        assert.deepEqual(await store.get<Rec>('admin', 'root'), { id: 'root', version: 2, value: { name: 'root', n: 2 } });
        assert.equal(await store.get('token', 'gone'), undefined);
        for (const kind of AUTH_KINDS) assert.equal((await store.get<Rec>(kind, `${kind}-1`))?.value.name, kind);
        await conflicts(store.put<Rec>('admin', 'root', { name: 'root', n: 3 }, 1), 'versions survive too');
        assert.equal(await store.put<Rec>('admin', 'root', { name: 'root', n: 3 }, 2), 3);
      });
    });
  });
}
