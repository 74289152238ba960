/**
 * The JSON schemas of the admin API, defined once: fastify validates requests and serializes
 * responses with them, and `openapi.ts` publishes them. Objects are closed
 * (`additionalProperties: false`) so a misspelt field is an error, not a silent no-op. The
 * schemas check shape and bounds; the directory checks meaning (does the scope map exist, is
 * the CIDR valid) and reports every problem at once.
 *
 * Times are RFC 3339 strings in UTC on the wire (records keep ms since the epoch).
 */
import { ROLES, REPOSITORY_ACTIONS, ADMIN_ACTIONS, MIN_ELEVATION_SECONDS, MAX_ELEVATION_SECONDS } from '../../auth/index.js';
import type { AccessRequestRecord, FederatedCredentialRecord, RoleAssignmentRecord, RoleDefinition, ScopeMap, ServiceRecord, TokenRecord, TokenView } from '../../auth/index.js';
import { registryError } from '../../oci/index.js';

export type JsonSchema = Readonly<Record<string, unknown>>;

/** Schemas published under components/schemas by their name (see openapi.ts). */
export const schemaNames = new WeakMap<object, string>();

function named<T extends JsonSchema>(name: string, schema: T): T {
  schemaNames.set(schema, name);
  return schema;
}

export function object(properties: Record<string, JsonSchema>, required: readonly string[] = [], extra: Record<string, unknown> = {}): JsonSchema {
  return { type: 'object', properties, required: [...required], additionalProperties: false, ...extra };
}

export function array(items: JsonSchema, maxItems?: number, minItems?: number): JsonSchema {
  return { type: 'array', items, ...(minItems !== undefined ? { minItems } : {}), ...(maxItems !== undefined ? { maxItems } : {}) };
}

const str = (extra: Record<string, unknown>): JsonSchema => ({ type: 'string', ...extra });

// --- field schemas ------------------------------------------------------------------------

export const NAME = str({ pattern: '^[a-zA-Z0-9][a-zA-Z0-9-]{4,49}$', description: '5-50 letters, digits or hyphens, starting with a letter or digit' });
/** names as looked up: system scope maps start with `_` */
export const NAME_REF = str({ pattern: '^[a-zA-Z0-9_][a-zA-Z0-9_-]{0,63}$' });
export const TIME = str({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?(Z|[+-]\\d{2}:\\d{2})$', maxLength: 35, description: 'RFC 3339 date-time' });
export const DESCRIPTION = str({ maxLength: 1000 });
export const PRINCIPAL = str({ minLength: 1, maxLength: 600, description: 'service:<name>, token:<name>, admin:<name> or user:<subject>@<issuer>' });
export const ROLE = str({ enum: [...ROLES.keys()] });
export const REPOSITORY_PATTERN = str({ pattern: '^(\\*|[a-z0-9][a-z0-9._/-]*(/\\*)?)$', maxLength: 257, description: '*, a repository name, or <prefix>/*' });
export const SCOPE_MAP_ACTION = str({ pattern: '^repositories/[^\\s]+/(content/read|content/write|content/delete|metadata/read|metadata/write)$', maxLength: 300 });
export const PASSWORD_SLOT = str({ enum: ['password1', 'password2'] });
export const UUID = str({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' });
export const ACCESS_STATUS = str({ enum: ['pending', 'approved', 'denied', 'expired'] });
export const DURATION = { type: 'integer', minimum: MIN_ELEVATION_SECONDS, maximum: MAX_ELEVATION_SECONDS } as const;
export const JUSTIFICATION = str({ minLength: 10, maxLength: 1000 });

export const nameParams = object({ name: NAME_REF }, ['name']);
export const idParams = object({ id: UUID }, ['id']);

/** Milliseconds from a validated RFC 3339 string (the schema checked its shape, not the calendar). */
export function msOf(field: string, s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) throw registryError('BAD_REQUEST', `invalid ${field}: not a date`, { detail: { problems: [`${field}: not a date`] } });
  return ms;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOpt = (key: string, ms: number | undefined): Record<string, string> => (ms === undefined ? {} : { [key]: iso(ms) });

// --- views --------------------------------------------------------------------------------

export const ErrorEnvelope = named(
  'Error',
  object({ errors: array(object({ code: str({}), message: str({}), detail: {} }, ['code', 'message'])) }, ['errors']),
);

export const ScopeMapView = named('ScopeMap', object({ name: str({}), description: str({}), actions: array(str({})), system: { type: 'boolean' }, createdAt: TIME }, ['name', 'description', 'actions', 'system']));
export function scopeMapView(m: ScopeMap & { createdAt?: number }): unknown {
  return { name: m.name, description: m.description, actions: m.actions, system: m.system, ...isoOpt('createdAt', m.createdAt) };
}

const PasswordInfo = object({ name: PASSWORD_SLOT, createdAt: TIME, expiresAt: TIME }, ['name', 'createdAt']);
export const TokenViewSchema = named('Token', object({ name: str({}), scopeMap: str({}), status: str({ enum: ['enabled', 'disabled'] }), passwords: array(PasswordInfo), createdAt: TIME }, ['name', 'scopeMap', 'status', 'passwords', 'createdAt']));
export function tokenView(t: TokenView | TokenRecord): unknown {
  const passwords = t.passwords.map((p) => ({ name: p.name, createdAt: iso(p.createdAt), ...isoOpt('expiresAt', p.expiresAt) }));
  return { name: t.name, scopeMap: t.scopeMap, status: t.status, passwords, createdAt: iso(t.createdAt) };
}

export const NewPassword = named('NewPassword', object({ name: PASSWORD_SLOT, value: str({ description: 'the password, shown only in this response' }), expiresAt: TIME }, ['name', 'value']));
export const CreatedToken = named('CreatedToken', object({ token: TokenViewSchema, password: NewPassword }, ['token', 'password']));

export const ServiceView = named('ServiceIdentity', object({ name: str({}), description: str({}), createdAt: TIME }, ['name', 'description', 'createdAt']));
export function serviceView(s: ServiceRecord): unknown {
  return { name: s.name, description: s.description, createdAt: iso(s.createdAt) };
}

export const FederatedView = named('FederatedCredential', object({ name: str({}), service: str({}), issuer: str({}), subject: str({}), audience: str({}), createdAt: TIME }, ['name', 'service', 'issuer', 'subject', 'audience', 'createdAt']));
export function federatedView(f: FederatedCredentialRecord): unknown {
  return { name: f.name, service: f.service, issuer: f.issuer, subject: f.subject, audience: f.audience, createdAt: iso(f.createdAt) };
}

export const Conditions = named(
  'AssignmentConditions',
  object({ sourceCidrs: array(str({ maxLength: 43 }), 64, 1), requiredAmr: array(str({ maxLength: 32 }), 8, 1), notBefore: TIME, notAfter: TIME }),
);
export const RoleAssignmentView = named(
  'RoleAssignment',
  object(
    { id: str({}), principal: str({}), role: str({}), scope: str({}), conditions: Conditions, expiresAt: TIME, createdAt: TIME, createdBy: str({}), accessRequest: str({ description: 'the just-in-time access request that created it' }) },
    ['id', 'principal', 'role', 'scope', 'createdAt', 'createdBy'],
  ),
);
export function assignmentView(a: RoleAssignmentRecord): unknown {
  const c = a.conditions;
  const conditions = c === undefined ? undefined : { ...c, ...isoOpt('notBefore', c.notBefore), ...isoOpt('notAfter', c.notAfter) };
  return {
    id: a.id,
    principal: a.principal,
    role: a.role,
    scope: a.scope,
    ...(conditions !== undefined ? { conditions } : {}),
    ...isoOpt('expiresAt', a.expiresAt),
    createdAt: iso(a.createdAt),
    createdBy: a.createdBy,
    ...(a.accessRequest !== undefined ? { accessRequest: a.accessRequest } : {}),
  };
}

export const RoleView = named(
  'Role',
  object(
    { name: ROLE, description: str({}), repository: array(str({ enum: [...REPOSITORY_ACTIONS] })), catalog: { type: 'boolean' }, admin: array(str({ enum: [...ADMIN_ACTIONS] })), registryWideOnly: { type: 'boolean' } },
    ['name', 'description', 'repository', 'catalog', 'admin', 'registryWideOnly'],
  ),
);
export function roleView(r: RoleDefinition): unknown {
  return { name: r.name, description: r.description, repository: r.repository, catalog: r.catalog, admin: r.admin, registryWideOnly: r.registryWideOnly };
}

export const AccessRequestView = named(
  'AccessRequest',
  object(
    {
      id: str({}),
      principal: str({}),
      role: str({}),
      scope: str({}),
      durationSeconds: { type: 'integer' },
      justification: str({}),
      status: ACCESS_STATUS,
      createdAt: TIME,
      decidedAt: TIME,
      decidedBy: str({}),
      reason: str({}),
      assignment: str({ description: 'the role assignment an approval created' }),
      expiresAt: TIME,
    },
    ['id', 'principal', 'role', 'scope', 'durationSeconds', 'justification', 'status', 'createdAt'],
  ),
);
export function accessRequestView(r: AccessRequestRecord): unknown {
  return {
    ...r,
    createdAt: iso(r.createdAt),
    ...isoOpt('decidedAt', r.decidedAt),
    ...isoOpt('expiresAt', r.expiresAt),
  };
}

export const AdminStatus = named(
  'BootstrapAdminStatus',
  object({ admins: array(object({ username: str({}), enabled: { type: 'boolean' }, createdAt: TIME, disabledAt: TIME }, ['username', 'enabled', 'createdAt'])) }, ['admins']),
);

export const Finding = named(
  'Finding',
  object({ id: str({}), severity: str({ enum: ['low', 'medium', 'high', 'critical'] }), title: str({}), remediation: str({}) }, ['id', 'severity', 'title', 'remediation']),
);

/** `{items: [...]}`: a list response (an object, so that paging can be added later). */
export function listOf(item: JsonSchema): JsonSchema {
  return object({ items: array(item) }, ['items']);
}
