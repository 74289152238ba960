import assert from 'node:assert/strict';
import { randomBytes, type KeyObject } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { LocalKeyVault, MemoryKeyVault, type KeyVault, type KeyVaultOptions, type LocalKeyVaultOptions } from '../../src/keyvault/index.js';
import { rejectsWith, runKeyVaultSuite } from '../testkit/key-vault-suite.js';

runKeyVaultSuite('memory', async (options) => ({ vault: new MemoryKeyVault(options), cleanup: async () => {} }));

runKeyVaultSuite('local', async (options) => {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-kv-'));
  const local: LocalKeyVaultOptions = { ...options, dir: join(dir, 'vault'), masterKey: { file: join(dir, 'master.key') } };
  let current: KeyVault = await LocalKeyVault.open(local);
  return {
    get vault() {
      return current;
    },
    reopen: async () => {
      await current.close();
      current = await LocalKeyVault.open(local);
      return current;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('LocalKeyVault on disk', () => {
  const OPS = 'operator';
  const base: KeyVaultOptions = { audit: () => {}, accessPolicies: { [OPS]: ['manage', 'get', 'wrapKey', 'unwrapKey'] } };
  let dir: string;
  let vault: KeyVault | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulwark-kv-disk-'));
  });
  afterEach(async () => {
    await vault?.close();
    vault = undefined;
    await rm(dir, { recursive: true, force: true });
  });
  const withFile = (): LocalKeyVaultOptions => ({ ...base, dir: join(dir, 'vault'), masterKey: { file: join(dir, 'master.key') } });

  test('the master key file is created 0600 with 32 random bytes, and keys.json is 0600 too', async () => {
    const old = process.umask(0o022);
    try {
      vault = await LocalKeyVault.open(withFile());
      await vault.createKey(OPS, 'kek', { size: 2048 });
    } finally {
      process.umask(old);
    }
    assert.equal((await stat(join(dir, 'master.key'))).mode & 0o777, 0o600);
    assert.equal(Buffer.from(await readFile(join(dir, 'master.key'), 'utf8'), 'base64').length, 32);
    assert.equal((await stat(join(dir, 'vault', 'keys.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'vault'))).mode & 0o777, 0o700);
  });

  test('a master key file readable by group or others is refused', async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      await writeFile(join(dir, 'master.key'), randomBytes(32).toString('base64'));
      await chmod(join(dir, 'master.key'), mode);
      await rejectsWith(LocalKeyVault.open(withFile()), 'MASTER_KEY', mode.toString(8));
    }
  });

  test('a malformed master key is refused (file and environment)', async () => {
    await writeFile(join(dir, 'master.key'), randomBytes(16).toString('base64'), { mode: 0o600 });
    await rejectsWith(LocalKeyVault.open(withFile()), 'MASTER_KEY', '16-byte file');
    await rejectsWith(LocalKeyVault.open({ ...base, dir, masterKey: { env: 'BULWARK_TEST_KV_UNSET' } }), 'MASTER_KEY', 'unset variable');
    process.env.BULWARK_TEST_KV_SHORT = 'c2hvcnQ=';
    await rejectsWith(LocalKeyVault.open({ ...base, dir, masterKey: { env: 'BULWARK_TEST_KV_SHORT' } }), 'MASTER_KEY', 'short variable');
  });

  test('a master key from the environment opens the store; a wrong one cannot', async () => {
    process.env.BULWARK_TEST_KV_KEY = randomBytes(32).toString('base64');
    process.env.BULWARK_TEST_KV_OTHER = randomBytes(32).toString('base64');
    const opts: LocalKeyVaultOptions = { ...base, dir, masterKey: { env: 'BULWARK_TEST_KV_KEY' } };
    vault = await LocalKeyVault.open(opts);
    const w = await vault.wrapKey(OPS, (await vault.createKey(OPS, 'kek', { size: 2048 })).name, undefined, randomBytes(32));
    await vault.close();
    await rejectsWith(LocalKeyVault.open({ ...opts, masterKey: { env: 'BULWARK_TEST_KV_OTHER' } }), 'MASTER_KEY');
    vault = await LocalKeyVault.open(opts);
    assert.equal((await vault.unwrapKey(OPS, w.keyId, w.wrapped)).length, 32);
  });

  test('an empty store already rejects a wrong master key', async () => {
    process.env.BULWARK_TEST_KV_A = randomBytes(32).toString('base64');
    process.env.BULWARK_TEST_KV_B = randomBytes(32).toString('base64');
    await (await LocalKeyVault.open({ ...base, dir, masterKey: { env: 'BULWARK_TEST_KV_A' } })).close();
    await rejectsWith(LocalKeyVault.open({ ...base, dir, masterKey: { env: 'BULWARK_TEST_KV_B' } }), 'MASTER_KEY');
  });

  test('keys.json never holds a private key in the clear (PEM, DER, base64, hex or JWK)', async () => {
    vault = await LocalKeyVault.open(withFile());
    await vault.createKey(OPS, 'kek', { size: 2048 });
    await vault.rotateKey(OPS, 'kek');
    // Test-only peek at the in-memory private keys, to know exactly which bytes must not be on disk.
    const keys = (vault as unknown as { keys: ReadonlyMap<string, { versions: { privateKey: KeyObject }[] }> }).keys;
    const text = await readFile(join(dir, 'vault', 'keys.json'), 'utf8');
    const raw = await readFile(join(dir, 'vault', 'keys.json'));
    assert.ok(!text.includes('PRIVATE KEY'));
    const versions = keys.get('kek')?.versions ?? [];
    assert.equal(versions.length, 2);
    for (const { privateKey } of versions) {
      const der = privateKey.export({ format: 'der', type: 'pkcs8' });
      const jwk = privateKey.export({ format: 'jwk' });
      for (const needle of [der.toString('base64'), der.toString('hex'), der.subarray(-64).toString('base64'), String(jwk.d), String(jwk.p)]) {
        assert.ok(!text.includes(needle), 'a private key encoding is in keys.json');
      }
      assert.ok(!raw.includes(der.subarray(-64)));
      const doc = JSON.parse(text) as { body: { keys: { versions: { sealed: string }[] }[] } };
      for (const v of doc.body.keys.flatMap((k) => k.versions)) assert.ok(!Buffer.from(v.sealed, 'base64').includes(der.subarray(-64)));
    }
  });

  test('editing keys.json (re-enabling a disabled key) is detected; the store refuses to open', async () => {
    vault = await LocalKeyVault.open(withFile());
    await vault.createKey(OPS, 'kek', { size: 2048 });
    await vault.setEnabled(OPS, 'kek', false);
    await vault.close();
    vault = undefined;
    const file = join(dir, 'vault', 'keys.json');
    const text = await readFile(file, 'utf8');
    assert.ok(text.includes('"enabled":false'));
    await writeFile(file, text.replace('"enabled":false', '"enabled":true'));
    await rejectsWith(LocalKeyVault.open(withFile()), 'STORE_CORRUPT');
    await writeFile(file, '{not json');
    await rejectsWith(LocalKeyVault.open(withFile()), 'STORE_CORRUPT');
  });
});
