/**
 * What a request may do, in the vocabulary of the Docker token spec ("Token Scope
 * Documentation"): a scope string `repository:<name>:<action>[,<action>...]` asks for actions on
 * one resource; a token's `access` claim lists what was granted, in the same shape.
 *
 * Repository actions follow Azure Container Registry: `pull`, `push`, `delete` (content/read,
 * content/write, content/delete) and `metadata_read`, `metadata_write`; `sign`,
 * `quarantine_read` and `quarantine_write` belong to the roles of the same names. Registry-wide
 * actions are on `registry:catalog` (`*`: list repositories) and `registry:admin` (`read`,
 * `write`, `access`: the admin API; `access` manages who may do what).
 */
import { isRepositoryName } from '../oci/index.js';
import { authError } from './errors.js';

export const REPOSITORY_ACTIONS = ['pull', 'push', 'delete', 'metadata_read', 'metadata_write', 'sign', 'quarantine_read', 'quarantine_write'] as const;
export type RepositoryAction = (typeof REPOSITORY_ACTIONS)[number];

export const ADMIN_ACTIONS = ['read', 'write', 'access'] as const;
export type AdminAction = (typeof ADMIN_ACTIONS)[number];

export type Access =
  | { readonly type: 'repository'; readonly name: string; readonly actions: readonly RepositoryAction[] }
  | { readonly type: 'registry'; readonly name: 'catalog'; readonly actions: readonly ['*'] | readonly [] }
  | { readonly type: 'registry'; readonly name: 'admin'; readonly actions: readonly AdminAction[] };

/** Longest scope string accepted: a 255-character name plus type and actions, with room to spare. */
const MAX_SCOPE_LENGTH = 512;
/** Scopes one token request may ask for (docker asks for 1-3). */
export const MAX_SCOPES = 32;

const isRepositoryAction = (a: string): a is RepositoryAction => (REPOSITORY_ACTIONS as readonly string[]).includes(a);
const isAdminAction = (a: string): a is AdminAction => (ADMIN_ACTIONS as readonly string[]).includes(a);

/**
 * Parse one scope string. Attacker-controlled: anything outside the grammar (unknown type or
 * action, a name outside the repository grammar, `*` in a name, control or non-ASCII characters)
 * is refused with BAD_REQUEST rather than ignored, so that a client learns its request is wrong.
 */
export function parseScope(scope: string): Access {
  const bad = (why: string): never => {
    throw authError('BAD_REQUEST', `invalid scope: ${why}`, { scope: scope.slice(0, 100) });
  };
  if (scope.length > MAX_SCOPE_LENGTH) bad('too long');
  if (!/^[\x21-\x7e]+$/.test(scope)) bad('only printable ASCII without spaces is allowed');
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) bad('expected <type>:<name>:<actions>');
  const type = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  const actions = scope.slice(last + 1).split(',').filter((a) => a !== '');
  if (actions.length === 0) bad('no actions');
  if (type === 'repository') {
    if (!isRepositoryName(name)) bad('repository name does not match the grammar');
    const expanded = actions.includes('*') ? [...REPOSITORY_ACTIONS] : actions;
    const unknown = expanded.filter((a) => !isRepositoryAction(a));
    if (unknown.length > 0) bad(`unknown action ${unknown[0]?.slice(0, 30)}`);
    return { type, name, actions: unique(expanded as RepositoryAction[]) };
  }
  if (type === 'registry' && name === 'catalog') {
    if (actions.some((a) => a !== '*')) bad('registry:catalog takes the action *');
    return { type, name, actions: ['*'] };
  }
  if (type === 'registry' && name === 'admin') {
    const expanded = actions.includes('*') ? [...ADMIN_ACTIONS] : actions;
    const unknown = expanded.filter((a) => !isAdminAction(a));
    if (unknown.length > 0) bad(`unknown action ${unknown[0]?.slice(0, 30)}`);
    return { type, name, actions: unique(expanded as AdminAction[]) };
  }
  return bad('unknown resource type or name');
}

/** `scope` parameters as sent (each may hold several space-separated scopes), parsed and merged. */
export function parseScopes(raw: readonly string[]): Access[] {
  const parts = raw.flatMap((s) => s.split(' ')).filter((s) => s !== '');
  if (parts.length > MAX_SCOPES) throw authError('BAD_REQUEST', `at most ${MAX_SCOPES} scopes per request`);
  return mergeAccess(parts.map(parseScope));
}

export function formatScope(a: Access): string {
  return `${a.type}:${a.name}:${a.actions.join(',')}`;
}

/** Merge entries for the same resource; drop entries with no actions. Order of first appearance. */
export function mergeAccess(list: readonly Access[]): Access[] {
  const byKey = new Map<string, Access>();
  for (const a of list) {
    const key = `${a.type}:${a.name}`;
    const prev = byKey.get(key);
    byKey.set(key, prev === undefined ? a : ({ ...a, actions: unique([...prev.actions, ...a.actions]) } as Access));
  }
  return [...byKey.values()].filter((a) => a.actions.length > 0);
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

/** Whether `granted` (a token's access claim) allows `action` on the resource. */
export function allows(granted: readonly Access[], type: Access['type'], name: string, action: string): boolean {
  return granted.some((g) => g.type === type && g.name === name && (g.actions as readonly string[]).includes(action));
}
