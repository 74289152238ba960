/**
 * AzureKeyVault with the real @azure/keyvault-keys SDK against our local REST double of Key Vault
 * (test/testkit/fake-azure-key-vault.ts). This proves agreement with our reading of the REST API,
 * not with the real service; docs/keyvault-azure.md says what remains untested.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { CredentialUnavailableError, type TokenCredential } from '@azure/identity';
import {
  AzureKeyVault,
  type AzureKeyVaultOptions,
  type KeyId,
  type KeyInfo,
  type KeyPermission,
  type KeySize,
  type KeyVault,
  type KeyVaultAudit,
  type KeyVaultAuditEvent,
  type KeyVersionInfo,
  type WrappedKey,
} from '../../src/keyvault/index.js';
import { FakeAzureKeyVault, TENANT, type AzureKeyPermission } from '../testkit/fake-azure-key-vault.js';
import { rejectsWith, runKeyVaultSuite } from '../testkit/key-vault-suite.js';

/** The suite's permissions as Key Vault access-policy permissions. */
const AZURE_PERMISSIONS: Record<KeyPermission, AzureKeyPermission[]> = {
  get: ['get', 'list'],
  wrapKey: ['wrapKey'],
  unwrapKey: ['unwrapKey'],
  manage: ['create', 'update', 'delete', 'recover', 'purge', 'rotate'],
};
const OPERATOR: AzureKeyPermission[] = ['get', 'list', ...AZURE_PERMISSIONS.manage];
const REGISTRY: AzureKeyPermission[] = ['get', 'list', 'wrapKey', 'unwrapKey'];

function vaultOptions(fake: FakeAzureKeyVault, principal: string, audit: KeyVaultAudit, credential?: TokenCredential): AzureKeyVaultOptions {
  return {
    vaultUrl: fake.vaultUrl,
    credential: credential ?? fake.credentialFor(principal),
    identity: principal,
    audit,
    timeoutMs: 20_000,
    transport: { agent: fake.agent, retryOptions: { maxRetries: 0 } },
  };
}

/**
 * The suite calls one vault for many identities; with Azure each registry process signs in as its
 * own principal. This stands for one AzureKeyVault per principal, each with its own credential.
 */
class PerPrincipalVaults implements KeyVault {
  private readonly vaults = new Map<string, Promise<AzureKeyVault>>();
  constructor(
    private readonly fake: FakeAzureKeyVault,
    private readonly audit: KeyVaultAudit,
  ) {}
  private async as(identity: string): Promise<AzureKeyVault> {
    let v = this.vaults.get(identity);
    if (v === undefined) this.vaults.set(identity, (v = AzureKeyVault.open(vaultOptions(this.fake, identity, this.audit))));
    return v;
  }
  async getKey(identity: string, name: string, version?: string): Promise<KeyInfo> {
    return (await this.as(identity)).getKey(identity, name, version);
  }
  async listVersions(identity: string, name: string): Promise<KeyVersionInfo[]> {
    return (await this.as(identity)).listVersions(identity, name);
  }
  async createKey(identity: string, name: string, options: { size: KeySize }): Promise<KeyInfo> {
    return (await this.as(identity)).createKey(identity, name, options);
  }
  async rotateKey(identity: string, name: string): Promise<KeyInfo> {
    return (await this.as(identity)).rotateKey(identity, name);
  }
  async wrapKey(identity: string, name: string, version: string | undefined, dataKey: Buffer): Promise<WrappedKey> {
    return (await this.as(identity)).wrapKey(identity, name, version, dataKey);
  }
  async unwrapKey(identity: string, keyId: KeyId, wrapped: Buffer): Promise<Buffer> {
    return (await this.as(identity)).unwrapKey(identity, keyId, wrapped);
  }
  async setEnabled(identity: string, name: string, enabled: boolean): Promise<KeyInfo> {
    return (await this.as(identity)).setEnabled(identity, name, enabled);
  }
  async softDelete(identity: string, name: string): Promise<KeyInfo> {
    return (await this.as(identity)).softDelete(identity, name);
  }
  async recover(identity: string, name: string): Promise<KeyInfo> {
    return (await this.as(identity)).recover(identity, name);
  }
  async purge(identity: string, name: string): Promise<void> {
    return (await this.as(identity)).purge(identity, name);
  }
  async setAccessPolicy(identity: string, target: string, permissions: readonly KeyPermission[]): Promise<void> {
    return (await this.as(identity)).setAccessPolicy(identity, target, permissions);
  }
  async close(): Promise<void> {
    await Promise.all([...this.vaults.values()].map(async (v) => (await v).close()));
  }
}

runKeyVaultSuite(
  'azure (local REST double)',
  async (options) => {
    // Access policies, retention, purge protection and the clock belong to the vault in Azure,
    // so they configure the double; AzureKeyVault itself is given none of them.
    const policies = Object.fromEntries(Object.entries(options.accessPolicies).map(([id, perms]) => [id, perms.flatMap((p) => AZURE_PERMISSIONS[p])]));
    const fake = await FakeAzureKeyVault.start({
      policies,
      ...(options.purgeProtection !== undefined ? { purgeProtection: options.purgeProtection } : {}),
      ...(options.retentionDays !== undefined ? { retentionDays: options.retentionDays } : {}),
      ...(options.now !== undefined ? { now: options.now } : {}),
    });
    return { vault: new PerPrincipalVaults(fake, options.audit), cleanup: () => fake.close() };
  },
  { setAccessPolicy: false, wrapWithoutGet: false, recoverChecksPermissionFirst: false },
);

describe('AzureKeyVault on Key Vault specifics (local REST double)', () => {
  let fake: FakeAzureKeyVault;
  let events: KeyVaultAuditEvent[];
  const vaults: AzureKeyVault[] = [];
  const open = async (principal: string, extra: Partial<AzureKeyVaultOptions> = {}): Promise<AzureKeyVault> => {
    const v = await AzureKeyVault.open({ ...vaultOptions(fake, principal, (e) => events.push(e)), ...extra });
    vaults.push(v);
    return v;
  };
  beforeEach(async () => {
    events = [];
    fake = await FakeAzureKeyVault.start({ policies: { operator: OPERATOR, registry: REGISTRY } });
  });
  afterEach(async () => {
    await Promise.all(vaults.splice(0).map((v) => v.close()));
    await fake.close();
  });

  test('signs in through the challenge: one bare request, then bearer tokens for the vault resource and tenant', async () => {
    const ops = await open('operator');
    await ops.createKey('operator', 'kek', { size: 2048 });
    const [first, ...rest] = fake.requests;
    assert.deepEqual([first?.authorized, first?.status], [false, 401]);
    assert.ok(rest.length >= 2 && rest.every((r) => r.authorized), 'every later request carried the token');
    assert.ok(fake.tokenRequests.length > 0);
    for (const t of fake.tokenRequests) assert.deepEqual(t, { scopes: ['https://vault.azure.net/.default'], tenantId: TENANT });
  });

  test('wrapKey refuses a disabled key itself, since Key Vault would wrap with it', async () => {
    const ops = await open('operator');
    const reg = await open('registry');
    await ops.createKey('operator', 'kek', { size: 2048 });
    await ops.setEnabled('operator', 'kek', false);
    await rejectsWith(reg.wrapKey('registry', 'kek', undefined, randomBytes(32)), 'KEY_DISABLED');
    assert.equal(fake.requests.filter((r) => r.path.endsWith('/wrapkey')).length, 0, 'no wrap reached Key Vault');
  });

  test('rotation and setEnabled cover every version; listVersions is oldest first with sizes', async () => {
    const ops = await open('operator');
    const v1 = await ops.createKey('operator', 'kek', { size: 3072 });
    const v2 = await ops.rotateKey('operator', 'kek');
    assert.equal(v2.size, 3072);
    assert.equal((await ops.setEnabled('operator', 'kek', false)).version, v2.version);
    const reg = await open('registry');
    await rejectsWith(reg.wrapKey('registry', 'kek', v1.version, randomBytes(32)), 'KEY_DISABLED', 'the older version is disabled too');
    assert.deepEqual((await ops.listVersions('operator', 'kek')).map((v) => [v.version, v.size]), [[v1.version, 3072], [v2.version, 3072]]);
  });

  test('a call made for another identity is refused before Azure is asked, and audited', async () => {
    const reg = await open('registry');
    const before = fake.requests.length;
    await rejectsWith(reg.getKey('operator', 'kek'), 'FORBIDDEN');
    assert.equal(fake.requests.length, before);
    assert.deepEqual(events, [{ op: 'getKey', identity: 'operator', key: 'kek', outcome: 'failure', error: 'FORBIDDEN' }]);
  });

  test('setAccessPolicy says that Azure permissions are managed in Azure', async () => {
    const ops = await open('operator');
    await assert.rejects(ops.setAccessPolicy('operator', 'registry', ['get']), (e: Error) => /access policies or RBAC/.test(e.message));
    assert.equal(fake.requests.length, 0);
  });

  test('revoking unwrapKey in Azure takes effect at once; restoring it restores service', async () => {
    const ops = await open('operator');
    const reg = await open('registry');
    await ops.createKey('operator', 'kek', { size: 2048 });
    const w = await reg.wrapKey('registry', 'kek', undefined, randomBytes(32));
    fake.setPolicy('registry', ['get', 'list', 'wrapKey']);
    await rejectsWith(reg.unwrapKey('registry', w.keyId, w.wrapped), 'FORBIDDEN');
    fake.setPolicy('registry', REGISTRY);
    assert.equal((await reg.unwrapKey('registry', w.keyId, w.wrapped)).length, 32);
  });

  test('invalid names never reach Azure; open() wants an https vault URL', async () => {
    const ops = await open('operator');
    for (const bad of ['..', 'a/b', '%2e%2e']) await rejectsWith(ops.getKey('operator', bad), 'INVALID', bad);
    await rejectsWith(ops.getKey('operator', 'kek', '../x'), 'INVALID', 'version');
    assert.equal(fake.requests.length, 0);
    for (const vaultUrl of ['http://bulwark-test.vault.azure.net', 'not a url', `${fake.vaultUrl}/keys`])
      await rejectsWith(AzureKeyVault.open({ vaultUrl, audit: () => {}, credential: fake.credentialFor('x') }), 'INVALID', vaultUrl);
  });

  describe('failures are UNAVAILABLE and never carry the token', () => {
    const secretOf = async (c: TokenCredential): Promise<string> => (await c.getToken('https://vault.azure.net/.default'))?.token ?? '';
    const unavailable = async (p: Promise<unknown>, token: string, what: string): Promise<void> => {
      let caught: unknown;
      await rejectsWith(
        p.catch((e: unknown) => {
          caught = e;
          throw e;
        }),
        'UNAVAILABLE',
        what,
      );
      assert.ok(token.length > 0 && !inspect(caught, { depth: 10 }).includes(token), `${what}: the token is not in the error`);
    };

    test('Key Vault answering 503', async () => {
      const credential = fake.credentialFor('registry');
      const reg = await open('registry', { credential });
      await reg.getKey('registry', 'warm-up').catch(() => undefined);
      fake.failNext.push(503);
      await unavailable(reg.getKey('registry', 'kek'), await secretOf(credential), '503');
    });

    test('a token Key Vault rejects (401 after the challenge)', async () => {
      const token = `forged-${randomBytes(8).toString('hex')}`;
      const forged: TokenCredential = { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 60_000 }) };
      await unavailable((await open('registry', { credential: forged })).getKey('registry', 'kek'), token, '401');
    });

    test('a credential that cannot sign in', async () => {
      const none: TokenCredential = {
        getToken: async () => {
          throw new CredentialUnavailableError('ManagedIdentityCredential: no managed identity endpoint found');
        },
      };
      await unavailable((await open('registry', { credential: none })).getKey('registry', 'kek'), 'never-issued', 'no credential');
    });

    test('nothing listening, and a vault that does not answer in time', async () => {
      const credential = fake.credentialFor('registry');
      const token = await secretOf(credential);
      const closed = await open('registry', { credential, vaultUrl: 'https://bulwark-test.vault.azure.net:1' });
      await unavailable(closed.getKey('registry', 'kek'), token, 'connection refused');
      const slow = await open('registry', { credential, timeoutMs: 300 });
      await slow.getKey('registry', 'warm-up').catch(() => undefined);
      fake.stall = true;
      const started = Date.now();
      await unavailable(slow.getKey('registry', 'kek'), token, 'timeout');
      assert.ok(Date.now() - started < 5_000, 'the timeout bounds the call');
    });
  });
});
