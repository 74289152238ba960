/**
 * `bulwark gateway` as the public face of a private registry (issue 5, items 5 and 6): skopeo,
 * verifying TLS against a test CA, pushes and pulls through the gateway's public host names from
 * an upstream CNCF Distribution registry and from an upstream Bulwark with token authentication
 * and a dedicated data endpoint. The public names resolve to loopback only inside skopeo's own
 * mount namespace (a private /etc/hosts bound over the real one); both names share one address
 * and port, so the gateway tells them apart by TLS server name and Host. The upstreams know
 * themselves by private names (`*.internal`), and nothing skopeo sees names them. Also: health
 * probes taking a backend out of rotation and back, and a large pull keeping the gateway's memory
 * flat.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findTool, loginArgs, makeClientEnv, run, tempDir, type ClientEnv } from '../e2e/tools.js';
import { buildImageLayout } from '../testkit/oci-layout.js';
import { distributionAvailable, startDistribution } from '../testkit/distribution.js';
import { startGateway, type RunningGateway } from '../testkit/gateway.js';
import { bootstrapCredentials, freePort, startServer, type RunningServer } from '../testkit/server.js';
import { makeCa } from '../testkit/tls-ca.js';
import { send, type Reply } from '../testkit/request.js';
import { generatedBytes, sampleRss } from '../testkit/process-probe.js';

const inCI = process.env.CI === 'true';
const missing = ['skopeo', 'openssl', 'unshare', 'mount'].filter((t) => findTool(t) === undefined);
const skip = (missing.length > 0 || !distributionAvailable()) && !inCI ? `missing: ${[...missing, ...(distributionAvailable() ? [] : ['docker-registry'])].join(', ')}` : false;

const REGISTRY = 'registry.bulwark.test';
const DATA = 'data.bulwark.test';

/** One HTTPS request to the gateway at 127.0.0.1, for host name `host` (SNI and Host), trusting only the test CA. */
function call(port: number, ca: Buffer, o: { host?: string; method?: string; path?: string; headers?: Record<string, string>; sni?: string; localAddress?: string }): Promise<Reply> {
  const host = o.host ?? REGISTRY;
  return send(`https://127.0.0.1:${port}${o.path ?? '/v2/'}`, {
    method: o.method ?? 'GET',
    headers: { host: `${host}:${port}`, ...o.headers },
    ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
    tls: {
      ca,
      // SNI as given (none when empty); the certificate is always checked, against the name in Host
      servername: o.sni ?? host,
      checkServerIdentity: (_h: string, cert: PeerCertificate) => checkServerIdentity(host, cert),
    },
  });
}

interface Harness {
  readonly dir: string;
  readonly ca: Buffer;
  readonly caFile: string;
  readonly certs: string;
  readonly hosts: string;
  readonly client: ClientEnv;
  readonly site: { cert: string; key: string };
}

async function harness(name: string): Promise<Harness> {
  const dir = await tempDir(name);
  const pki = await makeCa(dir);
  const site = await pki.leaf('public', `DNS:${REGISTRY},DNS:${DATA}`);
  const certs = join(dir, 'certs');
  await mkdir(certs);
  await writeFile(join(certs, 'ca.crt'), await readFile(pki.ca));
  const hosts = join(dir, 'hosts');
  await writeFile(hosts, `127.0.0.1 localhost\n127.0.0.1 ${REGISTRY} ${DATA}\n`);
  // no registry is marked insecure: the only trust is the CA in --cert-dir
  const client = await makeClientEnv('nothing.invalid');
  return { dir, ca: await readFile(pki.ca), caFile: pki.ca, certs, hosts, client, site };
}

async function disposeHarness(h: Harness | undefined): Promise<void> {
  if (h === undefined) return;
  await h.client.dispose();
  await rm(h.dir, { recursive: true, force: true });
}

/** skopeo with `/etc/hosts` replaced, in its own mount namespace, by the harness's (public names → loopback). */
function skopeo(h: Harness, args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  const script = 'mount --bind "$0" /etc/hosts && exec "$@"';
  return run('unshare', ['--mount', '--', 'sh', '-c', script, h.hosts, 'skopeo', '--debug', '--policy', h.client.policyPath, ...args], { env: h.client.env, timeoutMs: 180_000, ...(input !== undefined ? { input } : {}) });
}

function gatewayConfig(h: Harness, port: number, registry: { url: string; hostHeader: string; caFile?: string; serverName?: string }, data?: { url: string; hostHeader: string }): object {
  const tls = { certFile: h.site.cert, keyFile: h.site.key };
  return {
    sites: [
      { name: 'registry', listen: `127.0.0.1:${port}`, hostNames: [REGISTRY], tls, pool: 'registry' },
      ...(data !== undefined ? [{ name: 'data', listen: `127.0.0.1:${port}`, hostNames: [DATA], tls, pool: 'data' }] : []),
    ],
    pools: [
      { name: 'registry', role: 'registry', backends: [registry], health: { intervalSeconds: 0.5, unhealthyThreshold: 1 } },
      ...(data !== undefined ? [{ name: 'data', role: 'data', backends: [data], health: { intervalSeconds: 0.5 } }] : []),
    ],
  };
}

async function pushAndPull(h: Harness, ref: string, login?: { username: string; password: string }): Promise<string> {
  const layout = join(h.dir, `in-${ref.replace(/\W/g, '-')}`);
  const image = await buildImageLayout(layout, { layers: [{ sizeBytes: 3_000_000 }, { sizeBytes: 30_000 }], tag: 'v1' });
  let seen = '';
  if (login !== undefined) seen += (await skopeo(h, [...loginArgs(h.client, ref.split('/')[0] ?? '', login.username).filter((a) => a !== '--tls-verify=false'), '--cert-dir', h.certs], login.password)).stderr;
  seen += (await skopeo(h, ['copy', '--dest-cert-dir', h.certs, `oci:${layout}:v1`, `docker://${ref}`])).stderr;
  const out = join(h.dir, `out-${ref.replace(/\W/g, '-')}`);
  seen += (await skopeo(h, ['copy', '--src-cert-dir', h.certs, `docker://${ref}`, `oci:${out}:v1`])).stderr;
  const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  assert.equal(index.manifests[0]?.digest, image.manifestDigest, 'pulled through the gateway as pushed through it');
  for (const l of image.layers) assert.ok((await readFile(join(out, 'blobs', 'sha256', l.digest.slice(7)))).length > 0, `layer ${l.digest} pulled`);
  return seen;
}

describe('gateway in front of CNCF Distribution', { skip }, () => {
  let h: Harness;
  let upstream: RunningServer;
  let gw: RunningGateway;
  let port: number;
  before(async () => {
    h = await harness('gateway-distribution');
    upstream = await startDistribution();
    port = await freePort();
    gw = await startGateway(gatewayConfig(h, port, { url: upstream.url, hostHeader: `registry.internal:${upstream.port}` }));
  });
  after(async () => {
    await gw?.stop();
    await upstream?.dispose();
    await disposeHarness(h);
  });

  test('skopeo pushes and pulls by the public name; upload Locations are rewritten from the private one', { timeout: 300_000 }, async () => {
    const seen = await pushAndPull(h, `${REGISTRY}:${port}/gw/app:v1`);
    assert.ok(!/registry\.internal/.test(seen), 'skopeo never saw the private name');
    const post = await call(port, h.ca, { method: 'POST', path: '/v2/gw/other/blobs/uploads/' });
    assert.equal(post.status, 202);
    assert.match(String(post.headers.location), new RegExp(`^https://${REGISTRY.replace(/\./g, '\\.')}:${port}/v2/gw/other/blobs/uploads/`), 'Distribution wrote http://registry.internal:<port>/...');
  });

  test('a large pull streams through: a stalled client does not make the gateway buffer the blob', { timeout: 300_000 }, async () => {
    const size = 768 * 1024 * 1024;
    const digest = await pushGenerated(upstream.url, 'gw/big', size);
    const pid = gw.child.pid ?? 0;
    const rss = sampleRss(pid, 50);
    const hash = createHash('sha256');
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, ca: h.ca, servername: REGISTRY, path: `/v2/gw/big/blobs/${digest}`, headers: { host: `${REGISTRY}:${port}` }, agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        let stalled = false;
        res.on('data', (b: Buffer) => {
          hash.update(b);
          received += b.length;
          if (!stalled && received > 1024 * 1024) {
            // the registry behind could send hundreds of MiB meanwhile: only backpressure stops it
            stalled = true;
            res.pause();
            setTimeout(() => res.resume(), 3000);
          }
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    const { peakKiB } = rss.stop();
    assert.equal(received, size);
    assert.equal(`sha256:${hash.digest('hex')}`, digest);
    assert.ok(peakKiB < 256 * 1024, `gateway peak RSS ${Math.round(peakKiB / 1024)} MiB while a ${size / 1024 / 1024} MiB blob went through`);
  });

  test('a host name the gateway does not serve here is 421, whatever the TLS server name', async () => {
    assert.equal((await call(port, h.ca, { host: REGISTRY, headers: { host: `other.example:${port}` } })).status, 421);
    assert.equal((await call(port, h.ca, { host: REGISTRY, sni: 'other.example' })).status, 421);
  });

  test('a backend that stops answering is taken out of rotation (503), and put back when it answers again', { timeout: 60_000 }, async () => {
    const down = await startDistribution();
    const p = await freePort();
    const g = await startGateway(gatewayConfig(h, p, { url: down.url, hostHeader: `registry.internal:${down.port}` }));
    try {
      assert.equal((await call(p, h.ca, {})).status, 200);
      await down.stop();
      await g.waitForLog((l) => l.msg === 'backend failed its health probes; taken out of rotation');
      const r = await call(p, h.ca, {});
      assert.equal(r.status, 503);
      assert.equal((JSON.parse(r.text) as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE');
      // the same address again, as a restarted registry would come back
      const healthyBefore = g.logs().filter((l) => l.msg === 'backend is healthy').length;
      const back = await startDistributionOn(down.port);
      try {
        await g.waitForLog(() => g.logs().filter((l) => l.msg === 'backend is healthy').length > healthyBefore);
        assert.equal((await call(p, h.ca, {})).status, 200);
      } finally {
        await back.dispose();
      }
    } finally {
      await g.stop();
      await down.dispose();
    }
  });
});

/** Pushes `size` generated bytes as one monolithic upload straight to a registry without auth; returns the digest. */
async function pushGenerated(base: string, repo: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of generatedBytes(repo, size, 8 * 1024 * 1024)) hash.update(chunk);
  const digest = `sha256:${hash.digest('hex')}`;
  const post = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  assert.equal(post.status, 202);
  const location = new URL(post.headers.get('location') ?? '', base);
  location.searchParams.set('digest', digest);
  const body = Readable.toWeb(Readable.from(generatedBytes(repo, size, 8 * 1024 * 1024))) as ReadableStream<Uint8Array>;
  const put = await fetch(location, { method: 'PUT', body, headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) }, duplex: 'half' });
  assert.equal(put.status, 201);
  return digest;
}

/** Distribution on a given port (the health test restarts one where it was). */
async function startDistributionOn(port: number): Promise<RunningServer> {
  for (let i = 0; ; i++) {
    const s = await startDistribution({ port }).catch((e: unknown) => (i < 20 ? undefined : Promise.reject(e as Error)));
    if (s !== undefined) return s;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('gateway in front of Bulwark with token authentication and a data endpoint', { skip }, () => {
  let h: Harness;
  let upstream: RunningServer;
  let gw: RunningGateway;
  let port: number;
  let dataPort: number;
  before(async () => {
    h = await harness('gateway-bulwark');
    const upstreamPort = await freePort();
    dataPort = await freePort();
    upstream = await startServer({
      auth: true,
      port: upstreamPort,
      env: {
        BULWARK_EXTERNAL_URL: `http://registry.internal:${upstreamPort}`,
        BULWARK_DATA_ENDPOINT_LISTEN: `127.0.0.1:${dataPort}`,
        BULWARK_DATA_ENDPOINT_URL: `http://data.internal:${dataPort}`,
        BULWARK_DATA_ENDPOINT_BIND_CLIENT_ADDRESS: 'true',
        BULWARK_NETWORK_TRUSTED_PROXIES: '127.0.0.1',
      },
    });
    port = await freePort();
    gw = await startGateway(
      gatewayConfig(h, port, { url: upstream.url, hostHeader: `registry.internal:${upstreamPort}` }, { url: `http://127.0.0.1:${dataPort}`, hostHeader: `data.internal:${dataPort}` }),
    );
  });
  after(async () => {
    await gw?.stop();
    await upstream?.dispose();
    await disposeHarness(h);
  });

  test('the token realm names the public host, and an anonymous request is challenged through the gateway', async () => {
    const r = await call(port, h.ca, {});
    assert.equal(r.status, 401);
    assert.match(String(r.headers['www-authenticate']), new RegExp(`realm="https://${REGISTRY.replace(/\./g, '\\.')}:${port}/oauth2/token"`));
  });

  test('skopeo logs in, pushes and pulls by the public names; blobs come from the data site; no private name is ever seen', { timeout: 300_000 }, async () => {
    const admin = await bootstrapCredentials(upstream.dataDir);
    const seen = await pushAndPull(h, `${REGISTRY}:${port}/gw/bulwark:v1`, admin);
    assert.ok(!/\.internal/.test(seen), 'skopeo never saw a private name');
    assert.ok(seen.includes(`https://${REGISTRY}:${port}/oauth2/token`), 'skopeo fetched its token from the public realm');
    const audit = (await readFile(join(upstream.dataDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; outcome: string; clientAddress?: string });
    const pulls = audit.filter((e) => e.type === 'blob.pull' && e.outcome === 'success');
    assert.ok(pulls.length >= 3, 'the data endpoint served the blobs (the registry endpoint only redirects)');
  });

  test('two sites on one address: SNI and Host must name the same site; without SNI only the default certificate\'s site', async () => {
    assert.equal((await call(port, h.ca, { host: REGISTRY })).status, 401);
    assert.equal((await call(port, h.ca, { host: DATA })).status, 403, 'the data site: its probe answer');
    assert.equal((await call(port, h.ca, { host: DATA, sni: REGISTRY })).status, 421, 'SNI registry, Host data: domain fronting');
    assert.equal((await call(port, h.ca, { host: REGISTRY, sni: DATA })).status, 421);
    assert.equal((await call(port, h.ca, { host: REGISTRY, sni: '' })).status, 401, 'no SNI: the registry site, whose certificate was served');
    assert.equal((await call(port, h.ca, { host: DATA, sni: '' })).status, 421, 'no SNI cannot reach another site');
  });

  test('a blob GET is redirected to the data site by its public name', async () => {
    const admin = await bootstrapCredentials(upstream.dataDir);
    const basic = Buffer.from(`${admin.username}:${admin.password}`).toString('base64');
    const token = await call(port, h.ca, { path: `/oauth2/token?service=bulwark&scope=${encodeURIComponent('repository:gw/bulwark:pull')}`, headers: { authorization: `Basic ${basic}` } });
    assert.equal(token.status, 200, token.text);
    const bearer = (JSON.parse(token.text) as { token: string }).token;
    const manifest = await call(port, h.ca, { path: '/v2/gw/bulwark/manifests/v1', headers: { authorization: `Bearer ${bearer}`, accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(manifest.status, 200);
    const layer = (JSON.parse(manifest.text) as { layers: { digest: string }[] }).layers[0]?.digest ?? '';
    // from 127.0.0.2: the upstream binds the URL to the address the gateway forwards, not to the gateway's own
    const blob = await call(port, h.ca, { path: `/v2/gw/bulwark/blobs/${layer}`, headers: { authorization: `Bearer ${bearer}` }, localAddress: '127.0.0.2' });
    assert.equal(blob.status, 307);
    const location = new URL(String(blob.headers.location));
    assert.equal(location.origin, `https://${DATA}:${port}`);
    assert.equal((await call(port, h.ca, { host: DATA, path: location.pathname + location.search })).status, 403, 'from 127.0.0.1: not the address it was issued to');
    const got = await call(port, h.ca, { host: DATA, path: location.pathname + location.search, localAddress: '127.0.0.2' });
    assert.equal(got.status, 200, 'the signed URL, bound to the client address the gateway forwarded, is honoured');
    assert.equal((await call(port, h.ca, { host: DATA, path: location.pathname })).status, 403, 'the data site serves only signed URLs');
    const text = JSON.stringify(gw.logs());
    assert.ok(!text.includes('sig=') && !text.includes(bearer) && !text.includes(admin.password), 'no signature, token or password in the gateway log');
  });
});

describe('gateway to an HTTPS backend, verified against the internal CA', { skip }, () => {
  let h: Harness;
  let upstream: RunningServer;
  let internalCa: string;
  before(async () => {
    h = await harness('gateway-https-backend');
    const dir = join(h.dir, 'internal');
    await mkdir(dir);
    const pki = await makeCa(dir, 'DNS:registry.internal,IP:127.0.0.1', '/CN=bulwark internal CA');
    internalCa = pki.ca;
    const leaf = await pki.leaf('registry-internal');
    const port = await freePort();
    upstream = await startServer({
      auth: true,
      port,
      httpsCa: await readFile(pki.ca),
      env: { BULWARK_TLS_CERT_FILE: leaf.cert, BULWARK_TLS_KEY_FILE: leaf.key, BULWARK_EXTERNAL_URL: `https://registry.internal:${port}` },
    });
  });
  after(async () => {
    await upstream?.dispose();
    await disposeHarness(h);
  });

  test('with the internal CA the backend is healthy and its https realm is rewritten to the public name', async () => {
    const port = await freePort();
    const gw = await startGateway(gatewayConfig(h, port, { url: upstream.url, hostHeader: `registry.internal:${upstream.port}`, caFile: internalCa }));
    try {
      const r = await call(port, h.ca, {});
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate']), new RegExp(`realm="https://${REGISTRY.replace(/\./g, '\\.')}:${port}/oauth2/token"`));
    } finally {
      await gw.stop();
    }
  });

  test('a backend whose certificate the configured CA does not verify never gets a request: 503, and the log says why', async () => {
    const port = await freePort();
    // the public CA instead of the internal one
    const gw = await startGateway(gatewayConfig(h, port, { url: upstream.url, hostHeader: `registry.internal:${upstream.port}`, caFile: h.caFile }));
    try {
      assert.equal((await call(port, h.ca, {})).status, 503);
      const line = await gw.waitForLog((l) => l.msg === 'backend failed its first health probe; not in rotation');
      assert.match(String(line.error), /certificate/i);
    } finally {
      await gw.stop();
    }
  });

  test('nor one whose certificate does not hold the name the gateway expects', async () => {
    const port = await freePort();
    const gw = await startGateway(gatewayConfig(h, port, { url: upstream.url, hostHeader: `registry.internal:${upstream.port}`, caFile: internalCa, serverName: 'other.internal' }));
    try {
      assert.equal((await call(port, h.ca, {})).status, 503);
      const line = await gw.waitForLog((l) => l.msg === 'backend failed its first health probe; not in rotation');
      assert.match(String(line.error), /other\.internal|altnames/i);
    } finally {
      await gw.stop();
    }
  });
});
