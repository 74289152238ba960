/**
 * `bulwark fsck` as an operator runs it: it finds a blob whose bytes no longer match its digest
 * and a manifest whose stored bytes were altered, exits 1, and with --repair quarantines the bad
 * blob and removes the records that can no longer be served; afterwards the server answers
 * BLOB_UNKNOWN / MANIFEST_UNKNOWN instead of serving corrupt content, and fsck is clean.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { OciClient, imageManifest } from '../testkit/oci-client.js';
import { runFsck } from '../testkit/process-probe.js';
import { cliPath, startServer } from '../testkit/server.js';

/** The name the blob's bytes are stored under: its ciphertext's digest when encrypted. */
function storedName(dataDir: string, digest: string): string {
  const path = join(dataDir, 'data-keys.db');
  if (!existsSync(path)) return digest;
  const db = new Database(path, { readonly: true });
  try {
    const row = db.prepare<[string], { cipher_digest: string }>("SELECT cipher_digest FROM data_keys WHERE kind = 'blob' AND digest = ?").get(digest);
    assert.ok(row !== undefined, `no data key record for ${digest}`);
    return row.cipher_digest;
  } finally {
    db.close();
  }
}

function fsckRepair(dataDir: string): Promise<number> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, 'fsck', '--repair', '--data-dir', dataDir], { timeout: 60_000 }, (err) => {
      resolve(err === null ? 0 : typeof err.code === 'number' ? err.code : -1);
    });
  });
}

test('fsck reports corrupt blobs and manifests, --repair quarantines them, and the server stops serving them', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'bulwark-fsck-'));
  try {
    let server = await startServer({ dataDir });
    let client = new OciClient(server.url);
    const good = await client.pushBlob('ops/app', randomBytes(4096), 'monolithic');
    const bad = await client.pushBlob('ops/app', randomBytes(8192), 'chunked', 4096);
    const config = await client.pushBlob('ops/app', Buffer.from('{}'), 'monolithic');
    const manifest = imageManifest(config, [good]);
    const manifestDigest = await client.putManifest('ops/app', 'v1', manifest);
    await server.stop();

    assert.equal((await runFsck(dataDir)).exitCode, 0, 'a fresh data folder is clean');

    // Flip the bytes of one blob on disk (its ciphertext: encryption is on by default), and of
    // the manifest inside SQLite.
    const hex = storedName(dataDir, bad.digest).slice('sha256:'.length);
    const blobPath = join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
    await writeFile(blobPath, randomBytes(8192));
    const db = new Database(join(dataDir, 'metadata.db'));
    db.prepare('UPDATE manifest_content SET body = ? WHERE digest = ?').run(Buffer.from(manifest.toString().replace('{', '{ ')), manifestDigest);
    db.close();

    const found = await runFsck(dataDir);
    assert.equal(found.exitCode, 1);
    const kinds = found.report.problems.map((p) => `${p.kind} ${p.digest}`).sort();
    assert.deepEqual(kinds, [`corrupt-blob ${bad.digest}`, `corrupt-manifest ${manifestDigest}`, `missing-blob ${bad.digest}`].sort());

    assert.equal(await fsckRepair(dataDir), 1, '--repair still exits 1: it found problems');
    assert.ok(existsSync(join(dataDir, 'quarantine', `sha256-${hex}`)), 'the corrupt blob is kept aside for investigation');
    assert.ok(!existsSync(blobPath));
    assert.equal((await runFsck(dataDir)).exitCode, 0, 'clean after repair');

    server = await startServer({ dataDir });
    client = new OciClient(server.url);
    assert.equal((await client.request('GET', `/v2/ops/app/blobs/${bad.digest}`)).status, 404);
    assert.equal((await client.request('GET', `/v2/ops/app/manifests/${manifestDigest}`)).status, 404);
    assert.equal((await client.hashBlob('ops/app', good.digest)).digest, good.digest, 'intact content is untouched');
    await server.stop();
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});
