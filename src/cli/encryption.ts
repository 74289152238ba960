/**
 * `bulwark encryption status|rotate`: which key-encryption key wraps the data keys, and online
 * re-wrapping under its newest version (or another key with --key). The server does the work
 * (it owns the vault handles and caches); this command starts it and draws its progress.
 */
import type { Command } from 'commander';
import { addClientFlags, AdminClient, CliError, type ClientFlags } from './client.js';
import { print, table } from './format.js';

interface Kek {
  vault: string;
  name: string;
  version: string;
}
interface Progress {
  target: Kek;
  startedAt: string;
  finishedAt?: string;
  total: number;
  rewrapped: number;
  skipped: number;
  failed: number;
  error?: string;
}
interface Status {
  enabled: boolean;
  target?: Kek;
  followsNewest?: boolean;
  health?: { ok: boolean; error?: string };
  dataKeys?: { kek: Kek; kind: string; count: number }[];
  running?: Progress;
  lastRotation?: Progress;
}

const kekText = (k: Kek): string => `${k.vault}:${k.name}/${k.version}`;
const POLL_MS = 1_000;
/** A rotation's progress is polled at most this long (bounded wait; the rotation goes on). */
const MAX_WAIT_MS = 24 * 3600 * 1000;

function human(s: Status): string {
  if (!s.enabled) return 'encryption at rest is OFF (encryption.enabled=false)\n';
  const lines = [
    `key-encryption key: ${s.target !== undefined ? `${kekText(s.target)}${s.followsNewest === true ? ' (follows the newest version)' : ' (pinned)'}` : 'unknown (the vault does not answer)'}`,
    `vault health:       ${s.health?.ok === true ? 'ok' : `CMK_ERROR ${s.health?.error ?? ''}`}`,
    '',
    table((s.dataKeys ?? []).map((d) => ({ key: kekText(d.kek), kind: d.kind, count: d.count, current: s.target !== undefined && kekText(d.kek) === kekText(s.target) ? 'yes' : 'no' })), [
      ['WRAPPED BY', 'key'],
      ['KIND', 'kind'],
      ['DATA KEYS', 'count'],
      ['CURRENT', 'current'],
    ]).trimEnd(),
  ];
  const last = s.running ?? s.lastRotation;
  if (last !== undefined) {
    lines.push('', `${s.running !== undefined ? 'rotation running' : 'last rotation'}: to ${kekText(last.target)}, started ${last.startedAt}${last.finishedAt !== undefined ? `, finished ${last.finishedAt}` : ''}`);
    lines.push(`  ${last.rewrapped} re-wrapped, ${last.skipped} skipped, ${last.failed} failed of ${last.total}${last.error !== undefined ? ` (first failure: ${last.error})` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

function bar(p: Progress): string {
  const done = p.rewrapped + p.skipped + p.failed;
  const frac = p.total === 0 ? 1 : Math.min(1, done / p.total);
  const width = 30;
  const fill = Math.round(frac * width);
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${done}/${p.total} data keys`;
}

export function registerEncryption(program: Command): void {
  const enc = program.command('encryption').description('encryption at rest: key status and rotation');

  addClientFlags(enc.command('status').description('the key-encryption key, data keys per key version, and the last rotation')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<Status>('GET', '/encryption'), human);
  });

  addClientFlags(enc.command('rotate').description('re-wrap every data key under the newest key version (online; blob bytes are not rewritten)'))
    .option('--key <name[/version]>', 'switch to this key (in the configured vault) and re-wrap under it')
    .option('--new-version', 'first create a new version of the key (the embedded vault; other vaults rotate keys themselves)')
    .option('--no-wait', 'start the rotation and return')
    .action(async (o: ClientFlags & { key?: string; newVersion?: boolean; wait: boolean }) => {
      const api = await AdminClient.connect(o, ['read', 'access']);
      const body = { ...(o.key !== undefined ? { key: o.key } : {}), ...(o.newVersion === true ? { newVersion: true } : {}) };
      let p = await api.call<Progress>('POST', '/encryption/rotate', Object.keys(body).length > 0 ? body : undefined);
      const tty = process.stderr.isTTY && o.json !== true;
      const started = Date.now();
      while (o.wait && p.finishedAt === undefined && Date.now() - started < MAX_WAIT_MS) {
        if (tty) process.stderr.write(`\r${bar(p)}`);
        await new Promise((r) => setTimeout(r, POLL_MS));
        const s = await api.call<Status>('GET', '/encryption');
        p = s.running ?? s.lastRotation ?? p;
        if (s.running === undefined && s.lastRotation === undefined) throw new CliError('the server reports no rotation running or finished');
      }
      if (tty) process.stderr.write(`\r${bar(p)}\n`);
      print(o, p, (d) => `rotation to ${kekText(d.target)}: ${d.rewrapped} re-wrapped, ${d.skipped} skipped, ${d.failed} failed of ${d.total}\n`);
      if (p.failed > 0) throw new CliError(`${p.failed} data key(s) could not be re-wrapped: ${p.error ?? ''}`);
    });
}
