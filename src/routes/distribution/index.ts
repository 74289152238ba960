import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config } from '../../config/index.js';
import type { Registry } from '../../registry/index.js';
import { blobRoutes } from './blobs.js';
import { catalogRoutes, referrersRoutes, tagsRoutes } from './listing.js';
import { manifestRoutes } from './manifests.js';
import { registerDistribution } from './router.js';
import { uploadSessionRoutes, uploadStartRoutes } from './uploads.js';

/** Mount the OCI Distribution API (v1.1) under /v2. */
export function distributionRoutes(app: FastifyInstance, registry: Registry, config: Config): void {
  const apiBase = async (_req: unknown, reply: FastifyReply): Promise<void> => {
    void reply.code(200).header('Content-Type', 'application/json').send('{}');
  };
  registerDistribution(app, {
    base: { GET: apiBase, HEAD: apiBase },
    catalog: catalogRoutes(registry),
    uploadStart: uploadStartRoutes(registry, config.uploads.chunkMinLength),
    uploadSession: uploadSessionRoutes(registry),
    blob: blobRoutes(registry),
    manifest: manifestRoutes(registry, config.limits.manifestMaxBytes),
    tags: tagsRoutes(registry),
    referrers: referrersRoutes(registry),
  });
}
