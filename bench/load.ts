/**
 * Bounded load loops: every loop in the benchmark stops at a maximum count AND a maximum time,
 * whichever comes first, so a slow or stuck server can never make the run unbounded.
 */

export interface LoopResult {
  /** operations completed */
  count: number;
  /** wall-clock seconds from the first start to the last completion */
  seconds: number;
  /** per-operation latencies, milliseconds, in completion order */
  latenciesMs: number[];
  /** true when the time bound, not the count bound, ended the loop */
  timeBound: boolean;
  /** server CPU seconds used during the loop (NaN without a `cpu` probe) */
  cpuSeconds: number;
  /** CPU seconds of this process, the benchmark's client, during the loop */
  clientCpuSeconds: number;
}

export interface LoopBounds {
  concurrency: number;
  maxCount: number;
  maxSeconds: number;
  /** reads the server's CPU seconds so far; sampled before and after the loop */
  cpu?: () => number;
}

/**
 * Run `op(i)` for i = 0, 1, 2, ... with `concurrency` workers until maxCount operations have
 * started or maxSeconds have passed. The first failure stops all workers and is rethrown.
 */
export async function boundedLoop(bounds: LoopBounds, op: (i: number) => Promise<void>): Promise<LoopResult> {
  const latenciesMs: number[] = [];
  const cpu0 = bounds.cpu?.() ?? Number.NaN;
  const client0 = process.cpuUsage();
  const start = performance.now();
  const deadline = start + bounds.maxSeconds * 1000;
  let next = 0;
  let failed = false;
  let timeBound = false;
  const worker = async (): Promise<void> => {
    while (!failed) {
      if (next >= bounds.maxCount) return;
      if (performance.now() >= deadline) {
        timeBound = true;
        return;
      }
      const i = next++;
      const t0 = performance.now();
      try {
        await op(i);
      } catch (err) {
        failed = true;
        throw err;
      }
      latenciesMs.push(performance.now() - t0);
    }
  };
  const workers = Array.from({ length: Math.max(1, bounds.concurrency) }, () => worker());
  const settled = await Promise.allSettled(workers);
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  const seconds = (performance.now() - start) / 1000;
  const cpuSeconds = (bounds.cpu?.() ?? Number.NaN) - cpu0;
  const client = process.cpuUsage(client0);
  const clientCpuSeconds = (client.user + client.system) / 1e6;
  return { count: latenciesMs.length, seconds, latenciesMs, timeBound, cpuSeconds, clientCpuSeconds };
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

export const MiB = 1024 * 1024;

/** Human size label: 1 MiB, 64 MiB, 1 GiB. */
export function sizeLabel(bytes: number): string {
  if (bytes >= 1024 * MiB && bytes % (1024 * MiB) === 0) return `${bytes / (1024 * MiB)} GiB`;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  return `${Math.round(bytes / 1024)} KiB`;
}

/** Several rounds' loop results as one. */
export function sum(results: readonly LoopResult[]): LoopResult {
  return {
    count: results.reduce((n, r) => n + r.count, 0),
    seconds: results.reduce((n, r) => n + r.seconds, 0),
    latenciesMs: results.flatMap((r) => r.latenciesMs),
    timeBound: results.some((r) => r.timeBound),
    cpuSeconds: results.reduce((n, r) => n + r.cpuSeconds, 0),
    clientCpuSeconds: results.reduce((n, r) => n + r.clientCpuSeconds, 0),
  };
}

/** xs[i], or an error naming the index (strict index checks without `!`). */
export function at<T>(xs: readonly T[], i: number): T {
  const x = xs[i];
  if (x === undefined) throw new Error(`index ${i} out of range`);
  return x;
}
