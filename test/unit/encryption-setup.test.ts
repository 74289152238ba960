/**
 * Building encryption from configuration (src/encryption/setup.ts): the embedded vault and its
 * key appear on first start with owner-only files, and a data folder is never switched between
 * plaintext and encrypted behind the operator's back.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { assertNotEncrypted, createEncryption } from '../../src/encryption/index.js';
import { FsBlobStore } from '../../src/storage/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bulwark-enc-setup-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const config = (overrides: Record<string, unknown> = {}): ReturnType<typeof loadConfig> => loadConfig({ overrides: { dataDir: dir, 'encryption.local.keySize': '2048', ...overrides } });

test('first start: the master key and the vault are created owner-only, with the key-encryption key', async () => {
  const enc = await createEncryption(config(), { audit: () => undefined, persistent: true });
  try {
    assert.equal((await stat(join(dir, 'master.key'))).mode & 0o777, 0o600, 'master.key is 0600');
    assert.equal((await stat(join(dir, 'data-keys.db'))).mode & 0o777, 0o600, 'data-keys.db is 0600');
    const vault = enc.vaults.get('local');
    assert.ok(vault !== undefined, 'the embedded vault is open');
    assert.equal((await vault.getKey('bulwark-registry', 'bulwark-kek')).size, 2048);
  } finally {
    await enc.close();
  }
});

test('encryption is refused over a folder that holds plaintext blobs, and turning it off over encrypted content too', async () => {
  await mkdir(join(dir, 'blobs', 'sha256', 'ab'), { recursive: true });
  await writeFile(join(dir, 'blobs', 'sha256', 'ab', 'ab'.padEnd(64, '0')), 'plaintext');
  await assert.rejects(createEncryption(config(), { audit: () => undefined, persistent: true }), /holds unencrypted blobs/);
  await rm(join(dir, 'blobs'), { recursive: true });
  const enc = await createEncryption(config(), { audit: () => undefined, persistent: true });
  await enc.close();
  assert.throws(() => assertNotEncrypted(config({ 'encryption.enabled': false })), /holds encrypted content/);
});

test('the empty fan-out folders a store makes at its first start are no plaintext blobs; one blob among them is', async () => {
  await (await new FsBlobStore(dir).init()).close();
  const enc = await createEncryption(config(), { audit: () => undefined, persistent: true });
  await enc.close();
  await rm(join(dir, 'data-keys.db'));
  await writeFile(join(dir, 'blobs', 'sha512', 'ff', 'ff'.padEnd(128, '0')), 'plaintext');
  await assert.rejects(createEncryption(config(), { audit: () => undefined, persistent: true }), /holds unencrypted blobs/);
});

test('a customer-managed key that does not exist stops the start with a clear message', async () => {
  await assert.rejects(
    createEncryption(config({ 'encryption.key': 'missing-kek/0123' }), { audit: () => undefined, persistent: true }),
    /failed to open the key-encryption key "missing-kek\/0123" in the local vault/,
  );
});
