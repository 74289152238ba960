/**
 * Resource use of a server process (and any processes it forked), read from /proc (proc(5)).
 *
 * - RSS is sampled from /proc/PID/status (VmRSS) every ~100 ms. At the start of each scenario the
 *   kernel's peak-RSS mark is reset (`echo 5 > /proc/PID/clear_refs`, Linux >= 4.0) so that
 *   VmHWM at the end is the exact peak of that scenario, which sampling alone could miss.
 * - CPU is utime + stime from /proc/PID/stat (fields 14 and 15, in clock ticks).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

const SAMPLE_MS = 100;

function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}
const CLK_TCK = clockTicks();

interface ProcSample {
  rssKiB: number;
  hwmKiB: number;
  cpuTicks: number;
}

function readProc(pid: number): ProcSample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return {
      rssKiB: kib(status, 'VmRSS'),
      hwmKiB: kib(status, 'VmHWM'),
      cpuTicks: (Number.isFinite(utime) ? utime : 0) + (Number.isFinite(stime) ? stime : 0),
    };
  } catch {
    return undefined; // the process has exited
  }
}

function kib(status: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}

/** The pid and all its descendants (via /proc/PID/task/TID/children). */
function processTree(root: number): number[] {
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0 && out.length < 1024) {
    const pid = stack.pop();
    if (pid === undefined) break;
    out.push(pid);
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
        if (kids !== '') for (const k of kids.split(/\s+/)) stack.push(Number(k));
      } catch {
        // thread exited
      }
    }
  }
  return out;
}

export interface WindowStats {
  /** peak resident set of the process tree during the window, MiB */
  peakRssMiB: number;
  /** user + system CPU seconds spent by the process tree during the window */
  cpuSeconds: number;
  /** wall-clock seconds of the window */
  wallSeconds: number;
  /** 'hwm' when the kernel's reset peak mark was used, 'sampled' otherwise */
  peakSource: 'hwm' | 'sampled';
}

export class ProcessMonitor {
  private timer: NodeJS.Timeout | undefined;
  private windowPeakKiB = 0;
  private runPeakKiB = 0;
  private windowStart = 0;
  private windowCpuStart = 0;
  private hwmReset = false;
  private startKiB: number | undefined;

  constructor(readonly pid: number) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }

  /** RSS at the first sample (the idle server, just started), MiB. */
  get startRssMiB(): number {
    return (this.startKiB ?? 0) / 1024;
  }

  /** Peak RSS across the whole run so far, MiB. */
  get runPeakRssMiB(): number {
    return this.runPeakKiB / 1024;
  }

  /** CPU seconds (user + system) used by the process tree so far. */
  cpuSecondsNow(): number {
    return this.totals(processTree(this.pid)).cpuTicks / CLK_TCK;
  }

  /** Start a measurement window (one scenario against this server). */
  begin(): void {
    const tree = processTree(this.pid);
    this.hwmReset = tree.length === 1 && resetPeak(this.pid);
    this.windowPeakKiB = 0;
    this.windowStart = performance.now();
    this.windowCpuStart = this.totals(tree).cpuTicks;
    this.sample();
  }

  end(): WindowStats {
    const tree = processTree(this.pid);
    const t = this.totals(tree);
    this.observe(t.rssKiB);
    let peakKiB = this.windowPeakKiB;
    if (this.hwmReset) peakKiB = Math.max(peakKiB, t.hwmKiB);
    this.runPeakKiB = Math.max(this.runPeakKiB, peakKiB);
    return {
      peakRssMiB: peakKiB / 1024,
      cpuSeconds: (t.cpuTicks - this.windowCpuStart) / CLK_TCK,
      wallSeconds: (performance.now() - this.windowStart) / 1000,
      peakSource: this.hwmReset ? 'hwm' : 'sampled',
    };
  }

  private sample(): void {
    const t = this.totals(processTree(this.pid));
    this.startKiB ??= t.rssKiB;
    this.observe(t.rssKiB);
    // Until the first reset, VmHWM covers the process's whole life, start-up included.
    if (!this.hwmReset) this.runPeakKiB = Math.max(this.runPeakKiB, t.hwmKiB);
  }

  private observe(rssKiB: number): void {
    this.windowPeakKiB = Math.max(this.windowPeakKiB, rssKiB);
    this.runPeakKiB = Math.max(this.runPeakKiB, rssKiB);
  }

  private totals(tree: number[]): ProcSample {
    const sum: ProcSample = { rssKiB: 0, hwmKiB: 0, cpuTicks: 0 };
    for (const pid of tree) {
      const s = readProc(pid);
      if (s === undefined) continue;
      sum.rssKiB += s.rssKiB;
      sum.hwmKiB += s.hwmKiB;
      sum.cpuTicks += s.cpuTicks;
    }
    return sum;
  }
}

/**
 * CPU seconds all processes of the machine have spent busy so far (/proc/stat, first line:
 * user nice system idle iowait irq softirq steal ...). Compared with the server's and the
 * client's own CPU, it shows how much other work disturbed a measurement.
 */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = [0, 1, 2, 5, 6, 7].reduce((sum, i) => sum + (f[i] ?? 0), 0);
    return busy / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** Reset the kernel's peak-RSS mark of a process; false where not permitted or supported. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
