import type { Command } from 'commander';
import { addClientFlags, AdminClient, seg, type ClientFlags } from './client.js';
import { print, table } from './format.js';

const COLUMNS = [['NAME', 'name'], ['DESCRIPTION', 'description'], ['CREATED', 'createdAt']] as const;

/** `bulwark service create|list|delete`: service identities (workloads; access through role assignments). */
export function registerService(program: Command): void {
  const svc = program.command('service').description('service identities: workloads that sign in through federation');

  addClientFlags(svc.command('create <name>').description('create a service identity'))
    .option('--description <text>', 'what it is')
    .action(async (name: string, o: ClientFlags & { description?: string }) => {
      const api = await AdminClient.connect(o, ['write']);
      const s = await api.call<{ name: string }>('POST', '/service-identities', { name, ...(o.description !== undefined ? { description: o.description } : {}) });
      print(o, s, () => `created service identity service:${s.name}\n`);
    });

  addClientFlags(svc.command('list').description('list service identities')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<{ items: object[] }>('GET', '/service-identities'), (d) => table(d.items, COLUMNS));
  });

  addClientFlags(svc.command('delete <name>').description('delete a service identity and its federated credentials')).action(async (name: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['write']);
    await api.call('DELETE', `/service-identities/${seg(name)}`);
    print(o, { deleted: name }, () => `deleted service identity ${name}\n`);
  });
}
