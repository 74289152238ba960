/**
 * Scenario "blobs": push (monolithic and chunked) and pull of 1 MiB, 64 MiB and 1 GiB blobs,
 * one at a time, as a single client would (distribution-spec "Pushing blobs", "Pulling blobs").
 *
 * Content is deterministic (bench/content.ts), different for every push, and identical for both
 * registries. Small blobs are materialized and all digests computed before the clock starts, so
 * the timed loop measures the registry and the transport, not the generator.
 */
import { type BlobContent, blobContent, digestOf, materialize } from '../content.js';
import { at, boundedLoop, MiB, sizeLabel, sum, type LoopResult } from '../load.js';
import type { Goal, Measurement, Scenario, ScenarioContext, Step } from '../types.js';

const CHUNK = 8 * MiB;
/** Blobs up to this size are held in memory before the timed loop. */
const MATERIALIZE_MAX = 8 * MiB;
/** 1 MiB blobs each registry pushes and pulls before the timed steps (10 with --quick) */
const WARM_UP_BLOBS = 50;

interface Plan {
  size: number;
  /** operations per round */
  reps: number;
  /**
   * Rounds per operation kind. The runner alternates the registries step by step, so splitting
   * the operations into rounds interleaves the two registries: slow drifts of this shared disk
   * (writeback, the host's other tenants) then hit both instead of whichever ran second.
   */
  rounds: number;
  /** time bound of one round */
  maxSeconds: number;
}

function plans(quick: boolean): Plan[] {
  return quick
    ? [
        { size: MiB, reps: 10, rounds: 2, maxSeconds: 10 },
        { size: 64 * MiB, reps: 1, rounds: 1, maxSeconds: 30 },
      ]
    : [
        { size: MiB, reps: 20, rounds: 5, maxSeconds: 20 },
        { size: 64 * MiB, reps: 1, rounds: 4, maxSeconds: 60 },
        { size: 1024 * MiB, reps: 1, rounds: 2, maxSeconds: 180 },
      ];
}

interface Prepared {
  content: BlobContent;
  digest: string;
  data?: Buffer;
}

function prepare(label: string, size: number): Prepared {
  const content = blobContent(label, size);
  const digest = digestOf(content);
  return size <= MATERIALIZE_MAX ? { content, digest, data: materialize(content) } : { content, digest };
}

export const blobsScenario: Scenario = {
  name: 'blobs',
  description: 'blob push (monolithic, chunked 8 MiB) and pull: 1 MiB, 64 MiB, 1 GiB',
  steps(ctx: ScenarioContext): Step[] {
    return [warmUp(ctx), ...plans(ctx.quick).flatMap((plan) => planSteps(ctx, plan))];
  },
};

/**
 * Untimed, before the first timed step: each registry pushes (monolithic and chunked) and pulls
 * the same few 1 MiB blobs of its own. The rows then compare registries that have served
 * requests, as they do in service, not a process that just started: Bulwark's JavaScript runs
 * interpreted until V8 has seen it often enough to compile it, and its first pushes cost more
 * CPU than the later ones (measured in docs/benchmarks.md). Distribution has no such start.
 */
function warmUp(ctx: ScenarioContext): Step {
  const count = ctx.quick ? 10 : WARM_UP_BLOBS;
  return {
    name: `warm-up (untimed): ${count} blobs of 1 MiB pushed both ways and pulled`,
    run: async () => {
      const repo = `bench-${ctx.runId}/blobs-warm-up`;
      const bounds = { concurrency: 1, maxCount: count, maxSeconds: 60 };
      await boundedLoop(bounds, async (i) => {
        const b = prepare(`blob-warm-up-mono-${i}`, MiB);
        await ctx.client.pushMonolithic(repo, b.data !== undefined ? { digest: b.digest, data: b.data } : b.content);
        await ctx.client.pushChunked(repo, prepare(`blob-warm-up-chunked-${i}`, MiB).content, CHUNK);
        await ctx.client.pullBlob(repo, b.digest);
      });
      return [];
    },
  };
}

function planSteps(ctx: ScenarioContext, plan: Plan): Step[] {
  const { client } = ctx;
  const size = sizeLabel(plan.size);
  const key = size.replace(' ', '');
  const repo = `bench-${ctx.runId}/blobs-${key.toLowerCase()}`;
  const bounds = { concurrency: 1, maxCount: plan.reps, maxSeconds: plan.maxSeconds, cpu: ctx.serverCpuSeconds };
  const monoLabel = (i: number): string => `blob-${key}-mono-${i}`;
  const pushed: string[] = [];
  const mono = new Rounds(plan, 'push-mono', 'push monolithic');
  const chunked = new Rounds(plan, 'push-chunked', 'push chunked 8 MiB');
  const pull = new Rounds(plan, 'pull', 'pull (GET + sha256)');
  const steps: Step[] = [];
  for (let round = 0; round < plan.rounds; round++) {
    const first = round * plan.reps;
    steps.push({
      name: `push monolithic ${size} x${plan.reps} (round ${round + 1}/${plan.rounds})`,
      run: async () => {
        const blobs = Array.from({ length: plan.reps }, (_, i) => prepare(monoLabel(first + i), plan.size));
        const r = await boundedLoop(bounds, async (i) => {
          const b = at(blobs, i);
          await client.pushMonolithic(repo, b.data !== undefined ? { digest: b.digest, data: b.data } : b.content);
          pushed.push(b.digest);
        });
        return mono.add(ctx, r);
      },
    });
  }
  for (let round = 0; round < plan.rounds; round++) {
    const first = round * plan.reps;
    steps.push({
      name: `push chunked ${size} x${plan.reps} (round ${round + 1}/${plan.rounds})`,
      run: async () => {
        const blobs = Array.from({ length: plan.reps }, (_, i) => prepare(`blob-${key}-chunked-${first + i}`, plan.size));
        const r = await boundedLoop(bounds, async (i) => {
          await client.pushChunked(repo, at(blobs, i).content, CHUNK);
        });
        return chunked.add(ctx, r);
      },
    });
  }
  for (let round = 0; round < plan.rounds; round++) {
    const first = round * plan.reps;
    steps.push({
      name: `pull ${size} x${plan.reps} (round ${round + 1}/${plan.rounds})`,
      run: async () => {
        const digests = pushed.slice(first, first + plan.reps);
        const r = await boundedLoop({ ...bounds, maxCount: digests.length }, async (i) => {
          await client.pullBlob(repo, at(digests, i));
        });
        return pull.add(ctx, r);
      },
    });
  }
  return steps;
}

/** Sums the rounds of one operation kind; the last round reports the rows. */
class Rounds {
  private readonly results: LoopResult[] = [];

  constructor(
    private readonly plan: Plan,
    private readonly id: string,
    private readonly what: string,
  ) {}

  add(ctx: ScenarioContext, r: LoopResult): Measurement[] {
    this.results.push(r);
    return this.results.length === this.plan.rounds ? rows(ctx, this.plan, this.id, this.what, sum(this.results)) : [];
  }
}

function rows(ctx: ScenarioContext, plan: Plan, id: string, what: string, r: LoopResult): Measurement[] {
  const size = sizeLabel(plan.size);
  const key = size.replace(' ', '');
  const small = plan.size < 8 * MiB;
  // Targets: 1 MiB push and pull >= 1.5x; large push >= 1.5x, large pull >= 1.0x.
  const goal: Goal = { kind: 'ratio', min: id === 'pull' && !small ? 1.0 : 1.5 };
  const mibps = (r.count * plan.size) / MiB / r.seconds;
  // Blob GETs not read by lean-get.ts so far in the run (0 when every pull was): see bench/README.md.
  const lean = ctx.client.leanCounts;
  const detail = {
    count: r.count,
    seconds: r.seconds,
    timeBound: r.timeBound,
    serverCpuSeconds: r.cpuSeconds,
    clientCpuSeconds: r.clientCpuSeconds,
    leanGetFallbacks: lean.fallbacks,
    leanGetRetries: lean.retries,
  };
  const gib = (r.count * plan.size) / (1024 * MiB);
  const out: Measurement[] = [
    {
      id: `blobs.${id}.${key}.MiBps`,
      scenario: 'blobs',
      label: `${what} ${size}`,
      unit: 'MiB/s',
      better: 'higher',
      ...(small ? {} : { goal }),
      value: mibps,
      detail,
    },
  ];
  if (small) {
    out.push({
      id: `blobs.${id}.${key}.ops`,
      scenario: 'blobs',
      label: `${what} ${size}`,
      unit: 'ops/s',
      better: 'higher',
      goal,
      value: r.count / r.seconds,
      detail,
    });
  } else if (id !== 'pull') {
    // How close the push comes to the hashing speed of one core: a server must hash every
    // byte it accepts (digests are recomputed, never trusted), so this is the ceiling.
    out.push(
      {
        id: `blobs.${id}.${key}.shaFraction`,
        scenario: 'blobs',
        label: `${what} ${size} / SHA-256 speed`,
        unit: '%',
        better: 'higher',
        value: (100 * mibps) / ctx.sha256MiBps,
      },
      {
        // The other ceiling: an acknowledged push has been written and flushed to disk.
        id: `blobs.${id}.${key}.diskFraction`,
        scenario: 'blobs',
        label: `${what} ${size} / disk write speed`,
        unit: '%',
        better: 'higher',
        value: (100 * mibps) / ctx.diskWriteMiBps,
      },
    );
  }
  // The client shares the machine's cores with the server: when it needs more CPU per byte than
  // the server does, the row measures the client as much as the registry (docs/benchmarks.md).
  const cpu = [
    ['cpu', 'server', r.cpuSeconds],
    ['clientCpu', 'client', r.clientCpuSeconds],
  ] as const;
  for (const [suffix, who, seconds] of cpu) {
    out.push({ id: `blobs.${id}.${key}.${suffix}`, scenario: 'blobs', label: `${what} ${size}: ${who} CPU`, unit: 'CPU s/GiB', better: 'lower', value: seconds / gib, detail });
  }
  return out;
}
