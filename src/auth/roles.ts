/**
 * Built-in roles, modelled on Azure Container Registry's (learn.microsoft.com
 * container-registry-roles and the "Containers" built-in roles): what each grants, as data.
 *
 * | role                   | repository actions                                   | registry       |
 * |------------------------|------------------------------------------------------|----------------|
 * | Owner                  | pull push delete metadata_read metadata_write        | catalog, admin read/write/access |
 * | Contributor            | pull push delete metadata_read metadata_write        | catalog, admin read/write |
 * | Reader                 | pull metadata_read                                   | catalog, admin read |
 * | AcrPull                | pull                                                 | |
 * | AcrPush                | pull push                                            | |
 * | AcrDelete              | delete                                               | |
 * | AcrImageSigner         | sign                                                 | |
 * | AcrQuarantineReader    | quarantine_read                                      | |
 * | AcrQuarantineWriter    | quarantine_read quarantine_write                     | |
 * | RepositoryReader       | pull metadata_read                                   | |
 * | RepositoryWriter       | pull push metadata_read metadata_write               | |
 * | RepositoryContributor  | pull push delete metadata_read metadata_write        | |
 * | RepositoryCatalogLister|                                                      | catalog (names in scope) |
 *
 * Owner, Contributor and Reader are control-plane roles and are assigned registry-wide; the
 * others may be limited to a repository or a prefix (ACR's ABAC repository conditions).
 * The catalog lists the repositories the caller has any right on, plus, as with ACR's Catalog
 * Lister, the names a RepositoryCatalogLister assignment covers (all of them when registry-wide).
 */
import type { AdminAction, RepositoryAction } from './access.js';

export interface RoleDefinition {
  readonly name: RoleName;
  readonly description: string;
  readonly repository: readonly RepositoryAction[];
  readonly catalog: boolean;
  readonly admin: readonly AdminAction[];
  /** control-plane roles cannot be limited to repositories */
  readonly registryWideOnly: boolean;
}

const CONTENT: readonly RepositoryAction[] = ['pull', 'push', 'delete', 'metadata_read', 'metadata_write'];

const DEFINITIONS = [
  { name: 'Owner', description: 'Everything, including who may do what.', repository: CONTENT, catalog: true, admin: ['read', 'write', 'access'], registryWideOnly: true },
  { name: 'Contributor', description: 'Everything except managing access.', repository: CONTENT, catalog: true, admin: ['read', 'write'], registryWideOnly: true },
  { name: 'Reader', description: 'Read configuration and pull.', repository: ['pull', 'metadata_read'], catalog: true, admin: ['read'], registryWideOnly: true },
  { name: 'AcrPull', description: 'Pull content.', repository: ['pull'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'AcrPush', description: 'Pull and push content.', repository: ['pull', 'push'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'AcrDelete', description: 'Delete content.', repository: ['delete'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'AcrImageSigner', description: 'Push and pull signatures (trust data).', repository: ['sign'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'AcrQuarantineReader', description: 'Pull quarantined content.', repository: ['quarantine_read'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'AcrQuarantineWriter', description: 'Pull quarantined content and change its quarantine state.', repository: ['quarantine_read', 'quarantine_write'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'RepositoryReader', description: 'Read content and metadata of the repositories in scope.', repository: ['pull', 'metadata_read'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'RepositoryWriter', description: 'Read and write content and metadata of the repositories in scope.', repository: ['pull', 'push', 'metadata_read', 'metadata_write'], catalog: false, admin: [], registryWideOnly: false },
  { name: 'RepositoryContributor', description: 'Read, write and delete in the repositories in scope.', repository: CONTENT, catalog: false, admin: [], registryWideOnly: false },
  { name: 'RepositoryCatalogLister', description: 'List the names of the repositories in scope (the catalog).', repository: [], catalog: true, admin: [], registryWideOnly: false },
] as const satisfies readonly (Omit<RoleDefinition, 'name'> & { name: string })[];

export type RoleName = (typeof DEFINITIONS)[number]['name'];

export const ROLES: ReadonlyMap<RoleName, RoleDefinition> = new Map(DEFINITIONS.map((d) => [d.name, d as RoleDefinition]));

export function isRoleName(s: string): s is RoleName {
  return ROLES.has(s as RoleName);
}

export function role(name: RoleName): RoleDefinition {
  const r = ROLES.get(name);
  if (r === undefined) throw new Error(`unknown role ${name}`);
  return r;
}
