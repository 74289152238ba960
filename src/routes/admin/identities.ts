/**
 * Who may do what: service identities (workloads), their federated credentials (OIDC issuer +
 * subject + audience, so CI signs in without a stored secret), the built-in roles, and role
 * assignments. Changing assignments or federation changes access itself: it needs the admin
 * `access` right (Owner).
 */
import { ROLES } from '../../auth/index.js';
import type { AssignmentConditions } from '../../auth/index.js';
import { endpoint, type Endpoint } from './endpoint.js';
import {
  assignmentView,
  Conditions,
  DESCRIPTION,
  federatedView,
  FederatedView,
  idParams,
  listOf,
  msOf,
  NAME,
  nameParams,
  object,
  PRINCIPAL,
  REPOSITORY_PATTERN,
  ROLE,
  RoleAssignmentView,
  roleView,
  RoleView,
  serviceView,
  ServiceView,
  TIME,
} from './schemas.js';

type Name = { name: string };

export const serviceEndpoints: readonly Endpoint[] = [
  endpoint({
    id: 'listServiceIdentities',
    method: 'GET',
    path: '/service-identities',
    need: 'read',
    tag: 'service identities',
    summary: 'List service identities (principals service:<name>).',
    status: 200,
    response: listOf(ServiceView),
    handle: async ({ auth }) => ({ items: (await auth.directory.listServices()).map(serviceView) }),
  }),
  endpoint<{ name: string; description?: string }>({
    id: 'createServiceIdentity',
    method: 'POST',
    path: '/service-identities',
    need: 'write',
    tag: 'service identities',
    summary: 'Create a service identity; it gets access through role assignments and signs in through federated credentials.',
    body: object({ name: NAME, description: DESCRIPTION }, ['name']),
    status: 201,
    response: ServiceView,
    handle: async ({ auth, actor, body }) => serviceView(await auth.directory.createService(actor, body)),
  }),
  endpoint<undefined, Name>({
    id: 'deleteServiceIdentity',
    method: 'DELETE',
    path: '/service-identities/:name',
    need: 'write',
    tag: 'service identities',
    summary: 'Delete a service identity, its federated credentials, its role assignments and its refresh tokens; its tokens stop working at once.',
    params: nameParams,
    status: 204,
    handle: async ({ auth, actor, params }) => {
      await auth.directory.deleteService(actor, params.name);
      await auth.revokeRefreshTokens({ sub: `service:${params.name}` }, actor);
    },
  }),
];

const URL_FIELD = { type: 'string', maxLength: 255 } as const;
const CLAIM = { type: 'string', minLength: 1, maxLength: 255 } as const;
type FederatedInput = { name: string; service: string; issuer: string; subject: string; audience: string };

export const federationEndpoints: readonly Endpoint[] = [
  endpoint({
    id: 'listFederatedCredentials',
    method: 'GET',
    path: '/federated-credentials',
    need: 'read',
    tag: 'federation',
    summary: 'List federated credentials.',
    status: 200,
    response: listOf(FederatedView),
    handle: async ({ auth }) => ({ items: (await auth.directory.listFederated()).map(federatedView) }),
  }),
  endpoint<FederatedInput>({
    id: 'addFederatedCredential',
    method: 'POST',
    path: '/federated-credentials',
    need: 'access',
    tag: 'federation',
    summary: 'Let ID tokens from an OpenID Connect issuer, with this subject and audience, sign in as a service identity.',
    body: object({ name: NAME, service: NAME, issuer: URL_FIELD, subject: CLAIM, audience: CLAIM }, ['name', 'service', 'issuer', 'subject', 'audience']),
    status: 201,
    response: FederatedView,
    handle: async ({ auth, actor, body }) => federatedView(await auth.directory.addFederated(actor, body)),
  }),
  endpoint<undefined, Name>({
    id: 'removeFederatedCredential',
    method: 'DELETE',
    path: '/federated-credentials/:name',
    need: 'access',
    tag: 'federation',
    summary: 'Remove a federated credential.',
    params: nameParams,
    status: 204,
    handle: async ({ auth, actor, params }) => auth.directory.removeFederated(actor, params.name),
  }),
];

type ConditionsInput = { sourceCidrs?: string[]; requiredAmr?: string[]; notBefore?: string; notAfter?: string };
type AssignmentInput = { principal: string; role: string; scope?: string; conditions?: ConditionsInput; expiresAt?: string };

function conditionsOf(c: ConditionsInput): AssignmentConditions {
  const notBefore = msOf('conditions.notBefore', c.notBefore);
  const notAfter = msOf('conditions.notAfter', c.notAfter);
  return {
    ...(c.sourceCidrs !== undefined ? { sourceCidrs: c.sourceCidrs } : {}),
    ...(c.requiredAmr !== undefined ? { requiredAmr: c.requiredAmr } : {}),
    ...(notBefore !== undefined ? { notBefore } : {}),
    ...(notAfter !== undefined ? { notAfter } : {}),
  };
}

export const roleEndpoints: readonly Endpoint[] = [
  endpoint({
    id: 'listRoles',
    method: 'GET',
    path: '/roles',
    need: 'read',
    tag: 'roles',
    summary: 'The built-in roles and what each grants.',
    status: 200,
    response: listOf(RoleView),
    handle: async () => ({ items: [...ROLES.values()].map(roleView) }),
  }),
  endpoint<undefined, Record<string, never>, { principal?: string }>({
    id: 'listRoleAssignments',
    method: 'GET',
    path: '/role-assignments',
    need: 'read',
    tag: 'roles',
    summary: 'List role assignments, optionally of one principal.',
    query: object({ principal: PRINCIPAL }),
    status: 200,
    response: listOf(RoleAssignmentView),
    handle: async ({ auth, query }) => ({ items: (await auth.directory.listAssignments(query.principal)).map(assignmentView) }),
  }),
  endpoint<AssignmentInput>({
    id: 'assignRole',
    method: 'POST',
    path: '/role-assignments',
    need: 'access',
    tag: 'roles',
    summary: 'Assign a role to a principal on * (registry-wide), a repository, or <prefix>/*, optionally with conditions and an end. A token, service identity or admin principal must exist.',
    body: object({ principal: PRINCIPAL, role: ROLE, scope: REPOSITORY_PATTERN, conditions: Conditions, expiresAt: TIME }, ['principal', 'role']),
    status: 201,
    response: RoleAssignmentView,
    handle: async ({ auth, actor, body }) => {
      const expiresAt = msOf('expiresAt', body.expiresAt);
      const rec = await auth.directory.assignRole(actor, {
        principal: body.principal,
        role: body.role,
        ...(body.scope !== undefined ? { scope: body.scope } : {}),
        ...(body.conditions !== undefined ? { conditions: conditionsOf(body.conditions) } : {}),
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
      return assignmentView(rec);
    },
  }),
  endpoint<undefined, { id: string }>({
    id: 'revokeRoleAssignment',
    method: 'DELETE',
    path: '/role-assignments/:id',
    need: 'access',
    tag: 'roles',
    summary: 'Revoke a role assignment; tokens issued on it stop granting it when they expire (at most auth.accessTokenSeconds).',
    params: idParams,
    status: 204,
    handle: async ({ auth, actor, params }) => auth.directory.revokeAssignment(actor, params.id),
  }),
];
