/**
 * Repository patterns used by scope maps, role assignment scopes and anonymous pull: `*` (every
 * repository), `<name>` (exactly that repository) or `<prefix>/*` (every repository under the
 * prefix, not the prefix itself). The name parts follow the repository grammar, so a pattern can
 * never smuggle `..`, wildcards in the middle, or look-alike characters.
 */
import { isRepositoryName } from '../oci/index.js';

export type RepositoryPattern = string;

export function isRepositoryPattern(p: string): boolean {
  if (p === '*') return true;
  if (p.endsWith('/*')) return isRepositoryName(p.slice(0, -2));
  return isRepositoryName(p);
}

export function matchesRepository(pattern: RepositoryPattern, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('/*')) return name.startsWith(pattern.slice(0, -1));
  return pattern === name;
}
