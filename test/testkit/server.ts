/**
 * Start the *built* Bulwark server (dist/cli/main.js) on a loopback port, as a user would
 * with `bulwark serve`. Used by e2e tests, crash tests and the benchmark.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { send } from './request.js';

export const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const cliPath = join(repoRoot, 'dist', 'cli', 'main.js');
/**
 * The node options the server runs with under `npm start` (ADR 0014); a test checks that the
 * two agree. The servers and gateways the tests and the benchmark start get them too, so that
 * what they measure is what the Quickstart runs.
 */
export const cliNodeOptions: readonly string[] = ['--single-threaded-gc', '--max-semi-space-size=8'];

export interface RunningServer {
  /** e.g. http://127.0.0.1:40123 */
  readonly url: string;
  /** e.g. 127.0.0.1:40123 (what skopeo/podman call the registry) */
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Graceful stop (SIGTERM) and wait for exit. Keeps the data dir. */
  stop(): Promise<void>;
  /** kill -9, wait for exit. Keeps the data dir. */
  kill(): Promise<void>;
  /** Stop and delete the data dir (unless it was passed in). */
  dispose(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export interface StartOptions {
  dataDir?: string;
  port?: number;
  /** extra CLI args after `serve` */
  args?: string[];
  env?: Record<string, string>;
  /** forward the server's stderr to ours */
  verbose?: boolean;
  /** run with authentication (the default configuration); protocol and storage tests run without */
  auth?: boolean;
  /** the server serves HTTPS (tls.certFile): wait for it with a TLS handshake trusting this CA */
  httpsCa?: Buffer;
  /** ... presenting this client certificate (a server with tls.clientAuth=required) */
  httpsClient?: { cert: Buffer; key: Buffer };
}

export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const ownsDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'bulwark-test-')));
  const port = opts.port ?? (await freePort());
  const host = `127.0.0.1:${port}`;
  const child = spawn(
    process.execPath,
    [...cliNodeOptions, cliPath, 'serve', '--listen', host, '--data-dir', dataDir, ...(opts.args ?? [])],
    {
      env: { ...process.env, BULWARK_LOG_LEVEL: process.env.BULWARK_LOG_LEVEL ?? 'warn', BULWARK_AUTH_ENABLED: opts.auth === true ? 'true' : 'false', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return supervise(child, {
    name: 'bulwark',
    host,
    port,
    dataDir,
    verbose: opts.verbose === true,
    removeDataDir: ownsDir,
    ...(opts.httpsCa !== undefined ? { httpsCa: opts.httpsCa } : {}),
    ...(opts.httpsClient !== undefined ? { httpsClient: opts.httpsClient } : {}),
  });
}

/** Any answer to GET /v2/ over HTTPS, trusting `ca` (the certificate must name 127.0.0.1 or localhost). */
async function httpsAnswers(host: string, ca: Buffer, client?: { cert: Buffer; key: Buffer }): Promise<void> {
  await send(`https://${host}/v2/`, { timeoutMs: 2_000, tls: { ca, ...client } });
}

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Where a Bulwark with authentication on writes its bootstrap admin at the first start of a data dir. */
export const BOOTSTRAP_FILE = 'bootstrap-credentials.json';

/**
 * The bootstrap admin of a data dir (`<dataDir>/bootstrap-credentials.json`, mode 0600), written
 * before the server listens, so it exists once startServer({auth: true}) has returned. The admin
 * may pull, push and delete everywhere: tests use it as "the operator".
 */
export async function bootstrapCredentials(dataDir: string): Promise<Credentials> {
  const path = join(dataDir, BOOTSTRAP_FILE);
  const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown;
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${path}: not a JSON object`);
  const { username, password } = parsed as Record<string, unknown>;
  if (typeof username !== 'string' || username === '' || typeof password !== 'string' || password === '') {
    throw new Error(`${path}: expected {"username": string, "password": string}`);
  }
  return { username, password };
}

/**
 * Collect a spawned registry's output, wait until GET /v2/ answers (any status) or the process
 * dies, and wrap it as a RunningServer. Shared by Bulwark and the reference registry.
 */
export async function supervise(
  child: ChildProcess,
  o: { name: string; host: string; port: number; dataDir: string; verbose: boolean; removeDataDir: boolean; httpsCa?: Buffer; httpsClient?: { cert: Buffer; key: Buffer } },
): Promise<RunningServer> {
  let output = '';
  const collect = (b: Buffer): void => {
    if (output.length < 64 * 1024) output += b.toString();
    if (o.verbose) process.stderr.write(b);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((res) => child.once('exit', () => res()));

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${o.name} exited during start (code ${String(child.exitCode)}):\n${output}`);
    }
    try {
      if (o.httpsCa !== undefined) await httpsAnswers(o.host, o.httpsCa, o.httpsClient);
      else await (await fetch(`http://${o.host}/v2/`)).arrayBuffer();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${o.name} did not start within 20s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const waitExit = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    url: `${o.httpsCa !== undefined ? 'https' : 'http'}://${o.host}`,
    host: o.host,
    port: o.port,
    dataDir: o.dataDir,
    child,
    stop: () => waitExit('SIGTERM'),
    kill: () => waitExit('SIGKILL'),
    dispose: async () => {
      await waitExit('SIGTERM');
      if (o.removeDataDir) await rm(o.dataDir, { recursive: true, force: true });
    },
  };
}
