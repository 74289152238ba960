/**
 * Crash safety (ARCHITECTURE.md principle 2: "An acknowledged push is never lost; a stored
 * object never disagrees with its digest"). Several rounds: concurrent clients push blobs of
 * random sizes (monolithic and chunked), cross-repository mounts and manifests, the server is
 * killed with SIGKILL at a random moment, `bulwark fsck` checks the crashed data folder, the
 * server restarts on it, and everything acknowledged (201) in any round must still be served
 * byte-exact. CRASH_SEED=<n> repeats a run's random choices (sizes, modes, kill delays); the
 * interleaving of the clients still varies with timing.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { startServer, type RunningServer } from '../testkit/server.js';
import { OCI_MANIFEST, OciClient, imageManifest, sha256, type BlobRef } from '../testkit/oci-client.js';
import { runFsck, sleep } from '../testkit/process-probe.js';
import { prng } from '../testkit/prng.js';

const ROUNDS = 5;
const CLIENTS = 8;
const KiB = 1024;
const MiB = 1024 * KiB;


interface AckedBlob extends BlobRef {
  readonly repo: string;
  readonly how: string;
}
interface AckedManifest {
  readonly repo: string;
  readonly tag: string;
  readonly digest: string;
  readonly body: Buffer;
  readonly refs: readonly BlobRef[];
}

const acked = { blobs: [] as AckedBlob[], manifests: [] as AckedManifest[] };
const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
const rand = prng(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
/** log-uniform between 2 KiB and 4 MiB: mostly small blobs, some multi-chunk ones */
const blobSize = (): number => Math.round(Math.exp(Math.log(2 * KiB) + rand() * (Math.log(4 * MiB) - Math.log(2 * KiB))));

let server: RunningServer | undefined;
after(async () => {
  // Restarts pass the data folder in, so dispose() keeps it: remove it here.
  await server?.dispose();
  if (server !== undefined) await rm(server.dataDir, { recursive: true, force: true });
});

/** One client: push layers, a config and a manifest, again and again, until the server dies. */
async function clientLoop(url: string, round: number, c: number, killed: () => boolean): Promise<number> {
  const client = new OciClient(url, { maxSockets: 2 });
  const repo = `crash/r${round % 2}/c${c}`;
  let seq = 0;
  try {
    while (!killed()) {
      const layers: BlobRef[] = [];
      const nLayers = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < nLayers; i++) {
        const earlier = acked.blobs.filter((b) => b.repo !== repo);
        if (earlier.length > 0 && rand() < 0.15) {
          // Cross-repository mount of a blob acknowledged earlier (spec "Mounting a blob").
          const src = pick(earlier);
          await client.expect('POST', `/v2/${repo}/blobs/uploads/?mount=${src.digest}&from=${src.repo}`, 201);
          acked.blobs.push({ repo, digest: src.digest, size: src.size, how: 'mount' });
          layers.push(src);
          continue;
        }
        const mode = rand() < 0.5 ? 'monolithic' : 'chunked';
        const chunk = pick([64 * KiB, 256 * KiB, 1 * MiB]);
        const ref = await client.pushBlob(repo, randomBytes(blobSize()), mode, chunk);
        acked.blobs.push({ repo, ...ref, how: mode });
        layers.push(ref);
      }
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', round, client: c, seq, nonce: randomBytes(8).toString('hex') }));
      const configRef = await client.pushBlob(repo, config, 'monolithic');
      acked.blobs.push({ repo, ...configRef, how: 'config' });
      const body = imageManifest(configRef, layers);
      const tag = `r${round}-c${c}-${seq++}`;
      const digest = await client.putManifest(repo, tag, body);
      assert.equal(digest, sha256(body), 'Docker-Content-Digest of the manifest PUT');
      acked.manifests.push({ repo, tag, digest, body, refs: [configRef, ...layers] });
    }
  } catch (e) {
    // Network errors are what a kill looks like; anything before the kill, or any HTTP error status, is a bug.
    const isNetwork = e instanceof Error && !('status' in e) && e.name !== 'AssertionError';
    if (!(killed() && isNetwork)) throw e;
  } finally {
    client.close();
  }
  return seq;
}

/** Everything acknowledged so far is served byte-exact, and each manifest's blobs are present. */
async function verifyAcked(url: string): Promise<void> {
  const client = new OciClient(url, { maxSockets: 8 });
  try {
    const blobs = [...new Map(acked.blobs.map((b) => [`${b.repo}@${b.digest}`, b])).values()];
    for (let i = 0; i < blobs.length; i += 8) {
      await Promise.all(
        blobs.slice(i, i + 8).map(async (b) => {
          const got = await client.hashBlob(b.repo, b.digest, 30_000);
          assert.equal(got.status, 200, `acknowledged blob ${b.repo}@${b.digest} (${b.how}, ${b.size} bytes) is served`);
          assert.equal(got.size, b.size, `size of ${b.repo}@${b.digest}`);
          assert.equal(got.digest, b.digest, `bytes of ${b.repo}@${b.digest} hash to its digest`);
        }),
      );
    }
    for (const m of acked.manifests) {
      for (const ref of [m.tag, m.digest]) {
        const r = await client.request('GET', `/v2/${m.repo}/manifests/${ref}`, { headers: { accept: OCI_MANIFEST }, timeoutMs: 30_000 });
        assert.equal(r.status, 200, `acknowledged manifest ${m.repo}:${ref} is served`);
        assert.ok(r.body.equals(m.body), `manifest ${m.repo}:${ref} is byte-exact`);
        assert.equal(r.headers['docker-content-digest'], m.digest);
      }
      for (const b of m.refs) {
        const h = await client.request('HEAD', `/v2/${m.repo}/blobs/${b.digest}`, { timeoutMs: 30_000 });
        assert.equal(h.status, 200, `blob ${b.digest} referenced by ${m.repo}:${m.tag} exists`);
        assert.equal(h.headers['content-length'], String(b.size));
      }
    }
  } finally {
    client.close();
  }
}

async function assertFsckClean(dataDir: string, when: string): Promise<void> {
  const { exitCode, report } = await runFsck(dataDir);
  assert.deepEqual(report.problems, [], `fsck ${when}: no problems`);
  assert.equal(exitCode, 0, `fsck ${when} exits 0`);
}

test(`acknowledged pushes survive kill -9 at random moments (${ROUNDS} rounds × ${CLIENTS} clients)`, { timeout: 240_000 }, async () => {
  console.log(`crash test seed ${seed} (CRASH_SEED=${seed} replays it)`);
  server = await startServer();
  const dataDir = server.dataDir;
  for (let round = 0; round < ROUNDS; round++) {
    const before = { blobs: acked.blobs.length, manifests: acked.manifests.length };
    let killed = false;
    const url = server.url;
    const clients = Array.from({ length: CLIENTS }, (_, c) => clientLoop(url, round, c, () => killed));
    // Kill 50–800 ms after the round's first acknowledged manifest (or after 5 s without one), so
    // every round has acknowledged work to lose and is killed in the middle of more.
    const delay = 50 + Math.floor(rand() * 750);
    const failure = Promise.race(clients.map((p) => p.then(() => new Promise<never>(() => undefined))));
    const firstManifest = async (): Promise<void> => {
      for (const until = Date.now() + 5000; acked.manifests.length === before.manifests && Date.now() < until; ) await sleep(10);
    };
    await Promise.race([firstManifest().then(() => sleep(delay)), failure]);
    killed = true;
    await server.kill();
    await Promise.all(clients);
    console.log(
      `round ${round}: killed ${delay} ms after the first manifest; acknowledged ${acked.blobs.length - before.blobs} blobs, ${acked.manifests.length - before.manifests} manifests`,
    );

    await assertFsckClean(dataDir, `after the kill in round ${round}`);
    server = await startServer({ dataDir });
    await verifyAcked(server.url);
  }
  assert.ok(acked.manifests.length >= ROUNDS, `manifests were acknowledged before the kills (${acked.manifests.length})`);
  await server.stop();
  assert.equal(server.child.exitCode, 0, 'graceful stop exits 0');
  await assertFsckClean(dataDir, 'after the final stop');
  console.log(`total: ${acked.blobs.length} blobs and ${acked.manifests.length} manifests acknowledged and verified`);
});
