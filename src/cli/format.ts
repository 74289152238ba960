/** Output and input helpers of the admin CLI: tables for people, JSON for scripts, durations. */
import { CliError, type ClientFlags } from './client.js';

const UNITS: Record<string, number> = { d: 86_400, h: 3600, m: 60, s: 1 };

/** `1h`, `30m`, `1h30m`, `2d`, `90s` → seconds. */
export function parseDuration(text: string): number {
  if (!/^(\d{1,6}[dhms]){1,4}$/.test(text)) throw new CliError(`invalid duration ${text.slice(0, 40)}: expected e.g. 30m, 1h, 1h30m, 7d`);
  let seconds = 0;
  for (const m of text.matchAll(/(\d+)([dhms])/g)) seconds += Number(m[1]) * (UNITS[m[2] ?? 's'] ?? 1);
  return seconds;
}

/** An RFC 3339 time `duration` from now. */
export function fromNow(duration: string): string {
  return new Date(Date.now() + parseDuration(duration) * 1000).toISOString();
}

function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.map(cell).join(',');
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** A plain-text table with a header row; columns are `[header, key]`. */
export function table(rows: readonly object[], columns: readonly (readonly [string, string])[]): string {
  const cells = rows.map((r) => columns.map(([, key]) => cell((r as Record<string, unknown>)[key])));
  const widths = columns.map(([h], i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (cs: readonly string[]): string => cs.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(columns.map(([h]) => h)), ...cells.map(line)].join('\n') + '\n';
}

/** Key: value lines for one object. */
export function details(obj: Record<string, unknown>): string {
  const width = Math.max(...Object.keys(obj).map((k) => k.length));
  return Object.entries(obj)
    .map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${cell(v)}`)
    .join('\n') + '\n';
}

/** Print `data` as JSON with --json, else as `human(data)`. */
export function print<T>(flags: ClientFlags, data: T, human: (d: T) => string): void {
  process.stdout.write(flags.json === true ? `${JSON.stringify(data, null, 2)}\n` : human(data));
}

/** A new secret: on stdout (so scripts can capture it), with the warning on stderr. */
export function printSecret(flags: ClientFlags, data: unknown, label: string, value: string): void {
  process.stderr.write(`Save the ${label} now: it is shown only this once and cannot be retrieved later.\n`);
  process.stdout.write(flags.json === true ? `${JSON.stringify(data, null, 2)}\n` : `${value}\n`);
}

/** Collect a repeatable option into a list. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
