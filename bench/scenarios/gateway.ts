/**
 * Scenario "gateway": what `bulwark gateway` costs in front of a registry (issue 5). For each
 * registry of the run, a gateway (its own process, plain HTTP on loopback like the registries
 * here, the WAF with one rule evaluated on every request) is started in front of it, and the
 * same requests go to the registry directly and through the gateway, in rounds that alternate
 * the two paths (direct, gateway, gateway, direct, ...) so that drifts of the machine hit both:
 * - blob pull (GET, hashed and verified) of 64 MiB and 1 GiB blobs (64 MiB only with --quick);
 *   target: through the gateway >= 0.9x direct throughput;
 * - manifest GET by tag at concurrency 1: p50 and p99 both ways, and what the gateway adds.
 * The gateway's peak RSS over the pulls shows that bodies stream through it.
 */
import { startGateway, type RunningGateway } from '../../test/testkit/gateway.js';
import { freePort } from '../../test/testkit/server.js';
import { RegistryClient } from '../client.js';
import { blobContent, digestOf } from '../content.js';
import { boundedLoop, MiB, percentile, sizeLabel, sum, type LoopResult } from '../load.js';
import type { ProcessMonitor } from '../procstats.js';
import { watchExtraProcess } from '../extra-process.js';
import type { Measurement, Scenario, ScenarioContext, Step } from '../types.js';
import { configBlob, imageManifest, layerBlob } from './fixtures.js';

const MIN_RATIO = 0.9;
type Path = 'direct' | 'gateway';

interface Plan {
  size: number;
  rounds: number;
  maxSeconds: number;
}

const plans = (quick: boolean): Plan[] =>
  quick
    ? [{ size: 64 * MiB, rounds: 2, maxSeconds: 60 }]
    : [
        { size: 64 * MiB, rounds: 6, maxSeconds: 60 },
        { size: 1024 * MiB, rounds: 2, maxSeconds: 240 },
      ];

interface Live {
  gateway: RunningGateway;
  monitor: ProcessMonitor;
  clients: Record<Path, RegistryClient>;
}

export const gatewayScenario: Scenario = {
  name: 'gateway',
  description: 'the registry directly vs through bulwark gateway: blob pull 64 MiB and 1 GiB, manifest GET latency',
  steps(ctx: ScenarioContext): Step[] {
    let live: Live | undefined;
    const get = (): Live => {
      if (live === undefined) throw new Error('the gateway was not started');
      return live;
    };
    const repo = `bench-${ctx.runId}/gateway`;
    const all = plans(ctx.quick);
    const setup: Step = {
      name: 'start a gateway in front of the registry, push the blobs (untimed)',
      run: async () => {
        const port = await freePort();
        const gateway = await startGateway(
          {
            sites: [{ name: 'registry', listen: `127.0.0.1:${port}`, hostNames: ['127.0.0.1'], pool: 'registry' }],
            pools: [{ name: 'registry', backends: [{ url: ctx.client.base.origin }], health: { intervalSeconds: 5 } }],
            waf: { rules: [{ name: 'methods', action: 'Block', conditions: [{ match: 'method', methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], negate: true }] }] },
          },
        );
        ctx.defer(() => gateway.stop());
        const monitor = watchExtraProcess(ctx, 'gateway', gateway.child.pid);
        const clients = { direct: new RegistryClient(ctx.client.base.href), gateway: new RegistryClient(`http://127.0.0.1:${port}/`) };
        ctx.defer(async () => Object.values(clients).forEach((c) => c.close()));
        ctx.log(`gateway on 127.0.0.1:${port}, pid ${monitor.pid}, in front of ${ctx.client.base.origin}`);
        for (const plan of all) for (let k = 0; k < plan.rounds; k++) await clients.direct.pushMonolithic(repo, blobContent(`gateway-${plan.size}-${k}`, plan.size));
        monitor.begin();
        live = { gateway, monitor, clients };
        return [];
      },
    };
    const pulls = all.flatMap((plan, i) => pullSteps(ctx, plan, repo, get, i === all.length - 1));
    return [setup, ...pulls, ...manifestSteps(ctx, get)];
  },
};

function pullSteps(ctx: ScenarioContext, plan: Plan, repo: string, live: () => Live, last: boolean): Step[] {
  const size = sizeLabel(plan.size);
  const results: Record<Path, LoopResult[]> = { direct: [], gateway: [] };
  const step = (path: Path, round: number): Step => ({
    name: `pull ${size} ${path} (round ${round + 1}/${plan.rounds})`,
    run: async () => {
      const l = live();
      const digest = digestOf(blobContent(`gateway-${plan.size}-${round}`, plan.size));
      const r = await boundedLoop({ concurrency: 1, maxCount: 1, maxSeconds: plan.maxSeconds, cpu: ctx.serverCpuSeconds }, async () => {
        await l.clients[path].pullBlob(repo, digest);
      });
      results[path].push(r);
      if (results.direct.length < plan.rounds || results.gateway.length < plan.rounds) return [];
      const rows = pullRows(ctx, plan, results);
      if (!last) return rows;
      const window = l.monitor.end();
      return [...rows, { id: 'gateway.proxy-rss', scenario: 'gateway', label: 'gateway process peak RSS, blob pulls', unit: 'MiB', better: 'lower', value: window.peakRssMiB, detail: { gatewayCpuSeconds: window.cpuSeconds } }];
    },
  });
  return Array.from({ length: plan.rounds }, (_, k) => (k % 2 === 0 ? (['direct', 'gateway'] as const) : (['gateway', 'direct'] as const)).map((p) => step(p, k))).flat();
}

function pullRows(ctx: ScenarioContext, plan: Plan, r: Record<Path, LoopResult[]>): Measurement[] {
  const key = sizeLabel(plan.size).replace(' ', '');
  const mibps = (x: LoopResult): number => (x.count * plan.size) / MiB / x.seconds;
  const direct = sum(r.direct);
  const through = sum(r.gateway);
  const base = { scenario: 'gateway' };
  const what = `pull ${sizeLabel(plan.size)}`;
  return [
    { ...base, id: `gateway.pull.${key}.direct.MiBps`, label: `${what}, direct`, unit: 'MiB/s', better: 'higher', value: mibps(direct), detail: { count: direct.count, seconds: direct.seconds } },
    { ...base, id: `gateway.pull.${key}.gateway.MiBps`, label: `${what}, through the gateway`, unit: 'MiB/s', better: 'higher', value: mibps(through), detail: { count: through.count, seconds: through.seconds } },
    {
      ...base,
      id: `gateway.pull.${key}.ratio`,
      label: `${what}: through the gateway / direct`,
      unit: 'x',
      better: 'higher',
      goal: { kind: 'bulwark-min', min: MIN_RATIO },
      value: mibps(through) / mibps(direct),
      detail: { target: ctx.target },
    },
  ];
}

function manifestSteps(ctx: ScenarioContext, live: () => Live): Step[] {
  const repo = `bench-${ctx.runId}/gateway-manifests`;
  const count = ctx.quick ? 500 : 2000;
  const rounds = 2;
  const results: Record<Path, LoopResult[]> = { direct: [], gateway: [] };
  const setup: Step = {
    name: 'push a manifest (untimed)',
    run: async () => {
      const c = live().clients.direct;
      const layer = layerBlob('gateway-layer', 4096);
      const config = configBlob([layer], '2024-01-01T00:00:00Z');
      await c.pushMonolithic(repo, layer);
      await c.pushMonolithic(repo, config);
      await c.putManifest(repo, 'v1', imageManifest(config, [layer], {}));
      // warm both paths (connections, caches)
      for (let i = 0; i < 200; i++) for (const p of ['direct', 'gateway'] as const) await live().clients[p].getManifest(repo, 'v1');
      return [];
    },
  };
  const step = (path: Path, round: number): Step => ({
    name: `manifest GET c=1 ${path} (round ${round + 1}/${rounds})`,
    run: async () => {
      const client = live().clients[path];
      const r = await boundedLoop({ concurrency: 1, maxCount: count, maxSeconds: ctx.quick ? 5 : 15, cpu: ctx.serverCpuSeconds }, async () => {
        const res = await client.getManifest(repo, 'v1');
        if (res.body.length === 0) throw new Error('GET manifest: empty body');
      });
      results[path].push(r);
      return results.direct.length === rounds && results.gateway.length === rounds ? latencyRows(results) : [];
    },
  });
  const steps = Array.from({ length: rounds }, (_, k) => (k % 2 === 0 ? (['direct', 'gateway'] as const) : (['gateway', 'direct'] as const)).map((p) => step(p, k))).flat();
  return [setup, ...steps];
}

function latencyRows(r: Record<Path, LoopResult[]>): Measurement[] {
  const direct = sum(r.direct).latenciesMs;
  const through = sum(r.gateway).latenciesMs;
  const base = { scenario: 'gateway', detail: { directCount: direct.length, gatewayCount: through.length } };
  const out: Measurement[] = [];
  for (const p of [50, 99] as const) {
    const d = percentile(direct, p);
    const g = percentile(through, p);
    out.push(
      { ...base, id: `gateway.manifest-get.p${p}.direct`, label: `manifest GET c=1 p${p}, direct`, unit: 'ms', better: 'lower', value: d },
      { ...base, id: `gateway.manifest-get.p${p}.gateway`, label: `manifest GET c=1 p${p}, through the gateway`, unit: 'ms', better: 'lower', value: g },
      { ...base, id: `gateway.manifest-get.p${p}.added`, label: `manifest GET c=1 p${p}: added by the gateway`, unit: 'ms', better: 'lower', value: g - d },
    );
  }
  return out;
}
