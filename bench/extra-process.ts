/** Processes a scenario starts besides the registry under test (a second server, a gateway). */
import { ProcessMonitor } from './procstats.js';
import type { ScenarioContext } from './types.js';

/**
 * Watches such a process: its CPU counts as the scenario's own, not as other processes' noise,
 * and the monitor stops when the scenario ends.
 */
export function watchExtraProcess(ctx: ScenarioContext, name: string, pid: number | undefined): ProcessMonitor {
  if (pid === undefined) throw new Error(`${name}: no pid`);
  const monitor = new ProcessMonitor(pid);
  monitor.start();
  ctx.defer(async () => monitor.stop());
  ctx.addProcess(() => monitor.cpuSecondsNow());
  return monitor;
}
