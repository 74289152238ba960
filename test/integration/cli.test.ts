/**
 * The `bulwark` admin CLI against the built server, as an operator would use it: credentials
 * from the environment or stdin, tables or --json, passwords shown once, one-line errors with
 * exit code 1. Needs `npm run build` first (npm test builds).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cliPath, startServer, type RunningServer } from '../testkit/server.js';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

describe('bulwark admin CLI', () => {
  let server: RunningServer;
  let adminEnv: Record<string, string>;

  /** Run `bulwark <args>` with only the BULWARK_* variables given (none inherited, no stored login). */
  function bulwark(args: readonly string[], env: Record<string, string> = adminEnv, stdin?: string): Promise<Run> {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BULWARK_'))) as Record<string, string>;
    const child = spawn(process.execPath, [cliPath, ...args], { env: { ...base, BULWARK_REGISTRY: server.url, BULWARK_CONFIG_DIR: join(server.dataDir, 'no-login'), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdin.end(stdin ?? '');
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  async function ok(args: readonly string[], env?: Record<string, string>, stdin?: string): Promise<string> {
    const r = await bulwark(args, env, stdin);
    assert.equal(r.code, 0, `bulwark ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  /** Exit code 1 and exactly one line on stderr, without a stack trace. */
  async function fails(args: readonly string[], env?: Record<string, string>, stdin?: string): Promise<string> {
    const r = await bulwark(args, env, stdin);
    assert.equal(r.code, 1, `bulwark ${args.join(' ')} should fail: ${r.stdout}`);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    return r.stderr.trim();
  }

  before(async () => {
    server = await startServer({ auth: true });
    const creds = JSON.parse(await readFile(join(server.dataDir, 'bootstrap-credentials.json'), 'utf8')) as { username: string; password: string };
    adminEnv = { BULWARK_USERNAME: creds.username, BULWARK_PASSWORD: creds.password };
  });
  after(() => server.dispose());

  test('scope map and token: the password is printed once and signs in with what the scope map allows', async () => {
    assert.match(await ok(['scope-map', 'create', 'ci-push', '--action', 'repositories/app/*/content/read', '--action', 'repositories/app/*/content/write']), /created scope map ci-push/);
    const created = await bulwark(['token', 'create', 'ci-robot', '--scope-map', 'ci-push'], adminEnv);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stderr, /shown only this once/);
    const password = created.stdout.trim();
    assert.match(password, /^[A-Za-z0-9_-]{43}$/);

    const listed = JSON.parse(await ok(['token', 'list', '--json'])) as { items: { name: string; scopeMap: string; status: string }[] };
    assert.deepEqual(listed.items.map((x) => [x.name, x.scopeMap, x.status]), [['ci-robot', 'ci-push', 'enabled']]);
    assert.match(await ok(['token', 'list']), /^NAME\s+SCOPE MAP\s+STATUS[\s\S]*ci-robot\s+ci-push\s+enabled/);

    const basic = Buffer.from(`ci-robot:${password}`).toString('base64');
    const res = await fetch(`${server.url}/oauth2/token?scope=repository:app/web:push,delete`, { headers: { authorization: `Basic ${basic}` } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  test('role assignment, and just-in-time access requested by a token (password on stdin) and approved by the admin', async () => {
    assert.match(await ok(['role', 'assign', '--principal', 'token:ci-robot', '--role', 'AcrPull', '--scope', 'lib/*']), /assigned AcrPull on lib\/\* to token:ci-robot/);
    const roles = JSON.parse(await ok(['role', 'list', '--json', '--principal', 'token:ci-robot'])) as { items: { role: string; scope: string }[] };
    assert.deepEqual(roles.items.map((r) => [r.role, r.scope]), [['AcrPull', 'lib/*']]);

    const password = (await ok(['token', 'password', 'ci-robot', '--slot', 'password2'])).trim();
    const asRobot = ['--username', 'ci-robot', '--password-stdin'];
    const asked = JSON.parse(
      await ok(['access', 'request', '--role', 'RepositoryContributor', '--scope', 'app/*', '--duration', '1h', '--justification', 'release 2.1 hotfix', '--json', ...asRobot], {}, `${password}\n`),
    ) as { id: string; status: string; durationSeconds: number };
    assert.equal(asked.status, 'pending');
    assert.equal(asked.durationSeconds, 3600);
    assert.match(await fails(['access', 'approve', asked.id, ...asRobot], {}, password), /^bulwark: registry:admin:access is not granted to token:ci-robot \(DENIED\)$/);

    assert.match(await ok(['access', 'approve', asked.id]), new RegExp(`approved ${asked.id}: RepositoryContributor on app/\\* for token:ci-robot until `));
    const list = JSON.parse(await ok(['access', 'list', '--json'])) as { items: { id: string; status: string }[] };
    assert.deepEqual(list.items.map((r) => [r.id, r.status]), [[asked.id, 'approved']]);
  });

  test('wrong credentials, no credentials and an unreachable registry: exit code 1 with one clean line', async () => {
    assert.equal(await fails(['token', 'list'], { ...adminEnv, BULWARK_PASSWORD: 'wrong' }), 'bulwark: sign-in failed: invalid credentials (UNAUTHORIZED)');
    assert.match(await fails(['token', 'list'], {}), /^bulwark: no credentials: /);
    assert.match(await fails(['token', 'create', 'x', '--scope-map', 'ci-push']), /^bulwark: invalid body: body\.name: .*\(BAD_REQUEST\)$/);
    assert.match(await fails(['access', 'request', '--role', 'Reader', '--duration', 'soon', '--justification', 'because I can']), /^bulwark: invalid duration soon/);
  });

  test('encryption status and rotate --new-version: the key version moves and the data keys follow', async () => {
    interface Status {
      target: { version: string };
      dataKeys: { kek: { version: string }; count: number }[];
    }
    const before = JSON.parse(await ok(['encryption', 'status', '--json'])) as Status;
    assert.match(await ok(['encryption', 'status']), /key-encryption key: local:bulwark-kek\/\S+ \(follows the newest version\)\n.*ok/);
    const rotated = JSON.parse(await ok(['encryption', 'rotate', '--new-version', '--json'])) as { target: { version: string }; failed: number; finishedAt?: string };
    assert.notEqual(rotated.target.version, before.target.version, 'a new key version');
    assert.equal(rotated.failed, 0);
    assert.ok(rotated.finishedAt !== undefined, 'the command waited for the rotation to finish');
    assert.equal(await ok(['check-health']), 'OK METADATA\nOK BLOBS\nOK CMK\n');
    const after = JSON.parse(await ok(['encryption', 'status', '--json'])) as Status;
    assert.equal(after.target.version, rotated.target.version);
    assert.ok(after.dataKeys.every((d) => d.kek.version === rotated.target.version), `every data key under the new version: ${JSON.stringify(after.dataKeys)}`);
  });

  test('admin status shows the finding; admin disable turns the bootstrap admin off for good', async () => {
    const status = JSON.parse(await ok(['admin', 'status', '--json'])) as { admins: { enabled: boolean }[]; findings: { id: string }[] };
    assert.deepEqual(status.findings.map((f) => f.id), ['BOOTSTRAP_ADMIN_ENABLED']);
    assert.match(await ok(['admin', 'disable']), /bootstrap admin is disabled/);
    assert.equal(await fails(['admin', 'status']), 'bulwark: sign-in failed: invalid credentials (UNAUTHORIZED)');
  });
});
