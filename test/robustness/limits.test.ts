/**
 * Limits against slow, broken and oversized clients, on the built server started with short
 * timeouts (headers 1 s, idle 1.5 s): slow-loris headers, a PATCH that stalls midway, bodies cut
 * short of their Content-Length, a 64 KiB header, and a graceful SIGTERM during an upload.
 * An interrupted chunk must leave its session exactly as it was (all or nothing).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { startServer, type RunningServer } from '../testkit/server.js';
import { OciClient, sha256, type HttpResponse } from '../testkit/oci-client.js';
import { rawExchange, trickle, type RawResult } from '../testkit/raw-http.js';
import { generatedBytes, sleep } from '../testkit/process-probe.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TIMEOUTS = { BULWARK_HTTP_HEADERS_TIMEOUT_MS: '1000', BULWARK_HTTP_IDLE_TIMEOUT_MS: '1500' };
/** generous bound for "closed by the server": the timeout plus the sweep interval plus a loaded CI box */
const CLOSE_BOUND_MS = 6000;

function assertEnvelope(body: Buffer | string, code: string): void {
  const doc = JSON.parse(body.toString()) as { errors?: Array<{ code?: unknown; message?: unknown }> };
  assert.equal(doc.errors?.[0]?.code, code, `error envelope code in ${body.toString().slice(0, 200)}`);
  assert.equal(typeof doc.errors?.[0]?.message, 'string');
}

/** `raw` ended because the server closed it, in bounded time, with at most a 4xx (never 5xx). */
function assertClosedByServer(r: RawResult, what: string): void {
  assert.ok(r.closedByServer, `${what}: the server closed the connection (after ${r.elapsedMs} ms)`);
  assert.ok(r.elapsedMs < CLOSE_BOUND_MS, `${what}: closed within ${CLOSE_BOUND_MS} ms, took ${r.elapsedMs} ms`);
  if (r.response !== undefined) assert.ok(r.response.status >= 400 && r.response.status < 500, `${what}: status ${r.response.status}`);
}

function rawHead(method: string, path: string, headers: Record<string, string | number>): string {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${lines.join('')}\r\n`;
}

describe('limits against slow and broken clients', () => {
  let server: RunningServer;
  let client: OciClient;
  before(async () => {
    server = await startServer({ env: TIMEOUTS });
    client = new OciClient(server.url);
  });
  after(async () => {
    client.close();
    await server.dispose();
  });

  /** The session's Range header once it equals `expected`, polling briefly (rollback is async). */
  async function sessionRange(session: string, expected: string): Promise<string | undefined> {
    let r: HttpResponse | undefined;
    for (let i = 0; i < 30; i++) {
      r = await client.expect('GET', session, 204);
      if (r.headers.range === expected) break;
      await sleep(100);
    }
    return r?.headers.range;
  }

  test('slow-loris: headers sent a byte at a time are cut off with 408 soon after the headers timeout', async () => {
    const head = Buffer.from(`GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'a'.repeat(400)}\r\n\r\n`);
    const r = await rawExchange(server.port, (s) => trickle(s, head, 1, 100, 30_000), { timeoutMs: 30_000 });
    assertClosedByServer(r, 'slow headers');
    assert.ok(r.elapsedMs >= 900, `not cut before the 1 s headers timeout (${r.elapsedMs} ms)`);
    if (r.response !== undefined) {
      assert.equal(r.response.status, 408);
      assertEnvelope(r.response.body, 'REQUEST_TIMEOUT');
    }
  });

  test('a connection that never sends a byte is closed', async () => {
    const r = await rawExchange(server.port, () => undefined, { timeoutMs: 30_000 });
    assertClosedByServer(r, 'silent connection');
  });

  test('a PATCH that stalls midway is closed and the session rolls back to its previous size', async () => {
    const repo = 'limits/stall';
    const a = randomBytes(100 * KiB);
    const b = randomBytes(200 * KiB);
    let session = await client.startUpload(repo);
    session = await client.patch(session, a, 0);
    const head = rawHead('PATCH', session, { 'Content-Type': 'application/octet-stream', 'Content-Length': b.length, 'Content-Range': `${a.length}-${a.length + b.length - 1}` });
    const r = await rawExchange(
      server.port,
      (s) => {
        s.write(head);
        s.write(b.subarray(0, 50 * KiB)); // then nothing: the stall
      },
      { timeoutMs: 30_000 },
    );
    assertClosedByServer(r, 'stalled PATCH body');
    assert.equal(await sessionRange(session, `0-${a.length - 1}`), `0-${a.length - 1}`, 'session back to the bytes of the first chunk');

    // The rollback is byte-exact: the session continues from there and commits the right blob.
    session = await client.patch(session, b, a.length);
    const digest = sha256(Buffer.concat([a, b]));
    await client.expect('PUT', client.withQuery(session, { digest }), 201);
    const pulled = await client.hashBlob(repo, digest);
    assert.deepEqual([pulled.status, pulled.digest, pulled.size], [200, digest, a.length + b.length]);
  });

  test('bodies cut short of their Content-Length store nothing and leave the session unchanged', async () => {
    const repo = 'limits/truncated';
    const a = randomBytes(64 * KiB);
    const b = randomBytes(128 * KiB);
    const full = sha256(Buffer.concat([a, b]));
    let session = await client.startUpload(repo);
    session = await client.patch(session, a, 0);
    const cut = (method: string, path: string, extra: Record<string, string | number>): Promise<RawResult> =>
      rawExchange(
        server.port,
        (s) => {
          s.write(rawHead(method, path, { 'Content-Type': 'application/octet-stream', 'Content-Length': b.length, ...extra }));
          s.end(b.subarray(0, 60 * KiB)); // half of what was declared, then FIN
        },
        { timeoutMs: 30_000 },
      );

    const patch = await cut('PATCH', session, { 'Content-Range': `${a.length}-${a.length + b.length - 1}` });
    assertClosedByServer(patch, 'truncated PATCH');
    if (patch.response !== undefined && patch.response.body.length > 0) assertEnvelope(patch.response.body, 'BAD_REQUEST');
    assert.equal(await sessionRange(session, `0-${a.length - 1}`), `0-${a.length - 1}`, 'PATCH cut short: session unchanged');

    const put = await cut('PUT', client.withQuery(session, { digest: full }), { 'Content-Range': `${a.length}-${a.length + b.length - 1}` });
    assertClosedByServer(put, 'truncated final PUT');
    assert.equal(await sessionRange(session, `0-${a.length - 1}`), `0-${a.length - 1}`, 'PUT cut short: session unchanged');
    assert.equal((await client.request('HEAD', `/v2/${repo}/blobs/${full}`)).status, 404, 'no blob from a cut final PUT');

    const monoDigest = sha256(b);
    const post = await cut('POST', `/v2/${repo}/blobs/uploads/?digest=${monoDigest}`, {});
    assertClosedByServer(post, 'truncated monolithic POST');
    assert.equal((await client.request('HEAD', `/v2/${repo}/blobs/${monoDigest}`)).status, 404, 'no blob from a cut monolithic POST');

    // Still usable afterwards: complete the session properly.
    session = await client.patch(session, b, a.length);
    await client.expect('PUT', client.withQuery(session, { digest: full }), 201);
    assert.equal((await client.hashBlob(repo, full)).digest, full);
  });

  test('an oversized manifest streamed in chunks gets 413 and the keep-alive connection keeps serving', async () => {
    const big = Buffer.alloc(5 * MiB, 0x7b);
    const chunked = Buffer.concat([Buffer.from(`${big.length.toString(16)}\r\n`), big, Buffer.from('\r\n0\r\n\r\n')]);
    const r = await rawExchange(
      server.port,
      async (s) => {
        s.write('PUT /v2/limits/big/manifests/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n');
        await new Promise<void>((res) => s.write(chunked, () => res()));
        s.write('GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
      },
      { timeoutMs: 15_000 },
    );
    const statuses = [...r.raw.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [413, 200], `the 413, then the next request on the same connection is answered: ${r.raw.toString("latin1").slice(0, 600)}`);
  });

  test('a 64 KiB header, or thousands of small ones, get 431 in the error envelope', async () => {
    const big = await client.request('GET', '/v2/', { headers: { 'x-big': 'a'.repeat(64 * KiB) }, timeoutMs: 10_000 });
    assert.equal(big.status, 431);
    assertEnvelope(big.body, 'HEADERS_TOO_LARGE');
    const many: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) many[`x-h${i}`] = 'b'.repeat(30);
    const r = await client.request('GET', '/v2/', { headers: many, timeoutMs: 10_000 });
    assert.equal(r.status, 431);
    assert.equal((await client.request('GET', '/v2/')).status, 200, 'the server still answers');
  });
});

describe('graceful shutdown', () => {
  let server: RunningServer | undefined;
  after(async () => {
    // The restart passes the data folder in, so dispose() keeps it: remove it here.
    await server?.dispose();
    if (server !== undefined) await rm(server.dataDir, { recursive: true, force: true });
  });

  test('SIGTERM during a large chunked upload lets it finish (201), exits 0, and the blob survives a restart', { timeout: 120_000 }, async () => {
    server = await startServer({ env: { ...TIMEOUTS, BULWARK_HTTP_SHUTDOWN_TIMEOUT_MS: '20000' } });
    const repo = 'limits/shutdown';
    const PARTS = [32 * MiB, 128 * MiB];
    const partBytes = (i: number): AsyncGenerator<Buffer> => generatedBytes(`shutdown/${i}`, PARTS[i] ?? 0, MiB);
    const h = createHash('sha256');
    for (let i = 0; i < PARTS.length; i++) for await (const c of partBytes(i)) h.update(c);
    const digest = `sha256:${h.digest('hex')}`;
    const total = PARTS.reduce((x, y) => x + y, 0);

    const client = new OciClient(server.url); // keep-alive, as real clients are
    try {
      let session = await client.startUpload(repo);
      session = client.location(
        await client.expect('PATCH', session, 202, { body: partBytes(0), headers: { 'content-length': PARTS[0], 'content-range': `0-${(PARTS[0] ?? 0) - 1}` } }),
      );
      // The final PUT carries the last 128 MiB slowly (a pause every 8 MiB), so it is in flight at SIGTERM.
      async function* throttled(): AsyncGenerator<Buffer> {
        let n = 0;
        for await (const c of partBytes(1)) {
          if (n++ % 8 === 0) await sleep(100);
          yield c;
        }
      }
      const exited = new Promise<number | null>((res) => server?.child.once('exit', (code) => res(code)));
      let answered = false;
      const put = client
        .request('PUT', client.withQuery(session, { digest }), {
          body: throttled(),
          headers: { 'content-length': PARTS[1], 'content-range': `${PARTS[0]}-${total - 1}` },
          timeoutMs: 60_000,
        })
        .finally(() => (answered = true));
      await sleep(300);
      assert.equal(answered, false, 'the PUT is still in flight when SIGTERM is sent');
      const termAt = Date.now();
      server.child.kill('SIGTERM');
      const r = await put;
      assert.equal(r.status, 201, `the in-flight PUT completes: ${r.body.toString()}`);
      const code = await exited;
      assert.equal(code, 0, 'the process exits 0 after draining');
      assert.ok(Date.now() - termAt < 15_000, `exit within 15 s of SIGTERM (took ${Date.now() - termAt} ms), before the shutdown timeout`);
    } finally {
      client.close();
    }

    server = await startServer({ dataDir: server.dataDir });
    const after = new OciClient(server.url);
    try {
      const pulled = await after.hashBlob(repo, digest, 60_000);
      assert.deepEqual([pulled.status, pulled.digest, pulled.size], [200, digest, total], 'the blob is there after the restart');
    } finally {
      after.close();
    }
  });
});
