/**
 * Pulls the client cuts off. Blob bodies are pumped straight into the socket with recycled
 * buffers (routes/distribution/http-util.ts sendBody); a client that disconnects midway must
 * leave no open file behind, no half-sent state on other connections, and the blob intact.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { OciClient } from '../testkit/oci-client.js';
import { startServer, type RunningServer } from '../testkit/server.js';
import { sleep } from '../testkit/process-probe.js';

const MiB = 1024 * 1024;
let server: RunningServer;
let client: OciClient;

before(async () => {
  server = await startServer();
  client = new OciClient(server.url);
});
after(async () => {
  client.close();
  await server.dispose();
});

/** Open file descriptors of the server that point at stored blobs. */
function openBlobFiles(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    if (readlinkBlob(`/proc/${pid}/fd/${fd}`)) n++;
  }
  return n;
}

function readlinkBlob(path: string): boolean {
  try {
    return /\/blobs\/sha(256|512)\//.test(readlinkSync(path));
  } catch {
    return false; // closed while we looked
  }
}

/**
 * Open blob files once the server has caught up: requests of closed connections may still be
 * opening their file after a first look says 0, so 0 must hold for a whole second. A leaked
 * file never closes; the answer is then the count after 10 s.
 */
async function settledOpenBlobFiles(pid: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  let zeroSince: number | undefined;
  for (;;) {
    const n = openBlobFiles(pid);
    const now = Date.now();
    if (n > 0) zeroSince = undefined;
    else zeroSince ??= now;
    if ((zeroSince !== undefined && now - zeroSince >= 1000) || now >= deadline) return n;
    await sleep(50);
  }
}

/** GET the blob on a raw socket, read `keep` bytes of the answer, then drop the connection. */
async function cutOffPull(path: string, keep: number): Promise<number> {
  const s = connect(server.port, '127.0.0.1');
  s.write(`GET ${path} HTTP/1.1\r\nHost: ${server.host}\r\n\r\n`);
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= keep) {
        s.destroy();
        resolve();
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve());
  });
  return got;
}

test('pulls cut off midway leave no open blob file, and the blob still pulls whole', async () => {
  const data = randomBytes(48 * MiB);
  const blob = await client.pushBlob('abort/pull', data, 'monolithic');
  const pid = server.child.pid;
  assert.ok(pid !== undefined);
  const path = `/v2/abort/pull/blobs/${blob.digest}`;
  for (const keep of [1, 64 * 1024, 5 * MiB, 20 * MiB]) {
    const got = await cutOffPull(path, keep);
    assert.ok(got < data.length, `the pull was cut off (${got} bytes)`);
  }
  // The server notices the closed sockets asynchronously; give it a bounded moment.
  assert.equal(await settledOpenBlobFiles(pid), 0, 'every cut-off pull closed its file');
  const whole = await client.hashBlob('abort/pull', blob.digest);
  assert.equal(whole.status, 200);
  assert.equal(whole.digest, blob.digest);
  assert.equal(whole.size, data.length);
});

test('clients that hang up before the first byte leave no open blob file either', async () => {
  const data = randomBytes(3 * MiB);
  const blob = await client.pushBlob('abort/early', data, 'monolithic');
  const pid = server.child.pid;
  assert.ok(pid !== undefined);
  const request = `GET /v2/abort/early/blobs/${blob.digest} HTTP/1.1\r\nHost: ${server.host}\r\n\r\n`;
  for (let i = 0; i < 1000; i++) {
    const s = connect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.write(request);
    // hang up at varying moments around the server's blob lookup (0-2 ms after the request)
    if (i % 3 > 0) await sleep(i % 3);
    s.resetAndDestroy();
  }
  assert.equal(await settledOpenBlobFiles(pid), 0);
  assert.equal((await client.hashBlob('abort/early', blob.digest)).digest, blob.digest);
});

test('a range pull is served from the recycled-buffer path byte-exact', async () => {
  const data = randomBytes(3 * MiB + 17);
  const blob = await client.pushBlob('abort/range', data, 'monolithic');
  const start = MiB - 3;
  const end = 2 * MiB + 9;
  const r = await client.expect('GET', `/v2/abort/range/blobs/${blob.digest}`, 206, { headers: { range: `bytes=${start}-${end}` } });
  assert.deepEqual(r.body, data.subarray(start, end + 1));
  assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${data.length}`);
});
