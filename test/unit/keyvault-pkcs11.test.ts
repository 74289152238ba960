import assert from 'node:assert/strict';
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import pkcs11js from 'pkcs11js';
import type { Handle, PKCS11 } from 'pkcs11js';
import { KeyVaultError, Pkcs11KeyVault, type KeyVault, type KeyVaultOptions, type Pkcs11KeyVaultOptions } from '../../src/keyvault/index.js';
import { rejectsWith, runKeyVaultSuite } from '../testkit/key-vault-suite.js';
import { createSoftHsmToken, softHsmMissing, type SoftHsmToken } from '../testkit/softhsm.js';

const p = pkcs11js;
const missing = await softHsmMissing();

/** Vault options for a token; SoftHSM2 2.6 has no OAEP-256, so the host pads around raw RSA. */
function hsmOptions(token: SoftHsmToken, stateDir: string, base: KeyVaultOptions): Pkcs11KeyVaultOptions {
  return { ...base, modulePath: token.modulePath, token: { label: token.tokenLabel }, pin: { env: token.pinEnv }, stateDir, allowRawRsa: true };
}

/**
 * Runs `fn` on a session of our own on the token while a vault holds the module: the login is
 * the application's, so private objects are visible, as they would be to any code in the process.
 */
function onToken<T>(token: SoftHsmToken, fn: (p11: PKCS11, session: Handle) => T): T {
  const p11 = new p.PKCS11();
  p11.load(token.modulePath);
  assert.throws(() => p11.C_Initialize(), /CKR_CRYPTOKI_ALREADY_INITIALIZED/, 'a vault must be open');
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === token.tokenLabel);
  assert.ok(slot !== undefined);
  const session = p11.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
  try {
    return fn(p11, session);
  } finally {
    p11.C_CloseSession(session);
  }
}

function findByLabel(p11: PKCS11, session: Handle, label: string, cls: number): Handle[] {
  p11.C_FindObjectsInit(session, [{ type: p.CKA_LABEL, value: label }, { type: p.CKA_CLASS, value: cls }]);
  try {
    return p11.C_FindObjects(session, 10);
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

if (missing !== undefined) {
  if (process.env.CI === 'true') {
    test('SoftHSM2 is installed (CI runs the PKCS#11 vault for real)', () => assert.fail(missing));
  } else {
    test('PKCS#11 vault against SoftHSM2', { skip: `SoftHSM2 missing: ${missing}` }, () => {});
  }
} else {
  runKeyVaultSuite('pkcs11 (SoftHSM2)', async (options) => {
    const token = await createSoftHsmToken();
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-kv-hsm-'));
    const opts = hsmOptions(token, join(dir, 'vault'), options);
    let current: KeyVault = await Pkcs11KeyVault.open(opts);
    return {
      get vault() {
        return current;
      },
      reopen: async () => {
        await current.close();
        current = await Pkcs11KeyVault.open(opts);
        return current;
      },
      cleanup: async () => {
        await token.cleanup();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });

  describe('Pkcs11KeyVault on SoftHSM2', () => {
    const OPS = 'operator';
    const base: KeyVaultOptions = { audit: () => {}, accessPolicies: { [OPS]: ['manage', 'get', 'wrapKey', 'unwrapKey'] }, purgeProtection: false };
    let token: SoftHsmToken;
    let dir: string;
    let vault: KeyVault | undefined;
    beforeEach(async () => {
      token = await createSoftHsmToken();
      dir = await mkdtemp(join(tmpdir(), 'bulwark-kv-hsm-'));
    });
    afterEach(async () => {
      await vault?.close();
      vault = undefined;
      await token.cleanup();
      await rm(dir, { recursive: true, force: true });
    });
    const opts = (): Pkcs11KeyVaultOptions => hsmOptions(token, join(dir, 'vault'), base);

    test('the private key is generated on the token, sensitive and never extractable', async () => {
      vault = await Pkcs11KeyVault.open(opts());
      const { version } = await vault.createKey(OPS, 'kek', { size: 2048 });
      onToken(token, (p11, s) => {
        const [priv, ...rest] = findByLabel(p11, s, `bulwark:kek:${version}`, p.CKO_PRIVATE_KEY);
        assert.ok(priv !== undefined && rest.length === 0, 'one private key object per version');
        const flags = [p.CKA_TOKEN, p.CKA_SENSITIVE, p.CKA_ALWAYS_SENSITIVE, p.CKA_EXTRACTABLE, p.CKA_NEVER_EXTRACTABLE, p.CKA_LOCAL, p.CKA_SIGN];
        const values = p11.C_GetAttributeValue(s, priv, flags.map((type) => ({ type }))).map((a) => Buffer.from(a.value)[0]);
        assert.deepEqual(values, [1, 1, 1, 0, 1, 1, 0], 'token, sensitive, always sensitive, not extractable, never extractable, generated on the token, no signing');
        for (const type of [p.CKA_PRIVATE_EXPONENT, p.CKA_PRIME_1, p.CKA_PRIME_2]) {
          assert.throws(() => p11.C_GetAttributeValue(s, priv, [{ type }]), /CKR_ATTRIBUTE_SENSITIVE/);
        }
        assert.throws(() => p11.C_GetAttributeValue(s, priv, [{ type: p.CKA_VALUE }]), /CKR_ATTRIBUTE_(SENSITIVE|TYPE_INVALID)/);
      });
    });

    test('a data key encrypted by node:crypto (RSA-OAEP, SHA-256) with the token public key is unwrapped by the token', async () => {
      vault = await Pkcs11KeyVault.open(opts());
      const { version } = await vault.createKey(OPS, 'kek', { size: 2048 });
      const publicKey = onToken(token, (p11, s) => {
        const [pub] = findByLabel(p11, s, `bulwark:kek:${version}`, p.CKO_PUBLIC_KEY);
        assert.ok(pub !== undefined);
        const [n, e] = p11.C_GetAttributeValue(s, pub, [{ type: p.CKA_MODULUS }, { type: p.CKA_PUBLIC_EXPONENT }]).map((a) => Buffer.from(a.value).toString('base64url'));
        assert.ok(n !== undefined && e !== undefined);
        return createPublicKey({ key: { kty: 'RSA', n, e }, format: 'jwk' });
      });
      const dek = randomBytes(32);
      const wrapped = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, dek);
      assert.deepEqual(await vault.unwrapKey(OPS, { name: 'kek', version }, wrapped), dek);
      const sha1 = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, dek);
      await rejectsWith(vault.unwrapKey(OPS, { name: 'kek', version }, sha1), 'UNWRAP_FAILED', 'OAEP with SHA-1 is not accepted');
    });

    test('a wrong PIN is a MASTER_KEY error that names neither PIN; the right one still opens', async () => {
      const wrong = randomBytes(8).toString('hex');
      process.env[token.pinEnv] = wrong;
      await assert.rejects(Pkcs11KeyVault.open(opts()), (e: unknown) => {
        assert.ok(e instanceof KeyVaultError);
        assert.equal(e.code, 'MASTER_KEY');
        assert.match(e.message, /CKR_PIN_INCORRECT/);
        const shown = `${e.message}\n${e.stack ?? ''}\n${String(e.cause)}\n${JSON.stringify(e)}`;
        assert.ok(!shown.includes(wrong) && !shown.includes(token.pin), 'no PIN in the error');
        return true;
      });
      process.env[token.pinEnv] = token.pin;
      vault = await Pkcs11KeyVault.open(opts());
      await vault.createKey(OPS, 'kek', { size: 2048 });
    });

    test('the PIN can come from a 0600 file; a file others can read is refused', async () => {
      const file = join(dir, 'pin');
      await writeFile(file, `${token.pin}\n`, { mode: 0o644 });
      await rejectsWith(Pkcs11KeyVault.open({ ...opts(), pin: { file } }), 'MASTER_KEY', 'mode 0644');
      await rm(file);
      await writeFile(file, `${token.pin}\n`, { mode: 0o600 });
      vault = await Pkcs11KeyVault.open({ ...opts(), pin: { file } });
      await vault.createKey(OPS, 'kek', { size: 2048 });
    });

    test('two vaults on one token (by label, by slot) share its login: closing one keeps the other working; another PIN is refused', async () => {
      vault = await Pkcs11KeyVault.open(opts());
      const slot = onToken(token, (p11, s) => Number(p11.C_GetSessionInfo(s).slotID.readBigUInt64LE()));
      const other = await Pkcs11KeyVault.open({ ...opts(), token: { slot }, stateDir: join(dir, 'other') });
      const k = await other.createKey(OPS, 'kek', { size: 2048 });
      const dek = randomBytes(32);
      const w = await other.wrapKey(OPS, 'kek', undefined, dek);
      process.env[token.pinEnv] = 'not-the-pin';
      await rejectsWith(Pkcs11KeyVault.open({ ...opts(), stateDir: join(dir, 'third') }), 'MASTER_KEY', 'a different PIN while logged in');
      process.env[token.pinEnv] = token.pin;
      await vault.close();
      vault = other;
      assert.deepEqual(await other.unwrapKey(OPS, k, w.wrapped), dek, 'still logged in');
    });

    test('concurrent wraps and unwraps share a bounded pool of sessions', async () => {
      vault = await Pkcs11KeyVault.open({ ...opts(), maxSessions: 2 });
      await vault.createKey(OPS, 'kek', { size: 2048 });
      const deks = Array.from({ length: 24 }, () => randomBytes(32));
      const v = vault;
      const wrapped = await Promise.all(deks.map((d) => v.wrapKey(OPS, 'kek', undefined, d)));
      const unwrapped = await Promise.all(wrapped.map((w) => v.unwrapKey(OPS, w.keyId, w.wrapped)));
      assert.deepEqual(unwrapped, deks);
    });

    test('close waits for unwraps in flight before it logs out and finalizes', async () => {
      const v = await Pkcs11KeyVault.open({ ...opts(), maxSessions: 2 });
      await v.createKey(OPS, 'kek', { size: 2048 });
      const dek = randomBytes(32);
      const w = await v.wrapKey(OPS, 'kek', undefined, dek);
      const pending = Array.from({ length: 6 }, () => v.unwrapKey(OPS, w.keyId, w.wrapped));
      await v.close();
      for (const d of await Promise.all(pending)) assert.deepEqual(d, dek);
    });

    test('an unknown token label is UNAVAILABLE', async () => {
      await rejectsWith(Pkcs11KeyVault.open({ ...opts(), token: { label: 'no-such-token' } }), 'UNAVAILABLE');
    });

    test('without allowRawRsa a token lacking OAEP-256 is refused; one that has it works', async () => {
      const strict = { ...opts(), allowRawRsa: false };
      try {
        vault = await Pkcs11KeyVault.open(strict);
      } catch (e) {
        assert.ok(e instanceof KeyVaultError && e.code === 'UNAVAILABLE' && /allowRawRsa/.test(e.message), String(e));
        return;
      }
      const k = await vault.createKey(OPS, 'kek', { size: 2048 });
      const dek = randomBytes(32);
      assert.deepEqual(await vault.unwrapKey(OPS, k, (await vault.wrapKey(OPS, 'kek', undefined, dek)).wrapped), dek);
    });

    test('editing state.json (re-enabling a disabled key) is detected as STORE_CORRUPT', async () => {
      vault = await Pkcs11KeyVault.open(opts());
      await vault.createKey(OPS, 'kek', { size: 2048 });
      await vault.setEnabled(OPS, 'kek', false);
      await vault.close();
      vault = undefined;
      const file = join(dir, 'vault', 'state.json');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, 'vault'))).mode & 0o777, 0o700);
      const text = await readFile(file, 'utf8');
      assert.ok(text.includes('"enabled":false'));
      await writeFile(file, text.replace('"enabled":false', '"enabled":true'));
      await rejectsWith(Pkcs11KeyVault.open(opts()), 'STORE_CORRUPT');
      await writeFile(file, text);
      vault = await Pkcs11KeyVault.open(opts());
      await rejectsWith(vault.wrapKey(OPS, 'kek', undefined, randomBytes(32)), 'KEY_DISABLED');
    });

    test('purge destroys both halves of every version on the token', async () => {
      vault = await Pkcs11KeyVault.open(opts());
      const v1 = await vault.createKey(OPS, 'kek', { size: 2048 });
      const v2 = await vault.rotateKey(OPS, 'kek');
      const count = (): number =>
        onToken(token, (p11, s) =>
          [v1.version, v2.version].reduce((n, v) => n + findByLabel(p11, s, `bulwark:kek:${v}`, p.CKO_PRIVATE_KEY).length + findByLabel(p11, s, `bulwark:kek:${v}`, p.CKO_PUBLIC_KEY).length, 0),
        );
      assert.equal(count(), 4);
      await vault.softDelete(OPS, 'kek');
      assert.equal(count(), 4, 'soft delete keeps the keys');
      await vault.purge(OPS, 'kek');
      assert.equal(count(), 0);
    });

    test('a soft-deleted key whose retention ended is destroyed on the token at the next change', async () => {
      let clock = Date.parse('2030-01-01T00:00:00Z');
      vault = await Pkcs11KeyVault.open({ ...opts(), retentionDays: 7, now: () => new Date(clock) });
      const { version } = await vault.createKey(OPS, 'old', { size: 2048 });
      const count = (): number => onToken(token, (p11, s) => findByLabel(p11, s, `bulwark:old:${version}`, p.CKO_PRIVATE_KEY).length);
      await vault.softDelete(OPS, 'old');
      clock += 7 * 86_400_000;
      assert.equal(count(), 1, 'nothing changed yet');
      await vault.createKey(OPS, 'new', { size: 2048 });
      assert.equal(count(), 0);
    });
  });
}
