import type { Command } from 'commander';
import { addClientFlags, AdminClient, seg, type ClientFlags } from './client.js';
import { collect, print, table } from './format.js';

interface ScopeMapView {
  name: string;
  description: string;
  actions: string[];
  system: boolean;
}

const COLUMNS = [['NAME', 'name'], ['SYSTEM', 'system'], ['ACTIONS', 'actions'], ['DESCRIPTION', 'description']] as const;
const ACTION_HELP = 'repositories/<name, prefix/* or *>/<content|metadata>/<read|write|delete>; repeatable';

/** `bulwark scope-map create|update|list|delete`: what repository-scoped tokens may do. */
export function registerScopeMap(program: Command): void {
  const sm = program.command('scope-map').description('scope maps: the repository actions a token may perform');

  addClientFlags(sm.command('create <name>').description('create a scope map'))
    .requiredOption('--action <action>', ACTION_HELP, collect)
    .option('--description <text>', 'what it is for')
    .action(async (name: string, o: ClientFlags & { action: string[]; description?: string }) => {
      const api = await AdminClient.connect(o, ['write']);
      const m = await api.call<ScopeMapView>('POST', '/scope-maps', { name, actions: o.action, ...(o.description !== undefined ? { description: o.description } : {}) });
      print(o, m, () => `created scope map ${m.name}\n`);
    });

  addClientFlags(sm.command('update <name>').description('add or remove actions, or change the description'))
    .option('--add <action>', ACTION_HELP, collect)
    .option('--remove <action>', 'an action to remove; repeatable', collect)
    .option('--description <text>', 'new description')
    .action(async (name: string, o: ClientFlags & { add?: string[]; remove?: string[]; description?: string }) => {
      const api = await AdminClient.connect(o, ['write']);
      const body = { ...(o.add !== undefined ? { add: o.add } : {}), ...(o.remove !== undefined ? { remove: o.remove } : {}), ...(o.description !== undefined ? { description: o.description } : {}) };
      const m = await api.call<ScopeMapView>('PATCH', `/scope-maps/${seg(name)}`, body);
      print(o, m, () => `updated scope map ${m.name}: ${m.actions.join(', ')}\n`);
    });

  addClientFlags(sm.command('list').description('list scope maps')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<{ items: ScopeMapView[] }>('GET', '/scope-maps'), (d) => table(d.items, COLUMNS));
  });

  addClientFlags(sm.command('delete <name>').description('delete a scope map no token uses')).action(async (name: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['write']);
    await api.call('DELETE', `/scope-maps/${seg(name)}`);
    print(o, { deleted: name }, () => `deleted scope map ${name}\n`);
  });
}
