import type { Command } from 'commander';
import { addClientFlags, AdminClient, seg, type ClientFlags } from './client.js';
import { collect, fromNow, print, table } from './format.js';

interface Assignment {
  id: string;
  principal: string;
  role: string;
  scope: string;
  conditions?: Record<string, unknown>;
  expiresAt?: string;
  createdBy: string;
  accessRequest?: string;
}

const COLUMNS = [['ID', 'id'], ['PRINCIPAL', 'principal'], ['ROLE', 'role'], ['SCOPE', 'scope'], ['EXPIRES', 'expiresAt'], ['CONDITIONS', 'conditions'], ['BY', 'createdBy']] as const;
const ROLE_COLUMNS = [['ROLE', 'name'], ['REPOSITORY ACTIONS', 'repository'], ['CATALOG', 'catalog'], ['ADMIN', 'admin'], ['DESCRIPTION', 'description']] as const;

type AssignFlags = ClientFlags & { principal: string; role: string; scope?: string; expires?: string; sourceCidr?: string[]; requireAmr?: string[] };

function conditionsOf(o: AssignFlags): Record<string, unknown> | undefined {
  const c = { ...(o.sourceCidr !== undefined ? { sourceCidrs: o.sourceCidr } : {}), ...(o.requireAmr !== undefined ? { requiredAmr: o.requireAmr } : {}) };
  return Object.keys(c).length > 0 ? c : undefined;
}

/** `bulwark role assign|list|revoke|definitions`: role assignments (who may do what, where). */
export function registerRole(program: Command): void {
  const role = program.command('role').description('role assignments: a role for a principal on a scope');

  addClientFlags(role.command('assign').description('assign a role (needs Owner)'))
    .requiredOption('--principal <id>', 'service:<name>, token:<name>, admin:<name> or user:<subject>@<issuer>')
    .requiredOption('--role <role>', 'a built-in role (see `bulwark role definitions`)')
    .option('--scope <scope>', '*, a repository, or <prefix>/*', '*')
    .option('--expires <duration>', 'the assignment ends after this long (e.g. 30d)')
    .option('--source-cidr <cidr>', 'only from this network; repeatable', collect)
    .option('--require-amr <method>', 'only when the sign-in used this method (e.g. mfa); repeatable', collect)
    .action(async (o: AssignFlags) => {
      const api = await AdminClient.connect(o, ['access']);
      const conditions = conditionsOf(o);
      const a = await api.call<Assignment>('POST', '/role-assignments', {
        principal: o.principal,
        role: o.role,
        scope: o.scope ?? '*',
        ...(conditions !== undefined ? { conditions } : {}),
        ...(o.expires !== undefined ? { expiresAt: fromNow(o.expires) } : {}),
      });
      print(o, a, () => `assigned ${a.role} on ${a.scope} to ${a.principal} (id ${a.id})\n`);
    });

  addClientFlags(role.command('list').description('list role assignments'))
    .option('--principal <id>', 'only this principal')
    .action(async (o: ClientFlags & { principal?: string }) => {
      const api = await AdminClient.connect(o, ['read']);
      const q = o.principal !== undefined ? `?principal=${encodeURIComponent(o.principal)}` : '';
      print(o, await api.call<{ items: Assignment[] }>('GET', `/role-assignments${q}`), (d) => table(d.items, COLUMNS));
    });

  addClientFlags(role.command('revoke <id>').description('revoke a role assignment (needs Owner)')).action(async (id: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['access']);
    await api.call('DELETE', `/role-assignments/${seg(id)}`);
    print(o, { revoked: id }, () => `revoked ${id}\n`);
  });

  addClientFlags(role.command('definitions').description('the built-in roles and what each grants')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<{ items: object[] }>('GET', '/roles'), (d) => table(d.items, ROLE_COLUMNS));
  });
}
