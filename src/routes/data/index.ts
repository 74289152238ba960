/**
 * The dedicated data endpoint (issue 5, item 4; ADR 0011): its own listener and host name,
 * serving blob bytes only through signed URLs (network/signed-urls.ts) that the registry endpoint
 * hands out as 307 redirects after its own access check. Anything else gets 403 `DENIED` (which a
 * gateway's health probe reads as "up"), and nothing is ever listed. The bytes are served by the
 * registry's own blob GET (Range, digests, the `blob.pull` event with the client's address).
 */
import type { FastifyInstance } from 'fastify';
import type { SecureContextOptions } from 'node:tls';
import type { EventBus } from '../../audit/index.js';
import type { Config } from '../../config/index.js';
import { clientAddressOf, clientInfo, createHttpServer, envelope } from '../../http/index.js';
import { installNetworkGuard, normalizeAddress, type UrlSigner } from '../../network/index.js';
import { isRepositoryName, registryError, type Digest } from '../../oci/index.js';
import type { Registry } from '../../registry/index.js';
import { blobRoutes, type BlobRedirect } from '../distribution/blobs.js';

const REFUSED = 'the data endpoint serves only valid signed blob URLs';
const BLOB = /^\/v2\/(.+)\/blobs\/(sha(?:256|512):[a-f0-9]+)$/;

export function createDataEndpoint(config: Config, registry: Registry, bus: EventBus, signer: UrlSigner, tls?: SecureContextOptions): FastifyInstance {
  const refuse = (): Error => registryError('DENIED', REFUSED);
  // Even what no route takes (a method fastify knows but no route lists) is refused, not 404.
  const app = createHttpServer(config, tls, (req, reply) => {
    void reply.code(403).header('content-type', 'application/json; charset=utf-8');
    void reply.send(req.method === 'HEAD' ? undefined : envelope('DENIED', REFUSED));
  });
  // The network rules apply here as on any listener, with the data endpoint's own kind.
  installNetworkGuard(app, config, bus, dataEndpointKind(config));
  const blobs = blobRoutes(registry);
  app.all('*', {
    handler: async (req, reply) => {
      const raw = req.raw.url ?? '';
      const q = raw.indexOf('?');
      const path = q < 0 ? raw : raw.slice(0, q);
      const m = BLOB.exec(path);
      if (req.method !== 'GET' || m === null) throw refuse();
      const name = m[1] ?? '';
      const digest = (m[2] ?? '') as Digest;
      if (!isRepositoryName(name)) throw refuse();
      const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
      const why = signer.verify('GET', name, digest, clientAddressOf(req), { exp: params.get('exp') ?? undefined, k: params.get('k') ?? undefined, sig: params.get('sig') ?? undefined });
      if (why !== undefined) {
        req.log.info({ reason: why }, 'refused a data URL');
        throw refuse();
      }
      await (blobs.GET as NonNullable<typeof blobs.GET>)(req, reply, { name, digest });
    },
  });
  return app;
}

/**
 * The registry endpoint's side: the signed data URL a blob GET is redirected to (307). With
 * `bindClientAddress`, a client without an IP address (a proxy hop that says `unknown`) is
 * refused rather than given a URL every such client could use.
 */
export function dataUrlRedirect(config: Config, signer: UrlSigner, bus: EventBus): BlobRedirect {
  return (req, name, digest) => {
    const client = clientAddressOf(req);
    if (config.dataEndpoint.bindClientAddress && normalizeAddress(client) === undefined) throw registryError('DENIED', 'cannot bind a data URL to a client without an IP address');
    const s = signer.sign('GET', name, digest, client);
    // every URL handed out is on record: who got a download capability for what, until when (never the signature)
    const bound = config.dataEndpoint.bindClientAddress ? `bound to ${client}` : 'not bound to a client';
    bus.emit({ type: 'blob.redirect', time: new Date().toISOString(), repository: name, digest, client: clientInfo(req), outcome: 'success', target: `data URL, key ${s.k}, expires ${new Date(Number(s.exp) * 1000).toISOString()}, ${bound}` });
    return `${config.dataEndpoint.url}/v2/${name}/blobs/${digest}?${new URLSearchParams({ exp: s.exp, k: s.k, sig: s.sig }).toString()}`;
  };
}

/** The data endpoint's listener kind: its own setting, or the registry listener's (`inherit`). */
export function dataEndpointKind(config: Config): 'private' | 'public' {
  return config.dataEndpoint.kind === 'inherit' ? config.network.listenKind : config.dataEndpoint.kind;
}
