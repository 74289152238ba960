/**
 * `bulwark login` / `bulwark logout` as a person uses them: the built CLI against the built
 * server and a real OpenID provider. The CLI prints the provider's authorization address; the
 * test plays the browser (test/testkit/oidc-provider.ts `completeAuthorization`: log in, consent)
 * and delivers the provider's redirect to the CLI's loopback listener (RFC 8252), as the browser
 * would. Needs `npm run build`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { storedRefreshToken } from '../../src/cli/login.js';
import { startTestIdp, type TestIdp } from '../testkit/oidc-provider.js';
import { cliPath, startServer, type RunningServer } from '../testkit/server.js';

const CLIENT_ID = 'bulwark-cli';
const REFRESH_USER = '00000000-0000-0000-0000-000000000000';

interface CliRun {
  readonly output: { stdout: string; stderr: string };
  /** resolves with the first match of `re` in stdout (rejects if the CLI exits first) */
  waitFor(re: RegExp): Promise<RegExpExecArray>;
  readonly exited: Promise<number | null>;
}

function runCli(args: readonly string[], configDir: string): CliRun {
  const { DISPLAY: _d, WAYLAND_DISPLAY: _w, ...env } = process.env;
  const child = spawn(process.execPath, [cliPath, ...args], { env: { ...env, BULWARK_CONFIG_DIR: configDir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (b: Buffer) => {
    output.stdout += b.toString();
    for (const w of waiters) w();
  });
  child.stderr.on('data', (b: Buffer) => (output.stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(output.stdout);
        if (m !== null) resolve(m);
      };
      waiters.push(check);
      check();
      void exited.then(() => reject(new Error(`the CLI exited before printing ${String(re)}:\n${output.stdout}\n${output.stderr}`)));
    });
  return { output, waitFor, exited };
}

const loginArgs = (registry: string, issuer: string, o: { clientId?: string; timeout?: number } = {}): string[] => [
  'login', '--no-browser', '--registry', registry, '--issuer', issuer, '--client-id', o.clientId ?? CLIENT_ID, '--timeout', String(o.timeout ?? 30),
];

/** The authorization address the CLI printed. */
async function authorizeUrl(cli: CliRun): Promise<URL> {
  const m = await cli.waitFor(/^\s+(https?:\/\/\S+)$/m);
  return new URL(m[1] ?? '');
}

describe('bulwark login: authorization code + PKCE at the provider, then /oauth2/exchange', () => {
  let idp: TestIdp;
  let server: RunningServer;
  let configDir: string;
  const principal = (sub: string): string => `user:${sub}@${idp.issuer}`;
  const credentialsFile = (): string => join(configDir, 'bulwark', 'credentials.json');
  const readStored = async (): Promise<{ registries: Record<string, { refreshToken: string; principal: string; expiresAt?: string }> }> =>
    JSON.parse(await readFile(credentialsFile(), 'utf8')) as { registries: Record<string, { refreshToken: string; principal: string; expiresAt?: string }> };

  before(async () => {
    idp = await startTestIdp();
    server = await startServer({ auth: true, env: { BULWARK_AUTH_OIDC_USER_ISSUERS: `${idp.issuer}=${CLIENT_ID}` } });
    // a folder that does not exist yet: the CLI creates it, owner-only
    configDir = join(await mkdtemp(join(tmpdir(), 'bulwark-login-')), 'config');
  });
  after(async () => {
    await server.dispose();
    await idp.close();
    await rm(join(configDir, '..'), { recursive: true, force: true });
  });

  test('signs in, stores a 0600 refresh token the registry accepts, prints the principal and expiry but never the token', async () => {
    const dir = join(configDir, 'bulwark');
    const cli = runCli(loginArgs(server.url, idp.issuer), dir);
    const url = await authorizeUrl(cli);
    assert.equal(url.origin, idp.issuer);
    assert.equal(url.searchParams.get('response_type'), 'code');
    assert.equal(url.searchParams.get('client_id'), CLIENT_ID);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.match(url.searchParams.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    const redirectUri = url.searchParams.get('redirect_uri') ?? '';
    assert.match(redirectUri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);

    const back = await idp.completeAuthorization(url.href, { subject: 'alice', amr: ['pwd', 'mfa'] });
    assert.ok(back.startsWith(`${redirectUri}?`), back);
    const page = await fetch(back);
    assert.equal(page.status, 200);
    assert.equal(await cli.exited, 0, cli.output.stderr);

    assert.match(cli.output.stdout, new RegExp(`as ${principal('alice').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\.`));
    assert.match(cli.output.stdout, /expires \d{4}-\d\d-\d\dT/);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(credentialsFile())).mode & 0o777, 0o600);
    const entry = (await readStored()).registries[server.url] ?? assert.fail('no entry for the registry');
    assert.equal(entry.principal, principal('alice'));
    assert.equal(decodeJwt(entry.refreshToken).sub, principal('alice'));
    for (const part of entry.refreshToken.split('.')) assert.ok(!cli.output.stdout.includes(part) && !cli.output.stderr.includes(part), 'the token was printed');

    // docker's way (Basic with the refresh-token user) and the refresh_token grant
    const basic = Buffer.from(`${REFRESH_USER}:${entry.refreshToken}`).toString('base64');
    const got = await fetch(`${server.url}/oauth2/token?service=bulwark&scope=repository:team/app:pull`, { headers: { authorization: `Basic ${basic}` } });
    assert.equal(got.status, 200, await got.clone().text());
    assert.equal(decodeJwt(((await got.json()) as { token: string }).token).sub, principal('alice'));
    const grant = await fetch(`${server.url}/oauth2/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', service: 'bulwark', refresh_token: entry.refreshToken }) });
    assert.equal(grant.status, 200);

    const saved = process.env.BULWARK_CONFIG_DIR;
    process.env.BULWARK_CONFIG_DIR = dir;
    try {
      assert.equal(storedRefreshToken(server.url), entry.refreshToken);
      assert.equal(storedRefreshToken(`${server.url}/`), entry.refreshToken, 'the same registry with a trailing slash');
      assert.equal(storedRefreshToken('http://127.0.0.1:1'), undefined);
    } finally {
      if (saved === undefined) delete process.env.BULWARK_CONFIG_DIR;
      else process.env.BULWARK_CONFIG_DIR = saved;
    }
  });

  test('logout removes the entry of that registry only, and says so; a second logout has nothing to remove', async () => {
    const dir = join(configDir, 'bulwark');
    const other = 'https://other.example.com';
    const before = await readStored();
    assert.ok(before.registries[server.url] !== undefined, 'signed in by the previous test');
    // a second registry's entry, written the way a login to it would
    await writeFile(credentialsFile(), JSON.stringify({ registries: { ...before.registries, [other]: { ...before.registries[server.url], principal: 'user:x@y' } } }), { mode: 0o600 });

    const out = runCli(['logout', '--registry', server.url], dir);
    assert.equal(await out.exited, 0, out.output.stderr);
    assert.match(out.output.stdout, /Signed out of/);
    const after = await readStored();
    assert.deepEqual(Object.keys(after.registries), [other]);
    assert.equal((await stat(credentialsFile())).mode & 0o777, 0o600);

    const again = runCli(['logout', '--registry', server.url], dir);
    assert.equal(await again.exited, 0);
    assert.match(again.output.stdout, /Not signed in/);
  });

  test('a callback with a wrong or no state is refused (400, one line on stderr) and the login goes on to the right one', async () => {
    const dir = join(configDir, 'forged');
    const cli = runCli(loginArgs(server.url, idp.issuer), dir);
    const url = await authorizeUrl(cli);
    const redirectUri = url.searchParams.get('redirect_uri') ?? '';
    // any process on this machine can call the loopback address first: it must not end the login
    const forged = await fetch(`${redirectUri}?code=stolen-code&state=${'A'.repeat(32)}`);
    assert.equal(forged.status, 400);
    assert.match(await forged.text(), /state mismatch/);
    assert.equal((await fetch(`${redirectUri}?error=access_denied`)).status, 400);
    const lines = (): string[] => cli.output.stderr.split('\n').filter((l) => l !== '');
    for (let waited = 0; lines().length < 2 && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    assert.equal(lines().length, 2, cli.output.stderr);
    assert.match(cli.output.stderr, /^bulwark login: refused an answer at \/callback with a state this login did not send \(forged or stale\); still waiting for the browser\n/);
    await assert.rejects(stat(join(dir, 'credentials.json')), { code: 'ENOENT' });

    const back = await idp.completeAuthorization(url.href, { subject: 'bob' });
    assert.equal((await fetch(back)).status, 200);
    assert.equal(await cli.exited, 0, cli.output.stderr);
    assert.match(cli.output.stdout, /Signed in to .* as user:bob@/);
    const stored = JSON.parse(await readFile(join(dir, 'credentials.json'), 'utf8')) as { registries: Record<string, { principal: string }> };
    assert.equal(stored.registries[server.url]?.principal, principal('bob'));
  });

  test('an ID token the registry does not trust (client id not configured there): exit 1, the reason, nothing stored', async () => {
    const dir = join(configDir, 'untrusted');
    const cli = runCli(loginArgs(server.url, idp.issuer, { clientId: 'another-app' }), dir);
    const url = await authorizeUrl(cli);
    assert.equal(url.searchParams.get('client_id'), 'another-app');
    assert.equal((await fetch(await idp.completeAuthorization(url.href, { subject: 'alice' }))).status, 200);
    assert.equal(await cli.exited, 1);
    assert.match(cli.output.stderr, /^bulwark login: the registry refused the ID token \(HTTP 401\): .+\n$/);
    await assert.rejects(stat(join(dir, 'credentials.json')), { code: 'ENOENT' });
  });

  test('nobody comes back: the wait is bounded (--timeout) and ends with exit 1', async () => {
    const cli = runCli(loginArgs(server.url, idp.issuer, { timeout: 1 }), join(configDir, 'timeout'));
    assert.equal(await cli.exited, 1);
    assert.match(cli.output.stderr, /did not come back within 1 s/);
  });
});
