/**
 * The access decision (STYLE rule 6): decide(principal, requested) returns the granted subset
 * of what was asked, never more. Deny by default: a principal gets only what a source grants it.
 *
 * Sources, by principal kind:
 * - `admin:<name>` (bootstrap admin, while enabled): everything.
 * - `token:<name>` (repository-scoped token, while enabled): its scope map; no catalog, no admin.
 * - every principal: its role assignments whose scope covers the repository, that have not
 *   expired, and whose conditions hold (source CIDR, `amr`, validity window).
 * - anonymous (no credentials): `pull` on the repositories `auth.anonymousPull` lists.
 * An unknown repository gets the same answer as a known one: the decision never reads content.
 *
 * The policy works on a snapshot of the records, reloaded when the directory changes them
 * (`invalidate()`), so a decision costs no I/O.
 */
import { BlockList, isIP } from 'node:net';
import { mergeAccess, REPOSITORY_ACTIONS, ADMIN_ACTIONS, type Access, type AdminAction, type RepositoryAction } from './access.js';
import { matchesRepository, type RepositoryPattern } from './patterns.js';
import type { AdminRecord, RoleAssignmentRecord, ScopeMapRecord, TokenRecord } from './records.js';
import { role } from './roles.js';
import { scopeMapActions, scopeMapRules, systemScopeMap, type ScopeRule } from './scope-maps.js';
import type { AuthStore } from './store.js';

export const ANONYMOUS = 'anonymous';

export interface DecisionContext {
  /** principal id, or ANONYMOUS */
  readonly principal: string;
  readonly clientAddress: string;
  readonly amr?: readonly string[] | undefined;
  readonly now: number;
}

interface Snapshot {
  admins: Map<string, AdminRecord>;
  tokens: Map<string, { token: TokenRecord; rules: ScopeRule[] }>;
  assignments: Map<string, RoleAssignmentRecord[]>;
}

export class AccessPolicy {
  private snapshot: Promise<Snapshot> | undefined;

  constructor(
    private readonly store: AuthStore,
    private readonly anonymousPull: readonly RepositoryPattern[],
  ) {}

  /** Records changed: the next decision reloads them. */
  invalidate(): void {
    this.snapshot = undefined;
  }

  async decide(ctx: DecisionContext, requested: readonly Access[]): Promise<Access[]> {
    const snap = await this.load();
    const out: Access[] = [];
    for (const r of requested) {
      if (r.type === 'repository') {
        const allowed = this.repositoryActions(snap, ctx, r.name);
        out.push({ type: 'repository', name: r.name, actions: r.actions.filter((a) => allowed.has(a)) });
      } else if (r.name === 'catalog') {
        out.push({ type: 'registry', name: 'catalog', actions: this.registryRights(snap, ctx).catalog ? ['*'] : [] });
      } else {
        const admin = this.registryRights(snap, ctx).admin;
        out.push({ type: 'registry', name: 'admin', actions: r.actions.filter((a) => admin.has(a)) });
      }
    }
    return mergeAccess(out);
  }

  /**
   * Which repository names the caller may see in the catalog (one snapshot for many names): those
   * it has any right on, and those a catalog-lister assignment covers.
   */
  async visibility(ctx: DecisionContext): Promise<(repository: string) => boolean> {
    const snap = await this.load();
    const lists = (a: RoleAssignmentRecord): boolean => role(a.role).catalog && (a.scope === '*' || !role(a.role).registryWideOnly);
    // Conditions are evaluated once for the whole listing, not once per repository name.
    const active = ctx.principal === ANONYMOUS ? [] : this.activeAssignments(snap, ctx);
    const listed = active.filter(lists).map((a) => a.scope);
    return (name) => listed.some((p) => matchesRepository(p, name)) || this.repositoryActions(snap, ctx, name, active).size > 0;
  }

  /** The role assignments that apply to the principal now (for auditing elevations in use). */
  async assignmentsFor(ctx: DecisionContext): Promise<RoleAssignmentRecord[]> {
    return this.activeAssignments(await this.load(), ctx);
  }

  /**
   * The admin rights the principal holds from a *lasting* source: the enabled bootstrap admin, or
   * registry-wide role assignments with no `expiresAt`, no access request (not a just-in-time
   * elevation) and no conditions (`sourceCidrs`, `requiredAmr`, validity window). Minting or
   * widening standing credentials needs `write` from here, so that access which ends (an
   * elevation, a network, a time window) cannot leave behind credentials that do not.
   */
  async lastingAdminRights(ctx: DecisionContext): Promise<Set<AdminAction>> {
    const snap = await this.load();
    const [kind] = ctx.principal.split(':', 1);
    if (kind === 'admin' && snap.admins.get(ctx.principal)?.enabled === true) return new Set(ADMIN_ACTIONS);
    const out = new Set<AdminAction>();
    if (ctx.principal === ANONYMOUS) return out;
    for (const a of snap.assignments.get(ctx.principal) ?? []) {
      const c = a.conditions;
      const conditioned = c !== undefined && (c.sourceCidrs !== undefined || c.requiredAmr !== undefined || c.notBefore !== undefined || c.notAfter !== undefined);
      if (a.scope !== '*' || a.expiresAt !== undefined || a.accessRequest !== undefined || conditioned) continue;
      for (const x of role(a.role).admin) out.add(x);
    }
    return out;
  }

  private repositoryActions(snap: Snapshot, ctx: DecisionContext, name: string, active?: readonly RoleAssignmentRecord[]): Set<RepositoryAction> {
    const [kind] = ctx.principal.split(':', 1);
    if (ctx.principal === ANONYMOUS) {
      return new Set(this.anonymousPull.some((p) => matchesRepository(p, name)) ? (['pull'] as const) : []);
    }
    if (kind === 'admin') return snap.admins.get(ctx.principal)?.enabled === true ? new Set(REPOSITORY_ACTIONS) : new Set();
    const out = new Set<RepositoryAction>();
    if (kind === 'token') {
      const t = snap.tokens.get(ctx.principal);
      if (t !== undefined && t.token.status === 'enabled') for (const a of scopeMapActions(t.rules, name)) out.add(a);
    }
    for (const a of active ?? this.activeAssignments(snap, ctx)) {
      if (matchesRepository(a.scope, name)) for (const x of role(a.role).repository) out.add(x);
    }
    return out;
  }

  private registryRights(snap: Snapshot, ctx: DecisionContext): { catalog: boolean; admin: Set<AdminAction> } {
    const [kind] = ctx.principal.split(':', 1);
    if (kind === 'admin' && snap.admins.get(ctx.principal)?.enabled === true) return { catalog: true, admin: new Set(ADMIN_ACTIONS) };
    const admin = new Set<AdminAction>();
    let catalog = false;
    if (ctx.principal !== ANONYMOUS) {
      for (const a of this.activeAssignments(snap, ctx)) {
        const def = role(a.role);
        // a scoped catalog lister may call the catalog (visibility() limits what it lists); a
        // control-plane role counts only registry-wide, as it can only be assigned
        catalog ||= def.catalog && (a.scope === '*' || !def.registryWideOnly);
        if (a.scope === '*') for (const x of def.admin) admin.add(x);
      }
    }
    return { catalog, admin };
  }

  private activeAssignments(snap: Snapshot, ctx: DecisionContext): RoleAssignmentRecord[] {
    return (snap.assignments.get(ctx.principal) ?? []).filter((a) => assignmentApplies(a, ctx));
  }

  private load(): Promise<Snapshot> {
    this.snapshot ??= this.read().catch((e: unknown) => {
      this.snapshot = undefined;
      throw e;
    });
    return this.snapshot;
  }

  private async read(): Promise<Snapshot> {
    const [admins, tokens, maps, assignments] = await Promise.all([
      this.store.list<AdminRecord>('admin'),
      this.store.list<TokenRecord>('token'),
      this.store.list<ScopeMapRecord>('scope-map'),
      this.store.list<RoleAssignmentRecord>('role-assignment'),
    ]);
    const mapRules = new Map(maps.map((m) => [m.value.name, scopeMapRules({ ...m.value, system: false })]));
    const snap: Snapshot = { admins: new Map(), tokens: new Map(), assignments: new Map() };
    for (const a of admins) snap.admins.set(`admin:${a.value.username}`, a.value);
    for (const t of tokens) {
      const system = systemScopeMap(t.value.scopeMap);
      const rules = system !== undefined ? scopeMapRules(system) : (mapRules.get(t.value.scopeMap) ?? []);
      snap.tokens.set(`token:${t.value.name}`, { token: t.value, rules });
    }
    for (const a of assignments) {
      const list = snap.assignments.get(a.value.principal) ?? [];
      list.push(a.value);
      snap.assignments.set(a.value.principal, list);
    }
    return snap;
  }
}

export function assignmentApplies(a: RoleAssignmentRecord, ctx: DecisionContext): boolean {
  if (a.expiresAt !== undefined && ctx.now >= a.expiresAt) return false;
  const c = a.conditions;
  if (c === undefined) return true;
  if (c.notBefore !== undefined && ctx.now < c.notBefore) return false;
  if (c.notAfter !== undefined && ctx.now >= c.notAfter) return false;
  if (c.requiredAmr !== undefined && !c.requiredAmr.every((m) => ctx.amr?.includes(m) === true)) return false;
  if (c.sourceCidrs !== undefined && !inNetworks(ctx.clientAddress, c.sourceCidrs)) return false;
  return true;
}

/** Whether `address` is in one of the CIDRs. An address that is not an IP matches nothing. */
export function inNetworks(address: string, cidrs: readonly string[]): boolean {
  const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  const family = isIP(plain);
  if (family === 0) return false;
  const list = new BlockList();
  for (const c of cidrs) {
    // Validated when written; a malformed one that got in anyway (an old record, a hand edit)
    // matches nothing instead of throwing from every decision of its principal.
    if (!isCidr(c)) continue;
    const [net, bits] = c.split('/');
    if (net === undefined || bits === undefined) continue;
    const f = isIP(net);
    if (f === 0) continue;
    list.addSubnet(net, Number(bits), f === 4 ? 'ipv4' : 'ipv6');
  }
  return list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
}

export function isCidr(c: string): boolean {
  const [net, bits, extra] = c.split('/');
  if (net === undefined || bits === undefined || extra !== undefined || !/^\d{1,3}$/.test(bits)) return false;
  const f = isIP(net);
  return f !== 0 && Number(bits) <= (f === 4 ? 32 : 128);
}
