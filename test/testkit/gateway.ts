/**
 * Start the *built* gateway (`bulwark gateway --config <file>`) as an operator would, with a
 * configuration object written to a temp file; wait until it logs that it is serving; keep its
 * JSON log lines for assertions (WAF matches, health changes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliNodeOptions, cliPath } from './server.js';

export interface RunningGateway {
  readonly child: ChildProcess;
  /** the bound port of each site, by site name */
  readonly ports: Readonly<Record<string, number>>;
  /** every JSON log line so far */
  logs(): Record<string, unknown>[];
  /** waits (up to `timeoutMs`) for a log line the predicate accepts */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

export async function startGateway(config: object, opts: { verbose?: boolean; logLevel?: string } = {}): Promise<RunningGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-gateway-'));
  const file = join(dir, 'gateway.json');
  await writeFile(file, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [...cliNodeOptions, cliPath, 'gateway', '--config', file, '--log-level', opts.logLevel ?? 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let text = '';
  let pending = '';
  const waiters = new Set<() => void>();
  child.stdout.on('data', (b: Buffer) => {
    if (opts.verbose === true) process.stderr.write(b);
    pending += b.toString();
    const parts = pending.split('\n');
    pending = parts.pop() ?? '';
    for (const p of parts) {
      if (text.length < 256 * 1024) text += `${p}\n`;
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
    for (const w of waiters) w();
  });
  child.stderr.on('data', (b: Buffer) => {
    if (text.length < 256 * 1024) text += b.toString();
    if (opts.verbose === true) process.stderr.write(b);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (pred: (line: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const look = (): boolean => {
        const hit = lines.find(pred);
        if (hit === undefined) return false;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(hit);
        return true;
      };
      const check = (): void => void look();
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no such gateway log line within ${timeoutMs} ms:\n${text}`));
      }, timeoutMs);
      if (look()) return;
      waiters.add(check);
      void exited.then(() => {
        if (!look()) {
          clearTimeout(timer);
          waiters.delete(check);
          reject(new Error(`the gateway exited:\n${text}`));
        }
      });
    });

  try {
    const serving = await waitForLog((l) => l.msg === 'bulwark gateway is serving');
    return {
      child,
      ports: serving.sites as Record<string, number>,
      logs: () => [...lines],
      waitForLog,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await exited;
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/** The gateway's exit and its output when it refuses to start (bad configuration). */
export async function gatewayRefuses(config: object): Promise<{ code: number | null; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-gateway-'));
  const file = join(dir, 'gateway.json');
  await writeFile(file, JSON.stringify(config));
  const child = spawn(process.execPath, [...cliNodeOptions, cliPath, 'gateway', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  await rm(dir, { recursive: true, force: true });
  return { code, output };
}
