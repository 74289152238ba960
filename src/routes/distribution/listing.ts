/** `/v2/<name>/tags/list`, `/v2/_catalog` and `/v2/<name>/referrers/<digest>` (content discovery). */
import { clientAddressOf } from '../../http/index.js';
import { parseDigest, isMediaTypeString, registryError } from '../../oci/index.js';
import { REFERRERS_MEDIA_TYPE, type Registry } from '../../registry/index.js';
import { nextLink, pageSize, query, single } from './http-util.js';
import type { ResourceHandlers } from './router.js';
import type { AuthService } from '../../auth/index.js';
import { claimsOf } from './access-gate.js';

export function tagsRoutes(registry: Registry, base: string): ResourceHandlers<{ name: string }> {
  return {
    GET: async (req, reply, { name }) => {
      const q = query(req);
      const n = pageSize(q);
      const page = await registry.listing.tags(name, n, single(q, 'last'));
      if (page.next !== undefined) void reply.header('Link', nextLink(base, `/v2/${name}/tags/list`, { n: String(n ?? page.items.length), last: page.next }));
      void reply.code(200).header('Content-Type', 'application/json').send(JSON.stringify({ name, tags: page.items }));
    },
  };
}

export function catalogRoutes(registry: Registry, auth: AuthService | undefined, base: string): ResourceHandlers<Record<string, never>> {
  return {
    GET: async (req, reply) => {
      const q = query(req);
      const n = pageSize(q);
      // The catalog lists only what the caller may see (identity issue: "filtered").
      const claims = claimsOf(req);
      const visible = auth === undefined || claims === undefined ? undefined : await auth.policy.visibility({ principal: claims.sub, clientAddress: clientAddressOf(req), amr: claims.amr, now: Date.now() });
      const page = await registry.listing.catalog(n, single(q, 'last'), visible);
      if (page.next !== undefined) void reply.header('Link', nextLink(base, '/v2/_catalog', { n: String(n ?? page.items.length), last: page.next }));
      void reply.code(200).header('Content-Type', 'application/json').send(JSON.stringify({ repositories: page.items }));
    },
  };
}

export function referrersRoutes(registry: Registry, base: string): ResourceHandlers<{ name: string; digest: string }> {
  return {
    GET: async (req, reply, { name, digest }) => {
      const subject = parseDigest(digest);
      const q = query(req);
      const artifactType = single(q, 'artifactType');
      if (artifactType !== undefined && !isMediaTypeString(artifactType)) throw registryError('BAD_REQUEST', 'artifactType must be a media type');
      const last = single(q, 'last');
      const n = pageSize(q);
      const page = await registry.listing.referrers(name, subject, artifactType, last, n);
      if (artifactType !== undefined) void reply.header('OCI-Filters-Applied', 'artifactType');
      if (page.next !== undefined) {
        void reply.header('Link', nextLink(base, `/v2/${name}/referrers/${subject}`, { artifactType, n: n === undefined ? undefined : String(n), last: page.next }));
      }
      const index = { schemaVersion: 2, mediaType: REFERRERS_MEDIA_TYPE, manifests: page.items };
      // A Buffer, not a string: fastify would append "; charset=utf-8" to a string's Content-Type,
      // and the spec (and its conformance suite) require exactly the image index media type.
      void reply.code(200).header('Content-Type', REFERRERS_MEDIA_TYPE).send(Buffer.from(JSON.stringify(index)));
    },
  };
}
