/**
 * `npm run bench`: Bulwark side by side with the CNCF Distribution registry (the reference), in
 * the same run, on loopback, with the same data. See bench/README.md.
 *
 *   node --import tsx bench/run.ts [--quick] [--only blobs,manifests,images,auth] [--target both]
 *
 * Scenarios run one registry at a time, alternating step by step (bench/runner.ts), so they never
 * compete for the CPU; both servers stay up for the whole run so that their peak RSS covers it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cliPath, repoRoot, startServer, type RunningServer } from '../test/testkit/server.js';
import { distributionAvailable, startDistribution } from '../test/testkit/distribution.js';
import { RegistryClient } from './client.js';
import { MiB } from './load.js';
import { ProcessMonitor } from './procstats.js';
import { type Live as RunnerLive, runScenario } from './runner.js';
import { type Failure, mergeRows, renderTable, type RunRecord, type ScenarioRun, writeRecord } from './report.js';
import { SCENARIOS } from './scenarios/index.js';
import { measureDiskWrite, measureSha256 } from './machine.js';
import { type TargetName, TARGETS } from './types.js';

const USAGE = `usage: node --import tsx bench/run.ts [options]
  --quick              smaller counts and sizes, no 1 GiB blobs (a smoke run of about a minute)
  --only <names>       comma-separated scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}
  --target <which>     bulwark | distribution | both (default both)
  --verbose            forward the servers' logs to stderr
  -h, --help           this text`;

interface Options {
  quick: boolean;
  only: string[];
  targets: TargetName[];
  verbose: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      target: { type: 'string', default: 'both' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help === true) {
    console.log(USAGE);
    process.exit(0);
  }
  const names = SCENARIOS.map((s) => s.name);
  const only = values.only === undefined ? names : values.only.split(',').map((s) => s.trim());
  const unknown = only.filter((n) => !names.includes(n));
  const target = values.target ?? 'both';
  if (unknown.length > 0 || !['both', ...TARGETS].includes(target)) {
    console.error(unknown.length > 0 ? `unknown scenario: ${unknown.join(', ')}` : `unknown target: ${target}`);
    console.error(USAGE);
    process.exit(2);
  }
  const targets = target === 'both' ? [...TARGETS] : TARGETS.filter((t) => t === target);
  return { quick: values.quick === true, only, targets, verbose: values.verbose === true };
}

interface Live extends RunnerLive {
  server: RunningServer;
}

const t0 = performance.now();
function log(target: string, message: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s ${target.padEnd(12)}] ${message}\n`);
}

async function start(target: TargetName, verbose: boolean): Promise<Live> {
  let server: RunningServer;
  if (target === 'distribution') {
    if (!distributionAvailable()) throw new Error('docker-registry (Debian package docker-registry) is not installed');
    server = await startDistribution({ verbose });
  } else {
    if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`npm run build\` first`);
    server = await startServer({ verbose });
  }
  const pid = server.child.pid;
  if (pid === undefined) throw new Error(`${target}: no pid`);
  const monitor = new ProcessMonitor(pid);
  monitor.start();
  log(target, `listening on ${server.url}, pid ${pid}, data in ${server.dataDir}`);
  return { target, server, client: new RegistryClient(server.url), monitor };
}

function meta(opts: Options, runId: string): Record<string, unknown> {
  const tryRun = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', cwd: repoRoot, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'unknown';
    }
  };
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version?: string };
  return {
    runId,
    date: new Date().toISOString(),
    options: opts,
    node: process.version,
    kernel: release(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryMiB: Math.round(totalmem() / MiB),
    bulwarkVersion: pkg.version ?? 'unknown',
    gitCommit: tryRun('git', ['rev-parse', 'HEAD']),
    gitDirty: tryRun('git', ['status', '--porcelain', '--', 'src']) !== '',
    distributionVersion: tryRun('docker-registry', ['--version']),
  };
}

async function main(): Promise<number> {
  const opts = options();
  const runId = Date.now().toString(36);
  const none = { bytes: 0, seconds: 0, MiBps: 0 };
  const record: RunRecord = { meta: meta(opts, runId), sha256: none, diskWrite: none, rows: [], runs: [], failures: [] };

  // Before any server starts, so that nothing competes with it.
  log('machine', 'measuring SHA-256 and disk write speed');
  record.sha256 = measureSha256((opts.quick ? 256 : 1024) * MiB);
  record.diskWrite = await measureDiskWrite((opts.quick ? 256 : 1024) * MiB);
  log('machine', `SHA-256 ${record.sha256.MiBps.toFixed(0)} MiB/s, disk write + fsync ${record.diskWrite.MiBps.toFixed(0)} MiB/s`);

  const live: Live[] = [];
  const failures: Failure[] = record.failures;
  const cleanup = async (): Promise<void> => {
    for (const l of live.splice(0)) {
      l.monitor.stop();
      l.client.close();
      await l.server.dispose();
    }
  };
  const onSignal = (): void => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    for (const target of opts.targets) {
      try {
        live.push(await start(target, opts.verbose));
      } catch (err) {
        failures.push({ scenario: 'start', target, message: String(err instanceof Error ? err.message : err) });
        log(target, `failed to start: ${String(err)}`);
      }
    }
    const settings = { runId, quick: opts.quick, sha256MiBps: record.sha256.MiBps, diskWriteMiBps: record.diskWrite.MiBps, log };
    for (const scenario of SCENARIOS.filter((s) => opts.only.includes(s.name))) {
      log('runner', `scenario ${scenario.name}: ${scenario.description}`);
      record.runs.push(...(await runScenario(scenario, live, settings, failures)));
    }
    for (const l of live) {
      l.monitor.stop();
      record.runs.push(wholeRun(l));
    }
  } finally {
    await cleanup();
  }

  record.rows = mergeRows(record.runs);
  console.log(renderTable(record));
  const path = await writeRecord(join(fileURLToPath(new URL('.', import.meta.url)), 'results'), record);
  console.log(`\nresults: ${path}`);
  return failures.length > 0 ? 1 : 0;
}

/** Peak RSS (the target: under 200 MiB) and CPU of a server over the whole run. */
function wholeRun(l: Live): ScenarioRun {
  const cpuSeconds = l.monitor.cpuSecondsNow();
  const peakRssMiB = l.monitor.runPeakRssMiB;
  return {
    scenario: 'run',
    target: l.target,
    ok: true,
    server: { peakRssMiB, cpuSeconds, wallSeconds: (performance.now() - t0) / 1000, peakSource: 'sampled' },
    clientCpuSeconds: 0,
    otherCpuSeconds: 0,
    measurements: [
      {
        id: 'run.rss',
        scenario: 'run',
        label: 'server peak RSS, whole run',
        unit: 'MiB',
        better: 'lower',
        goal: { kind: 'bulwark-max', max: 200 },
        value: peakRssMiB,
      },
      { id: 'run.rss-idle', scenario: 'run', label: 'server RSS at start (idle)', unit: 'MiB', better: 'lower', value: l.monitor.startRssMiB },
      { id: 'run.cpu', scenario: 'run', label: 'server CPU, whole run', unit: 'CPU s', better: 'lower', value: cpuSeconds },
    ],
  };
}

process.exitCode = await main();
