/**
 * Token authentication as real clients see it (Docker "Token Authentication Specification"):
 * skopeo and podman against Bulwark with authentication on, signing in with the bootstrap admin's
 * password, with a wrong one, and with a refresh token (username 00000000-0000-0000-0000-000000000000,
 * the `docker login` convention for identity tokens).
 *
 * Secrets never appear on a command line: every login reads the password from stdin and the
 * tools read the stored credentials from the client's own auth file; the refresh token is
 * fetched in-process.
 *
 * Skipped against Distribution (E2E_TARGET=distribution) and with E2E_AUTH=off: the registry
 * under test then has no authentication to check.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImageLayout, layoutDescriptor, type BuiltImage } from '../testkit/oci-layout.js';
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
      await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, remote(`${repo}:from-skopeo`)]);
      const back = join(sc.dir, 'back');
      await skopeo.run(['copy', '--src-tls-verify=false', remote(`${repo}:from-skopeo`), `oci:${back}:v1`]);
      assert.equal((await layoutDescriptor(back, 'v1')).digest, image.manifestDigest);
    };

    test('a refresh token from POST /oauth2/token (access_type=offline) signs podman and skopeo in as 00000000-…: push and pull work', async () => {
      const refreshToken = await offlineRefreshToken(server, admin, 'repository:e2e/auth-refresh:pull,push');
      assert.notEqual(refreshToken, admin.password);
      await pushAndPullWithRefreshToken(refreshToken, 'e2e/auth-refresh');
    });

    // TODO(lead): remove `todo` once createRepositoryToken (below) creates the token through the admin API.
    test(
      'a repository-scoped token created through the admin API signs podman in to its own repository only',
      { todo: 'TODO(lead): wire createRepositoryToken to the admin API' },
      async () => {
        const token = await createRepositoryToken(server, admin, { repositories: ['e2e/auth-scoped'], actions: ['pull', 'push'] });
        const client = await newClient();
        const podman = tool('podman', client);
        await loginAs('podman', client, token);
        await podman.run(['pull', '--signature-policy', client.policyPath, `oci:${layout}:v1`]);
        const id = image.config.digest.slice('sha256:'.length);
        await podman.run(['tag', id, `${server.host}/e2e/auth-scoped:v1`, `${server.host}/e2e/auth-unscoped:v1`]);
        await podman.run(['push', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth-scoped:v1`]);
        const outside = await podman.fail(['push', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth-unscoped:v1`]);
        assert.equal(outside.exitCode, 125, outside.stderr);
        assert.match(outside.stderr, /denied|unauthorized/);
        const other = await podman.fail(['pull', '--tls-verify=false', '--signature-policy', client.policyPath, `${server.host}/e2e/auth:v1`]);
        assert.match(other.stderr, /denied|unauthorized/);
      },
    );

    // TODO(lead): remove `todo` once exchangeForRefreshToken (below) calls /oauth2/exchange.
    test(
      'a refresh token from /oauth2/exchange signs podman and skopeo in as 00000000-…: push and pull work',
      { todo: 'TODO(lead): wire exchangeForRefreshToken to /oauth2/exchange' },
      async () => {
        await pushAndPullWithRefreshToken(await exchangeForRefreshToken(server), 'e2e/auth-exchange');
      },
    );
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

// --- TODO(lead): hooks for the flows other helpers are building ----------------------------------

/**
 * TODO(lead): create a repository-scoped token (and a password for it) through the admin API, as
 * the bootstrap admin, granting `actions` on `repositories`; return its username and password.
 * Never fake it here: the test above must prove the admin API and the scope map work end to end.
 */
async function createRepositoryToken(
  _server: TargetServer,
  _admin: Credentials,
  _spec: { repositories: string[]; actions: ('pull' | 'push' | 'delete')[] },
): Promise<Credentials> {
  throw new Error('TODO(lead): repository-scoped tokens through the admin API are not wired into the e2e suite yet');
}

/**
 * TODO(lead): get a refresh token from `POST /oauth2/exchange` (an ID token from the test OIDC
 * provider, test/testkit/oidc-provider.ts, exchanged for a registry refresh token). The server
 * must then run with `auth.oidc.userIssuers` pointing at that provider, and that identity needs
 * pull and push on the repository the test uses.
 */
async function exchangeForRefreshToken(_server: TargetServer): Promise<string> {
  throw new Error('TODO(lead): /oauth2/exchange is not wired into the e2e suite yet');
}
