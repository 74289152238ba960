/**
 * The admin API, `/api/v1`: JSON in and out, every request validated against the endpoint's
 * schema (all problems reported at once, 400 BAD_REQUEST with `detail.problems`), every call
 * authenticated and authorized by the AdminGate before its body is even read. Documented in
 * docs/openapi.yaml, generated from the same endpoint table (`bulwark openapi`).
 *
 * The app keeps request bodies raw (routes stream them); this plugin, in its own encapsulated
 * context, parses `application/json` only, bounded to 64 KiB.
 */
import { Ajv, type ErrorObject } from 'ajv';
import type { FastifyError, FastifyInstance, FastifyRequest, FastifySchema } from 'fastify';
import type { AccessClaims, AuthService } from '../../auth/index.js';
import { clientInfo, handleError } from '../../http/index.js';
import { registryError } from '../../oci/index.js';
import { accessEndpoints } from './access.js';
import type { AdminServices, Endpoint } from './endpoint.js';
import { healthEndpoints } from './health.js';
import { encryptionEndpoints } from './encryption.js';
import { AdminGate } from './gate.js';
import { federationEndpoints, roleEndpoints, serviceEndpoints } from './identities.js';
import { securityEndpoints } from './security.js';
import { scopeMapEndpoints, tokenEndpoints } from './tokens.js';

export { renderOpenApi, openApiDocument, toYaml } from './openapi.js';
export type { AdminServices, EncryptionAdmin, Endpoint, Need } from './endpoint.js';

export const API_PREFIX = '/api/v1';
const BODY_LIMIT = 64 * 1024;

export const ADMIN_ENDPOINTS: readonly Endpoint[] = [
  ...scopeMapEndpoints,
  ...tokenEndpoints,
  ...serviceEndpoints,
  ...federationEndpoints,
  ...roleEndpoints,
  ...accessEndpoints,
  ...securityEndpoints,
  ...encryptionEndpoints,
  ...healthEndpoints,
];

/** Mount the admin API (only when authentication is on: without it there is nobody to check). */
export function adminRoutes(app: FastifyInstance, auth: AuthService, externalUrl: string, services: AdminServices): void {
  void app.register(
    async (api) => {
      api.removeAllContentTypeParsers();
      api.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
        try {
          done(null, body === '' ? undefined : JSON.parse(body as string, noProto));
        } catch (e) {
          done(registryError('BAD_REQUEST', `invalid JSON body: ${(e as Error).message.slice(0, 200)}`), undefined);
        }
      });
      // Strict: no coercion, no defaults, no silently dropped fields; every problem reported.
      const ajv = new Ajv({ allErrors: true, coerceTypes: false, useDefaults: false, removeAdditional: false, allowUnionTypes: true, strict: true });
      api.setValidatorCompiler(({ schema }) => ajv.compile(schema));
      api.setSchemaErrorFormatter((errors, part) => {
        const problems = errors.map((e) => problem(e as ErrorObject, part));
        return registryError('BAD_REQUEST', `invalid ${part}: ${problems.join('; ')}`, { detail: { problems } });
      });
      // fastify's own body errors, in words that fit this API; then the one error handler
      api.setErrorHandler((err: FastifyError, req, reply) => handleError(bodyError(err) ?? err, req, reply));
      const gate = new AdminGate(auth, externalUrl);
      for (const e of ADMIN_ENDPOINTS) mount(api, e, gate, auth, services);
    },
    { prefix: API_PREFIX },
  );
}

const verified = new WeakMap<FastifyRequest, AccessClaims>();

function mount(api: FastifyInstance, e: Endpoint, gate: AdminGate, auth: AuthService, services: AdminServices): void {
  const body = e.body === undefined ? undefined : e.bodyOptional === true ? { ...e.body, type: ['object', 'null'] } : e.body;
  const schema: FastifySchema = {
    ...(e.params !== undefined ? { params: e.params } : {}),
    ...(e.query !== undefined ? { querystring: e.query } : {}),
    ...(body !== undefined ? { body } : {}),
    ...(e.response !== undefined ? { response: { [e.status]: e.response } } : {}),
  };
  api.route({
    method: e.method,
    url: e.path,
    schema,
    // before the body is read: an unauthenticated caller costs no parsing and learns no schema
    onRequest: async (req) => {
      verified.set(req, await gate.check(req, e.need));
    },
    handler: async (req, reply) => {
      const claims = verified.get(req);
      if (claims === undefined) throw registryError('UNAUTHORIZED', 'authentication required');
      const actor = { principal: claims.sub, client: clientInfo(req), amr: claims.amr };
      const result = await e.handle({ body: req.body, params: req.params, query: req.query, claims, actor, auth, encryption: services.encryption, health: services.health });
      void reply.code(e.status).header('Cache-Control', 'no-store');
      return e.status === 204 ? reply.send() : result;
    },
  });
}

function bodyError(err: { code?: string }): Error | undefined {
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return registryError('SIZE_INVALID', `request body is larger than ${BODY_LIMIT} bytes`);
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return registryError('UNSUPPORTED', 'the admin API takes application/json bodies');
  return undefined;
}

/** A JSON reviver refusing `__proto__` keys (prototype poisoning of later object merges). */
function noProto(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new Error('__proto__ is not allowed');
  return value;
}

/** One ajv error as `<part>.<path>: <what is wrong>`. */
function problem(e: ErrorObject, part: string): string {
  const path = part + e.instancePath.replace(/\/(\d+)(?=\/|$)/g, '[$1]').replace(/\//g, '.');
  const p = e.params as { missingProperty?: string; additionalProperty?: string; allowedValues?: unknown[] };
  if (e.keyword === 'required') return `${path}.${p.missingProperty ?? '?'}: required`;
  if (e.keyword === 'additionalProperties') return `${path}.${p.additionalProperty ?? '?'}: unknown field`;
  if (e.keyword === 'enum') return `${path}: must be one of ${(p.allowedValues ?? []).join(', ')}`;
  return `${path}: ${e.message ?? 'invalid'}`;
}
