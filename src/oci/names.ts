/**
 * Repository name and tag grammars (distribution-spec v1.1, "Pulling manifests").
 */
import { registryError } from './errors.js';

// <name>: path components separated by '/', each [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
// <reference> as a tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Registries must accept at least 255 characters (host + path); we accept the name up to 255. */
export const MAX_NAME_LENGTH = 255;

export function isRepositoryName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && NAME_RE.test(s);
}

export function assertRepositoryName(s: string): void {
  if (!isRepositoryName(s)) {
    throw registryError('NAME_INVALID', 'invalid repository name', { detail: { name: s.slice(0, 300) } });
  }
}

export function isTag(s: string): boolean {
  return TAG_RE.test(s);
}
