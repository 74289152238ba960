import type { Command } from 'commander';
import { addClientFlags, AdminClient, type ClientFlags } from './client.js';
import { print, table } from './format.js';

interface AdminStatus {
  admins: { username: string; enabled: boolean; createdAt: string; disabledAt?: string }[];
}
interface Finding {
  id: string;
  severity: string;
  title: string;
  remediation: string;
}

const COLUMNS = [['USERNAME', 'username'], ['ENABLED', 'enabled'], ['CREATED', 'createdAt'], ['DISABLED', 'disabledAt']] as const;

function human(s: AdminStatus, findings: readonly Finding[]): string {
  const lines = findings.map((f) => `finding ${f.id} (${f.severity}): ${f.title}\n  ${f.remediation}\n`);
  return table(s.admins, COLUMNS) + (findings.length > 0 ? `\n${lines.join('')}` : '\nno compliance findings\n');
}

/** `bulwark admin status|disable`: the bootstrap admin (a shared secret; turn it off once an Owner exists). */
export function registerAdmin(program: Command): void {
  const admin = program.command('admin').description('the bootstrap admin');

  addClientFlags(admin.command('status').description('whether the bootstrap admin is enabled, and the compliance findings')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    const status = await api.call<AdminStatus>('GET', '/admin');
    const findings = (await api.call<{ items: Finding[] }>('GET', '/findings')).items;
    print(o, { ...status, findings }, (d) => human(d, d.findings));
  });

  addClientFlags(admin.command('disable').description('disable the bootstrap admin for good (needs Owner)')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['access']);
    const status = await api.call<AdminStatus>('POST', '/admin/disable');
    print(o, status, () => 'the bootstrap admin is disabled\n');
  });
}
