/**
 * Network rules over real sockets (issue 5): the built server with a private listener and public
 * listeners on loopback (IPv4 and IPv6), clients connecting from chosen loopback source addresses
 * (127.0.0.x), authentication on. An allowed request reaches authentication (401 without
 * credentials); a refused one is answered before it: 403 `DENIED` naming the rule, and a
 * `network.denied` audit event with the client address.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, startServer, type RunningServer } from '../testkit/server.js';
import { OciClient } from '../testkit/oci-client.js';
import { sleep } from '../testkit/process-probe.js';
import { send } from '../testkit/request.js';
import { auditEventsWhen } from '../testkit/audit-log.js';
import { rawExchange } from '../testkit/raw-http.js';

interface Answer {
  readonly status: number;
  readonly code: string | undefined;
  readonly message: string;
}

/** GET /v2/ on host:port from a chosen local address, with extra headers. */
async function get(host: string, port: number, from: string | undefined, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await send(`http://${host.includes(':') ? `[${host}]` : host}:${port}/v2/`, { headers, ...(from !== undefined ? { localAddress: from } : {}) });
  let code: string | undefined;
  let message = '';
  try {
    const body = JSON.parse(r.text) as { errors?: Array<{ code: string; message: string }> };
    code = body.errors?.[0]?.code;
    message = body.errors?.[0]?.message ?? '';
  } catch {
    // not an envelope
  }
  return { status: r.status, code, message };
}

const PROXY = '127.0.0.20';

describe('network rules on real listeners', () => {
  let server: RunningServer;
  let pub: number;
  let pub6: number;
  before(async () => {
    pub = await freePort();
    pub6 = await freePort();
    server = await startServer({
      auth: true,
      env: {
        BULWARK_NETWORK_LISTENERS: `public=127.0.0.2:${pub},public=[::1]:${pub6}`,
        BULWARK_NETWORK_RULES: 'lab=allow:127.0.0.8/30,loop6=allow:::1/128,v6net=allow:2001:db8::/64,v6wide=deny:2001:db8::/32',
        BULWARK_NETWORK_TRUSTED_PROXIES: PROXY,
      },
    });
  });
  after(async () => {
    await server?.dispose();
  });

  const reached = (a: Answer, what: string): void => assert.deepEqual([a.status, a.code], [401, 'UNAUTHORIZED'], `${what}: allowed, so it reaches authentication`);
  const refused = (a: Answer, rule: string, address: string, what: string): void => {
    assert.deepEqual([a.status, a.code], [403, 'DENIED'], `${what}: refused before authentication`);
    assert.equal(a.message, `access from ${address} is denied by network ${rule}`, what);
  };

  test('the private listener is not subject to the rules', async () => {
    reached(await get('127.0.0.1', server.port, '127.0.0.7'), 'private listener, address in no rule');
    reached(await get('127.0.0.1', server.port, '127.0.0.12'), 'private listener');
  });

  test('IPv4 CIDR edges on the public listener: 127.0.0.8/30 holds .8 to .11', async () => {
    refused(await get('127.0.0.2', pub, '127.0.0.7'), 'defaultAction Deny', '127.0.0.7', '.7, below the range');
    reached(await get('127.0.0.2', pub, '127.0.0.8'), '.8, first of the range');
    reached(await get('127.0.0.2', pub, '127.0.0.11'), '.11, last of the range');
    refused(await get('127.0.0.2', pub, '127.0.0.12'), 'defaultAction Deny', '127.0.0.12', '.12, above the range');
  });

  test('IPv6: a public listener on [::1], and IPv6 clients behind the trusted proxy', async () => {
    reached(await get('::1', pub6, '::1'), '::1 is allowed by loop6');
    reached(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': '2001:db8::42' }), 'in v6net');
    refused(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': '2001:db8:0:1::42' }), 'rule v6wide', '2001:db8:0:1::42', 'outside v6net, inside v6wide');
    refused(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': '2001:db9::1' }), 'defaultAction Deny', '2001:db9::1', 'in no rule');
  });

  test('forwarding headers from an untrusted peer are ignored (spoofing)', async () => {
    refused(await get('127.0.0.2', pub, '127.0.0.7', { 'x-forwarded-for': '127.0.0.8' }), 'defaultAction Deny', '127.0.0.7', 'X-Forwarded-For from a client');
    refused(await get('127.0.0.2', pub, '127.0.0.7', { forwarded: 'for=127.0.0.8' }), 'defaultAction Deny', '127.0.0.7', 'Forwarded from a client');
    refused(await get('127.0.0.2', pub, '127.0.0.7', { 'x-forwarded-for': `127.0.0.8, ${PROXY}` }), 'defaultAction Deny', '127.0.0.7', 'a client naming the proxy in its own header');
  });

  test('through the trusted proxy the chain is walked from the right to the first untrusted hop', async () => {
    reached(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': '127.0.0.9' }), 'client .9 via the proxy');
    refused(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': '127.0.0.9, 127.0.0.7' }), 'defaultAction Deny', '127.0.0.7', 'the real client is the rightmost untrusted hop, not a value it wrote');
    reached(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': `127.0.0.10, ${PROXY}` }), 'two trusted hops');
    refused(await get('127.0.0.2', pub, PROXY, { forwarded: 'for=127.0.0.9' }), 'defaultAction Deny', PROXY, 'the proxies write X-Forwarded-For: Forwarded is not read');
    refused(await get('127.0.0.2', pub, PROXY, { 'x-forwarded-for': 'unknown' }), 'defaultAction Deny', 'unknown', 'a hop that is no address matches no rule');
  });

  test('a request the parser cannot read is refused like any other from a refused address: 403 DENIED, not the parser\'s 400', async () => {
    const garbled = async (host: string, port: number, from: string): Promise<Answer> => {
      const r = await rawExchange(port, (s) => void s.write('GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'), { host, localAddress: from, timeoutMs: 5000, untilResponse: true });
      const body = JSON.parse(r.response?.body.toString() ?? '{}') as { errors?: Array<{ code: string; message: string }> };
      return { status: r.response?.status ?? 0, code: body.errors?.[0]?.code, message: body.errors?.[0]?.message ?? '' };
    };
    refused(await garbled('127.0.0.2', pub, '127.0.0.14'), 'defaultAction Deny', '127.0.0.14', 'malformed, from a refused address');
    assert.deepEqual((({ status, code }) => [status, code])(await garbled('127.0.0.2', pub, '127.0.0.9')), [400, 'BAD_REQUEST'], 'malformed, from an allowed address');
    assert.deepEqual((({ status, code }) => [status, code])(await garbled('127.0.0.2', pub, PROXY)), [400, 'BAD_REQUEST'], 'malformed, from the trusted proxy: no client is known');
    assert.deepEqual((({ status, code }) => [status, code])(await garbled('127.0.0.1', server.port, '127.0.0.14')), [400, 'BAD_REQUEST'], 'malformed, on the private listener');
    type Denied = { type: string; client: { address: string }; reason?: string };
    const events = await auditEventsWhen<Denied>(join(server.dataDir, 'audit.log'), (all) => all.some((e) => e.type === 'network.denied' && e.client.address === '127.0.0.14'));
    assert.equal(events.find((e) => e.type === 'network.denied' && e.client.address === '127.0.0.14')?.reason, 'network defaultAction Deny', 'audited');
  });

  test('every refusal is an audit event with the client address and the rule', async () => {
    await get('127.0.0.2', pub, '127.0.0.13');
    type Denied = { type: string; client: { address: string }; reason?: string; target?: string; outcome: string; error?: string };
    const events = (await auditEventsWhen<Denied>(join(server.dataDir, 'audit.log'), (all) => all.some((e) => e.type === 'network.denied' && e.client.address === '127.0.0.13'))).filter(
      (e) => e.type === 'network.denied',
    );
    const last = events.find((e) => e.client.address === '127.0.0.13');
    assert.ok(last !== undefined, 'the refusal of 127.0.0.13 was audited');
    assert.deepEqual([last.outcome, last.error, last.reason, last.target], ['failure', 'DENIED', 'network defaultAction Deny', `public listener 127.0.0.2:${pub}`]);
    assert.ok(events.some((e) => e.client.address === '2001:db8:0:1::42' && e.reason === 'network rule v6wide'), 'forwarded addresses are audited as resolved');
  });
});

describe('public network access disabled', () => {
  let server: RunningServer;
  let pub: number;
  before(async () => {
    pub = await freePort();
    server = await startServer({
      auth: true,
      env: { BULWARK_NETWORK_LISTENERS: `public=127.0.0.2:${pub}`, BULWARK_NETWORK_PUBLIC_ACCESS: 'Disabled', BULWARK_NETWORK_DEFAULT_ACTION: 'Allow', BULWARK_NETWORK_RULES: 'lab=allow:127.0.0.8/30' },
    });
  });
  after(async () => {
    await server?.dispose();
  });

  test('refuses every request on a public listener, rules and defaultAction notwithstanding; the private listener serves', async () => {
    for (const from of ['127.0.0.8', '127.0.0.7']) {
      const a = await get('127.0.0.2', pub, from);
      assert.deepEqual([a.status, a.code, a.message], [403, 'DENIED', `access from ${from} is denied by network publicAccess Disabled`], from);
    }
    const p = await get('127.0.0.1', server.port, '127.0.0.8');
    assert.deepEqual([p.status, p.code], [401, 'UNAUTHORIZED'], 'the private listener still serves');
  });
});

describe('extra listeners in the process lifecycle', () => {
  test('SIGTERM lets a request in flight on an extra listener finish before the stores close', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const MiB = 1024 * 1024;
    const SIZE = 16 * MiB;
    const body = Buffer.alloc(SIZE, 0x5a);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    let server = await startServer({ env: { BULWARK_NETWORK_LISTENERS: `private=127.0.0.3:${port}`, BULWARK_HTTP_SHUTDOWN_TIMEOUT_MS: '20000' } });
    const client = new OciClient(`http://127.0.0.3:${port}`);
    try {
      const session = await client.startUpload('net/drain');
      async function* slowly(): AsyncGenerator<Buffer> {
        for (let at = 0; at < SIZE; at += MiB) {
          await sleep(40);
          yield body.subarray(at, at + MiB);
        }
      }
      const exited = new Promise<number | null>((res) => server.child.once('exit', (code) => res(code)));
      let answered = false;
      const put = client.request('PUT', client.withQuery(session, { digest }), { body: slowly(), headers: { 'content-length': SIZE }, timeoutMs: 60_000 }).finally(() => (answered = true));
      await sleep(200);
      assert.equal(answered, false, 'the PUT is in flight at SIGTERM');
      server.child.kill('SIGTERM');
      const r = await put;
      assert.equal(r.status, 201, `the PUT on the extra listener completes: ${r.body.toString()}`);
      assert.equal(await exited, 0, 'the process exits 0 after draining it');
    } finally {
      client.close();
    }
    server = await startServer({ dataDir: server.dataDir });
    const again = new OciClient(server.url);
    try {
      const pulled = await again.hashBlob('net/drain', digest, 30_000);
      assert.deepEqual([pulled.status, pulled.digest], [200, digest], 'the blob committed during shutdown is there after a restart');
    } finally {
      again.close();
      await server.dispose();
    }
  });

  test('an extra listener that cannot bind stops the start: the process exits non-zero and serves nothing', { timeout: 60_000 }, async () => {
    const taken = createServer();
    await new Promise<void>((res) => taken.listen(0, '127.0.0.1', () => res()));
    const busy = (taken.address() as { port: number }).port;
    try {
      await assert.rejects(startServer({ env: { BULWARK_NETWORK_LISTENERS: `public=127.0.0.1:${busy}` } }), /exited during start[\s\S]*EADDRINUSE/);
    } finally {
      taken.close();
    }
  });
});
