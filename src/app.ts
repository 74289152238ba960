/**
 * Composition root: wires stores, services, subscribers and routes from a validated Config.
 * Never listens; `bulwark serve` (src/cli/serve.ts) does.
 */
import type { FastifyInstance } from 'fastify';
import { AuditLog, EventBus } from './audit/index.js';
import type { Config } from './config/index.js';
import { createHttpServer } from './http/index.js';
import { createRegistry, type Registry } from './registry/index.js';
import { distributionRoutes } from './routes/index.js';
import { createBlobStore, createMetadataStore, type BlobStore, type MetadataStore } from './storage/index.js';

export interface App {
  readonly http: FastifyInstance;
  readonly registry: Registry;
  readonly bus: EventBus;
  readonly blobs: BlobStore;
  readonly meta: MetadataStore;
  /** Stop accepting requests, let in-flight ones finish, then close stores and the audit log. */
  close(): Promise<void>;
}

export interface AppDeps {
  blobs?: BlobStore;
  meta?: MetadataStore;
}

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<App> {
  const blobs = deps.blobs ?? (await createBlobStore(config.storage.blobDriver, config.dataDir));
  const meta = deps.meta ?? (await createMetadataStore(config.storage.metadataDriver, config.dataDir));
  const http = createHttpServer(config);
  const bus = new EventBus((err, e) => http.log.error({ err, event: e.type }, 'failed to deliver event'));
  const audit = config.audit.file === '' ? undefined : new AuditLog(config.audit.file, bus);
  const registry = createRegistry({ blobs, meta, bus, config });
  distributionRoutes(http, registry, config);

  const system = { client: { address: 'internal', userAgent: 'bulwark', requestId: 'upload-purge' } };
  const purge = setInterval(() => {
    registry.blobs.purgeStaleUploads(system).catch((err: unknown) => http.log.error({ err }, 'failed to purge stale uploads'));
  }, config.uploads.purgeIntervalSeconds * 1000);
  purge.unref();

  let closing: Promise<void> | undefined;
  return {
    http,
    registry,
    bus,
    blobs,
    meta,
    close: () =>
      (closing ??= (async () => {
        clearInterval(purge);
        await http.close();
        await audit?.close();
        await blobs.close();
        await meta.close();
      })()),
  };
}
