import type { Command } from 'commander';
import { addClientFlags, AdminClient, seg, type ClientFlags } from './client.js';
import { details, fromNow, print, printSecret, table } from './format.js';

interface TokenView {
  name: string;
  scopeMap: string;
  status: string;
  passwords: { name: string; createdAt: string; expiresAt?: string }[];
  createdAt: string;
}

const row = (t: TokenView): Record<string, unknown> => ({
  ...t,
  passwords: t.passwords.map((p) => (p.expiresAt !== undefined ? `${p.name} (until ${p.expiresAt})` : p.name)),
});
const COLUMNS = [['NAME', 'name'], ['SCOPE MAP', 'scopeMap'], ['STATUS', 'status'], ['PASSWORDS', 'passwords'], ['CREATED', 'createdAt']] as const;

/** `bulwark token create|list|show|disable|enable|password|delete`: repository-scoped tokens. */
export function registerToken(program: Command): void {
  const token = program.command('token').description('repository-scoped tokens (username + generated password, access from a scope map)');

  addClientFlags(token.command('create <name>').description('create a token; prints its password once'))
    .requiredOption('--scope-map <name>', 'what the token may do (see `bulwark scope-map list`)')
    .option('--expires <duration>', 'the password stops working after this long (e.g. 90d)')
    .action(async (name: string, o: ClientFlags & { scopeMap: string; expires?: string }) => {
      const api = await AdminClient.connect(o, ['write']);
      const r = await api.call<{ token: TokenView; password: { name: string; value: string } }>('POST', '/tokens', {
        name,
        scopeMap: o.scopeMap,
        ...(o.expires !== undefined ? { passwordExpiresAt: fromNow(o.expires) } : {}),
      });
      printSecret(o, r, `password of token ${name}`, r.password.value);
    });

  addClientFlags(token.command('list').description('list tokens')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<{ items: TokenView[] }>('GET', '/tokens'), (d) => table(d.items.map(row), COLUMNS));
  });

  addClientFlags(token.command('show <name>').description('show one token')).action(async (name: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<TokenView>('GET', `/tokens/${seg(name)}`), (t) => details(row(t)));
  });

  for (const verb of ['disable', 'enable'] as const) {
    addClientFlags(token.command(`${verb} <name>`).description(verb === 'disable' ? 'disable a token: it stops working at once' : 'enable a token')).action(async (name: string, o: ClientFlags) => {
      const api = await AdminClient.connect(o, ['write']);
      print(o, await api.call<TokenView>('POST', `/tokens/${seg(name)}/${verb}`), (t) => `token ${t.name} is ${t.status}\n`);
    });
  }

  addClientFlags(token.command('password <name>').description('generate a password (printed once), or delete one with --delete'))
    .option('--slot <slot>', 'password1 or password2', 'password1')
    .option('--expires <duration>', 'the new password stops working after this long')
    .option('--delete', 'delete the password in the slot instead')
    .action(async (name: string, o: ClientFlags & { slot: string; expires?: string; delete?: boolean }) => {
      const api = await AdminClient.connect(o, ['write']);
      if (o.delete === true) {
        await api.call('DELETE', `/tokens/${seg(name)}/passwords/${seg(o.slot)}`);
        print(o, { deleted: o.slot }, () => `deleted ${o.slot} of token ${name}\n`);
        return;
      }
      const pw = await api.call<{ name: string; value: string }>('POST', `/tokens/${seg(name)}/passwords`, { name: o.slot, ...(o.expires !== undefined ? { expiresAt: fromNow(o.expires) } : {}) });
      printSecret(o, pw, `${o.slot} of token ${name}`, pw.value);
    });

  addClientFlags(token.command('delete <name>').description('delete a token')).action(async (name: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['write']);
    await api.call('DELETE', `/tokens/${seg(name)}`);
    print(o, { deleted: name }, () => `deleted token ${name}\n`);
  });
}
