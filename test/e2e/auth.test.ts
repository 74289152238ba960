/**
 * Token authentication as real clients see it (Docker "Token Authentication Specification"):
 * skopeo and podman against Bulwark with authentication on, signing in with the bootstrap admin's
 * password, with a wrong one, with a repository-scoped token created through the admin API, and
 * with a refresh token (username 00000000-0000-0000-0000-000000000000, the `docker login`
 * convention for identity tokens) from `access_type=offline` or from `/oauth2/exchange` (an ID
 * token of a real OpenID provider, trusted through a federated credential: no stored secret).
 *
 * Secrets never appear on a command line: every login reads the password from stdin and the
 * tools read the stored credentials from the client's own auth file; admin API calls, ID tokens
 * and refresh tokens are made and fetched in-process.
 *
 * Skipped against Distribution (E2E_TARGET=distribution) and with E2E_AUTH=off: the registry
 * under test then has no authentication to check.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImageLayout, layoutDescriptor, type BuiltImage } from '../testkit/oci-layout.js';
import { startTestIdp, type TestIdp } from '../testkit/oidc-provider.js';
import type { Credentials } from '../testkit/server.js';
import {
  describeWithTools,
  loginArgs,
  makeClientEnv,
  podmanGlobalArgs,
  run,
  runExpectingFailure,
  startTarget,
  tempDir,
  type ClientEnv,
  type FailedRun,
  type RunResult,
  type TargetServer,
} from './tools.js';

/** The username that says "the password is a refresh token" (ACR and docker's identity-token convention). */
const REFRESH_TOKEN_USERNAME = '00000000-0000-0000-0000-000000000000';
/** What containers/image prints for our 401 (the OCI error envelope's code and message). */
const AUTHENTICATION_REQUIRED = /unauthorized: authentication required/;
/** An identity refused access (403 DENIED); a HEAD answer has no body, so only its status shows. */
const REFUSED = /denied: |403 \(Forbidden\)/;

const sha256 = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** One client's tools, all reading that client's configuration and auth file. */
interface Tool {
  run(args: string[], input?: string): Promise<RunResult>;
  fail(args: string[], input?: string): Promise<FailedRun>;
}

function tool(cmd: 'skopeo' | 'podman', client: ClientEnv): Tool {
  const global = cmd === 'skopeo' ? ['--policy', client.policyPath] : podmanGlobalArgs(client);
  const opts = (input: string | undefined): { env: NodeJS.ProcessEnv; input?: string } => (input === undefined ? { env: client.env } : { env: client.env, input });
  return {
    run: (args, input) => run(cmd, [...global, ...args], opts(input)),
    fail: (args, input) => runExpectingFailure(cmd, [...global, ...args], opts(input)),
  };
}

describeWithTools(
  'authentication',
  ['skopeo', 'podman'],
  () => {
    let server: TargetServer;
    let admin: Credentials;
    let work: string;
    let layout: string;
    let image: BuiltImage;
    /** skopeo signed in as the bootstrap admin: sets up and checks what the other clients do */
    let operator: Tool;
    const clients: ClientEnv[] = [];
    /** the OpenID provider a CI job would get its ID token from; started by the exchange test */
    let idp: TestIdp | undefined;

    const newClient = async (): Promise<ClientEnv> => {
      const c = await makeClientEnv(server.host);
      clients.push(c);
      return c;
    };
    const remote = (ref: string): string => `docker://${server.host}/${ref}`;
    const loginAs = async (cmd: 'skopeo' | 'podman', client: ClientEnv, creds: Credentials): Promise<RunResult> =>
      tool(cmd, client).run(loginArgs(client, server.host, creds.username), creds.password);

    before(async () => {
      server = await startTarget();
      assert.ok(server.admin !== undefined, 'Bulwark runs with authentication and wrote its bootstrap credentials');
      admin = server.admin;
      work = await tempDir('auth');
      layout = join(work, 'layout');
      image = await buildImageLayout(layout, { tag: 'v1', layers: [{ sizeBytes: 64 * 1024, files: { 'auth.txt': 'behind a token\n' } }] });
      const opClient = await newClient();
      await loginAs('skopeo', opClient, admin);
      operator = tool('skopeo', opClient);
      await operator.run(['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, remote('e2e/auth:v1')]);
    });
    after(async () => {
      await idp?.close();
      await server.dispose();
      for (const c of clients) await c.dispose();
      await rm(work, { recursive: true, force: true });
    });

    test('without credentials, skopeo inspect and podman pull are refused with "authentication required", and a push stores nothing', async () => {
      const anon = await newClient();
      assert.equal(await storedLogin(anon, server.host), false, 'this client has never signed in');

      const inspect = await tool('skopeo', anon).fail(['inspect', '--tls-verify=false', remote('e2e/auth:v1')]);
      assert.equal(inspect.exitCode, 1, inspect.stderr);
      assert.match(inspect.stderr, AUTHENTICATION_REQUIRED);

      const pull = await tool('podman', anon).fail(['pull', '--tls-verify=false', '--signature-policy', anon.policyPath, `${server.host}/e2e/auth:v1`]);
      assert.equal(pull.exitCode, 125, pull.stderr);
      assert.match(pull.stderr, AUTHENTICATION_REQUIRED);

      const push = await tool('skopeo', anon).fail(['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, remote('e2e/auth-anonymous:v1')]);
      assert.equal(push.exitCode, 1, push.stderr);
      assert.match(push.stderr, AUTHENTICATION_REQUIRED);
      const leftover = await operator.fail(['inspect', '--raw', '--tls-verify=false', remote('e2e/auth-anonymous:v1')]);
      assert.match(leftover.stderr, /manifest unknown|name unknown/, 'the anonymous push left no manifest behind');
    });

    test("with the bootstrap admin's credentials, skopeo inspect and podman pull work", async () => {
      const info = JSON.parse((await operator.run(['inspect', '--tls-verify=false', remote('e2e/auth:v1')])).stdout) as { Digest: string };
      assert.equal(info.Digest, image.manifestDigest);

      const client = await newClient();
      const podman = tool('podman', client);
      assert.match((await loginAs('podman', client, admin)).stdout, /Login Succeeded/);
      await podman.run(['pull', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth:v1`]);
      const [pulled] = JSON.parse((await podman.run(['image', 'inspect', `${server.host}/e2e/auth:v1`])).stdout) as { Id: string; Digest: string }[];
      assert.equal(`sha256:${pulled?.Id ?? ''}`, image.config.digest);
      assert.equal(pulled?.Digest, image.manifestDigest);
    });

    test('podman login with a wrong password, or with a forged refresh token, fails and stores no credentials', async () => {
      const client = await newClient();
      const podman = tool('podman', client);
      const wrong = await podman.fail(loginArgs(client, server.host, admin.username), `${admin.password}x`);
      assert.equal(wrong.exitCode, 125, wrong.stderr);
      assert.match(wrong.stderr, /invalid username\/password/);

      const forged = await podman.fail(loginArgs(client, server.host, REFRESH_TOKEN_USERNAME), 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZG1pbjpidWx3YXJrLWFkbWluIn0.c2lnbmF0dXJl');
      assert.equal(forged.exitCode, 125, forged.stderr);
      assert.match(forged.stderr, /invalid username\/password/);

      assert.equal(await storedLogin(client, server.host), false, 'no credentials were stored for the registry');
      const pull = await podman.fail(['pull', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth:v1`]);
      assert.match(pull.stderr, AUTHENTICATION_REQUIRED);
    });

    /**
     * Sign podman and skopeo in with a refresh token (each in its own client), then: podman pushes
     * and pulls back, skopeo reads what podman pushed, pushes its own copy and pulls it back.
     */
    const pushAndPullWithRefreshToken = async (refreshToken: string, repo: string): Promise<void> => {
      const creds = { username: REFRESH_TOKEN_USERNAME, password: refreshToken };
      const pc = await newClient();
      const podman = tool('podman', pc);
      assert.match((await loginAs('podman', pc, creds)).stdout, /Login Succeeded/);
      const ref = `${server.host}/${repo}:v1`;
      await podman.run(['pull', '--signature-policy', pc.policyPath, `oci:${layout}:v1`]);
      await podman.run(['tag', image.config.digest.slice('sha256:'.length), ref]);
      const digestFile = join(pc.dir, 'pushed.digest');
      await podman.run(['push', '--tls-verify=false', '--signature-policy', pc.policyPath, '--digestfile', digestFile, ref]);
      const pushed = (await readFile(digestFile, 'utf8')).trim();
      await podman.run(['rmi', '--force', '--all']);
      await podman.run(['pull', '--tls-verify=false', '--signature-policy', pc.policyPath, ref]);
      const [pulled] = JSON.parse((await podman.run(['image', 'inspect', ref])).stdout) as { Id: string; Digest: string }[];
      assert.equal(`sha256:${pulled?.Id ?? ''}`, image.config.digest);
      assert.equal(pulled?.Digest, pushed);

      const sc = await newClient();
      const skopeo = tool('skopeo', sc);
      assert.match((await loginAs('skopeo', sc, creds)).stdout, /Login Succeeded/);
      assert.equal(sha256((await skopeo.run(['inspect', '--raw', '--tls-verify=false', remote(`${repo}:v1`)])).stdout), pushed);
      // --preserve-digests: skopeo's blob info cache (shared by every client: /var/lib/containers/cache
      // when run as root) knows podman's recompressed layer, and would otherwise swap it in and
      // rewrite the manifest when this identity cannot mount the layout's own layer from e2e/auth.
      await skopeo.run(['copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:v1`, remote(`${repo}:from-skopeo`)]);
      const back = join(sc.dir, 'back');
      await skopeo.run(['copy', '--src-tls-verify=false', remote(`${repo}:from-skopeo`), `oci:${back}:v1`]);
      assert.equal((await layoutDescriptor(back, 'v1')).digest, image.manifestDigest);
    };

    test('a refresh token from POST /oauth2/token (access_type=offline) signs podman and skopeo in as 00000000-…: push and pull work', async () => {
      const refreshToken = await offlineRefreshToken(server, admin, 'repository:e2e/auth-refresh:pull,push');
      assert.notEqual(refreshToken, admin.password);
      await pushAndPullWithRefreshToken(refreshToken, 'e2e/auth-refresh');
    });

    test('a repository-scoped token created through the admin API signs podman and skopeo in to its own repository only', async () => {
      const token = await createRepositoryToken(server, admin, { repositories: ['e2e/auth-scoped'], actions: ['pull', 'push'] });
      const client = await newClient();
      const podman = tool('podman', client);
      assert.match((await loginAs('podman', client, token)).stdout, /Login Succeeded/);
      await podman.run(['pull', '--signature-policy', client.policyPath, `oci:${layout}:v1`]);
      const id = image.config.digest.slice('sha256:'.length);
      await podman.run(['tag', id, `${server.host}/e2e/auth-scoped:v1`, `${server.host}/e2e/auth-unscoped:v1`]);
      const digestFile = join(client.dir, 'pushed.digest');
      await podman.run(['push', '--tls-verify=false', '--signature-policy', client.policyPath, '--digestfile', digestFile, `${server.host}/e2e/auth-scoped:v1`]);
      const pushed = (await readFile(digestFile, 'utf8')).trim();

      // Outside its scope map the token is refused (403: a HEAD has no body, so no "denied" to print).
      const outside = await podman.fail(['push', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth-unscoped:v1`]);
      assert.equal(outside.exitCode, 125, outside.stderr);
      assert.match(outside.stderr, REFUSED);
      const other = await podman.fail(['pull', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth:v1`]);
      assert.equal(other.exitCode, 125, other.stderr);
      assert.match(other.stderr, REFUSED);
      const leftover = await operator.fail(['inspect', '--raw', '--tls-verify=false', remote('e2e/auth-unscoped:v1')]);
      assert.match(leftover.stderr, /manifest unknown|name unknown/, 'the refused push left no manifest behind');

      // skopeo, signed in with the same token, reads what podman pushed and nothing else.
      const sc = await newClient();
      const skopeo = tool('skopeo', sc);
      assert.match((await loginAs('skopeo', sc, token)).stdout, /Login Succeeded/);
      assert.equal(sha256((await skopeo.run(['inspect', '--raw', '--tls-verify=false', remote('e2e/auth-scoped:v1')])).stdout), pushed);
      const back = join(sc.dir, 'back');
      await skopeo.run(['copy', '--src-tls-verify=false', remote('e2e/auth-scoped:v1'), `oci:${back}:v1`]);
      assert.equal((await layoutDescriptor(back, 'v1')).digest, pushed);
      const denied = await skopeo.fail(['inspect', '--raw', '--tls-verify=false', remote('e2e/auth:v1')]);
      assert.equal(denied.exitCode, 1, denied.stderr);
      assert.match(denied.stderr, REFUSED);
    });

    test('a refresh token from /oauth2/exchange signs podman and skopeo in as 00000000-…: push and pull work', async () => {
      idp = await startTestIdp();
      const refreshToken = await exchangeForRefreshToken(server, admin, idp, 'e2e/auth-exchange');
      await pushAndPullWithRefreshToken(refreshToken, 'e2e/auth-exchange');
    });
  },
  { needsAuth: true },
);

/** POST /oauth2/token, password grant with access_type=offline: the refresh token `docker login` would store. */
async function offlineRefreshToken(server: TargetServer, creds: Credentials, scope: string): Promise<string> {
  const res = await fetch(`${server.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', service: 'bulwark', username: creds.username, password: creds.password, access_type: 'offline', scope }),
  });
  assert.equal(res.status, 200, `POST /oauth2/token answered ${res.status}`);
  const body = (await res.json()) as { refresh_token?: unknown };
  assert.equal(typeof body.refresh_token, 'string', 'the answer carries a refresh_token');
  return body.refresh_token as string;
}

/** Whether the client's auth file holds credentials for the registry. */
async function storedLogin(client: ClientEnv, host: string): Promise<boolean> {
  if (!existsSync(client.authFile)) return false;
  const file = JSON.parse(await readFile(client.authFile, 'utf8')) as { auths?: Record<string, unknown> };
  return file.auths?.[host] !== undefined;
}

// --- the admin API and /oauth2/exchange, as an operator's script or a CI job would call them -----

type AdminRight = 'read' | 'write' | 'access';

/** An access token for the admin API: `GET /oauth2/token` with Basic credentials, scope `registry:admin:<rights>`. */
async function adminToken(server: TargetServer, creds: Credentials, rights: AdminRight[]): Promise<string> {
  const query = new URLSearchParams({ service: 'bulwark', scope: `registry:admin:${rights.join(',')}` });
  const basic = Buffer.from(`${creds.username}:${creds.password}`, 'utf8').toString('base64');
  const res = await fetch(`${server.url}/oauth2/token?${query.toString()}`, { headers: { authorization: `Basic ${basic}` } });
  assert.equal(res.status, 200, `GET /oauth2/token answered ${res.status}`);
  const body = (await res.json()) as { access_token?: unknown };
  assert.equal(typeof body.access_token, 'string', 'the answer carries an access_token');
  return body.access_token as string;
}

/** POST /api/v1<path> with a bearer token and a JSON body; asserts 201 and returns the JSON answer. */
async function adminCreate<T>(server: TargetServer, token: string, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${server.url}/api/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  // only an error envelope is shown: a 201 may hold a password
  assert.equal(res.status, 201, `POST /api/v1${path} answered ${res.status}: ${res.status === 201 ? '' : text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

/** A name the admin API accepts (5-50 letters, digits, hyphens), unique to this run. */
const uniqueName = (prefix: string): string => `${prefix}-${randomBytes(4).toString('hex')}`;

const SCOPE_MAP_ACTIONS = { pull: 'content/read', push: 'content/write', delete: 'content/delete' } as const;

/**
 * Create a repository-scoped token through the admin API, as the bootstrap admin: a scope map
 * granting `actions` on `repositories` (`repositories/<repo>/content/<read|write|delete>`), then
 * a token on that map. The answer holds the token's first password, once.
 */
async function createRepositoryToken(
  server: TargetServer,
  admin: Credentials,
  spec: { repositories: string[]; actions: ('pull' | 'push' | 'delete')[] },
): Promise<Credentials> {
  const token = await adminToken(server, admin, ['write']);
  const name = uniqueName('e2e-token');
  const actions = spec.repositories.flatMap((repo) => spec.actions.map((a) => `repositories/${repo}/${SCOPE_MAP_ACTIONS[a]}`));
  const map = await adminCreate<{ name: string; actions: string[] }>(server, token, '/scope-maps', { name, description: 'e2e: repository-scoped token', actions });
  assert.deepEqual([...map.actions].sort(), [...actions].sort(), 'the scope map holds exactly the actions asked for');
  const created = await adminCreate<{ token: { name: string; scopeMap: string }; password: { name: string; value: string } }>(server, token, '/tokens', { name, scopeMap: name });
  assert.equal(created.token.name, name);
  assert.equal(created.password.name, 'password1');
  assert.ok(created.password.value.length > 0, 'the answer carries the password');
  return { username: name, password: created.password.value };
}

/**
 * Workload identity federation, no stored secret: as the bootstrap admin, create a service
 * identity, bind ID tokens from `idp` (subject of a CI job on main, audience `bulwark`) to it,
 * and give it AcrPush on `repository`; then get an ID token from the provider's own
 * authorization-code flow and exchange it at `POST /oauth2/exchange` for a registry refresh token.
 */
async function exchangeForRefreshToken(server: TargetServer, admin: Credentials, idp: TestIdp, repository: string): Promise<string> {
  const subject = 'repo:org/app:ref:refs/heads/main';
  const audience = 'bulwark';
  const service = uniqueName('e2e-ci');
  // creating an identity needs admin write; trusting an issuer for it and granting it a role change who may do what: admin access
  const token = await adminToken(server, admin, ['write', 'access']);
  await adminCreate(server, token, '/service-identities', { name: service, description: 'e2e: CI job signing in by federation' });
  await adminCreate(server, token, '/federated-credentials', { name: `${service}-main`, service, issuer: idp.issuer, subject, audience });
  const assigned = await adminCreate<{ principal: string; role: string; scope: string }>(server, token, '/role-assignments', { principal: `service:${service}`, role: 'AcrPush', scope: repository });
  assert.equal(assigned.scope, repository);

  const idToken = await idp.token({ subject, audience });
  const res = await fetch(`${server.url}/oauth2/exchange`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'access_token', service: 'bulwark', access_token: idToken }),
  });
  assert.equal(res.status, 200, `POST /oauth2/exchange answered ${res.status}`);
  const body = (await res.json()) as { refresh_token?: unknown };
  assert.equal(typeof body.refresh_token, 'string', 'the answer carries a refresh_token');
  return body.refresh_token as string;
}
