/** Shared shapes of the benchmark: targets, measurements, scenarios. */
import type { RegistryClient } from './client.js';

export const TARGETS = ['distribution', 'bulwark'] as const;
export type TargetName = (typeof TARGETS)[number];

export type Better = 'higher' | 'lower';

/**
 * A target the figure is checked against: the Bulwark/Distribution advantage ratio (oriented so
 * that > 1 means Bulwark is better), an absolute ceiling on Bulwark's value, or an absolute floor
 * on it (for figures that compare Bulwark with itself, e.g. auth on / auth off).
 */
export type Goal = { kind: 'ratio'; min: number } | { kind: 'bulwark-max'; max: number } | { kind: 'bulwark-min'; min: number };

export interface Measurement {
  /** stable key across runs, e.g. "blobs.push-mono.64MiB.MiBps" */
  id: string;
  /** scenario the figure belongs to */
  scenario: string;
  /** what a reader sees in the table */
  label: string;
  unit: string;
  better: Better;
  goal?: Goal;
  value: number;
  /** anything else worth keeping in the JSON (counts, durations, whether a time bound hit) */
  detail?: Record<string, number | string | boolean>;
}

export interface ScenarioContext {
  client: RegistryClient;
  target: TargetName;
  /** unique per run; part of every repository name so scenarios never share state */
  runId: string;
  quick: boolean;
  /** single-thread SHA-256 throughput of this machine, MiB/s (measured at the start of the run) */
  sha256MiBps: number;
  /** sequential write + fsync speed of the temp dir's disk, MiB/s (measured at the start) */
  diskWriteMiBps: number;
  /** CPU seconds (user + system) the server has used so far: differences give CPU per operation */
  serverCpuSeconds: () => number;
  log: (message: string) => void;
  /**
   * Declare a process the scenario started besides the registry under test (e.g. a second
   * server): its CPU is then not counted as other processes' noise. `cpuSeconds` reads its total.
   */
  addProcess: (cpuSeconds: () => number) => void;
  /** Run `cleanup` after the scenario's last step against this registry, also when a step failed. */
  defer: (cleanup: () => Promise<void>) => void;
}

/**
 * One timed (or setup) part of a scenario. The runner alternates the registries step by step, so
 * that a disturbance from other work on the machine hits both rather than one.
 */
export interface Step {
  name: string;
  run: () => Promise<Measurement[]>;
}

export interface Scenario {
  name: string;
  description: string;
  /**
   * The steps against one registry, in order. Called once per registry; the steps share state
   * through their closures (e.g. the pull step reads what the push step pushed). The list must
   * not depend on the registry, so that the runner can pair the steps up; a scenario that does
   * not apply to a registry (e.g. authentication against Distribution) returns no steps for it.
   */
  steps(ctx: ScenarioContext): Step[];
}
