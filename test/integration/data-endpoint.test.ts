/**
 * The dedicated data endpoint (issue 5, item 4): blob GETs on the registry endpoint answer 307
 * to a short-lived signed URL on the data endpoint's own listener; the data endpoint serves those
 * (with Range) and answers 403 `DENIED` to everything else, never listing anything; a bound URL
 * works only for the client it was issued to; skopeo pulls through the redirect unchanged.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, startServer, type RunningServer } from '../testkit/server.js';
import { sleep } from '../testkit/process-probe.js';
import { send, type Reply } from '../testkit/request.js';
import { buildImageLayout } from '../testkit/oci-layout.js';
import { auditEventsWhen } from '../testkit/audit-log.js';
import { findTool, loginArgs, makeClientEnv, run, startTarget, tempDir, type ClientEnv, type TargetServer } from '../e2e/tools.js';

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

type Res = Reply;

/** One request from a chosen local address, redirects not followed. */
function http(method: string, url: string, opts: { from?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Res> {
  return send(url, { method, ...(opts.headers !== undefined ? { headers: opts.headers } : {}), ...(opts.body !== undefined ? { body: opts.body } : {}), ...(opts.from !== undefined ? { localAddress: opts.from } : {}) });
}

const code = (r: Res): string | undefined => (JSON.parse(r.body.toString('utf8') || '{}') as { errors?: Array<{ code: string }> }).errors?.[0]?.code;

async function pushBlob(server: RunningServer, repo: string, data: Buffer): Promise<string> {
  const r = await http('POST', `${server.url}/v2/${repo}/blobs/uploads/?digest=${sha(data)}`, { body: data, headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) } });
  assert.equal(r.status, 201, r.body.toString());
  return sha(data);
}

describe('data endpoint', () => {
  let server: RunningServer;
  let dataPort: number;
  const blob = Buffer.from('0123456789abcdef'.repeat(4096));
  let digest: string;
  before(async () => {
    dataPort = await freePort();
    server = await startServer({ env: { BULWARK_DATA_ENDPOINT_LISTEN: `127.0.0.1:${dataPort}` } });
    digest = await pushBlob(server, 'data/app', blob);
  });
  after(async () => {
    await server?.dispose();
  });

  test('a blob GET is redirected (307) to a signed URL on the data endpoint, which serves it, Range included', async () => {
    const r = await http('GET', `${server.url}/v2/data/app/blobs/${digest}`);
    assert.equal(r.status, 307);
    const location = String(r.headers.location);
    assert.match(location, new RegExp(`^http://127\\.0\\.0\\.1:${dataPort}/v2/data/app/blobs/${digest}\\?exp=\\d+&k=[\\w-]+&sig=[\\w-]{43}$`));
    const got = await http('GET', location);
    assert.equal(got.status, 200);
    assert.equal(sha(got.body), digest);
    assert.equal(got.headers['docker-content-digest'], digest);
    const part = await http('GET', location, { headers: { range: 'bytes=16-31' } });
    assert.deepEqual([part.status, part.body.toString()], [206, '0123456789abcdef']);
    const head = await http('HEAD', `${server.url}/v2/data/app/blobs/${digest}`);
    assert.equal(head.status, 200, 'HEAD is answered by the registry endpoint');
    const unknown = await http('GET', `${server.url}/v2/data/app/blobs/${sha('nothing')}`);
    assert.deepEqual([unknown.status, code(unknown)], [404, 'BLOB_UNKNOWN'], 'no redirect for a blob the repository does not have');
  });

  test('a URL handed out before the blob left the repository serves nothing', async () => {
    const gone = await pushBlob(server, 'data/gone', Buffer.from('soon gone'));
    const location = String((await http('GET', `${server.url}/v2/data/gone/blobs/${gone}`)).headers.location);
    assert.equal((await http('DELETE', `${server.url}/v2/data/gone/blobs/${gone}`)).status, 202);
    const r = await http('GET', location);
    assert.deepEqual([r.status, code(r)], [404, 'BLOB_UNKNOWN'], 'the data endpoint checks the repository again');
  });

  test('anything but a valid signed URL gets 403 DENIED, and nothing is listed', async () => {
    const location = String((await http('GET', `${server.url}/v2/data/app/blobs/${digest}`)).headers.location);
    const u = new URL(location);
    const data = `http://127.0.0.1:${dataPort}`;
    const forged = (f: (p: URLSearchParams) => void, path = u.pathname): string => {
      const p = new URLSearchParams(u.search);
      f(p);
      return `${data}${path}?${p.toString()}`;
    };
    const other = await pushBlob(server, 'data/other', Buffer.from('another blob'));
    const sig = u.searchParams.get('sig') ?? '';
    for (const [what, method, url] of [
      ['tampered signature', 'GET', forged((p) => p.set('sig', (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)))],
      ['later expiry', 'GET', forged((p) => p.set('exp', String(Number(p.get('exp')) + 60)))],
      ['no signature', 'GET', forged((p) => p.delete('sig'))],
      ['another digest', 'GET', forged(() => undefined, `/v2/data/app/blobs/${other}`)],
      ['another repository', 'GET', forged(() => undefined, `/v2/data/other/blobs/${digest}`)],
      ['HEAD with a GET signature', 'HEAD', location],
      ['DELETE', 'DELETE', location],
      ['root', 'GET', `${data}/`],
      ['API base', 'GET', `${data}/v2/`],
      ['catalog', 'GET', `${data}/v2/_catalog`],
      ['tags', 'GET', `${data}/v2/data/app/tags/list`],
      ['manifest', 'GET', `${data}/v2/data/app/manifests/latest`],
      ['upload', 'POST', `${data}/v2/data/app/blobs/uploads/`],
      ['TRACE, a method no route lists', 'TRACE', `${data}/v2/`],
      ['OPTIONS', 'OPTIONS', location],
      ['an invalid repository name', 'GET', forged(() => undefined, `/v2/Not..A..Name/blobs/${digest}`)],
      ['an unknown path', 'GET', `${data}/favicon.ico`],
    ] as const) {
      const r = await http(method, url);
      assert.equal(r.status, 403, `${what}: ${r.status}`);
      if (method !== 'HEAD') assert.equal(code(r), 'DENIED', what);
      assert.ok(!r.body.includes('data/app"') && !r.body.includes('repositories'), `${what}: lists nothing`);
    }
  });
});

describe('data endpoint with short-lived URLs bound to the client', () => {
  let server: RunningServer;
  let digest: string;
  before(async () => {
    const dataPort = await freePort();
    server = await startServer({
      env: {
        BULWARK_DATA_ENDPOINT_LISTEN: `127.0.0.1:${dataPort}`,
        BULWARK_DATA_ENDPOINT_URL_TTL_SECONDS: '5',
        BULWARK_DATA_ENDPOINT_KEY_ROTATION_SECONDS: '5',
        BULWARK_DATA_ENDPOINT_BIND_CLIENT_ADDRESS: 'true',
        // the data endpoint is public: the network rules apply there (they allow 127.0.0.1-3)
        BULWARK_DATA_ENDPOINT_KIND: 'public',
        BULWARK_NETWORK_RULES: 'local=allow:127.0.0.0/30',
      },
    });
    digest = await pushBlob(server, 'data/bound', Buffer.from('bound blob'));
  });
  after(async () => {
    await server?.dispose();
  });

  test('the network rules apply on a public data endpoint; only the redirected client may use the URL, and only until it expires', { timeout: 30_000 }, async () => {
    const location = String((await http('GET', `${server.url}/v2/data/bound/blobs/${digest}`, { from: '127.0.0.1' })).headers.location);
    const outside = await http('GET', location, { from: '127.0.0.5' });
    assert.deepEqual([outside.status, code(outside)], [403, 'DENIED']);
    assert.match(outside.body.toString(), /denied by network defaultAction Deny/, 'refused by the rules, before the signature');
    const other = await http('GET', location, { from: '127.0.0.2' });
    assert.equal(other.status, 403, 'another client address, allowed by the rules');
    assert.match(other.body.toString(), /valid signed blob URLs/, 'refused by the signature bound to 127.0.0.1');
    assert.equal((await http('GET', location, { from: '127.0.0.1' })).status, 200, 'the client it was issued to');
    await sleep(6_000);
    assert.equal((await http('GET', location, { from: '127.0.0.1' })).status, 403, 'expired');
  });
});

describe('data URL keys shared through dataEndpoint.keyFile', () => {
  test('a URL signed before a restart is honoured after it; without the file it is not; a readable key file is refused', async () => {
    const dir = await tempDir('data-key-file');
    const keyFile = join(dir, 'data-url.key');
    await writeFile(keyFile, `${randomBytes(48).toString('base64')}\n`, { mode: 0o600 });
    const dataPort = await freePort();
    const port = await freePort();
    const env = { BULWARK_DATA_ENDPOINT_LISTEN: `127.0.0.1:${dataPort}` };
    let server = await startServer({ port, dataDir: join(dir, 'data'), env: { ...env, BULWARK_DATA_ENDPOINT_KEY_FILE: keyFile } });
    try {
      const blob = Buffer.from('shared-key-blob'.repeat(100));
      const digest = await pushBlob(server, 'data/shared', blob);
      const location = String((await http('GET', `${server.url}/v2/data/shared/blobs/${digest}`)).headers.location);
      assert.match(location, /[?&]k=e[0-9a-z]+&/, 'a key named by its rotation period');
      // the URL handed out is on record, without its signature
      const sig = new URL(location).searchParams.get('sig') ?? '';
      type Redirect = { type: string; digest?: string; target?: string; client?: { address: string } };
      const isRedirect = (e: Redirect): boolean => e.type === 'blob.redirect';
      const redirect = (await auditEventsWhen<Redirect>(join(dir, 'data', 'audit.log'), (all) => all.some(isRedirect))).find(isRedirect);
      assert.equal(redirect?.digest, digest);
      assert.equal(redirect?.client?.address, '127.0.0.1');
      assert.match(String(redirect?.target), /^data URL, key e[0-9a-z]+, expires \d{4}-.*, not bound to a client$/);
      assert.ok(!JSON.stringify(redirect).includes(sig), 'never the signature');
      await server.stop();
      server = await startServer({ port, dataDir: join(dir, 'data'), env: { ...env, BULWARK_DATA_ENDPOINT_KEY_FILE: keyFile } });
      const got = await http('GET', location);
      assert.equal(got.status, 200, 'the restarted registry derives the same key');
      assert.equal(sha(got.body), digest);
      await server.stop();
      server = await startServer({ port, dataDir: join(dir, 'data'), env });
      assert.equal((await http('GET', location)).status, 403, 'random in-memory keys: a restart forgets them');
      await server.stop();
      await chmod(keyFile, 0o644);
      await assert.rejects(startServer({ port, dataDir: join(dir, 'data'), env: { ...env, BULWARK_DATA_ENDPOINT_KEY_FILE: keyFile } }), /keyFile .* must be a regular file with mode 0600/);
    } finally {
      await server.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const skopeo = findTool('skopeo');
describe('skopeo through the data endpoint', { skip: skopeo === undefined && process.env.CI !== 'true' ? 'skopeo is not installed' : false }, () => {
  let server: TargetServer;
  let client: ClientEnv;
  let work: string;
  before(async () => {
    const dataPort = await freePort();
    server = await startTarget({ env: { BULWARK_DATA_ENDPOINT_LISTEN: `127.0.0.1:${dataPort}` } });
    client = await makeClientEnv(server.host);
    work = await tempDir('data-endpoint');
    if (server.admin !== undefined) await run('skopeo', loginArgs(client, server.host, server.admin.username), { env: client.env, input: server.admin.password });
  });
  after(async () => {
    await server?.dispose();
    await client?.dispose();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  test('pushes, then pulls every blob through the redirect, digests unchanged', { timeout: 300_000 }, async () => {
    const layout = join(work, 'in');
    const image = await buildImageLayout(layout, { layers: [{ sizeBytes: 2_000_000 }, { sizeBytes: 20_000 }], tag: 'v1' });
    const sk = (args: string[]): Promise<unknown> => run('skopeo', ['--policy', client.policyPath, ...args], { env: client.env, timeoutMs: 120_000 });
    await sk(['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${server.host}/data/skopeo:v1`]);
    const out = join(work, 'out');
    await sk(['copy', '--src-tls-verify=false', `docker://${server.host}/data/skopeo:v1`, `oci:${out}:v1`]);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]?.digest, image.manifestDigest);
    type Pull = { type: string; digest?: string; outcome: string };
    const served = [...image.layers.map((l) => l.digest), image.config.digest];
    const isPull = (e: Pull): boolean => e.type === 'blob.pull' && e.outcome === 'success';
    const pulls = (await auditEventsWhen<Pull>(join(server.dataDir, 'audit.log'), (all) => served.every((d) => all.some((e) => isPull(e) && e.digest === d)))).filter(isPull);
    for (const d of served) {
      assert.ok(pulls.some((e) => e.digest === d), `${d} was served (by the data endpoint: the registry endpoint only redirects)`);
    }
  });
});
