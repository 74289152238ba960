/**
 * Scenario "encryption": what encryption at rest costs, Bulwark against itself. The bench's
 * Bulwark runs with the default configuration, encryption on; this scenario starts a second one
 * with `encryption.enabled=false` (its own data dir) and measures:
 * - monolithic push and pull of 64 MiB and 1 GiB blobs (64 MiB only with --quick), one at a time,
 *   the same content on both servers, in rounds that alternate the servers (on, off, off, on, ...)
 *   so that drifts of the disk hit both. Target: encrypted >= 0.8x plaintext.
 * - data-key unwraps per second with a cold cache: a third Bulwark, encryption on with
 *   `encryption.dataKeyCacheSeconds=0`, so that every blob GET unwraps its data key through the
 *   key vault (RSA-OAEP). 1 KiB blobs, each pulled once at concurrency 1 and once at 16.
 * Claims are checked in the servers' audit logs (<dataDir>/audit.log, JSON lines): every push to
 * the bench's Bulwark wraps a data key, the plaintext server makes no key operation, and every
 * cold-cache pull makes exactly one `unwrapKey`; otherwise the step fails.
 * Distribution has no encryption at rest: the scenario has no steps for it.
 */
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, type RunningServer } from '../../test/testkit/server.js';
import { RegistryClient } from '../client.js';
import { blobContent, digestOf, materialize, sha256 } from '../content.js';
import { at, boundedLoop, MiB, percentile, sizeLabel, sum, type LoopResult } from '../load.js';
import type { ProcessMonitor } from '../procstats.js';
import { watchExtraProcess } from '../extra-process.js';
import type { Measurement, Scenario, ScenarioContext, Step } from '../types.js';

/** Goal of every encrypted / plaintext throughput ratio (the target). */
const MIN_RATIO = 0.8;
const SMALL = 1024;
const UNWRAP_CONCURRENCY = [1, 16] as const;

type Mode = 'on' | 'off';
type Op = 'push' | 'pull';

interface Plan {
  size: number;
  /** one blob per round and server; the rounds alternate the servers */
  rounds: number;
  /** time bound of one round */
  maxSeconds: number;
}

function plans(quick: boolean): Plan[] {
  return quick
    ? [{ size: 64 * MiB, rounds: 2, maxSeconds: 60 }]
    : [
        { size: 64 * MiB, rounds: 4, maxSeconds: 60 },
        { size: 1024 * MiB, rounds: 2, maxSeconds: 240 },
      ];
}

/** One server of the throughput comparison. */
interface Side {
  client: RegistryClient;
  cpu: () => number;
  audit: AuditTail;
}

/** A Bulwark this scenario started, with its monitor (its peak RSS covers the timed steps). */
interface Extra {
  server: RunningServer;
  monitor: ProcessMonitor;
}

export const encryptionScenario: Scenario = {
  name: 'encryption',
  description: 'Bulwark with encryption at rest on vs off: monolithic push and pull, 64 MiB and 1 GiB; cold-cache data-key unwraps/s',
  steps(ctx: ScenarioContext): Step[] {
    if (ctx.target !== 'bulwark') return [];
    const sides = new Map<Mode, Side>();
    let plain: Extra | undefined;
    const setup: Step = {
      name: 'start a Bulwark with encryption off (untimed)',
      run: async () => {
        plain = await startExtra(ctx, 'encryption-off', { BULWARK_ENCRYPTION_ENABLED: 'false' });
        const audit = new AuditTail(join(await dataDirOf(ctx.client.base.host), 'audit.log'));
        sides.set('on', { client: tracked(ctx, new RegistryClient(ctx.client.base.href)), cpu: ctx.serverCpuSeconds, audit });
        const offCpu = plain.monitor;
        sides.set('off', { client: tracked(ctx, new RegistryClient(plain.server.url)), cpu: () => offCpu.cpuSecondsNow(), audit: new AuditTail(join(plain.server.dataDir, 'audit.log')) });
        plain.monitor.begin();
        return [];
      },
    };
    const side = (mode: Mode): Side => {
      const s = sides.get(mode);
      if (s === undefined) throw new Error('the encryption-off server was not set up');
      return s;
    };
    const all = plans(ctx.quick);
    const throughput = all.flatMap((plan, k) => planSteps(ctx, plan, side, () => (k === all.length - 1 && plain !== undefined ? extraRows('off', 'encryption-off server', plain) : [])));
    return [setup, ...throughput, ...unwrapSteps(ctx)];
  },
};

function planSteps(ctx: ScenarioContext, plan: Plan, side: (mode: Mode) => Side, last: () => Measurement[]): Step[] {
  const size = sizeLabel(plan.size);
  const key = size.replace(' ', '');
  const repo = `bench-${ctx.runId}/encryption-${key.toLowerCase()}`;
  const results: Record<Op, Record<Mode, LoopResult[]>> = { push: { on: [], off: [] }, pull: { on: [], off: [] } };
  const keyEvents: Record<Mode, number> = { on: 0, off: 0 };
  const step = (op: Op, mode: Mode, round: number): Step => ({
    name: `${op} monolithic ${size}, encryption ${mode} (round ${round + 1}/${plan.rounds})`,
    run: async () => {
      const s = side(mode);
      const mark = await s.audit.mark();
      const bounds = { concurrency: 1, maxCount: 1, maxSeconds: plan.maxSeconds, cpu: s.cpu };
      // The same content on both servers: the push of round k pushes blob k, its pull reads it back.
      const blob = blobContent(`encryption-${key}-${round}`, plan.size);
      const r = await boundedLoop(bounds, async () => {
        if (op === 'push') await s.client.pushMonolithic(repo, blob);
        else await s.client.pullBlob(repo, digestOf(blob));
      });
      if (op === 'push') keyEvents[mode] += await checkPushAudit(s.audit, mark, mode, r.count);
      results[op][mode].push(r);
      const done = (['push', 'pull'] as const).every((o) => results[o].on.length === plan.rounds && results[o].off.length === plan.rounds);
      const rows = results[op].on.length === plan.rounds && results[op].off.length === plan.rounds ? throughputRows(op, plan, results[op], keyEvents) : [];
      return done ? [...rows, ...last()] : rows;
    },
  });
  const alternating = (op: Op): Step[] =>
    Array.from({ length: plan.rounds }, (_, k) => (k % 2 === 0 ? ['on', 'off'] : ['off', 'on']).map((m) => step(op, m as Mode, k))).flat();
  return [...alternating('push'), ...alternating('pull')];
}

/**
 * The audit log of a push: the encrypted server wrapped a data key for it, the plaintext server
 * made no key operation at all, and both recorded it (so the log is being written). Returns the
 * number of key operations seen.
 */
async function checkPushAudit(audit: AuditTail, mark: number, mode: Mode, pushes: number): Promise<number> {
  const c = await audit.await(mark, (n) => (n.get('blob.push') ?? 0) >= pushes && (mode === 'off' || (n.get('key.operation:wrapKey') ?? 0) >= pushes));
  const pushed = c.get('blob.push') ?? 0;
  const wraps = c.get('key.operation:wrapKey') ?? 0;
  const keyOps = c.get('key.operation') ?? 0;
  if (pushed !== pushes) throw new Error(`${audit.path}: ${pushed} blob.push events for ${pushes} pushes`);
  if (mode === 'on' && wraps < pushes) throw new Error(`${audit.path}: ${wraps} wrapKey events for ${pushes} pushes: is encryption off on the bench's Bulwark (BULWARK_ENCRYPTION_ENABLED in the environment)?`);
  if (mode === 'off' && keyOps > 0) throw new Error(`${audit.path}: ${keyOps} key operations on the encryption-off server`);
  return keyOps;
}

function throughputRows(op: Op, plan: Plan, r: Record<Mode, LoopResult[]>, keyEvents: Record<Mode, number>): Measurement[] {
  const size = sizeLabel(plan.size);
  const key = size.replace(' ', '');
  const what = `${op === 'push' ? 'push monolithic' : 'pull (GET + sha256)'} ${size}`;
  const on = sum(r.on);
  const off = sum(r.off);
  const mibps = (x: LoopResult): number => (x.count * plan.size) / MiB / x.seconds;
  const cpuPerGiB = (x: LoopResult): number => x.cpuSeconds / ((x.count * plan.size) / (1024 * MiB));
  const base = { scenario: 'encryption' };
  const id = `encryption.${op}-mono.${key}`;
  const one = (mode: Mode, x: LoopResult): Measurement[] => {
    const detail = { count: x.count, seconds: x.seconds, timeBound: x.timeBound, serverCpuSeconds: x.cpuSeconds };
    const label = `${what}, ${mode === 'on' ? 'encrypted' : 'plaintext'}`;
    return [
      { ...base, id: `${id}.${mode}.MiBps`, label, unit: 'MiB/s', better: 'higher', value: mibps(x), detail },
      { ...base, id: `${id}.${mode}.cpu`, label: `${label}: server CPU`, unit: 'CPU s/GiB', better: 'lower', value: cpuPerGiB(x), detail },
    ];
  };
  const ratio: Measurement = {
    ...base,
    id: `${id}.on-vs-off`,
    label: `${what}: encrypted / plaintext`,
    unit: 'x',
    better: 'higher',
    goal: { kind: 'bulwark-min', min: MIN_RATIO },
    value: mibps(on) / mibps(off),
    // Server CPU per GiB is the steadier comparison on a busy machine: both are kept.
    detail: {
      onCount: on.count,
      offCount: off.count,
      onSeconds: on.seconds,
      offSeconds: off.seconds,
      cpuSecondsPerGiBOn: cpuPerGiB(on),
      cpuSecondsPerGiBOff: cpuPerGiB(off),
      ...(op === 'push' ? { keyOperationsOn: keyEvents.on, keyOperationsOff: keyEvents.off } : {}),
    },
  };
  return [...one('on', on), ...one('off', off), ratio];
}

/** Cold-cache unwraps: push small blobs to a Bulwark that caches no data key, pull each once. */
function unwrapSteps(ctx: ScenarioContext): Step[] {
  const count = ctx.quick ? 200 : 500;
  const maxSeconds = ctx.quick ? 15 : 30;
  const repo = `bench-${ctx.runId}/encryption-cold`;
  const blobs = Array.from({ length: count }, (_, i) => {
    const data = materialize(blobContent(`encryption-cold-${i}`, SMALL));
    return { digest: sha256(data), data };
  });
  let state: { cold: Extra; client: RegistryClient; audit: AuditTail } | undefined;
  const live = (): NonNullable<typeof state> => {
    if (state === undefined) throw new Error('the cold-cache server was not set up');
    return state;
  };
  const setup: Step = {
    name: `start a Bulwark with data-key cache 0, push ${count} x ${sizeLabel(SMALL)} (untimed)`,
    run: async () => {
      const cold = await startExtra(ctx, 'cold-cache', { BULWARK_ENCRYPTION_ENABLED: 'true', BULWARK_ENCRYPTION_DATA_KEY_CACHE_SECONDS: '0' });
      const client = tracked(ctx, new RegistryClient(cold.server.url));
      const r = await boundedLoop({ concurrency: 8, maxCount: count, maxSeconds: 120 }, (i) => client.pushMonolithic(repo, at(blobs, i)));
      if (r.count !== count) throw new Error(`cold-cache server: pushed ${r.count} of ${count} blobs within 120 s`);
      state = { cold, client, audit: new AuditTail(join(cold.server.dataDir, 'audit.log')) };
      cold.monitor.begin();
      return [];
    },
  };
  const pulls = UNWRAP_CONCURRENCY.map(
    (concurrency, k): Step => ({
      name: `pull each ${sizeLabel(SMALL)} blob once, data-key cache 0, c=${concurrency}`,
      run: async () => {
        const s = live();
        const mark = await s.audit.mark();
        const cpu = (): number => s.cold.monitor.cpuSecondsNow();
        const r = await boundedLoop({ concurrency, maxCount: count, maxSeconds, cpu }, async (i) => void (await s.client.pullBlob(repo, at(blobs, i).digest)));
        const unwraps = await checkUnwrapAudit(s.audit, mark, r.count);
        const rows = unwrapRows(concurrency, r, unwraps);
        return k === UNWRAP_CONCURRENCY.length - 1 ? [...rows, ...extraRows('cold', 'cold-cache server', s.cold)] : rows;
      },
    }),
  );
  return [setup, ...pulls];
}

/** Every cold-cache pull unwraps its data key exactly once: the audit log must say so. */
async function checkUnwrapAudit(audit: AuditTail, mark: number, pulls: number): Promise<number> {
  const c = await audit.await(mark, (n) => (n.get('blob.pull') ?? 0) >= pulls && (n.get('key.operation:unwrapKey') ?? 0) >= pulls);
  const pulled = c.get('blob.pull') ?? 0;
  const unwraps = c.get('key.operation:unwrapKey') ?? 0;
  const failed = c.get('key.operation!failure') ?? 0;
  if (pulled !== pulls || unwraps !== pulls || failed > 0) {
    throw new Error(`${audit.path}: ${pulls} pulls logged ${pulled} blob.pull and ${unwraps} unwrapKey events (${failed} failed key operations); expected exactly one unwrap per pull`);
  }
  return unwraps;
}

function unwrapRows(concurrency: number, r: LoopResult, unwraps: number): Measurement[] {
  const detail = { pulls: r.count, unwrapKeyEvents: unwraps, seconds: r.seconds, timeBound: r.timeBound, serverCpuSeconds: r.cpuSeconds };
  const what = `cold-cache unwraps (${sizeLabel(SMALL)} GETs, data-key cache 0), c=${concurrency}`;
  const base = { scenario: 'encryption', detail };
  const id = `encryption.unwrap.c${concurrency}`;
  return [
    { ...base, id: `${id}.ops`, label: what, unit: 'unwraps/s', better: 'higher', value: unwraps / r.seconds },
    { ...base, id: `${id}.p99`, label: `${what} GET p99`, unit: 'ms', better: 'lower', value: percentile(r.latenciesMs, 99) },
    { ...base, id: `${id}.cpu`, label: `${what}: server CPU`, unit: 'CPU us/unwrap', better: 'lower', value: (r.cpuSeconds * 1e6) / unwraps },
  ];
}

/** A second or third Bulwark, with `env` over the defaults; stopped when the scenario ends. */
async function startExtra(ctx: ScenarioContext, name: string, env: Record<string, string>): Promise<Extra> {
  const server = await startServer({ env });
  ctx.defer(() => server.dispose());
  const monitor = watchExtraProcess(ctx, `${name} server`, server.child.pid);
  ctx.log(`${name} Bulwark listening on ${server.url}, pid ${monitor.pid}, data in ${server.dataDir}`);
  return { server, monitor };
}

/** The peak RSS and CPU of a server this scenario started, over its timed steps. */
function extraRows(id: string, what: string, extra: Extra): Measurement[] {
  const window = extra.monitor.end();
  return [
    { id: `encryption.${id}.rss`, scenario: 'encryption', label: `${what} peak RSS, timed steps`, unit: 'MiB', better: 'lower', value: window.peakRssMiB },
    { id: `encryption.${id}.cpu`, scenario: 'encryption', label: `${what} CPU, timed steps`, unit: 'CPU s', better: 'lower', value: window.cpuSeconds },
  ];
}

function tracked(ctx: ScenarioContext, client: RegistryClient): RegistryClient {
  ctx.defer(async () => client.close());
  return client;
}

/**
 * The data dir of the bench's own Bulwark, from its command line (`serve --listen <host>
 * --data-dir <dir>`, test/testkit/server.ts): the scenario reads its audit log.
 */
async function dataDirOf(host: string): Promise<string> {
  for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    let argv: string[];
    try {
      argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue; // exited, or not ours to read
    }
    const after = (flag: string): string | undefined => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
    const dir = after('--data-dir');
    if (argv.includes('serve') && after('--listen') === host && dir !== undefined) return dir;
  }
  throw new Error(`no Bulwark serving ${host} found in /proc`);
}

/**
 * Counts the events appended to an audit log since a mark (a byte offset), by `type`,
 * `type:reason` and `type!failure`. The server appends through a stream after it answers, so
 * `await` polls until `ready` holds (at most 5 s), then waits a little longer and counts again:
 * an event beyond the expected ones is then seen too.
 */
class AuditTail {
  constructor(readonly path: string) {}

  async mark(): Promise<number> {
    const f = await open(this.path, 'r');
    try {
      return (await f.stat()).size;
    } finally {
      await f.close();
    }
  }

  async await(mark: number, ready: (counts: Map<string, number>) => boolean): Promise<Map<string, number>> {
    const deadline = performance.now() + 5000;
    let counts = await this.since(mark);
    while (!ready(counts) && performance.now() < deadline) {
      await sleep(50);
      counts = await this.since(mark);
    }
    await sleep(300);
    return this.since(mark);
  }

  private async since(mark: number): Promise<Map<string, number>> {
    const f = await open(this.path, 'r');
    let text: string;
    try {
      const length = (await f.stat()).size - mark;
      const buf = Buffer.alloc(Math.max(0, length));
      const { bytesRead } = await f.read(buf, 0, buf.length, mark);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await f.close();
    }
    const counts = new Map<string, number>();
    const add = (k: string): void => void counts.set(k, (counts.get(k) ?? 0) + 1);
    // Only complete lines: the last one may still be being written.
    for (const line of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
      if (line === '') continue;
      const e = JSON.parse(line) as { type?: unknown; reason?: unknown; outcome?: unknown };
      const type = String(e.type);
      add(type);
      if (typeof e.reason === 'string') add(`${type}:${e.reason}`);
      if (e.outcome === 'failure') add(`${type}!failure`);
    }
    return counts;
  }
}
