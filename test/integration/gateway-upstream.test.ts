/**
 * The gateway's own upstream client (ADR 0019), seen from both ends: what a client gets and what a
 * backend receives. One backend is Node's HTTP server (well-formed answers, counted connections);
 * the other a bare TCP server scripted per path, for answers no HTTP library would give.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpServer, request, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import { UpstreamPool } from '../../src/gateway/upstream.js';
import { startGateway, type RunningGateway } from '../testkit/gateway.js';
import { freePort } from '../testkit/server.js';
import { send } from '../testkit/request.js';
import { makeCa } from '../testkit/tls-ca.js';

const HOST = 'registry.bulwark.test';
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function listening<T extends Server | ReturnType<typeof createServer>>(server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  return typeof a === 'object' && a !== null ? a.port : 0;
}

async function gatewayTo(backendPort: number, tls?: { caFile: string }): Promise<{ gw: RunningGateway; port: number }> {
  const port = await freePort();
  const backend = tls === undefined ? { url: `http://127.0.0.1:${backendPort}` } : { url: `https://127.0.0.1:${backendPort}`, serverName: 'localhost', caFile: tls.caFile };
  const gw = await startGateway({
    sites: [{ name: 'registry', listen: `127.0.0.1:${port}`, hostNames: [HOST], pool: 'registry' }],
    pools: [{ name: 'registry', backends: [backend], health: { intervalSeconds: 60 } }],
    limits: { upstreamTimeoutMs: 2000 },
  });
  return { gw, port };
}

/** A body sent chunked by the client (no Content-Length), in pieces with pauses between them. */
function chunkedUpload(port: number, path: string, pieces: Buffer[]): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'PUT', path, headers: { host: HOST, 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    const next = (i: number): void => {
      const p = pieces[i];
      if (p === undefined) return void req.end();
      req.write(p);
      setTimeout(() => next(i + 1), 5);
    };
    next(0);
  });
}

describe('gateway upstream client, in front of a well-formed backend', () => {
  let backend: Server;
  let connections = 0;
  let gw: RunningGateway;
  let port: number;
  const big = randomBytes(5 * 1024 * 1024 + 17);
  before(async () => {
    backend = createHttpServer((req, res) => {
      if (req.url === '/big') return void res.end(big);
      const numbered = /^\/numbered\/(\d+)$/.exec(req.url ?? '');
      if (numbered?.[1] !== undefined) {
        // a body only this request's number makes, of a size that varies with it; every third one chunked
        const n = Number(numbered[1]);
        const body = Buffer.alloc(1 + ((n * 7919) % 300_000), `${n};`);
        if (n % 3 === 0) {
          res.write(body.subarray(0, 10));
          setTimeout(() => res.end(body.subarray(10)), n % 5);
        } else res.end(body);
        return;
      }
      if (req.url === '/streamed') {
        // no length: Node's server sends it chunked
        res.write(big.subarray(0, 1000));
        setTimeout(() => res.end(big.subarray(1000)), 20);
        return;
      }
      if (req.method === 'PUT') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (b: Buffer) => {
          hash.update(b);
          bytes += b.length;
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex'), framing: req.headers['transfer-encoding'] ?? `length ${req.headers['content-length']}` })));
        return;
      }
      res.end('{}');
    });
    backend.keepAliveTimeout = 30_000;
    backend.on('connection', () => connections++);
    ({ gw, port } = await gatewayTo(await listening(backend)));
  });
  after(async () => {
    await gw?.stop();
    backend?.closeAllConnections();
    await new Promise((r) => backend?.close(r));
  });

  test('requests one after another share one kept-alive connection to the backend', async () => {
    const before = connections;
    for (let i = 0; i < 20; i++) assert.equal((await send(`http://127.0.0.1:${port}/v2/`, { headers: { host: HOST } })).status, 200);
    assert.ok(connections - before <= 1, `${connections - before} connections for 20 requests`);
  });

  test('many requests at once over the pooled connections: each gets its own answer, whole', async () => {
    const expected = (n: number): Buffer => Buffer.alloc(1 + ((n * 7919) % 300_000), `${n};`);
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => send(`http://127.0.0.1:${port}/numbered/${round * 40 + i}`, { headers: { host: HOST } })));
      answers.forEach((r, i) => {
        const n = round * 40 + i;
        assert.equal(r.status, 200, `request ${n}`);
        assert.ok(r.body.equals(expected(n)), `request ${n}: ${r.body.length} bytes, expected ${expected(n).length}`);
      });
    }
  });

  test('a large body comes through whole, by length and chunked', async () => {
    for (const path of ['/big', '/streamed']) {
      const r = await send(`http://127.0.0.1:${port}${path}`, { headers: { host: HOST } });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, big.length, path);
      assert.equal(sha256(r.body), sha256(big), path);
    }
  });

  test('request bodies reach the backend whole: by Content-Length, and chunked as the client sent them', async () => {
    const sized = await send(`http://127.0.0.1:${port}/upload`, { method: 'PUT', headers: { host: HOST }, body: big });
    assert.deepEqual(JSON.parse(sized.text), { bytes: big.length, sha256: sha256(big), framing: `length ${big.length}` });
    const pieces = [big.subarray(0, 100), big.subarray(100, 70_000), big.subarray(70_000)];
    const r = await chunkedUpload(port, '/upload', pieces);
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text), { bytes: big.length, sha256: sha256(big), framing: 'chunked' });
  });
});

/**
 * A bare TCP backend. Each request's path picks the answer; `/stale` answers the first request of a
 * connection and closes the connection on the next one without a word, as a backend whose idle
 * timeout fired just as the request arrived.
 */
async function scriptedBackend(): Promise<{ port: number; connections(): number; heads(path: string): number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const heads = new Map<string, number>();
  let connections = 0;
  const server = createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let answered = 0;
    let pending = '';
    s.on('data', (d: Buffer) => {
      const requestLine = /^[A-Z]+ (\S+) HTTP\/1\.1\r\n/.exec(d.toString('latin1'));
      if (requestLine?.[1] !== undefined) heads.set(requestLine[1], (heads.get(requestLine[1]) ?? 0) + 1);
      pending += d.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        pending = pending.slice(end + 4 + length);
        const path = head.split(' ')[1] ?? '';
        if (path.startsWith('/stale') && answered > 0) return void s.destroy();
        answered++;
        if (path === '/te-and-cl') s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
        else if (path === '/truncated') s.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b');
        else if (path === '/dribble') {
          // an interim answer and the final head, a byte per write: every CRLF CRLF straddles reads
          const bytes = Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-dribbled: yes\r\ncontent-length: 2\r\n\r\n{}');
          s.setNoDelay(true);
          const next = (i: number): void => {
            if (i >= bytes.length || s.destroyed) return;
            s.write(bytes.subarray(i, i + 1));
            setTimeout(() => next(i + 1), 1);
          };
          next(0);
        } else if (path === '/huge-head') s.write(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70_000)}\r\ncontent-length: 2\r\n\r\n{}`);
        else if (path === '/to-the-close') s.end('HTTP/1.1 200 OK\r\n\r\nread until the close');
        else if (path === '/reset-before-the-close') {
          s.write('HTTP/1.1 200 OK\r\n\r\nthe start of a body');
          setTimeout(() => s.resetAndDestroy(), 50);
        } else if (path === '/surplus') s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n"forged"');
        else if (path === '/interim') s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}');
        else s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}');
      }
    });
  });
  const port = await listening(server);
  return {
    port,
    connections: () => connections,
    heads: (path) => heads.get(path) ?? 0,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A GET through `pool` whose body goes to `sink`; resolves with the head's headers once the sink has finished. */
function exchangeInto(pool: UpstreamPool, target: string, sink: Writable, timeoutMs = 10_000): Promise<Record<string, string | string[]>> {
  return new Promise((resolve, reject) => {
    let headers: Record<string, string | string[]> = {};
    sink.once('finish', () => resolve(headers));
    pool.exchange({ method: 'GET', target, headers: { host: 'backend' }, timeoutMs }, {
      response: (_status, h) => {
        headers = h;
        return sink;
      },
      fail: (err) => reject(err),
    });
  });
}

describe('gateway upstream client, read buffers and a client that takes its time', () => {
  test('a read buffer is not read into again before the client has taken every piece of it', async () => {
    const body = randomBytes(16 * 1024 * 1024 + 3);
    const backend = createHttpServer((req, res) => {
      if (req.url === '/chunked') {
        // chunked in pieces of 10 KiB: several pieces per read
        for (let at = 0; at < body.length; at += 10 * 1024) res.write(body.subarray(at, at + 10 * 1024));
        res.end();
      } else res.end(body);
    });
    const pool = new UpstreamPool({ host: '127.0.0.1', port: await listening(backend) });
    try {
      for (const path of ['/length', '/chunked']) {
        // A client socket that takes each piece 1 ms after it was written and never pushes back: every
        // read goes on at once, and whatever a piece views is copied only when the client takes it.
        const taken: Buffer[] = [];
        const client = new Writable({
          highWaterMark: 1 << 30,
          write(chunk: Buffer, _enc, done) {
            setTimeout(() => {
              taken.push(Buffer.from(chunk));
              done();
            }, 1);
          },
        });
        await exchangeInto(pool, path, client);
        const got = Buffer.concat(taken);
        assert.equal(got.length, body.length, path);
        assert.equal(sha256(got), sha256(body), `${path}: every piece as the backend sent it`);
      }
      // A client that takes each piece at once: reads go on in the same few buffers.
      const buffers = pool.buffers;
      const take = buffers.take.bind(buffers);
      const used = new Set<ArrayBufferLike>();
      let reads = 0;
      buffers.take = (size: number): Buffer => {
        const b = take(size);
        reads++;
        used.add(b.buffer);
        return b;
      };
      const hash = createHash('sha256');
      const prompt = new Writable({
        write(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          done();
        },
      });
      await exchangeInto(pool, '/length', prompt);
      assert.equal(hash.digest('hex'), sha256(body));
      assert.ok(reads >= 16 && used.size <= reads / 4, `${reads} reads into ${used.size} buffers`);
    } finally {
      pool.close();
      backend.closeAllConnections();
      await new Promise((r) => backend.close(r));
    }
  });

  test('a head that spans two reads is read whole, though the first read\'s buffer is read into again', async () => {
    const value = 'v'.repeat(50_000);
    const head = Buffer.from(`HTTP/1.1 200 OK\r\nX-Large: ${value}\r\nContent-Length: 5\r\n\r\nhello`, 'latin1');
    const server = createServer((socket) => {
      socket.once('data', () => {
        // far more than an eighth of a 64 KiB read, so the read is handed on as a slice of its buffer, not copied
        socket.write(head.subarray(0, 40_000));
        setTimeout(() => socket.end(head.subarray(40_000)), 30);
      });
    });
    const pool = new UpstreamPool({ host: '127.0.0.1', port: await listening(server) });
    try {
      const parts: Buffer[] = [];
      const client = new Writable({
        write(chunk: Buffer, _enc, done) {
          parts.push(Buffer.from(chunk));
          done();
        },
      });
      const headers = await exchangeInto(pool, '/', client, 5_000);
      assert.equal(headers['x-large'], value);
      assert.equal(Buffer.concat(parts).toString(), 'hello');
    } finally {
      pool.close();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('gateway upstream client, in front of a backend that misbehaves', () => {
  let backend: Awaited<ReturnType<typeof scriptedBackend>>;
  let gw: RunningGateway;
  let port: number;
  const call = (path: string, o: { method?: string; body?: string } = {}): ReturnType<typeof send> => send(`http://127.0.0.1:${port}${path}`, { headers: { host: HOST }, ...o });
  before(async () => {
    backend = await scriptedBackend();
    ({ gw, port } = await gatewayTo(backend.port));
  });
  after(async () => {
    await gw?.stop();
    await backend?.close();
  });

  test('an answer with both Transfer-Encoding and Content-Length is not passed on: 502, and the connection is not used again', async () => {
    const r = await call('/te-and-cl');
    assert.equal(r.status, 502);
    assert.equal((JSON.parse(r.text) as { errors: { code: string }[] }).errors[0]?.code, 'BAD_GATEWAY');
    await gw.waitForLog((l) => l.msg === 'failed to get an answer from the backend' && l.path === '/te-and-cl' && JSON.stringify(l.err).includes('both Transfer-Encoding and Content-Length'));
    const before = backend.connections();
    assert.equal((await call('/v2/')).status, 200);
    assert.equal(backend.connections(), before + 1, 'a new connection after the refused answer');
  });

  test('an answer cut short of its length never reaches the client as complete', async () => {
    await assert.rejects(call('/truncated'));
    await gw.waitForLog((l) => l.msg === "failed to pass on the backend's answer" && l.path === '/truncated');
  });

  test('bytes after the end of an answer are no answer to the next request: that connection is not used again', async () => {
    assert.equal((await call('/surplus')).text, '{}');
    const before = backend.connections();
    const next = await call('/v2/');
    assert.equal(next.text, '{}', 'the next request got the bytes the backend sent unasked');
    assert.equal(backend.connections(), before + 1, 'a new connection after the surplus');
  });

  test('a body without a length ends at the close; a reset before it is no end, and the client never sees it complete', async () => {
    const whole = await call('/to-the-close');
    assert.equal(whole.status, 200);
    assert.equal(whole.text, 'read until the close');
    await assert.rejects(call('/reset-before-the-close'));
    await gw.waitForLog((l) => l.msg === "failed to pass on the backend's answer" && l.path === '/reset-before-the-close');
  });

  test('a head dribbled a byte at a time is read whole; one over 64 KiB is refused', async () => {
    const r = await call('/dribble');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-dribbled'], 'yes');
    assert.equal(r.text, '{}');
    assert.equal((await call('/huge-head')).status, 502);
    await gw.waitForLog((l) => l.path === '/huge-head' && JSON.stringify(l.err).includes('larger than 65536 bytes'));
  });

  test('an interim 100 Continue is skipped; the final answer is passed on', async () => {
    const r = await call('/interim');
    assert.equal(r.status, 200);
    assert.equal(r.text, '{}');
  });

  test('a kept-alive connection closed as a request arrived: a GET is sent again on a new one, a PUT with a body or a DELETE is not', async () => {
    assert.equal((await call('/stale/1')).status, 200);
    const before = backend.connections();
    const again = await call('/stale/2');
    assert.equal(again.status, 200, again.text);
    assert.equal(backend.connections(), before + 1);
    const put = await call('/stale/3', { method: 'PUT', body: 'once only' });
    assert.equal(put.status, 502);
    assert.equal(backend.heads('/stale/3'), 1, 'a request with a body is never sent twice');
    assert.equal((await call('/stale/4')).status, 200);
    const del = await call('/stale/5', { method: 'DELETE' });
    assert.equal(del.status, 502);
    assert.equal(backend.heads('/stale/5'), 1, 'nor is a DELETE, which is not a safe method');
  });
});

describe('gateway upstream client, to an HTTPS backend that closes every connection', () => {
  let dir: string;
  let backend: Server;
  const resumed: boolean[] = [];
  let gw: RunningGateway;
  let port: number;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulwark-gw-tls-'));
    const pki = await makeCa(dir);
    const leaf = await pki.leaf('backend');
    backend = createHttpsServer({ cert: await readFile(leaf.cert), key: await readFile(leaf.key) }, (_req, res) => {
      res.setHeader('connection', 'close');
      res.end('{}');
    });
    backend.on('secureConnection', (s: TLSSocket) => resumed.push(s.isSessionReused()));
    ({ gw, port } = await gatewayTo(await listening(backend), { caFile: pki.ca }));
  });
  after(async () => {
    await gw?.stop();
    backend?.closeAllConnections();
    await new Promise((r) => backend?.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  test('each new connection resumes the TLS session of an earlier one', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await send(`http://127.0.0.1:${port}/v2/`, { headers: { host: HOST } })).text, '{}');
    assert.ok(resumed.length >= 4, `${resumed.length} connections (a probe and three requests)`);
    assert.equal(resumed[0], false);
    assert.deepEqual(resumed.slice(-3), [true, true, true]);
  });
});
