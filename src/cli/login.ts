/**
 * `bulwark login` and `bulwark logout`: a person signs in at their OpenID provider, and the
 * registry trades the ID token for a registry refresh token (ADR 0005 "Federation").
 *
 * OAuth 2.0 for native apps (RFC 8252) with PKCE (RFC 7636):
 *   1. GET <issuer>/.well-known/openid-configuration (OIDC Discovery §4): the two endpoints
 *   2. listen on 127.0.0.1:<random port>; redirect_uri http://127.0.0.1:<port>/callback (§7.3)
 *   3. print the authorization URL (state, nonce, S256 challenge); open a browser if there is one
 *   4. the browser comes back to /callback?code&state; the state must be ours (RFC 6749 §10.12):
 *      an answer with another state (or none) is refused with 400 and the wait goes on, so no
 *      other process on this machine can end the login by calling the loopback address first
 *   5. POST <token endpoint> code + code_verifier → id_token
 *   6. POST <registry>/oauth2/exchange → registry refresh token
 *   7. store it in <config dir>/credentials.json (file 0600, folder 0700), keyed by registry URL
 * Tokens are never printed: only the principal and the expiry, read from the refresh token.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { decodeJwt } from 'jose';

export type LoginErrorCode = 'INVALID_ARGUMENT' | 'REGISTRY' | 'DISCOVERY' | 'CALLBACK' | 'TIMEOUT' | 'CODE_REDEMPTION' | 'EXCHANGE' | 'CREDENTIALS';

export class LoginError extends Error {
  constructor(
    readonly code: LoginErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LoginError';
  }
}

export interface LoginOptions {
  readonly registry: string;
  readonly issuer: string;
  readonly clientId: string;
  readonly scope: string;
  readonly browser: boolean;
  readonly timeoutSeconds: number;
}

interface StoredCredential {
  readonly refreshToken: string;
  readonly principal: string;
  readonly issuer: string;
  /** ISO 8601; absent when the token says nothing */
  readonly expiresAt?: string;
  readonly savedAt: string;
}

interface CredentialsFile {
  readonly registries: Record<string, StoredCredential>;
}

const HTTP_TIMEOUT_MS = 15_000;
const MAX_JSON_BYTES = 256 * 1024;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** `$BULWARK_CONFIG_DIR/credentials.json`, by default under `~/.config/bulwark`. */
export function credentialsPath(): string {
  const dir = process.env.BULWARK_CONFIG_DIR;
  return join(dir !== undefined && dir !== '' ? dir : join(homedir(), '.config', 'bulwark'), 'credentials.json');
}

/**
 * The refresh token `bulwark login` stored for `registry`, unless absent or expired: a
 * credential for clients of the registry (use it as the password of user
 * 00000000-0000-0000-0000-000000000000 at `/oauth2/token`, or as the refresh_token grant).
 */
export function storedRefreshToken(registry: string, now = Date.now()): string | undefined {
  try {
    const entry = readCredentials(credentialsPath()).registries[registryKey(registry)];
    if (entry === undefined || (entry.expiresAt !== undefined && Date.parse(entry.expiresAt) <= now)) return undefined;
    return entry.refreshToken;
  } catch {
    return undefined;
  }
}

/** The URL a credential is stored under: scheme, host, port and path without a trailing slash. */
export function registryKey(raw: string): string {
  const url = checkedUrl(raw, 'INVALID_ARGUMENT', '--registry');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** https, or plain http only to this machine: nobody is between us to read the tokens we send. */
function checkedUrl(raw: string, code: LoginErrorCode, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new LoginError(code, `${what} is not a URL`);
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') throw new LoginError(code, `${what} must not carry credentials, a query or a fragment`);
  if (url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) return url;
  throw new LoginError(code, `${what} must use https (plain http only on loopback)`);
}

/** A JSON object from `url`: no redirects, a deadline, a size cap (the answer is untrusted). */
async function fetchJson(url: string, init: RequestInit, code: LoginErrorCode, what: string): Promise<{ status: number; body: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS), headers: { accept: 'application/json', ...init.headers } });
  } catch (e) {
    throw new LoginError(code, `failed to ${what}: ${(e as Error).name === 'TimeoutError' ? 'timed out' : `cannot reach ${new URL(url).origin}`}`, { cause: e });
  }
  const text = Buffer.from(await res.arrayBuffer()).subarray(0, MAX_JSON_BYTES + 1);
  let body: unknown;
  try {
    if (text.length > MAX_JSON_BYTES) throw new Error('too large');
    body = JSON.parse(text.toString('utf8'));
  } catch {
    body = undefined;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new LoginError(code, `failed to ${what}: HTTP ${res.status}, not a JSON object`);
  return { status: res.status, body: body as Record<string, unknown> };
}

/** Printable ASCII only, bounded: text from the network goes to a terminal. */
function printable(v: unknown, max = 200): string {
  return String(v).replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

async function discover(issuer: string): Promise<{ authorizationEndpoint: URL; tokenEndpoint: URL }> {
  checkedUrl(issuer, 'INVALID_ARGUMENT', '--issuer');
  const base = issuer.endsWith('/') ? issuer.slice(0, -1) : issuer;
  const { status, body } = await fetchJson(`${base}/.well-known/openid-configuration`, {}, 'DISCOVERY', "fetch the provider's discovery document");
  if (status !== 200) throw new LoginError('DISCOVERY', `failed to fetch the provider's discovery document: HTTP ${status}`);
  // Discovery §4.3: the document must name exactly the issuer asked for
  if (body.issuer !== issuer) throw new LoginError('DISCOVERY', "the provider's discovery document names a different issuer");
  const endpoint = (k: string): URL => checkedUrl(typeof body[k] === 'string' ? body[k] : '', 'DISCOVERY', `the provider's ${k}`);
  return { authorizationEndpoint: endpoint('authorization_endpoint'), tokenEndpoint: endpoint('token_endpoint') };
}

/** The registry's service name from its Bearer challenge, and proof it is there before any browser opens. */
async function registryService(registry: string): Promise<string | undefined> {
  let res: Response;
  try {
    res = await fetch(`${registry}/v2/`, { redirect: 'error', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    await res.arrayBuffer();
  } catch (e) {
    throw new LoginError('REGISTRY', `failed to reach the registry at ${registry}`, { cause: e });
  }
  const challenge = res.headers.get('www-authenticate') ?? '';
  if (!/^Bearer /i.test(challenge)) throw new LoginError('REGISTRY', `the registry at ${registry} does not ask for token authentication (no Bearer challenge at /v2/)`);
  return /service="([^"]*)"/.exec(challenge)?.[1];
}

interface Callback {
  readonly redirectUri: string;
  /** the authorization code, once the browser is back with our state */
  readonly code: Promise<string>;
  close(): void;
}

/**
 * What the loopback listener answers a callback, and what the login learns from it: the code, a
 * failure that ends the login, or nothing (`outcome` undefined) for an answer that is not ours.
 */
function readCallback(q: URLSearchParams, expectedState: Buffer): { status: number; page: string; outcome?: string | LoginError } {
  const got = Buffer.from(q.get('state') ?? '');
  if (got.length !== expectedState.length || !timingSafeEqual(got, expectedState)) {
    return { status: 400, page: 'This answer does not belong to the waiting `bulwark login` (state mismatch). Nothing was signed in.' };
  }
  const error = q.get('error');
  const code = q.get('code');
  if (error === null && code !== null && code !== '') return { status: 200, page: 'Signed in at your provider. You can close this window and return to the terminal.', outcome: code };
  const why = error === null ? 'no authorization code' : `${printable(error, 60)}${q.has('error_description') ? `: ${printable(q.get('error_description'))}` : ''}`;
  return { status: 400, page: 'The sign-in did not succeed; see the terminal.', outcome: new LoginError('CALLBACK', `failed to sign in: the provider answered ${why}`) };
}

/** Lines said about refused callbacks, at most: a local process must not flood the terminal. */
const MAX_REFUSED_NOTES = 5;

/**
 * The loopback listener (RFC 8252 §7.3): the first request to /callback carrying our state
 * settles it. Any process on this machine can reach the port, so one without the state is
 * answered 400, noted in one line through `warn`, and the wait goes on until the timeout.
 */
async function listenForCallback(state: string, timeoutMs: number, warn: (line: string) => void): Promise<Callback> {
  let settle!: { resolve: (code: string) => void; reject: (e: LoginError) => void };
  const code = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  let refused = 0;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== '/callback') return void res.writeHead(404).end();
    const { status, page, outcome } = readCallback(url.searchParams, Buffer.from(state));
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(`${page}\n`);
    if (outcome === undefined) {
      refused++;
      if (refused <= MAX_REFUSED_NOTES) {
        const more = refused === MAX_REFUSED_NOTES ? ' (further ones are refused without a note)' : '';
        warn(`bulwark login: refused an answer at ${url.pathname} with a state this login did not send (forged or stale); still waiting for the browser${more}`);
      }
    } else if (outcome instanceof LoginError) settle.reject(outcome);
    else settle.resolve(outcome);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const timer = setTimeout(() => settle.reject(new LoginError('TIMEOUT', `failed to sign in: the browser did not come back within ${timeoutMs / 1000} s`)), timeoutMs);
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    server.close();
    server.closeAllConnections();
  };
  return { redirectUri: `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`, code, close };
}

function openBrowser(url: string): void {
  const graphical = (process.env.DISPLAY ?? '') !== '' || (process.env.WAYLAND_DISPLAY ?? '') !== '';
  const opener = process.platform === 'darwin' ? 'open' : process.platform !== 'win32' && graphical ? 'xdg-open' : undefined;
  if (opener === undefined) return;
  const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
  child.on('error', () => undefined); // no opener installed: the printed address is enough
  child.unref();
}

/** Token endpoint (OIDC Core §3.1.3): the code and the PKCE verifier for the ID token. */
async function redeemCode(tokenEndpoint: URL, p: { code: string; redirectUri: string; verifier: string; clientId: string; nonce: string }): Promise<string> {
  const form = new URLSearchParams({ grant_type: 'authorization_code', code: p.code, redirect_uri: p.redirectUri, code_verifier: p.verifier, client_id: p.clientId });
  const what = 'redeem the authorization code at the provider';
  const { status, body } = await fetchJson(tokenEndpoint.href, { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 'CODE_REDEMPTION', what);
  if (status !== 200) throw new LoginError('CODE_REDEMPTION', `failed to ${what}: HTTP ${status} ${printable(body.error, 60)}${body.error_description !== undefined ? `: ${printable(body.error_description)}` : ''}`);
  if (typeof body.id_token !== 'string') throw new LoginError('CODE_REDEMPTION', `failed to ${what}: the answer has no id_token (does --scope include openid?)`);
  let nonce: unknown;
  try {
    nonce = decodeJwt(body.id_token).nonce;
  } catch {
    throw new LoginError('CODE_REDEMPTION', `failed to ${what}: the id_token is not a JWT`);
  }
  if (nonce !== p.nonce) throw new LoginError('CODE_REDEMPTION', `failed to ${what}: the id_token was not issued for this login (nonce)`);
  return body.id_token;
}

async function exchangeAtRegistry(registry: string, service: string | undefined, idToken: string): Promise<string> {
  const form = new URLSearchParams({ grant_type: 'access_token', ...(service !== undefined ? { service } : {}), access_token: idToken });
  const { status, body } = await fetchJson(`${registry}/oauth2/exchange`, { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 'EXCHANGE', 'exchange the ID token at the registry');
  if (status === 200 && typeof body.refresh_token === 'string') return body.refresh_token;
  const errors = Array.isArray(body.errors) ? (body.errors as { message?: unknown }[]) : [];
  throw new LoginError('EXCHANGE', `the registry refused the ID token (HTTP ${status}): ${printable(errors[0]?.message ?? 'no reason given')}`);
}

function readCredentials(path: string): CredentialsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return { registries: {} };
    throw new LoginError('CREDENTIALS', `failed to read ${path}: ${(e as Error).message}`, { cause: e });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    doc = undefined;
  }
  const registries = (doc as { registries?: unknown } | undefined)?.registries;
  if (typeof registries !== 'object' || registries === null || Array.isArray(registries)) throw new LoginError('CREDENTIALS', `failed to read ${path}: not a Bulwark credentials file`);
  return { registries: registries as Record<string, StoredCredential> };
}

/** Replace the file atomically; created 0600 in a folder created 0700 (it holds credentials). */
function writeCredentials(path: string, file: CredentialsFile): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.credentials.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeFileSync(fd, `${JSON.stringify(file, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** The whole flow; what it prints goes to `out`, notes about refused callbacks to `warn`. Throws LoginError. */
export async function login(o: LoginOptions, out: (line: string) => void, warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<void> {
  const registry = registryKey(o.registry);
  const path = credentialsPath();
  readCredentials(path); // an unreadable file fails now, not after the browser
  const service = await registryService(registry);
  const { authorizationEndpoint, tokenEndpoint } = await discover(o.issuer);
  const [state, nonce, verifier] = [randomBytes(24), randomBytes(24), randomBytes(32)].map((b) => b.toString('base64url')) as [string, string, string];
  const callback = await listenForCallback(state, o.timeoutSeconds * 1000, warn);
  try {
    const url = new URL(authorizationEndpoint);
    const params = { response_type: 'code', client_id: o.clientId, redirect_uri: callback.redirectUri, scope: o.scope, state, nonce, code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256' };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    out(`To sign in, open this address in a browser:\n\n  ${url.href}\n\nWaiting up to ${o.timeoutSeconds} s for the browser to come back to ${callback.redirectUri} ...`);
    if (o.browser) openBrowser(url.href);
    const code = await callback.code;
    callback.close();
    const idToken = await redeemCode(tokenEndpoint, { code, redirectUri: callback.redirectUri, verifier, clientId: o.clientId, nonce });
    const refreshToken = await exchangeAtRegistry(registry, service, idToken);
    // for display only: the registry checks this token whenever it is used
    const claims = decodeJwt(refreshToken);
    const principal = typeof claims.sub === 'string' ? claims.sub : 'unknown';
    const expiresAt = typeof claims.exp === 'number' ? new Date(claims.exp * 1000).toISOString() : undefined;
    const file = readCredentials(path);
    const entry: StoredCredential = { refreshToken, principal, issuer: o.issuer, ...(expiresAt !== undefined ? { expiresAt } : {}), savedAt: new Date().toISOString() };
    writeCredentials(path, { registries: { ...file.registries, [registry]: entry } });
    out(`Signed in to ${registry} as ${printable(principal, 600)}.\nThe registry credential expires ${expiresAt ?? 'never'}; it is stored in ${path}.`);
  } finally {
    callback.close();
  }
}

/** Remove the stored credential of `registry`; whether there was one. */
export function logout(registry: string): boolean {
  const key = registryKey(registry);
  const path = credentialsPath();
  const file = readCredentials(path);
  if (file.registries[key] === undefined) return false;
  const { [key]: _removed, ...rest } = file.registries;
  writeCredentials(path, { registries: rest });
  return true;
}

function positiveSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 3600) throw new LoginError('INVALID_ARGUMENT', '--timeout: whole seconds between 1 and 3600');
  return n;
}

/** Runs a verb; a failure is one clean line on stderr and exit code 1, never a stack or a token. */
async function run(verb: string, f: () => Promise<void>): Promise<void> {
  try {
    await f();
  } catch (e) {
    process.stderr.write(`bulwark ${verb}: ${e instanceof LoginError ? e.message : `failed: ${printable((e as Error).message ?? e, 300)}`}\n`);
    process.exitCode = 1;
  }
}

/** `bulwark login` and `bulwark logout`. */
export function registerLogin(program: Command): void {
  program
    .command('login')
    .description('sign in through your OpenID Connect provider (authorization code + PKCE) and store a registry credential')
    .requiredOption('--registry <url>', 'the registry, e.g. https://registry.example.com')
    .requiredOption('--issuer <url>', 'your OpenID Connect provider (issuer URL)')
    .requiredOption('--client-id <id>', "the registry's client id at the provider")
    .option('--scope <scopes>', 'scopes to ask for', 'openid')
    .option('--no-browser', 'only print the address to open')
    .option('--timeout <seconds>', 'how long to wait for the browser', '300')
    .action((opts: { registry: string; issuer: string; clientId: string; scope: string; browser: boolean; timeout: string }) =>
      run('login', () =>
        login({ registry: opts.registry, issuer: opts.issuer, clientId: opts.clientId, scope: opts.scope, browser: opts.browser, timeoutSeconds: positiveSeconds(opts.timeout) }, (l) => process.stdout.write(`${l}\n`)),
      ),
    );
  program
    .command('logout')
    .description('remove the stored registry credential')
    .requiredOption('--registry <url>', 'the registry')
    .action((opts: { registry: string }) =>
      run('logout', async () => {
        const removed = logout(opts.registry);
        process.stdout.write(removed ? `Signed out of ${registryKey(opts.registry)}: its credential was removed from ${credentialsPath()}.\n` : `Not signed in to ${registryKey(opts.registry)}; nothing to remove.\n`);
      }),
    );
}
