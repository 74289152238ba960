import type { Command } from 'commander';
import { addClientFlags, AdminClient, seg, type ClientFlags } from './client.js';
import { details, parseDuration, print, table } from './format.js';

interface AccessRequest {
  id: string;
  principal: string;
  role: string;
  scope: string;
  durationSeconds: number;
  justification: string;
  status: string;
  createdAt: string;
  decidedBy?: string;
  expiresAt?: string;
}

const COLUMNS = [['ID', 'id'], ['STATUS', 'status'], ['PRINCIPAL', 'principal'], ['ROLE', 'role'], ['SCOPE', 'scope'], ['SECONDS', 'durationSeconds'], ['EXPIRES', 'expiresAt'], ['JUSTIFICATION', 'justification']] as const;

/** `bulwark access request|approve|deny|list`: just-in-time elevation, approved by an Owner. */
export function registerAccess(program: Command): void {
  const access = program.command('access').description('just-in-time access: ask for a role for a while; an Owner approves');

  addClientFlags(access.command('request').description('ask for a role on a scope for a while'))
    .requiredOption('--role <role>', 'the role wanted (e.g. Contributor, RepositoryContributor)')
    .option('--scope <scope>', '*, a repository, or <prefix>/*', '*')
    .requiredOption('--duration <duration>', 'how long, from approval (1m to 24h; e.g. 1h)')
    .requiredOption('--justification <text>', 'why (10-1000 characters; shown to the approver and audited)')
    .action(async (o: ClientFlags & { role: string; scope: string; duration: string; justification: string }) => {
      const api = await AdminClient.connect(o, []);
      const body = { role: o.role, scope: o.scope, durationSeconds: parseDuration(o.duration), justification: o.justification };
      const r = await api.call<AccessRequest>('POST', '/access-requests', body);
      print(o, r, () => `requested ${r.role} on ${r.scope} for ${r.durationSeconds} s: ${r.id} (pending)\n`);
    });

  for (const verb of ['approve', 'deny'] as const) {
    const cmd = addClientFlags(access.command(`${verb} <id>`).description(`${verb} a pending request (needs Owner; not your own)`));
    if (verb === 'deny') cmd.option('--reason <text>', 'why, for the requester and the audit log');
    cmd.action(async (id: string, o: ClientFlags & { reason?: string }) => {
      const api = await AdminClient.connect(o, ['access']);
      const body = verb === 'deny' && o.reason !== undefined ? { reason: o.reason } : undefined;
      const r = await api.call<AccessRequest>('POST', `/access-requests/${seg(id)}/${verb}`, body);
      print(o, r, () => (r.status === 'approved' ? `approved ${r.id}: ${r.role} on ${r.scope} for ${r.principal} until ${r.expiresAt ?? '?'}\n` : `denied ${r.id}\n`));
    });
  }

  addClientFlags(access.command('list').description('list access requests (all with admin read, else your own)'))
    .option('--status <status>', 'pending, approved, denied or expired')
    .option('--principal <id>', 'only this requester')
    .action(async (o: ClientFlags & { status?: string; principal?: string }) => {
      const api = await AdminClient.connect(o, ['read']);
      const q = new URLSearchParams({ ...(o.status !== undefined ? { status: o.status } : {}), ...(o.principal !== undefined ? { principal: o.principal } : {}) }).toString();
      print(o, await api.call<{ items: AccessRequest[] }>('GET', `/access-requests${q === '' ? '' : `?${q}`}`), (d) => table(d.items, COLUMNS));
    });

  addClientFlags(access.command('show <id>').description('show one access request')).action(async (id: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<AccessRequest>('GET', `/access-requests/${seg(id)}`), (r) => details({ ...r }));
  });
}
