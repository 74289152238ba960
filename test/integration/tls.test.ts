/**
 * HTTPS listeners (issue 5, item 1), with certificates made by openssl (Debian's, installed by
 * .ci/run) for a throwaway CA: TLS 1.2 or newer only; the certificate re-read when its files
 * change, without a restart, and a broken replacement ignored; network rules still applied on a
 * public HTTPS listener; plain HTTP refused beyond loopback; and skopeo pushing and pulling with
 * TLS verification against the CA (no insecure registry, no --tls-verify=false).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect, type PeerCertificate } from 'node:tls';
import { X509Certificate as X509 } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { freePort, startServer, type RunningServer } from '../testkit/server.js';
import { findTool } from '../e2e/tools.js';
import { buildImageLayout } from '../testkit/oci-layout.js';
import { sleep } from '../testkit/process-probe.js';
import { makeCa } from '../testkit/tls-ca.js';
import { send } from '../testkit/request.js';

const exec = promisify(execFile);
const inCI = process.env.CI === 'true';
const openssl = findTool('openssl');
const skopeo = findTool('skopeo');
const skipTls = openssl === undefined && !inCI ? 'openssl is not installed' : false;
const skipSkopeo = (openssl === undefined || skopeo === undefined) && !inCI ? 'openssl or skopeo is not installed' : false;

interface Handshake {
  readonly cert: PeerCertificate;
  readonly protocol: string | null;
}

/** A TLS handshake with the server, trusting only the test CA. */
function handshake(port: number, ca: Buffer, opts: { host?: string; localAddress?: string; maxVersion?: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const s = connect({
      host: opts.host ?? '127.0.0.1',
      port,
      ca,
      servername: 'localhost',
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
      // the client would go as low as TLS 1.0, at any security level: what it gets is the server's choice
      ...(opts.maxVersion !== undefined ? { maxVersion: opts.maxVersion, minVersion: 'TLSv1' as const, ciphers: 'DEFAULT@SECLEVEL=0' } : {}),
    });
    s.once('secureConnect', () => {
      const r = { cert: s.getPeerCertificate(), protocol: s.getProtocol() };
      s.end();
      resolve(r);
    });
    s.once('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('handshake timed out')));
  });
}

/** GET /v2/ over HTTPS, trusting only the test CA. */
async function getV2(host: string, port: number, ca: Buffer, localAddress?: string): Promise<number> {
  return (await send(`https://${host}:${port}/v2/`, { tls: { ca, servername: 'localhost' }, ...(localAddress !== undefined ? { localAddress } : {}) })).status;
}

describe('HTTPS listeners', { skip: skipTls }, () => {
  let dir: string;
  let ca: Buffer;
  let pki: Awaited<ReturnType<typeof makeCa>>;
  let server: RunningServer;
  let pub: number;
  let certFile: string;
  let keyFile: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bulwark-tls-'));
    pki = await makeCa(dir);
    ca = await readFile(pki.ca);
    const a = await pki.leaf('a');
    certFile = join(dir, 'server.crt');
    keyFile = join(dir, 'server.key');
    await writeFile(certFile, await readFile(a.cert));
    await writeFile(keyFile, await readFile(a.key), { mode: 0o600 });
    pub = await freePort();
    server = await startServer({
      httpsCa: ca,
      env: {
        BULWARK_TLS_CERT_FILE: certFile,
        BULWARK_TLS_KEY_FILE: keyFile,
        BULWARK_TLS_RELOAD_CHECK_SECONDS: '1',
        BULWARK_NETWORK_LISTENERS: `public=127.0.0.2:${pub}`,
        BULWARK_NETWORK_RULES: 'lab=allow:127.0.0.8',
      },
    });
  });
  after(async () => {
    await server?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  test('serves HTTPS with TLS 1.2 or newer, and nothing in plain HTTP', async () => {
    assert.equal(await getV2('127.0.0.1', server.port, ca), 200);
    const h = await handshake(server.port, ca);
    assert.ok(h.protocol === 'TLSv1.3' || h.protocol === 'TLSv1.2', String(h.protocol));
    assert.equal((await handshake(server.port, ca, { maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2', 'TLS 1.2 is accepted');
    await assert.rejects(handshake(server.port, ca, { maxVersion: 'TLSv1.1' }), /version|protocol/i, 'TLS 1.1 is refused');
    const plain = await fetch(`http://127.0.0.1:${server.port}/v2/`).then(
      (r) => r.status,
      () => 'no HTTP answer',
    );
    assert.notEqual(plain, 200, 'plain HTTP gets no registry answer');
  });

  test('the network rules apply on a public HTTPS listener', async () => {
    assert.equal(await getV2('127.0.0.2', pub, ca, '127.0.0.8'), 200, 'allowed by lab');
    assert.equal(await getV2('127.0.0.2', pub, ca, '127.0.0.7'), 403, 'denied by default');
  });

  test('a renewed certificate is served without a restart; a broken one is ignored', { timeout: 60_000 }, async () => {
    const before = (await handshake(server.port, ca)).cert.fingerprint256;
    const b = await pki.leaf('b');
    // as a renewal tool does: new files renamed over the old ones
    await writeFile(`${keyFile}.new`, await readFile(b.key), { mode: 0o600 });
    await writeFile(`${certFile}.new`, await readFile(b.cert));
    await rename(`${keyFile}.new`, keyFile);
    await rename(`${certFile}.new`, certFile);
    const expected = new X509(await readFile(b.cert)).fingerprint256;
    let seen = before;
    for (let i = 0; i < 50 && seen !== expected; i++) {
      await sleep(200);
      seen = (await handshake(server.port, ca)).cert.fingerprint256;
    }
    assert.equal(seen, expected, 'new connections get the renewed certificate');
    assert.notEqual(before, expected);
    const onExtra = (await handshake(pub, ca, { host: '127.0.0.2', localAddress: '127.0.0.8' })).cert.fingerprint256;
    assert.equal(onExtra, expected, 'the extra listener serves the renewed certificate too');

    // A certificate whose key is not (yet) there: logged and ignored, service goes on with b.
    const c = await pki.leaf('c');
    await writeFile(certFile, await readFile(c.cert));
    await sleep(2500);
    assert.equal((await handshake(server.port, ca)).cert.fingerprint256, expected, 'a mismatched pair is not used');
    assert.equal(await getV2('127.0.0.1', server.port, ca), 200, 'and the registry keeps serving');
  });
});

describe('plain HTTP beyond loopback', () => {
  test('is refused at start unless allowed explicitly', async () => {
    const port = await freePort();
    await assert.rejects(startServer({ env: { BULWARK_NETWORK_LISTENERS: `public=0.0.0.0:${port}` } }), /plain HTTP on 0\.0\.0\.0[\s\S]*allowPlainHttp/);
  });
});

describe('skopeo over HTTPS, verifying the certificate', { skip: skipSkopeo }, () => {
  test('pushes and pulls an image with the CA in --cert-dir, and refuses without it', { timeout: 300_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-tls-skopeo-'));
    let server: RunningServer | undefined;
    try {
      const pki = await makeCa(dir);
      const a = await pki.leaf('a');
      server = await startServer({ httpsCa: await readFile(pki.ca), env: { BULWARK_TLS_CERT_FILE: a.cert, BULWARK_TLS_KEY_FILE: a.key } });
      const certs = join(dir, 'certs');
      await exec('mkdir', ['-p', certs]);
      await writeFile(join(certs, 'ca.crt'), await readFile(pki.ca));
      await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
      // no insecure registry anywhere: the only trust is the CA in --cert-dir
      await writeFile(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
      const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'), REGISTRY_AUTH_FILE: join(dir, 'auth.json'), TMPDIR: dir };
      await writeFile(join(dir, 'auth.json'), '{"auths":{}}\n', { mode: 0o600 });
      const layout = join(dir, 'layout');
      const image = await buildImageLayout(layout, { layers: [{ sizeBytes: 300_000 }, { sizeBytes: 10_000 }], tag: 'v1' });
      const sk = (args: string[]): Promise<{ stdout: string }> => exec(skopeo as string, ['--policy', join(dir, 'policy.json'), ...args], { env, timeout: 120_000 });
      const ref = `docker://${server.host}/tls/app:v1`;
      await assert.rejects(sk(['copy', `oci:${layout}:v1`, ref]), /certificate|x509|unknown authority/i, 'without the CA the certificate is not trusted');
      await sk(['copy', '--dest-cert-dir', certs, `oci:${layout}:v1`, ref]);
      const inspected = JSON.parse((await sk(['inspect', '--cert-dir', certs, ref])).stdout) as { Digest: string };
      assert.equal(inspected.Digest, image.manifestDigest, 'the pushed manifest, read back over HTTPS');
      const back = join(dir, 'back');
      await sk(['copy', '--src-cert-dir', certs, ref, `oci:${back}:v1`]);
      const index = JSON.parse(await readFile(join(back, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
      assert.equal(index.manifests[0]?.digest, image.manifestDigest, 'pulled as pushed');
    } finally {
      await server?.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
