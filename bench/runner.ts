/**
 * Runs one scenario against every live registry, alternating them step by step (A B, B A, A B,
 * ...), so that both see the same conditions: the page cache, and any other work on the machine.
 * Only one registry is under load at a time.
 */
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RegistryClient } from './client.js';
import { machineBusySeconds, type ProcessMonitor } from './procstats.js';
import type { Failure, ScenarioRun } from './report.js';
import type { Measurement, Scenario, Step, TargetName } from './types.js';

export interface Live {
  target: TargetName;
  client: RegistryClient;
  monitor: ProcessMonitor;
}

export interface RunSettings {
  runId: string;
  quick: boolean;
  sha256MiBps: number;
  diskWriteMiBps: number;
  log: (target: string, message: string) => void;
}

interface Lane {
  live: Live;
  steps: Step[];
  /** CPU readers of processes the scenario started besides the registry (not noise) */
  companions: (() => number)[];
  cleanups: (() => Promise<void>)[];
  measurements: Measurement[];
  failed: boolean;
  wallSeconds: number;
  clientCpuSeconds: number;
  otherCpuSeconds: number;
}

export async function runScenario(scenario: Scenario, lives: readonly Live[], settings: RunSettings, failures: Failure[]): Promise<ScenarioRun[]> {
  const lanes: Lane[] = lives.map((live) => {
    const lane: Lane = { live, steps: [], companions: [], cleanups: [], measurements: [], failed: false, wallSeconds: 0, clientCpuSeconds: 0, otherCpuSeconds: 0 };
    lane.steps = scenario.steps({
      client: live.client,
      target: live.target,
      runId: settings.runId,
      quick: settings.quick,
      sha256MiBps: settings.sha256MiBps,
      diskWriteMiBps: settings.diskWriteMiBps,
      serverCpuSeconds: () => live.monitor.cpuSecondsNow(),
      log: (m) => settings.log(live.target, m),
      addProcess: (cpuSeconds) => lane.companions.push(cpuSeconds),
      defer: (cleanup) => lane.cleanups.push(cleanup),
    });
    return lane;
  });
  for (const lane of lanes) lane.live.monitor.begin();
  try {
    const count = Math.max(0, ...lanes.map((l) => l.steps.length));
    for (let i = 0; i < count; i++) {
      for (const lane of i % 2 === 0 ? lanes : [...lanes].reverse()) {
        const step = lane.steps[i];
        if (step === undefined || lane.failed) continue;
        await runStep(scenario, lane, step, settings, failures);
      }
    }
  } finally {
    for (const lane of lanes) await runCleanups(scenario, lane, settings, failures);
  }
  return lanes.map((lane) => {
    const server = { ...lane.live.monitor.end(), wallSeconds: lane.wallSeconds };
    const m = lane.measurements;
    // A scenario with no steps for this registry measured nothing on it.
    if (!lane.failed && lane.steps.length > 0) {
      const s = scenario.name;
      m.push(
        { id: `${s}.rss`, scenario: s, label: `server peak RSS during ${s}`, unit: 'MiB', better: 'lower', value: server.peakRssMiB },
        { id: `${s}.cpu`, scenario: s, label: `server CPU during ${s}`, unit: 'CPU s', better: 'lower', value: server.cpuSeconds },
      );
    }
    settings.log(
      lane.live.target,
      `${scenario.name}: ${server.wallSeconds.toFixed(1)} s, server CPU ${server.cpuSeconds.toFixed(1)} s, ` +
        `peak RSS ${server.peakRssMiB.toFixed(0)} MiB, other processes ${lane.otherCpuSeconds.toFixed(1)} CPU s`,
    );
    return {
      scenario: scenario.name,
      target: lane.live.target,
      ok: !lane.failed,
      server,
      clientCpuSeconds: lane.clientCpuSeconds,
      otherCpuSeconds: lane.otherCpuSeconds,
      measurements: m,
    };
  });
}

/** Last registered, first run (a client before the server it talks to). */
async function runCleanups(scenario: Scenario, lane: Lane, settings: RunSettings, failures: Failure[]): Promise<void> {
  for (const cleanup of lane.cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push({ scenario: `${scenario.name} / cleanup`, target: lane.live.target, message });
      settings.log(lane.live.target, `${scenario.name}: cleanup FAILED: ${message}`);
    }
  }
}

async function runStep(scenario: Scenario, lane: Lane, step: Step, settings: RunSettings, failures: Failure[]): Promise<void> {
  const { target, monitor } = lane.live;
  // Flush the other registry's dirty pages so that no server pays for another's writeback.
  execFileSync('sync');
  await sleep(300);
  settings.log(target, `${scenario.name}: ${step.name}`);
  const companionCpu = (): number => lane.companions.reduce((sum, read) => sum + read(), 0);
  const busy0 = machineBusySeconds();
  const server0 = monitor.cpuSecondsNow();
  const companion0 = companionCpu();
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    lane.measurements.push(...(await step.run()));
  } catch (err) {
    lane.failed = true;
    const message = err instanceof Error ? err.message : String(err);
    failures.push({ scenario: `${scenario.name} / ${step.name}`, target, message });
    settings.log(target, `${scenario.name}: ${step.name} FAILED: ${message}`);
  }
  const c = process.cpuUsage(client0);
  const client = (c.user + c.system) / 1e6;
  const server = monitor.cpuSecondsNow() - server0;
  // A companion registered during this step (the setup that starts it) counts from zero.
  const companion = companionCpu() - companion0;
  lane.wallSeconds += (performance.now() - t0) / 1000;
  lane.clientCpuSeconds += client;
  lane.otherCpuSeconds += Math.max(0, machineBusySeconds() - busy0 - server - companion - client);
}
