/**
 * OIDC federation: a CI pipeline's ID token is accepted only when a real OpenID provider signed it
 * for us (discovery + JWKS, key rotation), and every other token is a 401 UNAUTHORIZED that says
 * why without echoing the token. Valid tokens all come from oidc-provider's own code flow; the few
 * tokens made here are the forgeries (alg none, HMAC, unknown key) and, from a stub issuer whose
 * key the test holds, the cases the provider cannot be made to produce (iat in the future).
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt, decodeProtectedHeader, exportJWK, exportSPKI, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { OidcVerifier } from '../../src/auth/oidc.js';
import { rejectsWithCode } from '../testkit/assert-registry-error.js';
import { startTestIdp, type TestIdp } from '../testkit/oidc-provider.js';

const AUDIENCE = 'bulwark.test';

/** Asserts UNAUTHORIZED, a message matching `reason`, and no piece of the token in the message. */
async function rejected(p: Promise<unknown>, token: string, reason: RegExp): Promise<void> {
  const e = await rejectsWithCode(p, 'UNAUTHORIZED');
  assert.match(e.message, reason);
  for (const part of token.split('.')) if (part.length > 8) assert.ok(!e.message.includes(part), 'the message echoes the token');
}

function flipMiddle(token: string, segment: 1 | 2): string {
  const parts = token.split('.');
  const s = parts[segment] ?? '';
  const i = Math.floor(s.length / 2);
  parts[segment] = s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  return parts.join('.');
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

function claimsFor(issuer: string, extra: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return { iss: issuer, sub: 'repo:acme/app', aud: AUDIENCE, iat: now, exp: now + 300, ...extra };
}

async function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** An issuer whose discovery document the test writes; it counts the requests for it. */
async function startStubIssuer(doc: (base: string) => Record<string, unknown>, jwks: { keys: JWK[] } = { keys: [] }) {
  const hits: string[] = [];
  const server = createHttpServer((req, res) => {
    hits.push(req.url ?? '');
    const body = req.url?.endsWith('/.well-known/openid-configuration') === true ? doc(base) : req.url === '/jwks' ? jwks : undefined;
    res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? {}));
  });
  const base = `http://127.0.0.1:${await listen(server)}`;
  return { base, hits, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('OidcVerifier against a real OpenID provider', () => {
  let idp: TestIdp;
  let kid: string;
  before(async () => {
    idp = await startTestIdp();
    const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: JWK[] };
    kid = jwks.keys[0]?.kid ?? assert.fail('the provider publishes no key');
  });
  after(() => idp.close());
  const expected = (): { issuer: string; audience: string } => ({ issuer: idp.issuer, audience: AUDIENCE });

  test('a token from the provider verifies and yields its issuer, subject, audience and amr', async () => {
    const token = await idp.token({ subject: 'repo:acme/app:ref:refs/heads/main', audience: AUDIENCE, amr: ['pwd', 'mfa'] });
    const v = await new OidcVerifier({ clockSkewSeconds: 30 }).verify(token, expected());
    assert.equal(v.issuer, idp.issuer);
    assert.equal(v.subject, 'repo:acme/app:ref:refs/heads/main');
    assert.deepEqual(v.audience, [AUDIENCE]);
    assert.deepEqual(v.amr, ['pwd', 'mfa']);
    assert.equal(v.expiresAt, (decodeJwt(token).exp ?? 0) * 1000);
    assert.ok(v.expiresAt > Date.now());
  });

  test('a token without amr verifies with no amr', async () => {
    const v = await new OidcVerifier({ clockSkewSeconds: 30 }).verify(await idp.token({ subject: 'ci', audience: AUDIENCE }), expected());
    assert.equal(v.amr, undefined);
  });

  test('unverifiedIssuer reads iss from a token and gives undefined for garbage', async () => {
    assert.equal(OidcVerifier.unverifiedIssuer(await idp.token({ subject: 'ci', audience: AUDIENCE })), idp.issuer);
    for (const garbage of ['', 'abc', 'a.b.c', `${b64({ alg: 'none' })}.${b64({ iss: 7 })}.`]) {
      assert.equal(OidcVerifier.unverifiedIssuer(garbage), undefined);
    }
  });

  test('a token issued for another audience is rejected', async () => {
    const token = await idp.token({ subject: 'ci', audience: 'some-other-service' });
    await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify(token, expected()), token, /"aud"/);
  });

  test('a token whose iss is not the expected issuer is rejected even with a valid signature', async () => {
    // an issuer that publishes the provider's keys under its own name: the signature checks out
    const alias = await startStubIssuer((base) => ({ issuer: base, jwks_uri: `${idp.issuer}/jwks` }));
    try {
      const token = await idp.token({ subject: 'ci', audience: AUDIENCE });
      await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify(token, { issuer: alias.base, audience: AUDIENCE }), token, /"iss"/);
    } finally {
      await alias.close();
    }
  });

  test('a token with a changed payload or signature is rejected', async () => {
    const token = await idp.token({ subject: 'ci', audience: AUDIENCE });
    const verifier = new OidcVerifier({ clockSkewSeconds: 30 });
    await rejected(verifier.verify(flipMiddle(token, 1), expected()), token, /signature/);
    await rejected(verifier.verify(flipMiddle(token, 2), expected()), token, /signature/);
  });

  test('an unsigned (alg none) token naming the provider key is rejected', async () => {
    const token = `${b64({ alg: 'none', kid })}.${b64(claimsFor(idp.issuer))}.`;
    await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify(token, expected()), token, /algorithm is not allowed/);
  });

  test('an HS256 token keyed with the provider public key (algorithm confusion) is rejected', async () => {
    const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: JWK[] };
    const pem = await exportSPKI(await importJWK(jwks.keys[0] ?? {}, 'RS256', { extractable: true }) as CryptoKey);
    const token = await new SignJWT(claimsFor(idp.issuer)).setProtectedHeader({ alg: 'HS256', kid }).sign(new TextEncoder().encode(pem));
    await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify(token, expected()), token, /algorithm is not allowed/);
  });

  test('a token signed by a key the issuer does not publish is rejected', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT(claimsFor(idp.issuer)).setProtectedHeader({ alg: 'RS256', kid: 'not-published' }).sign(privateKey);
    await rejected(new OidcVerifier({ clockSkewSeconds: 30, jwksCooldownSeconds: 0 }).verify(token, expected()), token, /key id/);
  });
});

describe('OidcVerifier over time: expiry and key rotation', () => {
  test('an expired token is rejected with no skew, and accepted within the allowed skew', async () => {
    const idp = await startTestIdp({ idTokenTtlSeconds: 2 });
    try {
      const token = await idp.token({ subject: 'ci', audience: AUDIENCE });
      const strict = new OidcVerifier({ clockSkewSeconds: 0 });
      await strict.verify(token, { issuer: idp.issuer, audience: AUDIENCE });
      const exp = decodeJwt(token).exp ?? 0;
      await sleep(Math.max(0, exp * 1000 - Date.now()) + 50); // at most the 2 s TTL
      await rejected(strict.verify(token, { issuer: idp.issuer, audience: AUDIENCE }), token, /expired/);
      await new OidcVerifier({ clockSkewSeconds: 30 }).verify(token, { issuer: idp.issuer, audience: AUDIENCE });
    } finally {
      await idp.close();
    }
  });

  test('after the provider rotates its keys, new tokens verify with the same verifier and old ones do not', async () => {
    const idp = await startTestIdp();
    try {
      const verifier = new OidcVerifier({ clockSkewSeconds: 30, jwksCooldownSeconds: 0 });
      const expected = { issuer: idp.issuer, audience: AUDIENCE };
      const before = await idp.token({ subject: 'ci', audience: AUDIENCE });
      await verifier.verify(before, expected);
      await idp.rotateKeys();
      const fresh = await idp.token({ subject: 'ci', audience: AUDIENCE });
      assert.notEqual(decodeProtectedHeader(fresh).kid, decodeProtectedHeader(before).kid, 'the provider did not change its key');
      assert.equal((await verifier.verify(fresh, expected)).subject, 'ci');
      await rejected(verifier.verify(before, expected), before, /key id/);
    } finally {
      await idp.close();
    }
  });
});

describe('OidcVerifier discovery', () => {
  test('an issuer on a closed port is rejected at once', async () => {
    const probe = createTcpServer();
    const port = await listen(probe);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const started = Date.now();
    await rejected(new OidcVerifier({ clockSkewSeconds: 30, fetchTimeoutMs: 1000 }).verify('a.b.c', { issuer: `http://127.0.0.1:${port}`, audience: AUDIENCE }), 'a.b.c', /discovery document/);
    assert.ok(Date.now() - started < 2000, 'took longer than the fetch timeout');
  });

  test('an issuer that never answers is rejected after the fetch timeout', async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((s) => sockets.push(s));
    const port = await listen(silent);
    try {
      const started = Date.now();
      await rejected(new OidcVerifier({ clockSkewSeconds: 30, fetchTimeoutMs: 300 }).verify('a.b.c', { issuer: `http://127.0.0.1:${port}`, audience: AUDIENCE }), 'a.b.c', /timed out/);
      assert.ok(Date.now() - started < 2000, 'the fetch timeout was not honoured');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test('a discovery document naming a different issuer is rejected', async () => {
    const stub = await startStubIssuer((base) => ({ issuer: `${base}/someone-else`, jwks_uri: `${base}/jwks` }));
    try {
      await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify('a.b.c', { issuer: stub.base, audience: AUDIENCE }), 'a.b.c', /different issuer/);
    } finally {
      await stub.close();
    }
  });

  test('a discovery document served through a redirect is refused', async () => {
    const redirector = createHttpServer((_req, res) => res.writeHead(302, { location: `${target.base}/.well-known/openid-configuration` }).end());
    const base = `http://127.0.0.1:${await listen(redirector)}`;
    const target = await startStubIssuer(() => ({ issuer: base, jwks_uri: `${target.base}/jwks` }));
    try {
      await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify('a.b.c', { issuer: base, audience: AUDIENCE }), 'a.b.c', /discovery document/);
      assert.deepEqual(target.hits, []);
    } finally {
      await target.close();
      await new Promise<void>((resolve) => redirector.close(() => resolve()));
    }
  });

  test('plain http is refused for an issuer off this machine, and for the keys of an https issuer', async () => {
    const verifier = new OidcVerifier({ clockSkewSeconds: 30, fetchTimeoutMs: 200 });
    await rejected(verifier.verify('a.b.c', { issuer: 'http://idp.example', audience: AUDIENCE }), 'a.b.c', /https/);
    const stub = await startStubIssuer((base) => ({ issuer: base, jwks_uri: 'http://10.0.0.1/jwks' }));
    try {
      await rejected(verifier.verify('a.b.c', { issuer: stub.base, audience: AUDIENCE }), 'a.b.c', /jwks_uri must use https/);
    } finally {
      await stub.close();
    }
  });

  describe('with a stub issuer whose key the test holds', () => {
    let stub: Awaited<ReturnType<typeof startStubIssuer>>;
    let sign: (claims: JWTPayload) => Promise<string>;
    before(async () => {
      const { privateKey, publicKey } = await generateKeyPair('ES256');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'stub', alg: 'ES256', use: 'sig' };
      stub = await startStubIssuer((base) => ({ issuer: `${base}/tenant/`, jwks_uri: `${base}/jwks` }), { keys: [jwk] });
      sign = (claims) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'stub' }).sign(privateKey);
    });
    after(() => stub.close());
    const issuer = (): string => `${stub.base}/tenant/`;

    test('the discovery path drops the trailing slash, and the document is fetched once while cached', async () => {
      const verifier = new OidcVerifier({ clockSkewSeconds: 30 });
      stub.hits.length = 0;
      for (let i = 0; i < 3; i++) await verifier.verify(await sign(claimsFor(issuer())), { issuer: issuer(), audience: AUDIENCE });
      assert.deepEqual(stub.hits, ['/tenant/.well-known/openid-configuration', '/jwks']);
    });

    test('a token issued in the future beyond the skew is rejected, within it accepted', async () => {
      const verifier = new OidcVerifier({ clockSkewSeconds: 30 });
      const now = Math.floor(Date.now() / 1000);
      const future = await sign(claimsFor(issuer(), { iat: now + 120, exp: now + 600 }));
      await rejected(verifier.verify(future, { issuer: issuer(), audience: AUDIENCE }), future, /"iat"/);
      await verifier.verify(await sign(claimsFor(issuer(), { iat: now + 10 })), { issuer: issuer(), audience: AUDIENCE });
    });

    test('a token without a required claim, or with a malformed amr, is rejected', async () => {
      const verifier = new OidcVerifier({ clockSkewSeconds: 30 });
      const { iat: _iat, ...noIat } = claimsFor(issuer());
      const missing = await sign(noIat);
      await rejected(verifier.verify(missing, { issuer: issuer(), audience: AUDIENCE }), missing, /"iat"/);
      const badAmr = await sign(claimsFor(issuer(), { amr: 'mfa' }));
      await rejected(verifier.verify(badAmr, { issuer: issuer(), audience: AUDIENCE }), badAmr, /"amr"/);
    });

    test('a token larger than 16 KiB is rejected without contacting the issuer', async () => {
      stub.hits.length = 0;
      const big = await sign(claimsFor(issuer(), { padding: 'x'.repeat(16 * 1024) }));
      await rejected(new OidcVerifier({ clockSkewSeconds: 30 }).verify(big, { issuer: issuer(), audience: AUDIENCE }), big, /16 KiB/);
      assert.deepEqual(stub.hits, []);
    });
  });
});
