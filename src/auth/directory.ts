/**
 * The directory: every change to identities and policy goes through here, is validated (all
 * problems reported at once), written with compare-and-set, audited as `admin.change`, and makes
 * the access policy reload. Secrets (token passwords, the bootstrap password) are generated here,
 * returned once, and stored only as scrypt hashes.
 */
import { randomUUID } from 'node:crypto';
import type { EventBus } from '../audit/index.js';
import type { ClientInfo } from '../audit/index.js';
import { authError } from './errors.js';
import { generatePassword, hashPassword } from './passwords.js';
import { isRepositoryPattern, type RepositoryPattern } from './patterns.js';
import { isCidr, type AccessPolicy, type DecisionContext } from './policy.js';
import type {
  AdminRecord,
  AssignmentConditions,
  FederatedCredentialRecord,
  PasswordName,
  RoleAssignmentRecord,
  ScopeMapRecord,
  ServiceRecord,
  TokenRecord,
} from './records.js';
import { isRoleName, role, type RoleName } from './roles.js';
import { assertScopeMapInput, SYSTEM_SCOPE_MAPS, systemScopeMap, type ScopeMap } from './scope-maps.js';
import type { AuthStore } from './store.js';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9-]{4,49}$/;
const MAX_TOKENS = 20_000;

/**
 * Who is making a change: for the audit record and `createdBy`, and for the rights some changes
 * need beyond the one their endpoint declares (see `requireLastingWrite`, `requireAccessForRoles`):
 * those are decided for the actor's address and sign-in methods (`amr`), as any other decision.
 */
export interface Actor {
  readonly principal: string;
  readonly client: ClientInfo;
  /** the authentication methods of the caller's sign-in, for `requiredAmr` conditions */
  readonly amr?: readonly string[] | undefined;
}

/** Why minting or widening a standing credential was refused (finding: elevations must not outlive themselves). */
export const LASTING_WRITE_NEEDED = 'standing credentials need a lasting Owner or Contributor assignment';

export interface TokenView {
  readonly name: string;
  readonly scopeMap: string;
  readonly status: 'enabled' | 'disabled';
  readonly passwords: readonly { name: PasswordName; createdAt: number; expiresAt?: number }[];
  readonly createdAt: number;
}

export interface RoleAssignmentInput {
  readonly principal: string;
  readonly role: string;
  readonly scope?: string;
  readonly conditions?: AssignmentConditions;
  readonly expiresAt?: number;
}

function invalid(what: string, problems: string[]): never {
  throw authError('BAD_REQUEST', `invalid ${what}: ${problems.join('; ')}`, { problems });
}

export function isPrincipalId(p: string): boolean {
  return /^(service|token|admin):[a-zA-Z0-9][a-zA-Z0-9-]{0,49}$/.test(p) || /^user:[\x21-\x7e]{1,255}@https?:\/\/[\x21-\x7e]{1,255}$/.test(p);
}

export class Directory {
  constructor(
    private readonly store: AuthStore,
    private readonly policy: AccessPolicy,
    private readonly bus: EventBus,
    private readonly opts: { disableAdminOnFirstOwner: boolean },
  ) {}

  // --- bootstrap admin -------------------------------------------------------------------

  /**
   * Create the bootstrap admin if this data folder has none; returns its password, once.
   * `persist` stores the credential for the operator (the 0600 file) and runs before the record
   * is written: if it fails, no admin exists whose password nobody has, and the next start retries.
   */
  async ensureBootstrapAdmin(persist?: (creds: { username: string; password: string }) => Promise<void>, username = 'bulwark-admin'): Promise<{ username: string; password: string } | undefined> {
    if ((await this.store.list('admin')).length > 0) return undefined;
    const password = generatePassword();
    const rec: AdminRecord = { username, passwordHash: await hashPassword(password), enabled: true, createdAt: Date.now() };
    await persist?.({ username, password });
    await this.store.put('admin', username, rec, 'absent');
    this.policy.invalidate();
    return { username, password };
  }

  async admins(): Promise<AdminRecord[]> {
    return (await this.store.list<AdminRecord>('admin')).map((s) => s.value);
  }

  async disableAdmin(actor: Actor, reason: string): Promise<boolean> {
    let changed = false;
    for (const s of await this.store.list<AdminRecord>('admin')) {
      if (!s.value.enabled) continue;
      await this.store.put('admin', s.id, { ...s.value, enabled: false, disabledAt: Date.now() }, s.version);
      changed = true;
    }
    if (changed) this.changed(actor, 'admin', `bootstrap admin disabled: ${reason}`);
    return changed;
  }

  // --- scope maps ------------------------------------------------------------------------

  async listScopeMaps(): Promise<ScopeMap[]> {
    const custom = (await this.store.list<ScopeMapRecord>('scope-map')).map((s) => ({ ...s.value, system: false }));
    return [...SYSTEM_SCOPE_MAPS, ...custom];
  }

  async getScopeMap(name: string): Promise<ScopeMap | undefined> {
    const sys = systemScopeMap(name);
    if (sys !== undefined) return sys;
    const s = await this.store.get<ScopeMapRecord>('scope-map', name);
    return s === undefined ? undefined : { ...s.value, system: false };
  }

  async createScopeMap(actor: Actor, input: { name: string; description?: string; actions: readonly string[] }): Promise<ScopeMap> {
    await this.requireLastingWrite(actor, `create scope map ${input.name}`);
    if (input.name.startsWith('_')) invalid('scope map', ['name: names starting with _ are reserved for system scope maps']);
    assertScopeMapInput(input.name, input.actions);
    const rec: ScopeMapRecord = { name: input.name, description: input.description ?? '', actions: [...new Set(input.actions)], createdAt: Date.now() };
    await this.putNew('scope-map', input.name, rec, 'scope map');
    this.changed(actor, 'scope-map', `created ${input.name}`);
    return { ...rec, system: false };
  }

  async updateScopeMap(actor: Actor, name: string, change: { description?: string; add?: readonly string[]; remove?: readonly string[] }): Promise<ScopeMap> {
    if (systemScopeMap(name) !== undefined) invalid('scope map', ['system scope maps cannot be changed']);
    // adding actions widens what every token using the map gets; removing or describing does not
    if ((change.add ?? []).length > 0) await this.requireLastingWrite(actor, `add actions to scope map ${name}`);
    const cur = await this.store.get<ScopeMapRecord>('scope-map', name);
    if (cur === undefined) throw authError('NOT_FOUND', `no scope map named ${name}`);
    const remove = new Set(change.remove ?? []);
    const actions = [...new Set([...cur.value.actions.filter((a) => !remove.has(a)), ...(change.add ?? [])])];
    assertScopeMapInput(name, actions);
    const rec: ScopeMapRecord = { ...cur.value, actions, description: change.description ?? cur.value.description };
    await this.store.put('scope-map', name, rec, cur.version);
    this.changed(actor, 'scope-map', `updated ${name}`);
    return { ...rec, system: false };
  }

  async deleteScopeMap(actor: Actor, name: string): Promise<void> {
    if (systemScopeMap(name) !== undefined) invalid('scope map', ['system scope maps cannot be deleted']);
    const users = (await this.store.list<TokenRecord>('token')).filter((t) => t.value.scopeMap === name).map((t) => t.value.name);
    if (users.length > 0) invalid('scope map', [`still used by tokens: ${users.slice(0, 10).join(', ')}`]);
    if (!(await this.store.delete('scope-map', name))) throw authError('NOT_FOUND', `no scope map named ${name}`);
    this.changed(actor, 'scope-map', `deleted ${name}`);
  }

  // --- repository-scoped tokens ----------------------------------------------------------

  async listTokens(): Promise<TokenView[]> {
    return (await this.store.list<TokenRecord>('token')).map((s) => tokenView(s.value));
  }

  async getToken(name: string): Promise<TokenRecord | undefined> {
    return (await this.store.get<TokenRecord>('token', name))?.value;
  }

  /** Create a token with its first password (shown once). */
  async createToken(actor: Actor, input: { name: string; scopeMap: string; passwordExpiresAt?: number }): Promise<{ token: TokenView; password: { name: PasswordName; value: string } }> {
    await this.requireLastingWrite(actor, `create token ${input.name}`);
    // a name whose principal holds roles (left by an older version, or a record restored by hand)
    await this.requireAccessForRoles(actor, input.name, 'create');
    const problems: string[] = [];
    if (!NAME_RE.test(input.name)) problems.push('name: 5-50 letters, digits or hyphens, starting with a letter or digit');
    if ((await this.getScopeMap(input.scopeMap)) === undefined) problems.push(`scopeMap: no scope map named ${input.scopeMap.slice(0, 60)}`);
    if (input.passwordExpiresAt !== undefined && !(input.passwordExpiresAt > Date.now())) problems.push('passwordExpiresAt: must be in the future');
    if (problems.length > 0) invalid('token', problems);
    if ((await this.store.list('token')).length >= MAX_TOKENS) invalid('token', [`at most ${MAX_TOKENS} tokens`]);
    const value = generatePassword();
    const pw = { name: 'password1' as const, hash: await hashPassword(value), createdAt: Date.now(), ...(input.passwordExpiresAt !== undefined ? { expiresAt: input.passwordExpiresAt } : {}) };
    const rec: TokenRecord = { name: input.name, scopeMap: input.scopeMap, status: 'enabled', passwords: [pw], createdAt: Date.now() };
    await this.putNew('token', input.name, rec, 'token');
    this.changed(actor, 'token', `created ${input.name} with scope map ${input.scopeMap}`);
    return { token: tokenView(rec), password: { name: 'password1', value } };
  }

  async setTokenStatus(actor: Actor, name: string, status: 'enabled' | 'disabled'): Promise<TokenView> {
    if (status === 'enabled') {
      await this.requireLastingWrite(actor, `enable token ${name}`);
      await this.requireAccessForRoles(actor, name, 'enable');
    }
    const rec = await this.updateToken(name, (t) => ({ ...t, status }));
    this.changed(actor, 'token', `${status === 'enabled' ? 'enabled' : 'disabled'} ${name}`);
    return tokenView(rec);
  }

  /** (Re)generate one of the two passwords; the old value of that slot stops working at once. */
  async generateTokenPassword(actor: Actor, name: string, slot: PasswordName, expiresAt?: number): Promise<{ name: PasswordName; value: string }> {
    await this.requireLastingWrite(actor, `generate ${slot} of token ${name}`);
    await this.requireAccessForRoles(actor, name, `generate a password of`);
    if (expiresAt !== undefined && !(expiresAt > Date.now())) invalid('password', ['expiresAt: must be in the future']);
    const value = generatePassword();
    const hash = await hashPassword(value);
    await this.updateToken(name, (t) => ({
      ...t,
      passwords: [...t.passwords.filter((p) => p.name !== slot), { name: slot, hash, createdAt: Date.now(), ...(expiresAt !== undefined ? { expiresAt } : {}) }].sort((a, b) => a.name.localeCompare(b.name)),
    }));
    this.changed(actor, 'token', `generated ${slot} of ${name}`);
    return { name: slot, value };
  }

  async deleteTokenPassword(actor: Actor, name: string, slot: PasswordName): Promise<void> {
    await this.updateToken(name, (t) => ({ ...t, passwords: t.passwords.filter((p) => p.name !== slot) }));
    this.changed(actor, 'token', `deleted ${slot} of ${name}`);
  }

  /**
   * Delete a token and the role assignments of its principal, so that a token created later
   * under the same name starts with nothing. Its refresh tokens are the caller's to revoke
   * (AuthService.revokeRefreshTokens): the directory does not hold them.
   */
  async deleteToken(actor: Actor, name: string): Promise<void> {
    // Deleting a token deletes its role assignments: for a token that holds roles that is
    // managing access (Owner). Disabling it, or deleting a password, only removes access: write.
    await this.requireAccessForRoles(actor, name, 'delete');
    if (!(await this.store.delete('token', name))) throw authError('NOT_FOUND', `no token named ${name}`);
    const revoked = await this.deleteAssignmentsOf(`token:${name}`);
    this.changed(actor, 'token', `deleted ${name}${revoked > 0 ? ` and its ${revoked} role assignment(s)` : ''}`);
  }

  // --- service identities ----------------------------------------------------------------

  async listServices(): Promise<ServiceRecord[]> {
    return (await this.store.list<ServiceRecord>('service')).map((s) => s.value);
  }

  async createService(actor: Actor, input: { name: string; description?: string }): Promise<ServiceRecord> {
    if (!NAME_RE.test(input.name)) invalid('service identity', ['name: 5-50 letters, digits or hyphens, starting with a letter or digit']);
    const rec: ServiceRecord = { name: input.name, description: input.description ?? '', createdAt: Date.now() };
    await this.putNew('service', input.name, rec, 'service identity');
    this.changed(actor, 'service', `created ${input.name}`);
    return rec;
  }

  /**
   * Delete a service identity, its federated credentials and the role assignments of its
   * principal (a service created later under the same name starts with nothing). Its refresh
   * tokens are the caller's to revoke (AuthService.revokeRefreshTokens).
   */
  async deleteService(actor: Actor, name: string): Promise<void> {
    if (!(await this.store.delete('service', name))) throw authError('NOT_FOUND', `no service identity named ${name}`);
    for (const f of await this.store.list<FederatedCredentialRecord>('federated-credential')) {
      if (f.value.service === name) await this.store.delete('federated-credential', f.id);
    }
    const revoked = await this.deleteAssignmentsOf(`service:${name}`);
    this.changed(actor, 'service', `deleted ${name}, its federated credentials and ${revoked} role assignment(s)`);
  }

  // --- role assignments ------------------------------------------------------------------

  async listAssignments(principal?: string): Promise<RoleAssignmentRecord[]> {
    return (await this.store.list<RoleAssignmentRecord>('role-assignment')).map((s) => s.value).filter((a) => principal === undefined || a.principal === principal);
  }

  async assignRole(actor: Actor, input: RoleAssignmentInput, accessRequest?: string): Promise<RoleAssignmentRecord> {
    const problems: string[] = [];
    const scope: RepositoryPattern = input.scope ?? '*';
    if (!isPrincipalId(input.principal)) problems.push('principal: expected service:<name>, token:<name>, admin:<name> or user:<subject>@<issuer>');
    else if (!(await this.principalExists(input.principal))) problems.push(`principal: ${input.principal.slice(0, 80)} does not exist`);
    if (!isRoleName(input.role)) problems.push(`role: unknown role ${input.role.slice(0, 40)}`);
    else if (role(input.role).registryWideOnly && scope !== '*') problems.push(`scope: ${input.role} is assigned registry-wide only (scope *)`);
    if (!isRepositoryPattern(scope)) problems.push('scope: expected *, a repository name, or <prefix>/*');
    const c = input.conditions;
    if (c?.sourceCidrs !== undefined) c.sourceCidrs.forEach((x, i) => isCidr(x) || problems.push(`conditions.sourceCidrs[${i}]: not an IPv4/IPv6 CIDR`));
    if (c?.requiredAmr !== undefined) c.requiredAmr.forEach((x, i) => /^[a-z0-9_-]{1,32}$/.test(x) || problems.push(`conditions.requiredAmr[${i}]: not an amr value`));
    if (c?.notBefore !== undefined && c.notAfter !== undefined && c.notAfter <= c.notBefore) problems.push('conditions: notAfter must be after notBefore');
    if (input.expiresAt !== undefined && !(input.expiresAt > Date.now())) problems.push('expiresAt: must be in the future');
    if (problems.length > 0) invalid('role assignment', problems);
    // A direct assignment is a standing grant: like minting a credential, it needs `access` from a
    // lasting source, so a just-in-time or conditioned Owner cannot make itself (or a friend)
    // permanent. Approving an access request creates an assignment that expires, and stays open.
    if (accessRequest === undefined && !(await this.policy.lastingAdminRights(this.context(actor))).has('access')) {
      this.deny(actor, `assign ${input.role}`, `role assignments need a lasting Owner assignment (registry-wide, with no expiry, conditions or access request); ${actor.principal} has access only for a while or under conditions`);
    }
    const rec: RoleAssignmentRecord = {
      id: randomUUID(),
      principal: input.principal,
      role: input.role as RoleName,
      scope,
      ...(c !== undefined ? { conditions: c } : {}),
      ...(input.expiresAt !== undefined ? { expiresAt: input.expiresAt } : {}),
      createdAt: Date.now(),
      createdBy: actor.principal,
      ...(accessRequest !== undefined ? { accessRequest } : {}),
    };
    await this.store.put('role-assignment', rec.id, rec, 'absent');
    this.changed(actor, 'role-assignment', `assigned ${rec.role} on ${rec.scope} to ${rec.principal}`);
    // Only a lasting Owner replaces the admin: one that expires (a just-in-time elevation) would
    // leave nobody able to manage access once it ends.
    if (rec.role === 'Owner' && !rec.principal.startsWith('admin:') && rec.expiresAt === undefined && c?.notAfter === undefined && this.opts.disableAdminOnFirstOwner) {
      await this.disableAdmin(actor, `first Owner configured (${rec.principal})`);
    }
    return rec;
  }

  async revokeAssignment(actor: Actor, id: string): Promise<void> {
    if (!(await this.store.delete('role-assignment', id))) throw authError('NOT_FOUND', `no role assignment ${id.slice(0, 40)}`);
    this.changed(actor, 'role-assignment', `revoked ${id}`);
  }

  // --- federated credentials -------------------------------------------------------------

  async listFederated(): Promise<FederatedCredentialRecord[]> {
    return (await this.store.list<FederatedCredentialRecord>('federated-credential')).map((s) => s.value);
  }

  async addFederated(actor: Actor, input: { name: string; service: string; issuer: string; subject: string; audience: string }): Promise<FederatedCredentialRecord> {
    const problems: string[] = [];
    if (!NAME_RE.test(input.name)) problems.push('name: 5-50 letters, digits or hyphens');
    if ((await this.store.get('service', input.service)) === undefined) problems.push(`service: no service identity named ${input.service.slice(0, 60)}`);
    if (!isIssuerUrl(input.issuer)) problems.push('issuer: an https URL (http only on loopback)');
    if (!/^[\x21-\x7e]{1,255}$/.test(input.subject)) problems.push('subject: 1-255 printable ASCII characters');
    if (!/^[\x21-\x7e]{1,255}$/.test(input.audience)) problems.push('audience: 1-255 printable ASCII characters');
    if (problems.length > 0) invalid('federated credential', problems);
    const rec: FederatedCredentialRecord = { ...input, createdAt: Date.now() };
    await this.putNew('federated-credential', input.name, rec, 'federated credential');
    this.changed(actor, 'federated-credential', `bound ${input.issuer} ${input.subject} (aud ${input.audience}) to service:${input.service}`);
    return rec;
  }

  async removeFederated(actor: Actor, name: string): Promise<void> {
    if (!(await this.store.delete('federated-credential', name))) throw authError('NOT_FOUND', `no federated credential named ${name}`);
    this.changed(actor, 'federated-credential', `removed ${name}`);
  }

  // --- internals -------------------------------------------------------------------------

  private context(actor: Actor): DecisionContext {
    return { principal: actor.principal, clientAddress: actor.client.address, amr: actor.amr, now: Date.now() };
  }

  /**
   * Minting or widening a standing credential (a token, its enabling, a password, a scope map's
   * actions) needs admin `write` from a lasting source (AccessPolicy.lastingAdminRights): a
   * just-in-time or conditioned Contributor must not leave behind credentials that outlive it.
   */
  private async requireLastingWrite(actor: Actor, what: string): Promise<void> {
    if ((await this.policy.lastingAdminRights(this.context(actor))).has('write')) return;
    this.deny(
      actor,
      what,
      `${LASTING_WRITE_NEEDED} (registry-wide, with no expiry, conditions or access request); ${actor.principal} has admin write only for a while or under conditions, so it cannot ${what}`,
    );
  }

  /**
   * Whoever holds a token's password holds its principal's roles: taking over the credentials of
   * a token that has role assignments is taking its roles, so it needs the admin `access` right
   * (Owner), like assigning them would.
   */
  private async requireAccessForRoles(actor: Actor, token: string, verb: string): Promise<void> {
    const principal = `token:${token}`;
    const held = (await this.store.list<RoleAssignmentRecord>('role-assignment')).filter((a) => a.value.principal === principal);
    if (held.length === 0) return;
    const granted = await this.policy.decide(this.context(actor), [{ type: 'registry', name: 'admin', actions: ['access'] }]);
    if (granted.length > 0) return;
    const roles = [...new Set(held.map((a) => a.value.role))].join(', ');
    this.deny(actor, `${verb} token ${token}`, `${principal} holds role assignments (${roles}): only an identity with registry:admin:access (Owner) may ${verb} token ${token}`);
  }

  private deny(actor: Actor, what: string, message: string): never {
    this.bus.emit({ type: 'auth.denied', time: new Date().toISOString(), repository: '', client: actor.client, outcome: 'failure', principal: actor.principal, target: what, reason: message });
    throw authError('DENIED', message);
  }

  /** Whether a principal names an identity that exists (people are not recorded: always). */
  private async principalExists(principal: string): Promise<boolean> {
    const i = principal.indexOf(':');
    const kind = principal.slice(0, i);
    const name = principal.slice(i + 1);
    if (kind === 'token') return (await this.store.get('token', name)) !== undefined;
    if (kind === 'service') return (await this.store.get('service', name)) !== undefined;
    if (kind === 'admin') return (await this.store.get('admin', name)) !== undefined;
    return kind === 'user';
  }

  /** Remove every role assignment of a principal; how many. */
  private async deleteAssignmentsOf(principal: string): Promise<number> {
    let n = 0;
    for (const a of await this.store.list<RoleAssignmentRecord>('role-assignment')) {
      if (a.value.principal === principal && (await this.store.delete('role-assignment', a.id))) n++;
    }
    return n;
  }

  private async putNew(kind: 'scope-map' | 'token' | 'service' | 'federated-credential', id: string, value: unknown, what: string): Promise<void> {
    try {
      await this.store.put(kind, id, value, 'absent');
    } catch (e) {
      if ((e as { code?: string }).code === 'CONFLICT') invalid(what, [`name: ${id} already exists`]);
      throw e;
    }
  }

  private async updateToken(name: string, f: (t: TokenRecord) => TokenRecord): Promise<TokenRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.store.get<TokenRecord>('token', name);
      if (cur === undefined) throw authError('NOT_FOUND', `no token named ${name.slice(0, 60)}`);
      const next = f(cur.value);
      try {
        await this.store.put('token', name, next, cur.version);
        return next;
      } catch (e) {
        if ((e as { code?: string }).code !== 'CONFLICT') throw e;
      }
    }
    throw authError('UNAVAILABLE', `token ${name} is being changed concurrently; retry`);
  }

  private changed(actor: Actor, what: string, detail: string): void {
    this.policy.invalidate();
    this.bus.emit({ type: 'admin.change', time: new Date().toISOString(), repository: '', client: actor.client, outcome: 'success', principal: actor.principal, target: what, reason: detail });
  }
}

function tokenView(t: TokenRecord): TokenView {
  return {
    name: t.name,
    scopeMap: t.scopeMap,
    status: t.status,
    passwords: t.passwords.map((p) => ({ name: p.name, createdAt: p.createdAt, ...(p.expiresAt !== undefined ? { expiresAt: p.expiresAt } : {}) })),
    createdAt: t.createdAt,
  };
}

export function isIssuerUrl(s: string): boolean {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return false;
  }
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') return false;
  if (u.protocol === 'https:') return true;
  return u.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname);
}
