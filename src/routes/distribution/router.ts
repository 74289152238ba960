/**
 * Routing for `/v2/...`. Repository names contain slashes, so one catch-all route parses the raw
 * path (never percent-decoded: nothing a client sends is decoded into a name or a file path) and
 * dispatches to the handlers of one resource. Each resource file declares its methods.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { assertRepositoryName, registryError } from '../../oci/index.js';

export type Handler<P> = (req: FastifyRequest, reply: FastifyReply, params: P) => Promise<void>;
export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
export type ResourceHandlers<P> = Partial<Record<Method, Handler<P>>>;

export interface DistributionResources {
  base: ResourceHandlers<Record<string, never>>;
  catalog: ResourceHandlers<Record<string, never>>;
  uploadStart: ResourceHandlers<{ name: string }>;
  uploadSession: ResourceHandlers<{ name: string; id: string }>;
  blob: ResourceHandlers<{ name: string; digest: string }>;
  manifest: ResourceHandlers<{ name: string; reference: string }>;
  tags: ResourceHandlers<{ name: string }>;
  referrers: ResourceHandlers<{ name: string; digest: string }>;
}

type Match = { resource: keyof DistributionResources; handlers: ResourceHandlers<never>; params: Record<string, string> };

/** Runs before a handler; throws to refuse the request (auth/access-gate.ts). */
export type Guard = (req: FastifyRequest, resource: keyof DistributionResources, method: Method, params: Record<string, string>) => Promise<void>;

const PATTERNS: ReadonlyArray<[RegExp, keyof DistributionResources, readonly string[]]> = [
  [/^\/v2\/(.+)\/blobs\/uploads\/?$/, 'uploadStart', ['name']],
  [/^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, 'uploadSession', ['name', 'id']],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, 'blob', ['name', 'digest']],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, 'manifest', ['name', 'reference']],
  [/^\/v2\/(.+)\/tags\/list$/, 'tags', ['name']],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, 'referrers', ['name', 'digest']],
];

function match(resources: DistributionResources, path: string): Match {
  if (path === '/v2' || path === '/v2/') return { resource: 'base', handlers: resources.base, params: {} };
  if (path === '/v2/_catalog') return { resource: 'catalog', handlers: resources.catalog, params: {} };
  for (const [re, key, names] of PATTERNS) {
    const m = re.exec(path);
    if (m === null) continue;
    const params: Record<string, string> = {};
    names.forEach((n, i) => (params[n] = m[i + 1] ?? ''));
    assertRepositoryName(params.name ?? '');
    return { resource: key, handlers: resources[key], params };
  }
  throw registryError('NOT_FOUND', 'not an endpoint of this registry');
}

export function registerDistribution(app: FastifyInstance, resources: DistributionResources, guard?: Guard): void {
  const dispatch = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    void reply.header('Docker-Distribution-API-Version', 'registry/2.0');
    const url = req.raw.url ?? '/';
    const q = url.indexOf('?');
    const { resource, handlers, params } = match(resources, q < 0 ? url : url.slice(0, q));
    const handler = handlers[req.method as Method] as Handler<Record<string, string>> | undefined;
    if (handler === undefined) {
      void reply.header('Allow', Object.keys(handlers).join(', '));
      throw registryError('METHOD_NOT_ALLOWED');
    }
    if (guard !== undefined) await guard(req, resource, req.method as Method, params);
    await handler(req, reply, params);
  };
  const methods: Method[] = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'];
  app.route({ method: methods, url: '/v2', handler: dispatch });
  app.route({ method: methods, url: '/v2/*', handler: dispatch });
}
