/**
 * Just-in-time access: an identity asks for a role on a scope for a while, with a reason; an
 * Owner (admin `access` right) approves or denies; an approved elevation is an ordinary role
 * assignment that carries `expiresAt` and the request id, so the access decision needs nothing
 * new and the elevation stops applying at `expiresAt` even if nobody sweeps.
 *
 *   pending ──approve──▶ approved ──expireDue (expiresAt reached)──▶ expired
 *      ├──deny─────────▶ denied
 *      └──expireDue (undecided for 24 h)──▶ expired
 *
 * Every step is an audit event (`access.request|approve|deny|expire`); `access.use` is emitted by
 * AuthService.issue when a granted token relies on an elevation (`elevationsUsed`). Requests are
 * records of kind `access-request`, changed with compare-and-set: two Owners deciding the same
 * request at once cannot both win.
 */
import { randomUUID } from 'node:crypto';
import type { EventBus } from '../audit/index.js';
import { isRegistryError } from '../oci/index.js';
import type { Access } from './access.js';
import { isPrincipalId, type Actor, type Directory } from './directory.js';
import { authError } from './errors.js';
import { isRepositoryPattern, matchesRepository } from './patterns.js';
import type { AccessPolicy } from './policy.js';
import type { AccessRequestRecord, RoleAssignmentRecord } from './records.js';
import { isRoleName, role, type RoleName } from './roles.js';
import type { AuthStore } from './store.js';

export const MIN_ELEVATION_SECONDS = 60;
export const MAX_ELEVATION_SECONDS = 86_400;
/** An undecided request lapses: an approval days later would grant access nobody still needs. */
const PENDING_TTL_MS = 86_400_000;
/** Decided requests are kept this long for `access list`; the audit log keeps them for good. */
const KEEP_DECIDED_MS = 30 * 86_400_000;
/** One identity cannot flood the Owners' queue. */
const MAX_PENDING_PER_PRINCIPAL = 10;

export type AccessRequestStatus = AccessRequestRecord['status'];

export interface AccessRequestInput {
  readonly role: string;
  readonly scope: string;
  readonly durationSeconds: number;
  readonly justification: string;
}

export interface AccessRequestFilter {
  readonly principal?: string | undefined;
  readonly status?: AccessRequestStatus | undefined;
}

/** An actor deciding a request: `amr` lets conditional Owner assignments (requiredAmr) apply. */
export type Approver = Actor & { readonly amr?: readonly string[] | undefined };

const SYSTEM: Actor = { principal: 'system', client: { address: 'internal', userAgent: 'bulwark', requestId: 'access-expiry' } };

export class AccessRequests {
  constructor(
    private readonly store: AuthStore,
    private readonly directory: Directory,
    private readonly policy: AccessPolicy,
    private readonly bus: EventBus,
  ) {}

  /** Create a pending request for the actor itself. Throws BAD_REQUEST listing every problem. */
  async request(actor: Actor, input: AccessRequestInput, now = Date.now()): Promise<AccessRequestRecord> {
    assertRequestInput(actor.principal, input);
    const pending = (await this.list({ principal: actor.principal, status: 'pending' })).length;
    if (pending >= MAX_PENDING_PER_PRINCIPAL) throw authError('BAD_REQUEST', `invalid access request: at most ${MAX_PENDING_PER_PRINCIPAL} pending requests per identity`);
    const rec: AccessRequestRecord = {
      id: randomUUID(),
      principal: actor.principal,
      role: input.role as RoleName,
      scope: input.scope,
      durationSeconds: input.durationSeconds,
      justification: input.justification,
      status: 'pending',
      createdAt: now,
    };
    await this.store.put('access-request', rec.id, rec, 'absent');
    this.emit('access.request', actor, rec, input.justification);
    return rec;
  }

  /**
   * Approve: assign the role until now + duration, then mark the request approved. Only an
   * identity holding admin `access` may approve, never the requester itself (four eyes).
   */
  async approve(actor: Approver, id: string, now = Date.now()): Promise<AccessRequestRecord> {
    const cur = await this.decidable(actor, id, now);
    const expiresAt = now + cur.value.durationSeconds * 1000;
    const assignment = await this.directory.assignRole(actor, { principal: cur.value.principal, role: cur.value.role, scope: cur.value.scope, expiresAt }, id);
    const rec: AccessRequestRecord = { ...cur.value, status: 'approved', decidedAt: now, decidedBy: actor.principal, assignment: assignment.id, expiresAt };
    try {
      await this.store.put('access-request', id, rec, cur.version);
    } catch (e) {
      // Someone decided it meanwhile: take back the assignment we just made.
      await this.directory.revokeAssignment(actor, assignment.id);
      throw conflictOr(e, id);
    }
    this.emit('access.approve', actor, rec, `until ${new Date(expiresAt).toISOString()}`);
    return rec;
  }

  async deny(actor: Approver, id: string, reason?: string, now = Date.now()): Promise<AccessRequestRecord> {
    const cur = await this.decidable(actor, id, now);
    const rec: AccessRequestRecord = { ...cur.value, status: 'denied', decidedAt: now, decidedBy: actor.principal, ...(reason !== undefined ? { reason } : {}) };
    try {
      await this.store.put('access-request', id, rec, cur.version);
    } catch (e) {
      throw conflictOr(e, id);
    }
    this.emit('access.deny', actor, rec, reason ?? 'denied');
    return rec;
  }

  async get(id: string): Promise<AccessRequestRecord | undefined> {
    return (await this.store.get<AccessRequestRecord>('access-request', id))?.value;
  }

  /** Newest first. */
  async list(filter: AccessRequestFilter = {}): Promise<AccessRequestRecord[]> {
    return (await this.store.list<AccessRequestRecord>('access-request'))
      .map((s) => s.value)
      .filter((r) => (filter.principal === undefined || r.principal === filter.principal) && (filter.status === undefined || r.status === filter.status))
      .sort((a, b) => b.createdAt - a.createdAt);
  }

  /**
   * Expire approved elevations whose time is up (removing their role assignment) and requests
   * left undecided for 24 h; forget decided requests after 30 days. Returns how many expired.
   * Called periodically; access itself already ends at `expiresAt` (the policy checks it).
   */
  async expireDue(now = Date.now()): Promise<number> {
    let expired = 0;
    for (const s of await this.store.list<AccessRequestRecord>('access-request')) {
      const r = s.value;
      const lapsed = r.status === 'pending' && r.createdAt + PENDING_TTL_MS <= now;
      const ended = r.status === 'approved' && r.expiresAt !== undefined && r.expiresAt <= now;
      if (lapsed || ended) {
        const rec: AccessRequestRecord = { ...r, status: 'expired' };
        try {
          await this.store.put('access-request', s.id, rec, s.version);
        } catch (e) {
          if ((e as { code?: string }).code === 'CONFLICT') continue; // decided meanwhile; next sweep
          throw e;
        }
        if (ended && r.assignment !== undefined) await this.removeAssignment(r.assignment);
        this.emit('access.expire', SYSTEM, rec, lapsed ? 'not decided within 24 h' : `ended at ${new Date(r.expiresAt ?? now).toISOString()}`);
        expired++;
      } else if ((r.status === 'denied' || r.status === 'expired') && (r.decidedAt ?? r.createdAt) + KEEP_DECIDED_MS <= now) {
        await this.store.delete('access-request', s.id, s.version).catch(() => false);
      }
    }
    return expired;
  }

  // --- internals -------------------------------------------------------------------------

  /** The pending request, after checking that `actor` may decide it. */
  private async decidable(actor: Approver, id: string, now: number): Promise<{ value: AccessRequestRecord; version: number }> {
    const granted = await this.policy.decide({ principal: actor.principal, clientAddress: actor.client.address, amr: actor.amr, now }, [{ type: 'registry', name: 'admin', actions: ['access'] }]);
    if (granted.length === 0) throw authError('DENIED', 'only an identity with the admin access right (Owner) may decide access requests');
    const cur = await this.store.get<AccessRequestRecord>('access-request', id);
    if (cur === undefined) throw authError('NOT_FOUND', `no access request ${id.slice(0, 40)}`);
    if (cur.value.principal === actor.principal) throw authError('DENIED', 'an access request cannot be decided by the identity that made it');
    if (cur.value.status !== 'pending') throw authError('BAD_REQUEST', `access request ${id} is ${cur.value.status}, not pending`);
    return cur;
  }

  private async removeAssignment(id: string): Promise<void> {
    try {
      await this.directory.revokeAssignment(SYSTEM, id);
    } catch (e) {
      if (!(isRegistryError(e) && e.code === 'NOT_FOUND')) throw e; // already revoked by hand
    }
  }

  private emit(type: 'access.request' | 'access.approve' | 'access.deny' | 'access.expire', actor: Actor, r: AccessRequestRecord, reason: string): void {
    this.bus.emit({
      type,
      time: new Date().toISOString(),
      repository: '',
      client: actor.client,
      outcome: 'success',
      principal: actor.principal,
      target: `access-request ${r.id}: ${r.role} on ${r.scope} for ${r.principal} (${r.durationSeconds} s)`,
      reason,
    });
  }
}

function conflictOr(e: unknown, id: string): unknown {
  return (e as { code?: string }).code === 'CONFLICT' ? authError('BAD_REQUEST', `access request ${id} was decided concurrently`) : e;
}

/** Validate a request, reporting every problem at once. */
export function assertRequestInput(principal: string, input: AccessRequestInput): void {
  const problems: string[] = [];
  if (!isPrincipalId(principal)) problems.push('principal: only a signed-in identity may request access');
  if (!isRoleName(input.role)) problems.push(`role: unknown role ${input.role.slice(0, 40)}`);
  else if (role(input.role).registryWideOnly && input.scope !== '*') problems.push(`scope: ${input.role} is assigned registry-wide only (scope *)`);
  if (!isRepositoryPattern(input.scope)) problems.push('scope: expected *, a repository name, or <prefix>/*');
  if (!Number.isInteger(input.durationSeconds) || input.durationSeconds < MIN_ELEVATION_SECONDS || input.durationSeconds > MAX_ELEVATION_SECONDS) {
    problems.push(`durationSeconds: an integer from ${MIN_ELEVATION_SECONDS} to ${MAX_ELEVATION_SECONDS}`);
  }
  const j = input.justification;
  // no control or format characters: the text lands in audit logs and Owners' terminals (bidi tricks)
  if (j.length < 10 || j.length > 1000 || !/^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u.test(j)) problems.push('justification: 10-1000 printable characters on one line');
  if (problems.length > 0) throw authError('BAD_REQUEST', `invalid access request: ${problems.join('; ')}`, { problems });
}

/**
 * The access requests whose elevation contributed to `granted`: an active assignment made by
 * an approval whose role grants one of the granted actions on a granted resource.
 */
export function elevationsUsed(active: readonly RoleAssignmentRecord[], granted: readonly Access[]): string[] {
  const used = new Set<string>();
  for (const a of active) {
    if (a.accessRequest === undefined) continue;
    const def = role(a.role);
    const relies = granted.some((g) => {
      if (g.type === 'repository') return matchesRepository(a.scope, g.name) && g.actions.some((x) => def.repository.includes(x));
      if (a.scope !== '*') return false;
      return g.name === 'catalog' ? def.catalog : g.actions.some((x) => def.admin.includes(x));
    });
    if (relies) used.add(a.accessRequest);
  }
  return [...used];
}
