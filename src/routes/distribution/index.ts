import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AuthService } from '../../auth/index.js';
import type { Config } from '../../config/index.js';
import type { Registry } from '../../registry/index.js';
import { AccessGate, needOf } from './access-gate.js';
import { blobRoutes, type BlobRedirect } from './blobs.js';
import { catalogRoutes, referrersRoutes, tagsRoutes } from './listing.js';
import { manifestRoutes } from './manifests.js';
import { registerDistribution } from './router.js';
import { uploadSessionRoutes, uploadStartRoutes } from './uploads.js';

/**
 * Mount the OCI Distribution API (v1.1) under /v2. `config.urlBase` prefixes the Location and
 * Link headers: the configured external URL, or nothing (relative).
 */
export function distributionRoutes(app: FastifyInstance, registry: Registry, config: Config, auth: AuthService | undefined, redirect?: BlobRedirect): void {
  const apiBase = async (_req: unknown, reply: FastifyReply): Promise<void> => {
    void reply.code(200).header('Content-Type', 'application/json').send('{}');
  };
  const gate = auth === undefined ? undefined : new AccessGate(auth, config.externalUrl);
  registerDistribution(app, {
    base: { GET: apiBase, HEAD: apiBase },
    catalog: catalogRoutes(registry, auth, config.urlBase),
    uploadStart: uploadStartRoutes(registry, config.uploads.chunkMinLength, auth, config.urlBase),
    uploadSession: uploadSessionRoutes(registry, config.urlBase),
    blob: blobRoutes(registry, redirect),
    manifest: manifestRoutes(registry, config.limits.manifestMaxBytes, config.urlBase),
    tags: tagsRoutes(registry, config.urlBase),
    referrers: referrersRoutes(registry, config.urlBase),
  }, gate === undefined ? undefined : (req, resource, method, params) => gate.check(req, needOf(resource, method, params)));
}
