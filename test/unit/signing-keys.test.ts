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

  test('a sealed key whose bytes were altered is refused, and a sealed key without a key vault stops the start', async () => {
    await keysWith(ring()).init(rig.clock);
    const [rec] = await store.list<StoredKey>('signing-key');
    assert.ok(rec?.value.sealedPrivate !== undefined);
    const flipped = Buffer.from(rec.value.sealedPrivate.ciphertext, 'base64');
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    await store.put('signing-key', rec.id, { ...rec.value, sealedPrivate: { ...rec.value.sealedPrivate, ciphertext: flipped.toString('base64') } });
    const tampered = await keysWith(ring()).init(rig.clock);
    await assert.rejects(tampered.active(), /fails authentication/);
    await assert.rejects(keysWith(undefined).init(rig.clock), /sealed by the key vault, but encryption at rest is off/);
  });
});
