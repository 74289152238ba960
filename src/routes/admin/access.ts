/**
 * Just-in-time access (auth/access-requests.ts): any signed-in identity may ask for a role for a
 * while; an Owner approves or denies. An identity without `registry:admin:read` sees only its own
 * requests (someone else's is answered like one that does not exist).
 */
import { allows, type AccessClaims, type AccessRequestStatus, type RoleName } from '../../auth/index.js';
import { registryError } from '../../oci/index.js';
import { endpoint, type Endpoint } from './endpoint.js';
import { ACCESS_STATUS, AccessRequestView, accessRequestView, DESCRIPTION, DURATION, idParams, JUSTIFICATION, listOf, object, PRINCIPAL, REPOSITORY_PATTERN, ROLE } from './schemas.js';

type Id = { id: string };
const TAG = 'access requests';

const seesAll = (claims: AccessClaims): boolean => allows(claims.access, 'registry', 'admin', 'read');

export const accessEndpoints: readonly Endpoint[] = [
  endpoint<undefined, Record<string, never>, { status?: AccessRequestStatus; principal?: string }>({
    id: 'listAccessRequests',
    method: 'GET',
    path: '/access-requests',
    need: 'identity',
    tag: TAG,
    summary: 'List access requests, newest first: all of them with registry:admin:read, else the caller\'s own.',
    query: object({ status: ACCESS_STATUS, principal: PRINCIPAL }),
    status: 200,
    response: listOf(AccessRequestView),
    handle: async ({ auth, claims, query }) => {
      const principal = seesAll(claims) ? query.principal : claims.sub;
      return { items: (await auth.accessRequests.list({ principal, status: query.status })).map(accessRequestView) };
    },
  }),
  endpoint<{ role: RoleName; scope: string; durationSeconds: number; justification: string }>({
    id: 'requestAccess',
    method: 'POST',
    path: '/access-requests',
    need: 'identity',
    tag: TAG,
    summary: 'Ask for a role on a scope for a while (60 s to 24 h), for the caller itself; an Owner approves or denies.',
    body: object({ role: ROLE, scope: REPOSITORY_PATTERN, durationSeconds: DURATION, justification: JUSTIFICATION }, ['role', 'scope', 'durationSeconds', 'justification']),
    status: 201,
    response: AccessRequestView,
    handle: async ({ auth, actor, body }) => accessRequestView(await auth.accessRequests.request(actor, body)),
  }),
  endpoint<undefined, Id>({
    id: 'getAccessRequest',
    method: 'GET',
    path: '/access-requests/:id',
    need: 'identity',
    tag: TAG,
    summary: 'One access request.',
    params: idParams,
    status: 200,
    response: AccessRequestView,
    handle: async ({ auth, claims, params }) => {
      const r = await auth.accessRequests.get(params.id);
      if (r === undefined || !(seesAll(claims) || r.principal === claims.sub)) throw registryError('NOT_FOUND', `no access request ${params.id}`);
      return accessRequestView(r);
    },
  }),
  endpoint<undefined, Id>({
    id: 'approveAccessRequest',
    method: 'POST',
    path: '/access-requests/:id/approve',
    need: 'access',
    tag: TAG,
    summary: 'Approve a pending request (not one\'s own): the role is assigned until now + its duration.',
    params: idParams,
    status: 200,
    response: AccessRequestView,
    handle: async ({ auth, actor, params }) => accessRequestView(await auth.accessRequests.approve(actor, params.id)),
  }),
  endpoint<{ reason?: string } | null, Id>({
    id: 'denyAccessRequest',
    method: 'POST',
    path: '/access-requests/:id/deny',
    need: 'access',
    tag: TAG,
    summary: 'Deny a pending request, optionally saying why.',
    params: idParams,
    body: object({ reason: DESCRIPTION }),
    bodyOptional: true,
    status: 200,
    response: AccessRequestView,
    handle: async ({ auth, actor, params, body }) => accessRequestView(await auth.accessRequests.deny(actor, params.id, body?.reason)),
  }),
];
