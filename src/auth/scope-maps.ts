/**
 * Scope maps, as Azure Container Registry models them for repository-scoped tokens: a named list
 * of `repositories/<pattern>/<action>` entries with the actions `content/read`,
 * `content/write`, `content/delete`, `metadata/read` and `metadata/write`. `<pattern>` is a
 * repository name, `<prefix>/*` or `*` (patterns.ts). The system scope maps (names starting with
 * `_`) are built in and cannot be changed.
 */
import type { RepositoryAction } from './access.js';
import { authError } from './errors.js';
import { isRepositoryPattern, matchesRepository, type RepositoryPattern } from './patterns.js';

export const SCOPE_MAP_ACTIONS = {
  'content/read': 'pull',
  'content/write': 'push',
  'content/delete': 'delete',
  'metadata/read': 'metadata_read',
  'metadata/write': 'metadata_write',
} as const satisfies Record<string, RepositoryAction>;
export type ScopeMapAction = keyof typeof SCOPE_MAP_ACTIONS;

export interface ScopeMap {
  readonly name: string;
  readonly description: string;
  readonly actions: readonly string[];
  readonly system: boolean;
}

export interface ScopeRule {
  readonly pattern: RepositoryPattern;
  readonly action: RepositoryAction;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9-]{4,49}$/;
export const MAX_SCOPE_MAP_ACTIONS = 500;

export const SYSTEM_SCOPE_MAPS: readonly ScopeMap[] = [
  { name: '_repositories_pull', description: 'Read all repositories.', actions: ['repositories/*/content/read'], system: true },
  { name: '_repositories_pull_metadata_read', description: 'Read content and metadata of all repositories.', actions: ['repositories/*/content/read', 'repositories/*/metadata/read'], system: true },
  { name: '_repositories_push', description: 'Read and write all repositories.', actions: ['repositories/*/content/read', 'repositories/*/content/write'], system: true },
  {
    name: '_repositories_push_metadata_write',
    description: 'Read and write content and metadata of all repositories.',
    actions: ['repositories/*/content/read', 'repositories/*/content/write', 'repositories/*/metadata/read', 'repositories/*/metadata/write'],
    system: true,
  },
  {
    name: '_repositories_admin',
    description: 'Read, write and delete in all repositories.',
    actions: ['repositories/*/content/read', 'repositories/*/content/write', 'repositories/*/content/delete', 'repositories/*/metadata/read', 'repositories/*/metadata/write'],
    system: true,
  },
];

export function systemScopeMap(name: string): ScopeMap | undefined {
  return SYSTEM_SCOPE_MAPS.find((m) => m.name === name);
}

export function parseScopeMapAction(entry: string): ScopeRule | undefined {
  const m = /^repositories\/(.+)\/(content\/read|content\/write|content\/delete|metadata\/read|metadata\/write)$/.exec(entry);
  if (m === null) return undefined;
  const pattern = m[1] ?? '';
  if (!isRepositoryPattern(pattern)) return undefined;
  return { pattern, action: SCOPE_MAP_ACTIONS[m[2] as ScopeMapAction] };
}

/** Validate a user-defined scope map, reporting every bad field at once. */
export function assertScopeMapInput(name: string, actions: readonly string[]): ScopeRule[] {
  const problems: string[] = [];
  if (!NAME_RE.test(name)) problems.push('name: 5-50 letters, digits or hyphens, starting with a letter or digit');
  if (actions.length === 0) problems.push('actions: at least one');
  if (actions.length > MAX_SCOPE_MAP_ACTIONS) problems.push(`actions: at most ${MAX_SCOPE_MAP_ACTIONS}`);
  const rules: ScopeRule[] = [];
  actions.forEach((a, i) => {
    const r = parseScopeMapAction(a);
    if (r === undefined) problems.push(`actions[${i}]: expected repositories/<name, prefix/* or *>/<content|metadata>/<read|write|delete>`);
    else rules.push(r);
  });
  if (problems.length > 0) throw authError('BAD_REQUEST', `invalid scope map: ${problems.join('; ')}`, { problems });
  return rules;
}

export function scopeMapRules(map: ScopeMap): ScopeRule[] {
  return map.actions.flatMap((a) => {
    const r = parseScopeMapAction(a);
    return r === undefined ? [] : [r];
  });
}

/** Actions a scope map grants on one repository. */
export function scopeMapActions(rules: readonly ScopeRule[], repository: string): Set<RepositoryAction> {
  const out = new Set<RepositoryAction>();
  for (const r of rules) if (matchesRepository(r.pattern, repository)) out.add(r.action);
  return out;
}
