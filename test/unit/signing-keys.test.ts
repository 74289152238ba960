/**
 * Token-signing keys at rest (ADR 0018): with encryption on, the active key's private half is
 * sealed by the key vault (never a JWK in the store), opened through the KeyRing so that a
 * disabled KEK stops token signing once the data-key cache lifetime has passed, replaced
 * after a KEK rotation or when it was stored in the clear, and dropped when the key retires.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { SignJWT, jwtVerify } from 'jose';
import { MemoryAuthStore, SigningKeys, type AuthStore } from '../../src/auth/index.js';
import { TokenService } from '../../src/auth/tokens.js';
import { KeyRingSealer } from '../../src/encryption/index.js';
import { rejectsWithCode } from '../testkit/assert-registry-error.js';
import { KEK, OPERATOR, encryptionRig, type EncryptionRig } from '../testkit/encryption.js';

const DAY = 86_400_000;

interface StoredKey {
  kid: string;
  privateJwk?: { d?: string };
  sealedPrivate?: { kek: { version: string }; ciphertext: string };
  retiredAt?: number;
}

async function records(store: AuthStore): Promise<StoredKey[]> {
  return (await store.list<StoredKey>('signing-key')).map((s) => s.value);
}

async function signAndVerify(keys: SigningKeys): Promise<void> {
  const { kid, alg, key } = await keys.active();
  const jwt = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg, kid }).sign(key);
  const v = keys.verificationKey(kid);
  assert.ok(v !== undefined);
  await jwtVerify(jwt, v.key);
}

describe('token-signing keys sealed by the key vault', () => {
  let rig: EncryptionRig;
  let store: MemoryAuthStore;
  const ring = (): KeyRingSealer => new KeyRingSealer(rig.ring);
  const keysWith = (sealer: KeyRingSealer | undefined): SigningKeys =>
    new SigningKeys(store, { algorithm: 'ES256', rotateAfterMs: 30 * DAY, retainMs: DAY, sealer, now: () => rig.clock });

  beforeEach(async () => {
    rig = await encryptionRig({ cacheMs: 60_000 });
    store = new MemoryAuthStore();
  });

  test('the private half is stored sealed, never as a JWK, and the key signs what its public half verifies', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    const [rec] = await records(store);
    assert.ok(rec !== undefined);
    assert.equal(rec.privateJwk, undefined);
    assert.ok(rec.sealedPrivate !== undefined);
    assert.ok(!JSON.stringify(rec).includes('"d"'), 'no private scalar in the record');
    await signAndVerify(keys);
    assert.ok(rig.events.some((e) => e.op === 'wrapKey'), 'the vault wrapped its data key');
  });

  test('a disabled KEK stops token signing once the cache lifetime has passed; enabling it restores it', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    await signAndVerify(keys);
    await rig.vault.setEnabled(OPERATOR, KEK, false);
    await signAndVerify(keys); // within the cache lifetime
    rig.clock += 60_001;
    await rejectsWithCode(keys.active(), 'UNAVAILABLE');
    await rig.vault.setEnabled(OPERATOR, KEK, true);
    await signAndVerify(keys);
  });

  test('a key stored in the clear (before encryption was on) is retired at start, its private half dropped, and a sealed one signs', async () => {
    const plain = await keysWith(undefined).init(rig.clock);
    const old = await plain.active();
    const oldToken = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: old.alg, kid: old.kid }).sign(old.key);
    assert.ok((await records(store))[0]?.privateJwk?.d !== undefined, 'in the clear without a sealer');
    const sealed = await keysWith(ring()).init(rig.clock);
    const all = await records(store);
    assert.equal(all.length, 2);
    for (const r of all) assert.equal(r.privateJwk, undefined);
    const retired = all.find((r) => r.kid === old.kid);
    assert.ok(retired?.retiredAt !== undefined && retired.sealedPrivate === undefined);
    assert.notEqual((await sealed.active()).kid, old.kid);
    await signAndVerify(sealed);
    const v = sealed.verificationKey(old.kid);
    assert.ok(v !== undefined, 'the old key still verifies what it signed');
    await jwtVerify(oldToken, v.key);
  });

  test('a retired key keeps only its public half, and still verifies what it signed', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    const { kid, alg, key } = await keys.active();
    const old = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg, kid }).sign(key);
    await keys.rotate(rig.clock);
    const retired = (await records(store)).find((r) => r.kid === kid);
    assert.ok(retired?.retiredAt !== undefined);
    assert.equal(retired.privateJwk, undefined);
    assert.equal(retired.sealedPrivate, undefined);
    const v = keys.verificationKey(kid);
    assert.ok(v !== undefined);
    await jwtVerify(old, v.key);
    assert.notEqual((await keys.active()).kid, kid);
  });

  test('after a KEK rotation the next upkeep makes a new signing key, sealed under the new version', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    const before = (await records(store))[0];
    await rig.vault.rotateKey(OPERATOR, KEK);
    await keys.maintain(rig.clock);
    const active = (await records(store)).find((r) => r.retiredAt === undefined);
    assert.ok(active !== undefined && before?.sealedPrivate !== undefined && active.sealedPrivate !== undefined);
    assert.notEqual(active.kid, before.kid);
    assert.notEqual(active.sealedPrivate.kek.version, before.sealedPrivate.kek.version);
    await signAndVerify(keys);
  });

  test('sealed bytes that were altered, or moved to another key, do not open; a sealed key without a key vault stops the start', async () => {
    await keysWith(ring()).init(rig.clock);
    const [rec] = await store.list<StoredKey>('signing-key');
    assert.ok(rec?.value.sealedPrivate !== undefined);
    const sealed = rec.value.sealedPrivate;
    assert.ok((await ring().open(`signing-key/${rec.id}`, sealed)).length > 0);
    const flipped = Buffer.from(sealed.ciphertext, 'base64');
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    await assert.rejects(ring().open(`signing-key/${rec.id}`, { ...sealed, ciphertext: flipped.toString('base64') }), /fails authentication/);
    await assert.rejects(ring().open('signing-key/another-kid', sealed), /fails authentication/);
    await assert.rejects(ring().open(`signing-key/${rec.id}`, { ...sealed, tag: 7 }), /malformed/);
    await assert.rejects(keysWith(undefined).init(rig.clock), /sealed by the key vault, but encryption at rest is off/);
  });

  test('a token dated after its key was retired is refused, and so is one outliving the configured lifetime', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    const settings = { issuer: 'https://registry.test', service: 'bulwark', accessTokenSeconds: 300, refreshTokenSeconds: 10_800, clockSkewSeconds: 30 };
    const tokens = new TokenService(keys, settings);
    const old = await keys.active(); // the private half an attacker copied before the upgrade, say
    const forge = (iat: number, lifetime: number, kid = old.kid, key = old.key): Promise<string> =>
      new SignJWT({ sub: 'user:admin', access: [], token_use: 'access', jti: 'forged' })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setIssuer(settings.issuer)
        .setAudience(settings.service)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + lifetime)
        .sign(key);
    const t0 = Math.floor(rig.clock / 1000);
    const before = await forge(t0, 300);
    await keys.rotate(rig.clock);
    await tokens.verifyAccess(before, rig.clock); // signed before retirement: still good
    await rejectsWithCode(tokens.verifyAccess(await forge(t0 + 120, 300), rig.clock + 120_000), 'UNAUTHORIZED');
    const now = await keys.active();
    await rejectsWithCode(tokens.verifyAccess(await forge(t0, 3600, now.kid, now.key), rig.clock), 'UNAUTHORIZED');
    await tokens.verifyAccess((await tokens.issueAccess({ sub: 'user:admin' }, [], rig.clock)).token, rig.clock);
  });

  test('callers waiting for the key at once share one opening through the vault', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    rig.clock += 60_001; // the cached data key has expired
    const unwrapsBefore = rig.events.filter((e) => e.op === 'unwrapKey').length;
    const all = await Promise.all(Array.from({ length: 20 }, () => keys.active()));
    assert.equal(new Set(all.map((a) => a.kid)).size, 1);
    assert.equal(rig.events.filter((e) => e.op === 'unwrapKey').length - unwrapsBefore, 1);
  });

  test('a start with the KEK disabled keeps the key it has (rotation due or not), and signs again once it is enabled', async () => {
    await keysWith(ring()).init(rig.clock);
    const kid = (await records(store))[0]?.kid;
    await rig.vault.setEnabled(OPERATOR, KEK, false);
    rig.clock += 31 * DAY; // a rotation is due
    rig.ring.clear();
    const keys = await keysWith(ring()).init(rig.clock); // starts
    assert.match(keys.deferred?.message ?? '', /due for replacement \(age\) but the key vault refused; it keeps signing/);
    await assert.rejects(keys.maintain(rig.clock), /it keeps signing/, 'the upkeep reports it too');
    assert.equal((await records(store)).length, 1);
    await rejectsWithCode(keys.active(), 'UNAVAILABLE');
    await rig.vault.setEnabled(OPERATOR, KEK, true);
    assert.equal((await keys.active()).kid, kid);
    await keys.maintain(rig.clock);
    assert.notEqual((await keys.active()).kid, kid, 'replaced at the next upkeep');
  });

  test('a sealed key that no longer opens (altered bytes) is replaced by the next upkeep', async () => {
    const keys = await keysWith(ring()).init(rig.clock);
    const [rec] = await store.list<StoredKey>('signing-key');
    assert.ok(rec?.value.sealedPrivate !== undefined);
    await store.put('signing-key', rec.id, { ...rec.value, sealedPrivate: { ...rec.value.sealedPrivate, tag: Buffer.alloc(16).toString('base64') } });
    const reopened = keysWith(ring());
    await reopened.init(rig.clock);
    assert.notEqual((await reopened.active()).kid, rec.id);
    await signAndVerify(reopened);
    void keys;
  });

  test('private halves of keys retired before the upgrade are dropped at start', async () => {
    const plain = await keysWith(undefined).init(rig.clock);
    await plain.rotate(rig.clock + 1);
    await plain.rotate(rig.clock + 2);
    // A store from before ADR 0018: retired keys still carry their private halves.
    for (const r of await store.list<StoredKey & { privateJwk?: object }>('signing-key')) {
      if (r.value.retiredAt !== undefined) await store.put('signing-key', r.id, { ...r.value, privateJwk: { d: 'leftover', kty: 'EC' } });
    }
    await keysWith(ring()).init(rig.clock + 3);
    const all = await records(store);
    assert.equal(all.length, 4);
    assert.deepEqual(all.filter((r) => r.privateJwk !== undefined), []);
    assert.equal(all.filter((r) => r.retiredAt === undefined && r.sealedPrivate !== undefined).length, 1);
  });

  test('the active key comes first even when a retired one was created in the same millisecond', async () => {
    await keysWith(undefined).init(rig.clock);
    const first = (await records(store))[0];
    assert.ok(first !== undefined);
    // Same createdAt, ids in both orders: whichever the store lists first, the active one signs.
    for (let i = 0; i < 4; i++) {
      const keys = await keysWith(undefined).init(rig.clock);
      await keys.rotate(rig.clock);
      const active = (await records(store)).find((r) => r.retiredAt === undefined);
      assert.equal((await keys.active()).kid, active?.kid);
    }
  });
});
