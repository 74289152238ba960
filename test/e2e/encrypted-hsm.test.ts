/**
 * The real-client round trip on a registry whose key-encryption key lives in an HSM (issue 4):
 * SoftHSM2 holds a non-extractable RSA key, made beforehand by the operator (a customer-managed
 * key: Bulwark does not create it); skopeo pushes an OCI layout and pulls it back byte-exact,
 * podman pulls it; every data key is wrapped by the token's key, and nothing stored on disk
 * contains the plaintext.
 *
 * SoftHSM2 2.6 (Debian 12) cannot do RSA-OAEP with SHA-256 on the token, so the vault runs with
 * `encryption.pkcs11.allowRawRsa` (docs/encryption.md).
 */
import assert from 'node:assert/strict';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { Pkcs11KeyVault } from '../../src/keyvault/index.js';
import { buildImageLayout, hashBlob, layoutDescriptor } from '../testkit/oci-layout.js';
import { createSoftHsmToken, type SoftHsmToken } from '../testkit/softhsm.js';
import { bootstrapCredentials, cliPath, startServer, type Credentials, type RunningServer } from '../testkit/server.js';
import { describeWithTools, e2eTarget, loginArgs, makeClientEnv, podmanGlobalArgs, run, startTarget, tempDir, type ClientEnv, type TargetServer } from './tools.js';

const IDENTITY = 'bulwark-registry';
const KEY = 'hsm-kek';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

if (e2eTarget() === 'distribution') {
  test('skopeo on an HSM-encrypted registry', { skip: 'Bulwark only (E2E_TARGET=distribution)' }, () => undefined);
} else {
  describeWithTools('skopeo and podman on a registry encrypted with a SoftHSM2 key', ['skopeo', 'podman', 'softhsm2-util'], () => {
    let token: SoftHsmToken;
    let server: TargetServer;
    let client: ClientEnv;
    let work: string;
    let hsmEnv: Record<string, string>;

    before(async () => {
      token = await createSoftHsmToken();
      work = await tempDir('hsm');
      const stateDir = join(work, 'hsm-state');
      // The operator creates the customer-managed key on the token, then closes the vault.
      const operator = await Pkcs11KeyVault.open({
        audit: () => undefined,
        accessPolicies: { operator: ['manage', 'get'] },
        modulePath: token.modulePath,
        token: { label: token.tokenLabel },
        pin: { env: token.pinEnv },
        stateDir,
        allowRawRsa: true,
      });
      await operator.createKey('operator', KEY, { size: 2048 });
      await operator.close();
      hsmEnv = {
        SOFTHSM2_CONF: process.env.SOFTHSM2_CONF ?? '',
        BULWARK_ENCRYPTION_VAULT: 'pkcs11',
        BULWARK_ENCRYPTION_KEY: KEY,
        BULWARK_ENCRYPTION_IDENTITY: IDENTITY,
        BULWARK_ENCRYPTION_PKCS11_MODULE: token.modulePath,
        BULWARK_ENCRYPTION_PKCS11_TOKEN: token.tokenLabel,
        BULWARK_ENCRYPTION_PKCS11_PIN_ENV: 'BULWARK_HSM_PIN',
        BULWARK_HSM_PIN: token.pin,
        BULWARK_ENCRYPTION_PKCS11_STATE_DIR: stateDir,
        BULWARK_ENCRYPTION_PKCS11_ALLOW_RAW_RSA: 'true',
      };
      server = await startTarget({ env: hsmEnv });
      client = await makeClientEnv(server.host);
      if (server.admin !== undefined) await run('skopeo', loginArgs(client, server.host, server.admin.username), { env: client.env, input: server.admin.password });
    });
    after(async () => {
      await server.dispose();
      await client.dispose();
      await rm(work, { recursive: true, force: true });
      await token.cleanup();
    });

    const kekCounts = (dataDir: string): [string, string, number][] => {
      const db = new Database(join(dataDir, 'data-keys.db'), { readonly: true });
      try {
        return db
          .prepare<[], { kek_vault: string; kek_name: string; n: number }>('SELECT kek_vault, kek_name, COUNT(*) AS n FROM data_keys GROUP BY kek_vault, kek_name ORDER BY kek_vault')
          .all()
          .map((r) => [r.kek_vault, r.kek_name, r.n]);
      } finally {
        db.close();
      }
    };

    test('moving from the embedded vault to the HSM: old content stays readable, rotate re-wraps it all under the HSM key', async () => {
      const dataDir = join(work, 'migrating');
      const src = join(work, 'migrate-src');
      const image = await buildImageLayout(src, { tag: 'v1', layers: [{ sizeBytes: 64 * 1024, files: { 'a.txt': 'before the move\n' } }] });
      const copy = async (host: string, from: string, to: string): Promise<void> => {
        await run('skopeo', ['--policy', client.policyPath, 'copy', '--src-tls-verify=false', '--dest-tls-verify=false', from, to], { env: client.env, timeoutMs: 300_000 });
      };
      const login = async (s: RunningServer): Promise<Credentials> => {
        const admin = await bootstrapCredentials(s.dataDir);
        await run('skopeo', loginArgs(client, s.host, admin.username), { env: client.env, input: admin.password });
        return admin;
      };
      // 1. The default: the embedded vault.
      const before = await startServer({ dataDir, auth: true });
      try {
        await login(before);
        await copy(before.host, `oci:${src}:v1`, `docker://${before.host}/moved/app:v1`);
      } finally {
        await before.stop();
      }
      assert.deepEqual(kekCounts(dataDir).map(([v]) => v), ['local']);
      // 2. One configuration change: the HSM key. Old content is still served.
      const after = await startServer({ dataDir, auth: true, env: hsmEnv });
      try {
        const admin = await login(after);
        const back = join(work, 'migrate-back-1');
        await copy(after.host, `docker://${after.host}/moved/app:v1`, `oci:${back}:v1`);
        assert.equal((await layoutDescriptor(back, 'v1')).digest, image.manifestDigest);
        // 3. Re-wrap everything under the HSM key, online.
        const cli = await run(process.execPath, [cliPath, 'encryption', 'rotate', '--json'], {
          env: { ...process.env, BULWARK_REGISTRY: `http://${after.host}`, BULWARK_USERNAME: admin.username, BULWARK_PASSWORD: admin.password, BULWARK_CONFIG_DIR: join(work, 'no-login') },
          timeoutMs: 120_000,
        });
        const result = JSON.parse(cli.stdout) as { failed: number; rewrapped: number; target: { vault: string } };
        assert.equal(result.failed, 0);
        assert.equal(result.target.vault, 'pkcs11');
        assert.ok(result.rewrapped >= 3, `config, layer and manifest re-wrapped: ${cli.stdout}`);
        assert.deepEqual(kekCounts(dataDir).map(([v, n]) => [v, n]), [['pkcs11', KEY]]);
        const again = join(work, 'migrate-back-2');
        await copy(after.host, `docker://${after.host}/moved/app:v1`, `oci:${again}:v1`);
        for (const blob of [image.config, ...image.layers]) assert.equal(await hashBlob(again, blob.digest), blob.digest, `blob ${blob.digest} after the move`);
      } finally {
        await after.stop();
      }
    });

    test('push and pull back byte-exact; data keys are wrapped by the token key; no plaintext on disk', async () => {
      const marker = 'BULWARK-HSM-PLAINTEXT-MARKER';
      const src = join(work, 'src');
      const image = await buildImageLayout(src, {
        tag: 'v1',
        layers: [{ sizeBytes: 3 * 1024 * 1024, files: { 'marker.txt': `${marker}\n`.repeat(1000) } }, { sizeBytes: 8192, files: { 'etc/motd': 'hsm\n' } }],
      });
      const remote = `docker://${server.host}/hsm/app:v1`;
      await run('skopeo', ['--policy', client.policyPath, 'copy', '--dest-tls-verify=false', `oci:${src}:v1`, remote], { env: client.env, timeoutMs: 300_000 });
      const back = join(work, 'back');
      await run('skopeo', ['--policy', client.policyPath, 'copy', '--src-tls-verify=false', remote, `oci:${back}:v1`], { env: client.env, timeoutMs: 300_000 });
      assert.equal((await layoutDescriptor(back, 'v1')).digest, image.manifestDigest);
      for (const blob of [image.config, ...image.layers]) assert.equal(await hashBlob(back, blob.digest), blob.digest, `blob ${blob.digest}`);
      await run('podman', [...podmanGlobalArgs(client), 'pull', '--tls-verify=false', `${server.host}/hsm/app:v1`], { env: client.env, timeoutMs: 300_000 });

      const db = new Database(join(server.dataDir, 'data-keys.db'), { readonly: true });
      try {
        const rows = db.prepare<[], { kek_vault: string; kek_name: string; n: number }>('SELECT kek_vault, kek_name, COUNT(*) AS n FROM data_keys GROUP BY kek_vault, kek_name').all();
        assert.deepEqual(rows.map((r) => [r.kek_vault, r.kek_name]), [['pkcs11', KEY]], 'every data key is wrapped by the HSM key');
        assert.ok((rows[0]?.n ?? 0) >= 4, `blobs and the manifest have data keys: ${JSON.stringify(rows)}`);
      } finally {
        db.close();
      }
      // The layer is gzip-compressed, so look for its digest-named bytes instead: the config JSON.
      const config = await readFile(join(src, 'blobs', 'sha256', image.config.digest.slice(7)));
      const needle = config.subarray(0, Math.min(48, config.length));
      for (const f of await filesUnder(join(server.dataDir, 'blobs'))) assert.equal((await readFile(f)).indexOf(needle), -1, `plaintext config bytes in ${f}`);
    });
  });
}
