/**
 * Shared helpers for the e2e tests that drive a registry with real clients (skopeo, podman,
 * buildah from Debian's packages).
 *
 * - Tool gate: a missing client skips the file locally, but fails it in CI (CI=true), because
 *   a silently skipped e2e suite would let protocol regressions land.
 * - Target switch: E2E_TARGET=distribution runs the same tests against CNCF Distribution, the
 *   reference registry, to show that the tests test the protocol rather than Bulwark's quirks.
 * - Isolated client configuration: policy.json, registries.conf and storage.conf in a temp dir,
 *   so nothing on the host (or the internet) is consulted.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { cliPath, startServer, type RunningServer } from '../testkit/server.js';
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
 * what is missing; elsewhere the suite is skipped with the same message.
 */
export function describeWithTools(name: string, tools: string[], fn: () => void): void {
  const why = missingPrerequisites(tools);
  if (why === undefined) {
    describe(`${name} [${e2eTarget()}]`, fn);
  } else if (inCI) {
    test(`${name}: prerequisites are installed`, () => {
      throw new Error(`${name} cannot run in CI: ${why}`);
    });
  } else {
    describe(name, { skip: why }, () => undefined);
  }
}

/** Start the registry under test on loopback (Bulwark's built CLI, or Distribution). */
export async function startTarget(): Promise<RunningServer> {
  const verbose = process.env.E2E_VERBOSE === '1';
  return e2eTarget() === 'distribution' ? startDistribution({ verbose }) : startServer({ verbose });
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
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
    const { stdout, stderr } = await execFileAsync(cmd, args, {
      timeout: opts.timeoutMs ?? 120_000,
      killSignal: 'SIGKILL',
      maxBuffer: 256 * 1024 * 1024,
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    });
    return { stdout, stderr };
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stdout?: string; stderr?: string; killed?: boolean; signal?: string };
    const stderr = (err.stderr ?? '').slice(-8000);
    const status = err.killed === true ? `killed (${String(err.signal)}; timeout?)` : `exit ${String(err.code)}`;
    // No `cause`: it would repeat the whole command and stderr in the test report.
    throw new Error(`${cmd} ${args.join(' ')}\n  failed: ${status}\n  stderr: ${stderr}`);
  }
}

export interface ClientEnv {
  dir: string;
  policyPath: string;
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
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CONTAINERS_REGISTRIES_CONF: registriesPath,
    CONTAINERS_STORAGE_CONF: storagePath,
    CONTAINERS_CONF: containersConf,
    TMPDIR: dir,
  };
  return { dir, policyPath, env, dispose: () => rm(dir, { recursive: true, force: true }) };
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
