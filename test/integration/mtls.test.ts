/**
 * Mutual TLS (issue 5, item 1; ADR 0013): a client certificate, verified against
 * `tls.clientCaFile`, signs a workload in as the service identity `tls.clientIdentities` names,
 * at the token endpoint, with no password anywhere. Certificates made by openssl for three CAs
 * (the server's, the clients', and one nobody trusts); skopeo pulling with only a certificate in
 * its --cert-dir; `tls.clientAuth=required` refusing handshakes without a certificate.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { findTool, makeClientEnv, run, runExpectingFailure, tempDir, type ClientEnv } from '../e2e/tools.js';
import { buildImageLayout } from '../testkit/oci-layout.js';
import { bootstrapCredentials, startServer, type RunningServer } from '../testkit/server.js';
import { makeCa } from '../testkit/tls-ca.js';
import { send, type Reply } from '../testkit/request.js';

const inCI = process.env.CI === 'true';
const skip = (findTool('openssl') === undefined || findTool('skopeo') === undefined) && !inCI ? 'openssl or skopeo is not installed' : false;

interface Pair {
  readonly cert: Buffer;
  readonly key: Buffer;
}

function get(port: number, ca: Buffer, path: string, o: { client?: Pair; headers?: Record<string, string> } = {}): Promise<Reply> {
  return send(`https://127.0.0.1:${port}${path}`, { headers: o.headers ?? {}, tls: { ca, servername: 'localhost', ...(o.client !== undefined ? { cert: o.client.cert, key: o.client.key } : {}) } });
}

const granted = (body: string): string[] => ((decodeJwt((JSON.parse(body) as { token: string }).token).access ?? []) as { name: string; actions: string[] }[]).map((a) => `${a.name}:${a.actions.join(',')}`);
const TOKEN = `/oauth2/token?service=bulwark&scope=${encodeURIComponent('repository:mtls/app:pull')}`;

describe('mutual TLS: a client certificate signs in as a service identity', { skip }, () => {
  let dir: string;
  let server: RunningServer;
  let serverCa: Buffer;
  let ci: Pair;
  let ghost: Pair;
  let rogue: Pair;
  let unmapped: Pair;
  let client: ClientEnv;
  let clientCaFile: string;
  let serverPair: { cert: string; key: string };

  before(async () => {
    dir = await tempDir('mtls');
    const dirs = ['server-ca', 'client-ca', 'rogue-ca'].map((d) => join(dir, d));
    for (const d of dirs) await mkdir(d);
    const [sDir = '', cDir = '', rDir = ''] = dirs;
    const sCa = await makeCa(sDir);
    const cCa = await makeCa(cDir, 'DNS:unused', '/CN=bulwark test client CA');
    const rCa = await makeCa(rDir, 'DNS:unused', '/CN=somebody else');
    serverPair = await sCa.leaf('server');
    serverCa = await readFile(sCa.ca);
    clientCaFile = cCa.ca;
    const pair = async (p: { cert: string; key: string }): Promise<Pair> => ({ cert: await readFile(p.cert), key: await readFile(p.key) });
    ci = await pair(await cCa.leaf('ci', 'URI:spiffe://bulwark.test/ci', 'clientAuth'));
    ghost = await pair(await cCa.leaf('ghost', 'DNS:ghost.bulwark.test', 'clientAuth'));
    unmapped = await pair(await cCa.leaf('other', 'URI:spiffe://bulwark.test/other', 'clientAuth'));
    rogue = await pair(await rCa.leaf('rogue', 'URI:spiffe://bulwark.test/ci', 'clientAuth'));
    server = await startServer({
      auth: true,
      httpsCa: serverCa,
      env: {
        BULWARK_TLS_CERT_FILE: serverPair.cert,
        BULWARK_TLS_KEY_FILE: serverPair.key,
        BULWARK_TLS_CLIENT_CA_FILE: clientCaFile,
        BULWARK_TLS_CLIENT_IDENTITIES: 'service:ci-runner=uri:spiffe://bulwark.test/ci,service:ghost-svc=dns:ghost.bulwark.test',
      },
    });
    // the operator: the service identity, its role, and an image to pull
    const admin = await bootstrapCredentials(server.dataDir);
    const basic = `Basic ${Buffer.from(`${admin.username}:${admin.password}`).toString('base64')}`;
    const t = await get(server.port, serverCa, `/oauth2/token?service=bulwark&scope=${encodeURIComponent('registry:admin:read,write,access')}`, { headers: { authorization: basic } });
    const adminToken = (JSON.parse(t.text) as { token: string }).token;
    const api = async (path: string, body: object): Promise<number> =>
      (
        await send(`https://127.0.0.1:${server.port}/api/v1${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
          tls: { ca: serverCa, servername: 'localhost' },
        })
      ).status;
    assert.equal(await api('/service-identities', { name: 'ci-runner' }), 201);
    assert.equal(await api('/role-assignments', { principal: 'service:ci-runner', role: 'AcrPull', scope: 'mtls/*' }), 201);
    client = await makeClientEnv('nothing.invalid');
    const certs = join(dir, 'certs-admin');
    await mkdir(certs);
    await writeFile(join(certs, 'ca.crt'), serverCa);
    const layout = join(dir, 'layout');
    await buildImageLayout(layout, { layers: [{ sizeBytes: 50_000 }], tag: 'v1' });
    await run('skopeo', ['login', '--authfile', client.authFile, '--cert-dir', certs, '--username', admin.username, '--password-stdin', server.host], { env: client.env, input: admin.password });
    await run('skopeo', ['--policy', client.policyPath, 'copy', '--dest-cert-dir', certs, `oci:${layout}:v1`, `docker://${server.host}/mtls/app:v1`], { env: client.env, timeoutMs: 120_000 });
    await run('skopeo', ['logout', '--authfile', client.authFile, server.host], { env: client.env });
  });
  after(async () => {
    await server?.dispose();
    await client?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('the mapped certificate gets a token for its identity, with what its role grants', async () => {
    const r = await get(server.port, serverCa, TOKEN, { client: ci });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(granted(r.text), ['mtls/app:pull']);
    const claims = decodeJwt((JSON.parse(r.text) as { token: string }).token);
    assert.equal(claims.sub, 'service:ci-runner');
    assert.deepEqual(claims.amr, ['mtls']);
    const offline = await get(server.port, serverCa, `${TOKEN}&offline_token=true`, { client: ci });
    assert.equal((JSON.parse(offline.text) as { refresh_token?: string }).refresh_token, undefined, 'no refresh token: it would outlive the certificate');
  });

  test('a TLS 1.2 renegotiation is refused: the verified certificate cannot be swapped for another on the same connection', async () => {
    const sock = connect({ host: '127.0.0.1', port: server.port, ca: serverCa, servername: 'localhost', cert: ci.cert, key: ci.key, maxVersion: 'TLSv1.2' });
    await once(sock, 'secureConnect');
    assert.equal(sock.authorized, true);
    const outcome = await new Promise<Error | null>((resolve) => {
      sock.once('error', resolve);
      sock.once('close', () => resolve(new Error('closed')));
      if (!sock.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ?? null))) resolve(new Error('refused locally'));
    });
    sock.destroy();
    assert.ok(outcome instanceof Error, 'the server went along with a renegotiation');
  });

  test('no certificate, one from a CA nobody trusts, or one no entry names: anonymous, granted nothing', async () => {
    for (const [what, pair] of [['none', undefined], ['untrusted CA, same SAN', rogue], ['unmapped', unmapped]] as const) {
      const r = await get(server.port, serverCa, TOKEN, pair !== undefined ? { client: pair } : {});
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.deepEqual(granted(r.text), [], what);
    }
  });

  test('a certificate naming an identity that does not exist is refused', async () => {
    const r = await get(server.port, serverCa, TOKEN, { client: ghost });
    assert.equal(r.status, 401);
    assert.match(r.text, /does not exist/);
  });

  test('skopeo pulls with only the certificate in its --cert-dir: no login, no password', { timeout: 180_000 }, async () => {
    const certs = join(dir, 'certs-ci');
    await mkdir(certs, { recursive: true });
    await writeFile(join(certs, 'ca.crt'), serverCa);
    const ref = `docker://${server.host}/mtls/app:v1`;
    await runExpectingFailure('skopeo', ['inspect', '--cert-dir', certs, ref], { env: client.env, timeoutMs: 60_000 });
    await writeFile(join(certs, 'client.cert'), ci.cert);
    await writeFile(join(certs, 'client.key'), ci.key);
    const out = join(dir, 'pulled');
    await run('skopeo', ['--policy', client.policyPath, 'copy', '--src-cert-dir', certs, ref, `oci:${out}:v1`], { env: client.env, timeoutMs: 120_000 });
    assert.ok((await readFile(join(out, 'index.json'), 'utf8')).includes('manifests'));
    const audit = await readFile(join(server.dataDir, 'audit.log'), 'utf8');
    assert.ok(audit.split('\n').some((l) => l.includes('"auth.token"') && l.includes('"service:ci-runner"')), 'the token issuance is audited under the service identity');
  });

  test('tls.clientAuth=required: no handshake without a certificate the client CAs verify', async () => {
    const strict = await startServer({
      auth: true,
      httpsCa: serverCa,
      httpsClient: ci,
      env: { BULWARK_TLS_CERT_FILE: serverPair.cert, BULWARK_TLS_KEY_FILE: serverPair.key, BULWARK_TLS_CLIENT_CA_FILE: clientCaFile, BULWARK_TLS_CLIENT_AUTH: 'required' },
    });
    try {
      assert.equal((await get(strict.port, serverCa, '/v2/', { client: ci })).status, 401, 'a verified certificate: served (and asked for a token)');
      await assert.rejects(get(strict.port, serverCa, '/v2/'), 'no certificate');
      await assert.rejects(get(strict.port, serverCa, '/v2/', { client: rogue }), 'a certificate from a CA nobody trusts');
    } finally {
      await strict.dispose();
    }
  });
});

describe('mutual TLS configuration', () => {
  test('client certificates need TLS, and identities need the client CAs; a bad entry is named', async () => {
    const fails = (env: Record<string, string>): Promise<unknown> => startServer({ env });
    await assert.rejects(fails({ BULWARK_TLS_CLIENT_CA_FILE: '/etc/hostname' }), /client certificates need TLS/);
    await assert.rejects(fails({ BULWARK_TLS_CLIENT_IDENTITIES: 'service:ci-runner=uri:spiffe://x/ci' }), /give tls.clientCaFile/);
    await assert.rejects(fails({ BULWARK_TLS_CLIENT_IDENTITIES: 'admin:root=sha256:00' }), /service:<name>=sha256/);
    await assert.rejects(fails({ BULWARK_TLS_CLIENT_AUTH: 'required' }), /tls.clientAuth=required[\s\S]*give tls.clientCaFile/);
  });

  test('a client CA file that is not CA certificates stops the start, with the reason', { skip }, async () => {
    const d = await tempDir('mtls-bad-ca');
    try {
      const pki = await makeCa(d);
      const leaf = await pki.leaf('server');
      const garbage = join(d, 'garbage.pem');
      await writeFile(garbage, 'not a certificate\n');
      const env = { BULWARK_TLS_CERT_FILE: leaf.cert, BULWARK_TLS_KEY_FILE: leaf.key };
      await assert.rejects(startServer({ env: { ...env, BULWARK_TLS_CLIENT_CA_FILE: garbage } }), /clientCaFile .* holds no PEM certificate/);
      await assert.rejects(startServer({ env: { ...env, BULWARK_TLS_CLIENT_CA_FILE: leaf.cert } }), /clientCaFile .* holds a certificate that is not a CA/);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
