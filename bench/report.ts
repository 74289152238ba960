/**
 * The benchmark's output: one table on stdout (both registries side by side, Bulwark's advantage
 * and the target check) and the full record as JSON under bench/results/.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WindowStats } from './procstats.js';
import type { Throughput } from './machine.js';
import type { Better, Goal, Measurement, TargetName } from './types.js';

export interface Row {
  id: string;
  scenario: string;
  label: string;
  unit: string;
  better: Better;
  goal?: Goal;
  values: Partial<Record<TargetName, number>>;
}

export interface Failure {
  scenario: string;
  target: TargetName;
  message: string;
}

export interface ScenarioRun {
  scenario: string;
  target: TargetName;
  ok: boolean;
  server: WindowStats;
  /** CPU seconds of the benchmark client itself (it shares the machine with the server) */
  clientCpuSeconds: number;
  /** CPU seconds used by everything else on the machine during the window: noise */
  otherCpuSeconds: number;
  measurements: Measurement[];
}

export interface RunRecord {
  meta: Record<string, unknown>;
  sha256: Throughput;
  diskWrite: Throughput;
  rows: Row[];
  runs: ScenarioRun[];
  failures: Failure[];
}

/** Merge per-target measurements into rows, keeping first-seen order. */
export function mergeRows(runs: readonly ScenarioRun[]): Row[] {
  const rows = new Map<string, Row>();
  for (const run of runs) {
    for (const m of run.measurements) {
      let row = rows.get(m.id);
      if (row === undefined) {
        row = { id: m.id, scenario: m.scenario, label: m.label, unit: m.unit, better: m.better, values: {} };
        if (m.goal !== undefined) row.goal = m.goal;
        rows.set(m.id, row);
      }
      row.values[run.target] = m.value;
    }
  }
  return [...rows.values()];
}

/** Bulwark's advantage: > 1 means Bulwark is better, whichever direction the unit improves in. */
export function advantage(row: Row): number {
  const b = row.values.bulwark;
  const d = row.values.distribution;
  if (b === undefined || d === undefined || !Number.isFinite(b) || !Number.isFinite(d)) return Number.NaN;
  if (row.better === 'higher') return d === 0 ? Number.NaN : b / d;
  return b === 0 ? Number.NaN : d / b;
}

export type Check = 'PASS' | 'FAIL' | 'n/a' | '';

export function check(row: Row): Check {
  const goal = row.goal;
  if (goal === undefined) return '';
  if (goal.kind === 'ratio') {
    const adv = advantage(row);
    return Number.isNaN(adv) ? 'n/a' : adv >= goal.min ? 'PASS' : 'FAIL';
  }
  const b = row.values.bulwark;
  if (b === undefined) return 'n/a';
  return goal.kind === 'bulwark-max' ? (b < goal.max ? 'PASS' : 'FAIL') : b >= goal.min ? 'PASS' : 'FAIL';
}

function goalText(goal: Goal | undefined, unit: string): string {
  if (goal === undefined) return '';
  switch (goal.kind) {
    case 'ratio':
      return `>= ${goal.min}x`;
    case 'bulwark-max':
      return `B < ${goal.max} ${unit}`;
    case 'bulwark-min':
      return `B >= ${goal.min} ${unit}`;
  }
}

function num(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 100) return Math.round(v).toLocaleString('en-US');
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function renderTable(record: RunRecord): string {
  const header = ['scenario', 'metric', 'unit', 'Distribution', 'Bulwark', 'B vs D', 'target', 'check'];
  const body: string[][] = [];
  let last = '';
  for (const row of record.rows) {
    if (row.scenario !== last && last !== '') body.push([]);
    last = row.scenario;
    const adv = advantage(row);
    body.push([
      row.scenario,
      row.label,
      row.unit,
      num(row.values.distribution),
      num(row.values.bulwark),
      Number.isNaN(adv) ? '-' : `${adv.toFixed(2)}x`,
      goalText(row.goal, row.unit),
      check(row),
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const right = new Set([3, 4, 5]);
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const lines = [line(header), rule, ...body.map((r) => (r.length === 0 ? '' : line(r)))];
  const checks = record.rows.map(check);
  const pass = checks.filter((c) => c === 'PASS').length;
  const fail = checks.filter((c) => c === 'FAIL').length;
  const na = checks.filter((c) => c === 'n/a').length;
  lines.push(
    '',
    `machine: SHA-256 one thread (node:crypto, 8 MiB updates) ${num(record.sha256.MiBps)} MiB/s over ${num(record.sha256.bytes / 2 ** 20)} MiB; ` +
      `disk write + fsync in the temp dir ${num(record.diskWrite.MiBps)} MiB/s over ${num(record.diskWrite.bytes / 2 ** 20)} MiB`,
    'B vs D: Bulwark / Distribution for rates, Distribution / Bulwark for times, RSS and CPU, so > 1 always means Bulwark is better.',
    `targets: ${pass} pass, ${fail} fail${na > 0 ? `, ${na} not measured` : ''}`,
  );
  const cores = typeof record.meta.cpus === 'number' ? record.meta.cpus : 1;
  const noisy = record.runs.filter((r) => r.otherCpuSeconds > 0.05 * r.server.wallSeconds * cores);
  if (noisy.length > 0) {
    lines.push('', 'WARNING: other processes used the CPU during these measurements (figures are disturbed):');
    for (const r of noisy) {
      const share = (100 * r.otherCpuSeconds) / (r.server.wallSeconds * cores);
      lines.push(`- [${r.target}] ${r.scenario}: ${r.otherCpuSeconds.toFixed(1)} CPU s in ${r.server.wallSeconds.toFixed(1)} s (${share.toFixed(0)}% of the machine)`);
    }
  }
  if (record.failures.length > 0) {
    lines.push('', `FAILURES (${record.failures.length}):`);
    for (const f of record.failures) lines.push(`- [${f.target}] ${f.scenario}: ${f.message}`);
  }
  return lines.join('\n');
}

export async function writeRecord(dir: string, record: RunRecord): Promise<string> {
  await mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const path = join(dir, `${stamp}.json`);
  const withChecks = { ...record, rows: record.rows.map((r) => ({ ...r, advantage: advantage(r), check: check(r) })) };
  await writeFile(path, `${JSON.stringify(withChecks, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  return path;
}
