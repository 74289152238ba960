import type { Command } from 'commander';
import { addClientFlags, AdminClient, seg, type ClientFlags } from './client.js';
import { print, table } from './format.js';

const COLUMNS = [['NAME', 'name'], ['SERVICE', 'service'], ['ISSUER', 'issuer'], ['SUBJECT', 'subject'], ['AUDIENCE', 'audience'], ['CREATED', 'createdAt']] as const;

/** `bulwark federation add|list|remove`: OIDC identities (CI pipelines) that sign in as a service identity. */
export function registerFederation(program: Command): void {
  const fed = program.command('federation').description('federated credentials: OpenID Connect tokens that sign in as a service identity');

  addClientFlags(fed.command('add <name>').description('trust an issuer + subject + audience for a service identity (needs Owner)'))
    .requiredOption('--service <name>', 'the service identity it signs in as')
    .requiredOption('--issuer <url>', 'the OpenID Connect issuer (https)')
    .requiredOption('--subject <sub>', 'the exact `sub` claim (e.g. repo:org/app:ref:refs/heads/main)')
    .requiredOption('--audience <aud>', 'the `aud` the token must carry')
    .action(async (name: string, o: ClientFlags & { service: string; issuer: string; subject: string; audience: string }) => {
      const api = await AdminClient.connect(o, ['access']);
      const f = await api.call<{ name: string }>('POST', '/federated-credentials', { name, service: o.service, issuer: o.issuer, subject: o.subject, audience: o.audience });
      print(o, f, () => `added federated credential ${f.name} for service:${o.service}\n`);
    });

  addClientFlags(fed.command('list').description('list federated credentials')).action(async (o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['read']);
    print(o, await api.call<{ items: object[] }>('GET', '/federated-credentials'), (d) => table(d.items, COLUMNS));
  });

  addClientFlags(fed.command('remove <name>').description('remove a federated credential (needs Owner)')).action(async (name: string, o: ClientFlags) => {
    const api = await AdminClient.connect(o, ['access']);
    await api.call('DELETE', `/federated-credentials/${seg(name)}`);
    print(o, { removed: name }, () => `removed federated credential ${name}\n`);
  });
}
