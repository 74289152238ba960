/**
 * Shared helpers for the e2e tests that drive a registry with real clients (skopeo, podman,
 * buildah from Debian's packages).
 *
 * - Tool gate: a missing client skips the file locally, but fails it in CI (CI=true), because
 *   a silently skipped e2e suite would let protocol regressions land.
 * - Target switch: E2E_TARGET=distribution runs the same tests against CNCF Distribution, the
 *   reference registry, to show that the tests test the protocol rather than Bulwark's quirks.
 * - Authentication: Bulwark runs with authentication on (its default configuration), and every
 *   suite signs its tools in as the bootstrap admin (`<tool> login --password-stdin`, so no
 *   secret is ever on a command line). E2E_AUTH=off runs Bulwark without authentication.
 *   Distribution runs without authentication, so nothing signs in to it, and suites that test
 *   authentication itself are skipped against it.
 * - Isolated client configuration: policy.json, registries.conf, storage.conf and the auth file
 *   (REGISTRY_AUTH_FILE, DOCKER_CONFIG) in a temp dir, so nothing on the host (or the internet)
 *   is consulted, and a client that never logged in has no credentials at all.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { bootstrapCredentials, cliPath, startServer, type Credentials, type RunningServer } from '../testkit/server.js';
import { distributionAvailable, startDistribution } from '../testkit/distribution.js';

const execFileAsync = promisify(execFile);
const inCI = process.env.CI === 'true';

/** Full path of `name` on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

export type Target = 'bulwark' | 'distribution';

export function e2eTarget(): Target {
  const t = process.env.E2E_TARGET ?? 'bulwark';
  if (t !== 'bulwark' && t !== 'distribution') throw new Error(`E2E_TARGET must be bulwark or distribution, got ${t}`);
  return t;
}

/** Whether the registry under test requires authentication (Bulwark, unless E2E_AUTH=off). */
export function e2eAuth(): boolean {
  const a = process.env.E2E_AUTH ?? 'on';
  if (a !== 'on' && a !== 'off') throw new Error(`E2E_AUTH must be on or off, got ${a}`);
  return e2eTarget() === 'bulwark' && a === 'on';
}

/** Why this file cannot run (missing tools, unbuilt server), or undefined when it can. */
export function missingPrerequisites(tools: string[]): string | undefined {
  const missing = tools.filter((t) => findTool(t) === undefined);
  if (e2eTarget() === 'distribution' && !distributionAvailable()) missing.push('docker-registry');
  const problems = missing.length > 0 ? [`missing tools: ${missing.join(', ')} (apt-get install ${missing.join(' ')})`] : [];
  if (e2eTarget() === 'bulwark' && !existsSync(cliPath)) problems.push(`${cliPath} not built (npm run build)`);
  return problems.length > 0 ? problems.join('; ') : undefined;
}

/**
 * describe() that runs only when the tools exist. Missing tools: in CI one failing test says
 * what is missing; elsewhere the suite is skipped with the same message. A suite that tests
 * authentication (`needsAuth`) is skipped, also in CI, against a registry without it.
 */
export function describeWithTools(name: string, tools: string[], fn: () => void, opts: { needsAuth?: boolean } = {}): void {
  const why = missingPrerequisites(tools);
  if (opts.needsAuth === true && !e2eAuth()) {
    describe(name, { skip: `the registry under test runs without authentication (E2E_TARGET=${e2eTarget()}, E2E_AUTH=${process.env.E2E_AUTH ?? 'on'})` }, () => undefined);
  } else if (why === undefined) {
    describe(`${name} [${e2eTarget()}]`, fn);
  } else if (inCI) {
    test(`${name}: prerequisites are installed`, () => {
      throw new Error(`${name} cannot run in CI: ${why}`);
    });
  } else {
    describe(name, { skip: why }, () => undefined);
  }
}

export interface TargetServer extends RunningServer {
  /** the bootstrap admin (pull, push, delete everywhere); undefined when the registry runs without authentication */
  readonly admin: Credentials | undefined;
}

/** Start the registry under test on loopback (Bulwark's built CLI, or Distribution). */
export async function startTarget(opts: { env?: Record<string, string> } = {}): Promise<TargetServer> {
  const verbose = process.env.E2E_VERBOSE === '1';
  if (e2eTarget() === 'distribution') return { ...(await startDistribution({ verbose })), admin: undefined };
  const auth = e2eAuth();
  const server = await startServer({ verbose, auth, ...(opts.env !== undefined ? { env: opts.env } : {}) });
  try {
    return { ...server, admin: auth ? await bootstrapCredentials(server.dataDir) : undefined };
  } catch (e) {
    await server.dispose();
    throw e;
  }
}

/**
 * `<tool> login` arguments that read the password from stdin (pass it as RunOptions.input) and
 * write the client's auth file, which skopeo, podman and buildah all read (REGISTRY_AUTH_FILE).
 */
export function loginArgs(client: ClientEnv, host: string, username: string): string[] {
  return ['login', '--tls-verify=false', '--authfile', client.authFile, '--username', username, '--password-stdin', host];
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** written to the command's stdin (e.g. a password for --password-stdin); stdin is closed either way */
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Run a command without a shell; throws an Error whose message holds the command line, the
 * exit status and the tail of stderr, so a failing e2e test explains itself.
 */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  try {
    const { stdout, stderr } = await spawnWithInput(cmd, args, opts);
    return { stdout, stderr };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stdout?: string; stderr?: string; killed?: boolean; signal?: string };
    const stderr = (err.stderr ?? '').slice(-8000);
    const status = err.killed === true ? `killed (${String(err.signal)}; timeout?)` : `exit ${String(err.code)}`;
    // No `cause`: it would repeat the whole command and stderr in the test report.
    throw new Error(`${cmd} ${args.join(' ')}\n  failed: ${status}\n  stderr: ${stderr}`);
  }
}

/** The outcome of a command expected to fail. */
export interface FailedRun extends RunResult {
  /** the exit status (never 0) */
  exitCode: number;
}

/** Run a command that must fail; throws if it succeeds, or if it is killed (timeout). */
export async function runExpectingFailure(cmd: string, args: string[], opts: RunOptions = {}): Promise<FailedRun> {
  try {
    const { stdout } = await spawnWithInput(cmd, args, opts);
    throw new Error(`${cmd} ${args.join(' ')}\n  succeeded, but was expected to fail; stdout: ${stdout.slice(-2000)}`);
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { exitCode: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

function spawnWithInput(cmd: string, args: string[], opts: RunOptions): Promise<RunResult> {
  const pending = execFileAsync(cmd, args, {
    timeout: opts.timeoutMs ?? 120_000,
    killSignal: 'SIGKILL',
    maxBuffer: 256 * 1024 * 1024,
    env: opts.env ?? process.env,
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
  });
  const stdin = pending.child.stdin;
  // A command that exits without reading its stdin must not crash the test run with EPIPE.
  stdin?.on('error', () => undefined);
  stdin?.end(opts.input ?? '');
  return pending;
}

export interface ClientEnv {
  dir: string;
  policyPath: string;
  /** the credentials `<tool> login` stores; holds none until a login (then the client is anonymous) */
  authFile: string;
  /** process env with CONTAINERS_* pointing at the isolated files */
  env: NodeJS.ProcessEnv;
  dispose(): Promise<void>;
}

/**
 * Temp configuration for the containers/* tools. The registry is plain HTTP on loopback, so
 * it is listed as insecure (the commands also pass --tls-verify=false); short-name search is
 * empty so an unqualified name can never reach a public registry.
 */
export async function makeClientEnv(registryHost: string): Promise<ClientEnv> {
  const dir = await tempDir('client');
  const policyPath = join(dir, 'policy.json');
  await writeFile(policyPath, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  const registriesPath = join(dir, 'registries.conf');
  await writeFile(
    registriesPath,
    ['unqualified-search-registries = []', '', '[[registry]]', `location = "${registryHost}"`, 'insecure = true', ''].join('\n'),
  );
  const storagePath = join(dir, 'storage.conf');
  await writeFile(
    storagePath,
    ['[storage]', 'driver = "vfs"', `graphroot = "${join(dir, 'root')}"`, `runroot = "${join(dir, 'runroot')}"`, ''].join('\n'),
  );
  // containers.conf: no systemd and no journald on CI boxes.
  const containersConf = join(dir, 'containers.conf');
  await writeFile(containersConf, ['[engine]', 'events_logger = "file"', 'cgroup_manager = "cgroupfs"', ''].join('\n'));
  // Empty but present: podman refuses to run with a REGISTRY_AUTH_FILE that does not exist.
  const authFile = join(dir, 'auth.json');
  await writeFile(authFile, '{"auths":{}}\n', { mode: 0o600 });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Credentials only from this client's own auth file, never from the host's.
    REGISTRY_AUTH_FILE: authFile,
    DOCKER_CONFIG: join(dir, 'docker'),
    XDG_CONFIG_HOME: join(dir, 'config'),
    CONTAINERS_REGISTRIES_CONF: registriesPath,
    CONTAINERS_STORAGE_CONF: storagePath,
    CONTAINERS_CONF: containersConf,
    TMPDIR: dir,
  };
  return { dir, policyPath, authFile, env, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * podman's global flags for a client: its own vfs storage, run and tmp dirs under the client's
 * temp dir, no events journal, no systemd.
 */
export function podmanGlobalArgs(client: ClientEnv): string[] {
  const d = client.dir;
  return [
    '--root', join(d, 'root'), '--runroot', join(d, 'runroot'), '--tmpdir', join(d, 'libpod'), '--storage-driver', 'vfs',
    '--events-backend', 'none', '--cgroup-manager', 'cgroupfs',
  ];
}

/**
 * Make a fresh temp directory (lowercase: podman names an image pulled from oci:PATH after PATH,
 * and an image name must be lowercase). The suites remove it in after().
 */
export async function tempDir(prefix: string): Promise<string> {
  const dir = join(tmpdir(), `bulwark-e2e-${prefix}-${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}
