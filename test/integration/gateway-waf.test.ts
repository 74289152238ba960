/**
 * The gateway's firewall (issue 5, items 5 and 6), driven over HTTP in front of the CNCF
 * Distribution registry: geo-blocking from a GeoIP Country database this test builds itself
 * (test/testkit/mmdb.ts; no live look-ups), an address allowlist that wins over the embargo
 * because it comes first, method allowlist, path and size rules, a per-client rate limit, the
 * forwarding header believed only from the trusted proxy and walked right to left, Detection
 * mode, a database reload when the file changes, and a blocked request answered 403 with a
 * reference id that the log line carrying the rule also carries.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildCountryMmdb, type CountryNetwork } from '../testkit/mmdb.js';
import { distributionAvailable, startDistribution } from '../testkit/distribution.js';
import { gatewayRefuses, startGateway, type RunningGateway } from '../testkit/gateway.js';
import { freePort, type RunningServer } from '../testkit/server.js';
import { rawExchange } from '../testkit/raw-http.js';
import { send, type Reply } from '../testkit/request.js';
import { sleep } from '../testkit/process-probe.js';

const skip = !distributionAvailable() && process.env.CI !== 'true' ? 'docker-registry is not installed' : false;

const WORLD: CountryNetwork[] = [
  { cidr: '198.51.100.0/24', country: 'KP' },
  { cidr: '203.0.113.0/24', country: 'DE' },
  { cidr: '2001:db8:bad::/48', country: 'IR' },
  { cidr: '2001:db8:900d::/48', country: 'CH' },
];

/** One request to the gateway, from `localAddress`, with the headers given. */
function call(port: number, o: { method?: string; path?: string; headers?: Record<string, string>; localAddress?: string } = {}): Promise<Reply> {
  return send(`http://127.0.0.1:${port}${o.path ?? '/v2/'}`, { method: o.method ?? 'GET', headers: { host: 'registry.bulwark.test', ...o.headers }, ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}) });
}

const from = (address: string): { headers: Record<string, string> } => ({ headers: { 'x-forwarded-for': address } });

describe('gateway WAF', { skip }, () => {
  let upstream: RunningServer;
  let dir: string;
  let geoFile: string;
  let port: number;
  let gw: RunningGateway;
  const config = (mode: 'Prevention' | 'Detection', sitePort: number): object => ({
    sites: [{ name: 'registry', listen: `127.0.0.1:${sitePort}`, hostNames: ['registry.bulwark.test'], pool: 'registry' }],
    pools: [{ name: 'registry', backends: [{ url: upstream.url }] }],
    clientAddress: { trustedProxies: ['127.0.0.1'] },
    waf: {
      mode,
      geoDatabase: { file: geoFile, reloadCheckSeconds: 0.2 },
      rules: [
        { name: 'office', action: 'Allow', conditions: [{ match: 'ip', cidrs: ['198.51.100.200/32'] }] },
        { name: 'no-admin-api', action: 'Block', conditions: [{ match: 'path', prefixes: ['/api/'] }] },
        { name: 'methods', action: 'Block', conditions: [{ match: 'method', methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH'], negate: true }] },
        { name: 'sizes', action: 'Block', conditions: [{ match: 'size', maxUrlBytes: 2048, maxHeaderBytes: 8192 }] },
        { name: 'embargo', action: 'Block', conditions: [{ match: 'geo', countries: ['KP', 'IR'] }] },
        { name: 'unknown-country', action: 'Log', conditions: [{ match: 'geo', countries: ['ZZ'] }] },
        { name: 'burst', action: 'Block', rateLimit: { requests: 5, windowSeconds: 60 }, conditions: [{ match: 'ip', cidrs: ['203.0.113.99/32'] }] },
      ],
    },
  });

  before(async () => {
    upstream = await startDistribution();
    dir = await mkdtemp(join(tmpdir(), 'gateway-waf-'));
    geoFile = join(dir, 'country.mmdb');
    await writeFile(geoFile, buildCountryMmdb(WORLD));
    port = await freePort();
    gw = await startGateway(config('Prevention', port));
  });
  after(async () => {
    await gw.stop();
    await upstream.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  test('an embargoed country gets 403 DENIED with a reference id, and the log names the rule under that id', async () => {
    const r = await call(port, from('198.51.100.7'));
    assert.equal(r.status, 403);
    const reference = r.headers['x-bulwark-reference'];
    assert.match(String(reference), /^[0-9a-f]{16}$/);
    const body = JSON.parse(r.text) as { errors: { code: string; message: string }[] };
    assert.equal(body.errors[0]?.code, 'DENIED');
    assert.ok(body.errors[0]?.message.includes(String(reference)), body.errors[0]?.message);
    assert.ok(!r.text.includes('embargo'), 'the client is not told which rule matched');
    const line = await gw.waitForLog((l) => l.reference === reference && l.msg === 'waf blocked a request');
    assert.equal(line.rule, 'embargo');
    assert.equal(line.country, 'KP');
    assert.equal(line.client, '198.51.100.7');
    assert.equal(line.path, '/v2/');
  });

  test('IPv6 addresses are placed too: an embargoed /48 is blocked, another country is served', async () => {
    assert.equal((await call(port, from('2001:db8:bad::1'))).status, 403);
    assert.equal((await call(port, from('2001:db8:bad:ffff:ffff:ffff:ffff:ffff'))).status, 403);
    assert.equal((await call(port, from('2001:db8:900d::1'))).status, 200);
    assert.equal((await call(port, from('2001:db8:bae::1'))).status, 200, 'just past the embargoed /48');
  });

  test('a country not embargoed is served, and the network edges are where the database puts them', async () => {
    assert.equal((await call(port, from('203.0.113.5'))).status, 200);
    assert.equal((await call(port, from('198.51.100.0'))).status, 403);
    assert.equal((await call(port, from('198.51.100.255'))).status, 403);
    assert.equal((await call(port, from('198.51.101.0'))).status, 200);
  });

  test('an earlier Allow rule wins: the office address inside the embargoed range is served', async () => {
    assert.equal((await call(port, from('198.51.100.200'))).status, 200);
  });

  test('an address in no network is country ZZ: a Log rule records it and the request goes through', async () => {
    const r = await call(port, { headers: { 'x-forwarded-for': '192.0.2.44', 'user-agent': 'zz-probe' } });
    assert.equal(r.status, 200);
    const line = await gw.waitForLog((l) => l.rule === 'unknown-country' && l.userAgent === 'zz-probe');
    assert.equal(line.action, 'Log');
    assert.equal(line.country, 'ZZ');
  });

  test('method allowlist, path and size rules block before anything reaches the registry', async () => {
    const del = await call(port, { ...from('203.0.113.5'), method: 'DELETE', path: '/v2/a/manifests/sha256:' + '0'.repeat(64) });
    assert.equal(del.status, 403);
    assert.equal((await gw.waitForLog((l) => l.reference === del.headers['x-bulwark-reference'])).rule, 'methods');
    const admin = await call(port, { ...from('203.0.113.5'), path: '/api/v1/tokens' });
    assert.equal(admin.status, 403);
    assert.equal((await gw.waitForLog((l) => l.reference === admin.headers['x-bulwark-reference'])).rule, 'no-admin-api');
    const long = await call(port, { ...from('203.0.113.5'), path: `/v2/${'a'.repeat(2100)}/tags/list` });
    assert.equal(long.status, 403);
    assert.equal((await gw.waitForLog((l) => l.reference === long.headers['x-bulwark-reference'])).rule, 'sizes');
    const fat = await call(port, { headers: { 'x-forwarded-for': '203.0.113.5', 'x-padding': 'p'.repeat(9000) } });
    assert.equal(fat.status, 403);
    const under = await call(port, { ...from('203.0.113.5'), path: `/v2/${'a'.repeat(1900)}/tags/list` });
    assert.ok(under.headers['x-bulwark-reference'] === undefined && under.status !== 403, 'just under the URL limit reaches the registry');
  });

  test('a path rule sees the decoded path; targets that could be routed two ways are refused', async () => {
    const encoded = await call(port, { ...from('203.0.113.5'), path: '/%61pi/v1/tokens' });
    assert.equal(encoded.status, 403, '/%61pi/ is /api/ to the registry behind');
    assert.equal((await gw.waitForLog((l) => l.reference === encoded.headers['x-bulwark-reference'])).rule, 'no-admin-api');
    for (const path of ['/v2/%2e%2e/api/v1/tokens', '/v2//api/v1', '/v2/a%2Fb/tags/list', '/v2/%zz']) {
      const r = await call(port, { ...from('203.0.113.5'), path });
      assert.equal(r.status, 400, path);
      assert.equal((JSON.parse(r.text) as { errors: { code: string }[] }).errors[0]?.code, 'BAD_REQUEST');
    }
  });

  test('a client over its rate limit gets 429 with Retry-After; other clients are not affected', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await call(port, from('203.0.113.99'))).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429]);
    const r = await call(port, from('203.0.113.99'));
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 60, String(r.headers['retry-after']));
    assert.equal((JSON.parse(r.text) as { errors: { code: string }[] }).errors[0]?.code, 'TOOMANYREQUESTS');
    assert.equal((await call(port, from('203.0.113.98'))).status, 200);
  });

  test('the forwarding header is walked right to left, and ignored from a peer that is not a trusted proxy', async () => {
    // the trusted proxy (127.0.0.1) says its client is the rightmost entry; what that client wrote to its left does not count
    assert.equal((await call(port, from('198.51.100.7, 203.0.113.5'))).status, 200);
    assert.equal((await call(port, from('203.0.113.5, 198.51.100.7'))).status, 403);
    // 127.0.0.2 is not a trusted proxy: its header is not believed, its own address (ZZ) counts
    assert.equal((await call(port, { ...from('198.51.100.7'), localAddress: '127.0.0.2' })).status, 200);
  });

  test('a changed database file is picked up without a restart; a broken one is ignored', async () => {
    assert.equal((await call(port, from('203.0.113.5'))).status, 200);
    const moved = WORLD.map((n) => (n.cidr === '203.0.113.0/24' ? { ...n, country: 'IR' } : n));
    await writeFile(join(dir, 'next.mmdb'), buildCountryMmdb(moved));
    await rename(join(dir, 'next.mmdb'), geoFile);
    await gw.waitForLog((l) => l.msg === 'reloaded the geo database');
    assert.equal((await call(port, from('203.0.113.5'))).status, 403);
    await writeFile(join(dir, 'broken.mmdb'), Buffer.from('not a database'));
    await rename(join(dir, 'broken.mmdb'), geoFile);
    await gw.waitForLog((l) => l.msg === 'failed to reload the geo database; keeping the one in use');
    assert.equal((await call(port, from('203.0.113.5'))).status, 403, 'the last good database is still used');
    assert.equal((await call(port, from('198.51.100.7'))).status, 403);
    await writeFile(geoFile, buildCountryMmdb(WORLD));
  });

  test('Detection mode logs what it would block and serves it', async () => {
    const detecting = await startGateway(config('Detection', await freePort()));
    try {
      const p = detecting.ports.registry ?? 0;
      const r = await call(p, { headers: { 'x-forwarded-for': '198.51.100.7', 'user-agent': 'detect-probe' } });
      assert.equal(r.status, 200);
      const line = await detecting.waitForLog((l) => l.rule === 'embargo' && l.userAgent === 'detect-probe');
      assert.equal(line.detected, true);
      assert.equal(line.action, 'Block');
    } finally {
      await detecting.stop();
    }
  });

  test('a configuration with problems is refused at start, every problem named', async () => {
    const { code, output } = await gatewayRefuses({
      sites: [{ name: 'registry', listen: 'nowhere', hostNames: ['r.example'], pool: 'missing' }],
      pools: [{ name: 'registry', backends: [{ url: 'ftp://x' }] }],
      waf: { rules: [{ name: 'bad', action: 'Block', conditions: [{ match: 'ip', cidrs: ['10.0.0.0/33'] }] }] },
    });
    assert.equal(code, 1);
    for (const problem of ['/sites/0/listen', 'no pool is named missing', '/pools/0/backends/0/url', '10.0.0.0/33']) assert.ok(output.includes(problem), `${problem} in:\n${output}`);
    const geoless = await gatewayRefuses({
      sites: [{ name: 'registry', listen: '127.0.0.1:1', hostNames: ['r.example'], pool: 'registry' }],
      pools: [{ name: 'registry', backends: [{ url: 'http://127.0.0.1:1' }] }],
      waf: { rules: [{ name: 'embargo', action: 'Block', conditions: [{ match: 'geo', countries: ['KP'] }] }] },
    });
    assert.equal(geoless.code, 1);
    assert.match(geoless.output, /no waf.geoDatabase/);
  });
});

/**
 * A bare TCP backend that records the bytes it receives and answers by path: what the gateway
 * puts on the wire upstream, and how it copes with a backend that resets or never answers.
 */
async function recordingBackend(): Promise<{ port: number; received(): string; close(): Promise<void> }> {
  let received = '';
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      received += text;
      if (/GET \/reset[ ?]/.test(text)) s.destroy();
      else if (text.includes('GET /silent ')) return;
      else if (text.includes('GET /leak ')) s.write('HTTP/1.1 307 Temporary Redirect\r\nlocation: http://secret.internal:9000/x\r\ncontent-length: 0\r\n\r\n');
      else s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    received: () => received,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('gateway request framing and backend failures', () => {
  let backend: Awaited<ReturnType<typeof recordingBackend>>;
  let gw: RunningGateway;
  let port: number;
  before(async () => {
    backend = await recordingBackend();
    port = await freePort();
    gw = await startGateway({
      sites: [{ name: 'registry', listen: `127.0.0.1:${port}`, hostNames: ['registry.bulwark.test'], pool: 'registry' }],
      pools: [{ name: 'registry', backends: [{ url: `http://127.0.0.1:${backend.port}` }], health: { intervalSeconds: 60 } }],
      limits: { upstreamTimeoutMs: 500 },
    });
  });
  after(async () => {
    await gw?.stop();
    await backend?.close();
  });

  test('a request hidden in a chunked GET body goes upstream as chunked body, never as a request of its own', async () => {
    const hidden = 'POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n';
    const body = `${Buffer.byteLength(hidden).toString(16)}\r\n${hidden}\r\n0\r\n\r\n`;
    const r = await rawExchange(port, (s) => void s.write(`GET /v2/framing HTTP/1.1\r\nHost: registry.bulwark.test\r\nTransfer-Encoding: chunked\r\n\r\n${body}`), { timeoutMs: 5000, untilResponse: true });
    assert.equal(r.response?.status, 200);
    await sleep(200);
    const seen = backend.received().slice(backend.received().indexOf('GET /v2/framing '));
    assert.match(seen, /\r\ntransfer-encoding: chunked\r\n/i, 'the body is framed');
    assert.ok(seen.includes(`\r\n\r\n${Buffer.byteLength(hidden).toString(16)}\r\nPOST /smuggled`), 'the POST travels inside a chunk');
  });

  test('a backend that resets the connection is a 502 BAD_GATEWAY, at once', async () => {
    const t0 = performance.now();
    const r = await call(port, { path: '/reset' });
    assert.equal(r.status, 502);
    assert.equal((JSON.parse(r.text) as { errors: { code: string }[] }).errors[0]?.code, 'BAD_GATEWAY');
    assert.ok(performance.now() - t0 < 3000);
    await gw.waitForLog((l) => l.msg === 'failed to get an answer from the backend' && l.path === '/reset');
  });

  test('a backend that never answers is a 502 after limits.upstreamTimeoutMs', async () => {
    const r = await call(port, { path: '/silent' });
    assert.equal(r.status, 502);
  });

  test('a redirect to a host no rewrite covers is not passed on: 502, and the log says which', async () => {
    const r = await call(port, { path: '/leak' });
    assert.equal(r.status, 502);
    assert.equal(r.headers.location, undefined);
    assert.ok(!r.text.includes('secret.internal'), r.text);
    const line = await gw.waitForLog((l) => l.origin === 'http://secret.internal:9000');
    assert.equal(line.header, 'location');
  });

  test('the log holds neither query strings nor credentials', async () => {
    const resets = (): number => gw.logs().filter((l) => l.path === '/reset').length;
    const before = resets();
    await call(port, { path: '/reset?sig=top-secret-signature', headers: { authorization: 'Bearer top-secret-token' } });
    await gw.waitForLog(() => resets() > before);
    const text = JSON.stringify(gw.logs());
    assert.ok(!text.includes('top-secret'), text.slice(0, 2000));
  });
});
