/**
 * Composition root: wires stores, services, subscribers and routes from a validated Config.
 * Never listens; `bulwark serve` (src/cli/serve.ts) does.
 */
import type { FastifyInstance } from 'fastify';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditLog, EventBus } from './audit/index.js';
import { AuthService, CachingAuthStore, MemoryAuthStore, SqliteAuthStore, type AuthStore } from './auth/index.js';
import { parseAddress, parseListener, type Config } from './config/index.js';
import { createHttpServer } from './http/index.js';
import { Throttled, checkHealth, createRegistry, type Registry } from './registry/index.js';
import { adminRoutes, createDataEndpoint, dataEndpointKind, dataUrlRedirect, distributionRoutes, oauthRoutes } from './routes/index.js';
import { createBlobStore, createMetadataStore, type BlobStore, type MetadataStore } from './storage/index.js';
import { KeyRingSealer, Rotator, assertNotEncrypted, createEncryption, keyVaultAudit, type Encryption } from './encryption/index.js';
import type { KeyVault } from './keyvault/index.js';
import { ClientIdentities, TlsReloader, UrlSigner, readUrlSecret, installNetworkGuard, prepareListeners, readTlsFiles, serverTlsOptions, type SecureServer } from './network/index.js';

export interface App {
  readonly http: FastifyInstance;
  /** Serve on `dataEndpoint.listen` (when set), then `listen`, then every `network.listeners` address; a failure closes everything. */
  listen(): Promise<void>;
  readonly registry: Registry;
  readonly bus: EventBus;
  readonly blobs: BlobStore;
  readonly meta: MetadataStore;
  /** undefined when `encryption.enabled` is false */
  readonly encryption: Encryption | undefined;
  /** undefined when `auth.enabled` is false */
  readonly auth: AuthService | undefined;
  /** the bootstrap admin created by this start (first start of a data folder), for in-memory setups and tests */
  readonly bootstrap: { username: string; password: string } | undefined;
  /** Stop accepting requests, let in-flight ones finish, then close stores and the audit log. */
  close(): Promise<void>;
}

export interface AppDeps {
  blobs?: BlobStore;
  meta?: MetadataStore;
  authStore?: AuthStore;
  /** the key vault to use instead of the configured one */
  keyVault?: KeyVault;
}

function autoRotate(rotator: Rotator, log: FastifyInstance['log']): void {
  rotator.rotateIfBehind().then(
    (p) => {
      if (p !== undefined) log.info({ target: p.target, rewrapped: p.rewrapped, failed: p.failed, error: p.error }, 're-wrapped data keys under the current key-encryption key version');
    },
    (err: unknown) => log.error({ err }, 'failed to check or rotate the key-encryption key'),
  );
}

const BOOTSTRAP_FILE = 'bootstrap-credentials.json';

/** Write the bootstrap credential once, readable by the owner only; never to a log. */
async function writeBootstrapFile(dataDir: string, creds: { username: string; password: string }): Promise<void> {
  const path = join(dataDir, BOOTSTRAP_FILE);
  const fh = await open(path, 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
    throw new Error(`${path} exists but this data folder has no bootstrap admin: it is from another installation. Move it away and start again.`);
  });
  try {
    await fh.writeFile(`${JSON.stringify(creds, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Warnings about listener kinds that make the network rules apply to less than intended. */
function warnAboutListenerKinds(config: Config, log: { warn(m: string): void }): void {
  const n = config.network;
  const kinds = [n.listenKind, ...n.listeners.map((l) => parseListener(l)?.kind), ...(config.dataEndpoint.listen === '' ? [] : [dataEndpointKind(config)])];
  if (!kinds.includes('public') && (n.rules.length > 0 || n.publicAccess === 'Disabled')) {
    log.warn('network rules are configured but no listener is public (network.listenKind, network.listeners, dataEndpoint.kind): they apply to nothing');
  }
  if (config.dataEndpoint.listen !== '' && dataEndpointKind(config) === 'private' && kinds.includes('public') && !config.dataEndpoint.bindClientAddress) {
    log.warn('the data endpoint is private while a listener is public: a data URL obtained through the public listener works from any address for its lifetime (set dataEndpoint.kind=public or dataEndpoint.bindClientAddress=true)');
  }
}

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<App> {
  // A new data folder is the registry's alone (keys, hashes, content): owner-only.
  if (config.storage.blobDriver === 'filesystem' || config.storage.metadataDriver === 'sqlite') await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const tlsFiles = readTlsFiles(config.tls);
  // read before anything opens: a bad file stops the start with nothing to close
  const sharedSecret = config.dataEndpoint.listen === '' || config.dataEndpoint.keyFile === '' ? undefined : await readUrlSecret(config.dataEndpoint.keyFile);
  const tls = tlsFiles === undefined ? undefined : serverTlsOptions(tlsFiles);
  const http = createHttpServer(config, tls);
  const bus = new EventBus((err, e) => http.log.error({ err, event: e.type }, 'failed to deliver event'));
  // Network rules come first: before authentication and before any route (network/).
  installNetworkGuard(http, config, bus);
  const extraListeners = prepareListeners(http, config, tls);
  const tlsReloader = tlsFiles === undefined ? undefined : new TlsReloader(config.tls, tlsFiles, http.log);
  if (tlsReloader !== undefined) {
    tlsReloader.add(http.server as unknown as SecureServer);
    for (const s of extraListeners.servers) tlsReloader.add(s as unknown as SecureServer);
  } else if (config.network.allowPlainHttp) {
    http.log.warn('TLS is off and network.allowPlainHttp=true: plain HTTP may be served beyond loopback. Only behind a TLS-terminating proxy.');
  }
  const plainBlobs = deps.blobs ?? (await createBlobStore(config.storage.blobDriver, config.dataDir, { directMinBytes: config.storage.directIoMinBytes }));
  let encryption: Encryption | undefined;
  if (config.encryption.enabled) {
    encryption = await createEncryption(config, {
      audit: keyVaultAudit(bus),
      // data keys live as long as the content they open: blobs on disk or manifests in SQLite
      persistent: config.storage.blobDriver === 'filesystem' || config.storage.metadataDriver === 'sqlite',
      ...(deps.keyVault !== undefined ? { vault: deps.keyVault } : {}),
    });
  } else {
    assertNotEncrypted(config);
    http.log.warn('encryption at rest is OFF (encryption.enabled=false): blobs and manifests are stored in plaintext.');
  }
  const blobs = encryption === undefined ? plainBlobs : encryption.wrap(plainBlobs);
  const rotator = encryption === undefined ? undefined : new Rotator(encryption.keys, encryption.ring, config.encryption.identity, `${config.encryption.vault}:${config.encryption.key}`);
  await rotator?.restoreTarget();
  const plainMeta = deps.meta ?? (await createMetadataStore(config.storage.metadataDriver, config.dataDir));
  // Manifest bodies and annotations are sealed like blobs (issue 4).
  const meta = encryption === undefined ? plainMeta : encryption.wrapMeta(plainMeta);
  const audit = config.audit.file === '' ? undefined : new AuditLog(config.audit.file, bus);
  // ManifestService keeps no manifest in memory when bodies are sealed: its cache would outlive a
  // revoked key's data-key cache entry. EncryptingMetadataStore caches opened bodies itself, each
  // only as long as the data key that opened it stays cached.
  const manifestCacheTtlMs = encryption === undefined ? undefined : 0;
  const registry = createRegistry({ blobs, meta, bus, config, manifestCacheTtlMs });

  let auth: AuthService | undefined;
  let bootstrap: { username: string; password: string } | undefined;
  let authStore: AuthStore | undefined;
  if (config.auth.enabled) {
    // Cached: the per-request checks read the same few records (caching-auth-store.ts).
    authStore = new CachingAuthStore(deps.authStore ?? (config.storage.metadataDriver === 'sqlite' ? new SqliteAuthStore(join(config.dataDir, 'auth.db')) : new MemoryAuthStore()));
    auth = await AuthService.create(authStore, bus, {
      issuer: config.externalUrl,
      service: config.auth.service,
      accessTokenSeconds: config.auth.accessTokenSeconds,
      refreshTokenSeconds: config.auth.refreshTokenSeconds,
      clockSkewSeconds: config.auth.clockSkewSeconds,
      algorithm: config.auth.signingAlgorithm,
      keyRotationDays: config.auth.signingKeyRotationDays,
      anonymousPull: config.auth.anonymousPull,
      failures: { perIdentity: config.auth.failures.perIdentity, perAddress: config.auth.failures.perAddress, windowMs: config.auth.failures.windowSeconds * 1000 },
      disableAdminOnFirstOwner: config.auth.disableAdminOnFirstOwner,
      userIssuers: config.auth.oidc.userIssuers.map((pair) => {
        const i = pair.lastIndexOf('=');
        return { issuer: pair.slice(0, i), audience: pair.slice(i + 1) };
      }),
      // The token-signing private keys are sealed by the key vault like stored content (ADR 0018).
    }, encryption === undefined ? undefined : new KeyRingSealer(encryption.ring));
    if (auth.keys.deferred !== undefined) http.log.warn({ err: auth.keys.deferred }, 'token signing may fail until the key vault answers');
    const onDisk = config.storage.metadataDriver === 'sqlite';
    bootstrap = await auth.directory.ensureBootstrapAdmin(onDisk ? (creds) => writeBootstrapFile(config.dataDir, creds) : undefined);
    if (bootstrap !== undefined && onDisk) {
      http.log.warn({ file: join(config.dataDir, BOOTSTRAP_FILE), username: bootstrap.username }, 'created the bootstrap admin; its password is in the file (mode 0600). Assign an Owner and disable it.');
    }
    if ((await auth.directory.admins()).some((a) => a.enabled)) {
      http.log.warn('the bootstrap admin is enabled (compliance finding BOOTSTRAP_ADMIN_ENABLED): assign an Owner, then `bulwark admin disable`');
    }
    oauthRoutes(http, auth, new ClientIdentities(config.tls.clientIdentities));
    const ring = encryption?.ring;
    // One wrap/unwrap round trip per few seconds at most, however often health is asked for:
    // a read-only caller must not be able to load the vault (an HSM or Azure has quotas).
    const probe = new Throttled(5_000, () => ring?.health().ok === true, () =>
      (ring as NonNullable<typeof ring>).probe().catch((e: unknown) => {
        // the vault's own code and words: what an operator needs to act on
        throw new Error(ring?.health().error ?? (e instanceof Error ? e.message : String(e)));
      }),
    );
    adminRoutes(http, auth, config.externalUrl, {
      encryption: rotator === undefined || ring === undefined ? undefined : { ring, rotator },
      health: () =>
        checkHealth({
          meta,
          // the store itself: above it, the decorator would answer from data-keys.db alone
          blobs: plainBlobs,
          probeKey: ring === undefined ? undefined : () => probe.run(),
        }),
    });
  } else {
    http.log.warn('authentication is OFF (auth.enabled=false): every request is served to anyone. Never run like this outside an isolated test.');
  }
  // The dedicated data endpoint: blob GETs here redirect to signed URLs served there (ADR 0011).
  const de = config.dataEndpoint;
  const signer = de.listen === '' ? undefined : new UrlSigner({ ttlMs: de.urlTtlSeconds * 1000, rotationMs: de.keyRotationSeconds * 1000, bindClientAddress: de.bindClientAddress, ...(sharedSecret !== undefined ? { sharedSecret } : {}) });
  const dataApp = signer === undefined ? undefined : createDataEndpoint(config, registry, bus, signer, tls);
  warnAboutListenerKinds(config, http.log);
  if (dataApp !== undefined) tlsReloader?.add(dataApp.server as unknown as SecureServer);
  distributionRoutes(http, registry, config, auth, signer === undefined ? undefined : dataUrlRedirect(config, signer, bus));

  const system = { client: { address: 'internal', userAgent: 'bulwark', requestId: 'upload-purge' } };
  const purge = setInterval(() => {
    registry.blobs.purgeStaleUploads(system).catch((err: unknown) => http.log.error({ err }, 'failed to purge stale uploads'));
  }, config.uploads.purgeIntervalSeconds * 1000);
  purge.unref();
  const upkeep = setInterval(() => {
    auth?.maintain().catch((err: unknown) => http.log.error({ err }, 'failed to maintain signing keys and refresh tokens'));
  }, 3_600_000);
  upkeep.unref();
  // Elevations stop applying at expiresAt by themselves; this records the expiry and cleans up.
  const expiry = setInterval(() => {
    auth?.accessRequests.expireDue().catch((err: unknown) => http.log.error({ err }, 'failed to expire access requests'));
  }, 30_000);
  expiry.unref();

  // A new version of an unversioned KEK is adopted within rotationCheckSeconds: every data key
  // is re-wrapped under it. The same check resumes a rotation a crash interrupted.
  const rotationCheck = setInterval(() => {
    if (rotator !== undefined) autoRotate(rotator, http.log);
  }, config.encryption.rotationCheckSeconds * 1000);
  rotationCheck.unref();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(purge);
      clearInterval(upkeep);
      clearInterval(expiry);
      clearInterval(rotationCheck);
      tlsReloader?.close();
      await Promise.all([http.close(), dataApp?.close()]);
      await rotator?.stop();
      await audit?.close();
      await blobs.close();
      await encryption?.close();
      await meta.close();
      await authStore?.close();
    })());
  return {
    http,
    listen: async () => {
      try {
        // the data endpoint first: the registry must not redirect to a listener that is not there
        const dataListen = parseAddress(de.listen);
        if (dataApp !== undefined && dataListen !== undefined) await dataApp.listen({ host: dataListen.host, port: dataListen.port });
        await http.listen({ host: config.listen.host, port: config.listen.port });
        await extraListeners.listen();
      } catch (e) {
        // A listener that cannot bind (address in use) stops the whole start: nothing half-serving.
        await close();
        throw e;
      }
    },
    registry,
    bus,
    blobs,
    meta,
    encryption,
    auth,
    bootstrap,
    close,
  };
}
