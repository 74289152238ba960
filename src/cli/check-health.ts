/**
 * `bulwark check-health`: the registry's own health checks, run live on the server (storage, and a
 * wrap/unwrap round trip with the key-encryption key), printed one per line as
 * `OK <check>` or `<CODE> <cause>`; exit 1 when any fails. Like `az acr check-health`.
 */
import type { Command } from 'commander';
import { addClientFlags, AdminClient, CliError, type ClientFlags } from './client.js';
import { print } from './format.js';

interface Report {
  ok: boolean;
  checks: { name: string; ok: boolean; code?: string; message?: string }[];
}

export function registerCheckHealth(program: Command): void {
  addClientFlags(program.command('check-health').description('check storage and the key-encryption key (CMK_ERROR when the vault refuses)')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    const report = await api.call<Report>('GET', '/health');
    print(o, report, (r) => r.checks.map((c) => (c.ok ? `OK ${c.name}\n` : `${c.code ?? 'ERROR'} ${c.message ?? ''}\n`)).join(''));
    if (!report.ok) throw new CliError(`unhealthy: ${report.checks.filter((c) => !c.ok).map((c) => c.code).join(', ')}`);
  });
}
