/**
 * Property-based fuzzing of the built server over loopback: thousands of malformed requests
 * (test/testkit/malformed-requests.ts) against a registry holding real content. Whatever the
 * request, the server never answers 5xx, never dies, answers every error with a body in the OCI
 * envelope `{"errors":[{code,message}]}`, and the content pushed beforehand is unchanged; `bulwark
 * fsck` is clean afterwards. FUZZ_RUNS / FUZZ_SEED / FUZZ_TIME_MS tune a run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { startServer, type RunningServer } from '../testkit/server.js';
import { OCI_MANIFEST, OciClient, imageManifest, type BlobRef } from '../testkit/oci-client.js';
import { rawExchange } from '../testkit/raw-http.js';
import { runFsck } from '../testkit/process-probe.js';
import { asRaw, describeRequest, malformedRequestArb, nodeCanSend, type KnownState, type MalformedRequest } from '../testkit/malformed-requests.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2500);
const TIME_LIMIT_MS = Number(process.env.FUZZ_TIME_MS ?? 100_000);
const SAFE = 'keep/safe';
const TARGET = 'fuzz/target';

let server: RunningServer;
let client: OciClient;
const pristine = { blobs: [] as BlobRef[], manifests: [] as Array<{ tag: string; digest: string; body: Buffer }> };
let known: KnownState;

before(async () => {
  server = await startServer({ env: { BULWARK_HTTP_IDLE_TIMEOUT_MS: '2000', BULWARK_HTTP_HEADERS_TIMEOUT_MS: '2000' } });
  client = new OciClient(server.url, { maxSockets: 4 });
  const small = randomBytes(1024);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layers = [await client.pushBlob(SAFE, small, 'monolithic'), await client.pushBlob(SAFE, randomBytes(300 * 1024), 'chunked', 64 * 1024)];
  const big = await client.pushBlob(SAFE, randomBytes(1536 * 1024), 'chunked', 512 * 1024);
  const cfg = await client.pushBlob(SAFE, config, 'monolithic');
  pristine.blobs.push(...layers, big, cfg);
  for (const [tag, refs] of [['pristine-1', layers], ['pristine-2', [big]]] as const) {
    const body = imageManifest(cfg, refs, { 'org.example.tag': tag });
    pristine.manifests.push({ tag, body, digest: await client.putManifest(SAFE, tag, body) });
  }
  // The fuzz target repository holds the same content (shared blob files) and open sessions.
  for (const b of pristine.blobs) await client.expect('POST', `/v2/${TARGET}/blobs/uploads/?mount=${b.digest}&from=${SAFE}`, 201);
  const first = pristine.manifests[0];
  assert.ok(first !== undefined);
  for (const tag of ['latest', 'v1']) await client.putManifest(TARGET, tag, first.body);
  const sessions = [await client.startUpload(TARGET), await client.startUpload(TARGET), await client.startUpload(SAFE)];
  known = {
    repos: [SAFE, TARGET, 'fuzz/other'],
    digests: [...pristine.blobs.map((b) => b.digest), ...pristine.manifests.map((m) => m.digest)],
    tags: ['latest', 'v1', 'pristine-1', 'pristine-2'],
    uploadIds: sessions.map((s) => s.split('/').pop() ?? ''),
    manifests: pristine.manifests.map((m) => m.body),
    blobs: [small, config],
  };
});

after(async () => {
  client.close();
  await server.dispose();
});

/** Requests that would legitimately change the pristine repository are sent to the target instead. */
function protect(r: MalformedRequest): MalformedRequest {
  const retarget = (s: string): string => s.split(`/v2/${SAFE}/`).join(`/v2/${TARGET}/`);
  if (r.kind === 'raw') return { ...r, bytes: Buffer.from(retarget(r.bytes.toString('latin1')), 'latin1') };
  return r.method === 'PUT' || r.method === 'DELETE' ? { ...r, path: retarget(r.path) } : r;
}

/** A response is acceptable when it is not 5xx and any error body is the OCI envelope. */
function checkResponse(what: string, status: number, body: Buffer, method: string): void {
  assert.ok(status >= 100 && status < 500, `${what}\n→ status ${status}: ${body.toString().slice(0, 500)}`);
  if (status < 400 || body.length === 0) return;
  assert.notEqual(method, 'HEAD', `${what}\n→ a HEAD response carries no body`);
  let doc: { errors?: Array<{ code?: unknown; message?: unknown }> };
  try {
    doc = JSON.parse(body.toString()) as typeof doc;
  } catch {
    assert.fail(`${what}\n→ ${status} with a body that is not JSON: ${body.toString().slice(0, 300)}`);
  }
  assert.ok(Array.isArray(doc.errors) && doc.errors.length > 0, `${what}\n→ ${status} body is not the OCI envelope: ${body.toString().slice(0, 300)}`);
  for (const e of doc.errors) {
    assert.ok(typeof e.code === 'string' && /^[A-Z_]+$/.test(e.code), `${what}\n→ error code ${String(e.code)}`);
    assert.equal(typeof e.message, 'string', `${what}\n→ error message`);
  }
}

let previous = '';
const stats = { sent: 0, raw: 0, noResponse: 0, byStatus: new Map<number, number>() };
/**
 * `<repo>@<digest>` of blob links a fuzz DELETE removed (202), or may have (a raw DELETE whose
 * answer never came): the API allows it even under a manifest.
 */
const deletedBlobLinks = new Set<string>();

function record(method: string, path: string, status: number): void {
  stats.byStatus.set(status, (stats.byStatus.get(status) ?? 0) + 1);
  const m = /^\/v2\/(.+)\/blobs\/(sha(?:256|512):[a-f0-9]+)$/.exec(path.split('?')[0] ?? '');
  if (method === 'DELETE' && status === 202 && m !== null) deletedBlobLinks.add(`${m[1]}@${m[2]}`);
}

async function send(input: MalformedRequest): Promise<void> {
  const generated = protect(input);
  const r = generated.kind === 'http' && !nodeCanSend(generated) ? asRaw(generated) : generated;
  const what = describeRequest(r);
  stats.sent++;
  if (r.kind === 'raw') {
    stats.raw++;
    // Raw bytes may carry more than one request, and the server may close the connection (on the
    // bytes after a request) before it answers one it already carried out: a blob DELETE there has
    // an unknown outcome, and may have removed its link.
    for (const m of r.bytes.toString('latin1').matchAll(/DELETE (\/v2\/\S+\/blobs\/sha(?:256|512):[a-f0-9]+) /g)) {
      const blob = /^\/v2\/(.+)\/blobs\/(\S+)$/.exec(m[1] ?? '');
      if (blob !== null) deletedBlobLinks.add(`${blob[1]}@${blob[2]}`);
    }
    const res = await rawExchange(server.port, (s) => void s.end(r.bytes), { timeoutMs: 10_000 });
    assert.ok(res.closedByServer || res.response !== undefined, `${what}\n→ neither an answer nor a close within 10 s`);
    if (res.response === undefined) {
      stats.noResponse++;
      return;
    }
    const [method = '', path = ''] = r.bytes.subarray(0, r.bytes.indexOf('\r\n')).toString('latin1').split(' ');
    record(method, path, res.response.status);
    // A request line the parser rejected has no trustworthy method: HEAD's no-body rule is not checked.
    checkResponse(what, res.response.status, res.response.body, 'raw');
    return;
  }
  const body = r.body === undefined ? undefined : r.chunked ? (async function* (b: Buffer) { yield b; })(r.body) : r.body;
  // An explicit Transfer-Encoding makes node frame a streamed body for every method (GET included).
  const headers = body !== undefined && r.chunked ? { ...r.headers, 'transfer-encoding': 'chunked' } : r.headers;
  const res = await client.request(r.method, r.path, { headers, ...(body !== undefined ? { body } : {}), timeoutMs: 15_000 }).catch((e: unknown) => {
    throw new Error(`${what}\n→ ${(e as Error).message}\n(previous: ${previous})`);
  });
  previous = `${what.slice(0, 400)} → ${res.status} connection=${String(res.headers.connection)}`;
  record(r.method, r.path, res.status);
  checkResponse(what, res.status, res.body, r.method);
}

async function assertAlive(): Promise<void> {
  assert.equal(server.child.exitCode, null, 'server process still running');
  assert.equal(server.child.signalCode, null, 'server process not killed');
  assert.equal((await client.request('GET', '/v2/', { timeoutMs: 10_000 })).status, 200, 'GET /v2/ still answers 200');
}

test(`~${RUNS} malformed requests: no 5xx, no crash, OCI envelopes, content unchanged, fsck clean`, { timeout: TIME_LIMIT_MS + 120_000 }, async () => {
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(malformedRequestArb(known), async (req) => {
      await send(req);
      if (stats.sent % 250 === 0) await assertAlive();
    }),
    {
      numRuns: RUNS,
      ...(process.env.FUZZ_SEED !== undefined ? { seed: Number(process.env.FUZZ_SEED) } : {}),
      plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT_MS), fc.timeout(30_000)],
    },
  );
  const histogram = [...stats.byStatus.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ');
  console.log(`fuzz: ${stats.sent} requests (${stats.raw} raw, ${stats.noResponse} closed without answer) in ${Date.now() - started} ms; ${histogram}`);
  assert.ok(stats.sent >= Math.min(RUNS, 500), `enough requests ran before the time limit (${stats.sent})`);
  await assertAlive();

  // The pristine repository is exactly as pushed: every blob hashes to its digest, manifests byte-exact.
  for (const b of pristine.blobs) {
    const got = await client.hashBlob(SAFE, b.digest, 30_000);
    assert.deepEqual([got.status, got.digest, got.size], [200, b.digest, b.size], `pristine blob ${b.digest}`);
  }
  for (const m of pristine.manifests) {
    for (const ref of [m.tag, m.digest]) {
      const r = await client.request('GET', `/v2/${SAFE}/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(r.status, 200, `pristine manifest ${ref}`);
      assert.ok(r.body.equals(m.body), `pristine manifest ${ref} is byte-exact`);
    }
  }
  await server.stop();
  assert.equal(server.child.exitCode, 0, 'graceful stop after fuzzing exits 0');
  // A manifest whose blob link a fuzz DELETE removed is reported by fsck, as it should be; that is
  // the client's doing, not damage. Anything else is.
  const fsck = await runFsck(server.dataDir);
  const unexplained = fsck.report.problems.filter((p) => {
    const blob = /references blob (\S+),/.exec(p.message)?.[1];
    return !(p.kind === 'dangling-reference' && deletedBlobLinks.has(`${p.repository ?? ''}@${blob ?? ''}`));
  });
  assert.deepEqual(unexplained, [], 'fsck finds no problems other than blob links deleted on purpose');
  assert.equal(fsck.exitCode, fsck.report.problems.length === 0 ? 0 : 1);
  if (fsck.report.problems.length > 0) console.log(`fsck: ${fsck.report.problems.length} dangling reference(s) left by blob DELETEs under manifests`);
});
