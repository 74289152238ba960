/**
 * `bulwark gateway`: the public face of a private registry (issue 5, item 5; ADR 0012). Sites
 * (host names, each with its own certificate) share or split listening addresses; one server per
 * address picks the certificate by TLS server name and the site by Host. Pools are probed before
 * the first request is taken, so nothing is sent to a backend never seen up.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { AddressSet, parseCidr, type Cidr, TlsReloader, readTlsFiles, serverTlsOptions, GeoDatabase } from '../network/index.js';
import { closeAsIdle, connectionsCheckingIntervalMs } from '../http/index.js';
import { BackendPool } from './backends.js';
import type { GatewayConfig, SiteConfig } from './config.js';
import { handle, type GatewayLog, type Site } from './proxy.js';
import { HeaderRewriter } from './rewrite.js';
import { Waf } from './waf.js';

const LOOPBACK = new AddressSet(['127.0.0.0/8', '::1/128'].map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined));
const isLoopback = (host: string): boolean => host === 'localhost' || LOOPBACK.has(host);

export interface RunningGateway {
  /** the bound port of each site, by site name (useful when a site listens on port 0) */
  readonly ports: ReadonlyMap<string, number>;
  readonly pools: ReadonlyMap<string, BackendPool>;
  close(): Promise<void>;
}

/** The sites on one address, and the TLS contexts their names select. */
interface Listener {
  readonly key: string;
  readonly sites: Site[];
  readonly contexts: Map<string, SecureContext>;
  server?: Server;
}

function checkAddresses(config: GatewayConfig): void {
  for (const s of config.sites) {
    if (s.tls === undefined && !config.allowPlainHttp && !isLoopback(s.listen.host)) {
      throw new Error(`site ${s.name} would serve plain HTTP on ${s.listen.host}: give it tls, or set allowPlainHttp behind a TLS-terminating proxy`);
    }
    const others = config.sites.filter((o) => o.listen.host === s.listen.host && o.listen.port === s.listen.port);
    if (others.some((o) => (o.tls === undefined) !== (s.tls === undefined))) throw new Error(`sites on ${s.listen.host}:${s.listen.port} must all have tls, or none`);
  }
}

export async function startGateway(config: GatewayConfig, log: GatewayLog): Promise<RunningGateway> {
  checkAddresses(config);
  if (config.allowPlainHttp) log.warn({}, 'allowPlainHttp=true: sites without tls may serve plain HTTP beyond loopback. Only behind a TLS-terminating proxy.');
  const geo = config.waf.geoDatabase === undefined ? undefined : new GeoDatabase(config.waf.geoDatabase.file, config.waf.geoDatabase.reloadCheckSeconds, log);
  const waf = new Waf(config.waf.mode, config.waf.rules, geo === undefined ? undefined : (a) => geo.country(a));
  const pools = new Map(config.pools.map((p) => [p.name, new BackendPool(p, log)]));
  const reloaders: TlsReloader[] = [];
  const listeners = new Map<string, Listener>();
  const closeServers = (): Promise<unknown> =>
    Promise.all(
      [...listeners.values()].map(
        (l) =>
          new Promise<void>((resolve) => {
            if (l.server?.listening !== true) return resolve();
            l.server.close(() => resolve());
            closeAsIdle(l.server);
          }),
      ),
    );
  const closeAll = async (): Promise<void> => {
    await closeServers();
    for (const r of reloaders) r.close();
    geo?.close();
    await Promise.all([...pools.values()].map((p) => p.close()));
  };
  try {
    await Promise.all([...pools.values()].map((p) => p.start()));
    const ctx = {
      waf,
      rewriter: new HeaderRewriter(config.rewrites, [...config.sites.map((s) => s.publicUrl), ...config.passThroughOrigins]),
      trustedProxies: new AddressSet(config.clientAddress.trustedProxies.map((t) => parseCidr(t)).filter((c): c is Cidr => c !== undefined)),
      forwardedHeader: config.clientAddress.header,
      upstreamTimeoutMs: config.limits.upstreamTimeoutMs,
      log,
    };
    for (const s of config.sites) {
      const key = `${s.listen.host}:${s.listen.port}`;
      const l: Listener = listeners.get(key) ?? { key, sites: [], contexts: new Map() };
      const pool = pools.get(s.pool);
      if (pool === undefined) throw new Error(`site ${s.name}: no pool named ${s.pool}`);
      l.sites.push({ config: s, pool });
      listeners.set(key, l);
    }
    const ports = new Map<string, number>();
    for (const l of listeners.values()) {
      l.server = serverFor(config, l, reloaders, log);
      l.server.on('request', (req, res) => handle(ctx, l.sites, req, res));
      // Expect: 100-continue is answered only once the request has passed the WAF and found a backend
      l.server.on('checkContinue', (req, res) => handle(ctx, l.sites, req, res, true));
      const first = l.sites[0]?.config;
      if (first === undefined) continue;
      await listen(l.server, first);
      const address = l.server.address();
      for (const s of l.sites) ports.set(s.config.name, typeof address === 'object' && address !== null ? address.port : s.config.listen.port);
    }
    return {
      ports,
      pools,
      close: closeAll,
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

function listen(server: Server, site: SiteConfig): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(site.listen.port, site.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** An HTTP server, or an HTTPS one whose certificate follows the server name (SNI) and each site's files. */
function serverFor(config: GatewayConfig, l: Listener, reloaders: TlsReloader[], log: GatewayLog): Server {
  const timeouts = {
    headersTimeout: config.limits.headersTimeoutMs,
    requestTimeout: 0, // a large blob may take long; the idle timeout catches a stall
    keepAliveTimeout: 65_000,
    maxHeaderSize: config.limits.maxHeaderBytes,
    connectionsCheckingInterval: connectionsCheckingIntervalMs(config.limits.headersTimeoutMs),
  };
  let server: Server;
  const tlsSites = l.sites.filter((s) => s.config.tls !== undefined);
  if (tlsSites.length === 0) {
    server = createHttpServer(timeouts);
  } else {
    let fallback: SecureContextOptions | undefined;
    for (const site of tlsSites) {
      const tls = site.config.tls;
      if (tls === undefined) continue;
      const source = { ...tls, reloadCheckSeconds: config.tlsReloadCheckSeconds };
      const files = readTlsFiles(source, `sites.${site.config.name}.tls`);
      if (files === undefined) continue;
      const options = serverTlsOptions(files);
      fallback ??= options;
      const setFor = (o: SecureContextOptions): void => {
        const context = createSecureContext(o);
        for (const name of site.config.hostNames) l.contexts.set(name, context);
        if (site === tlsSites[0]) (server as unknown as { setSecureContext(o: SecureContextOptions): void }).setSecureContext(o);
      };
      for (const name of site.config.hostNames) l.contexts.set(name, createSecureContext(options));
      const reloader = new TlsReloader(source, files, log);
      reloader.add({ setSecureContext: setFor });
      reloaders.push(reloader);
    }
    server = createHttpsServer({
      ...timeouts,
      ...fallback,
      SNICallback: (name, cb) => cb(null, l.contexts.get(name.toLowerCase()) ?? l.contexts.get(tlsSites[0]?.config.hostNames[0] ?? '')),
    });
  }
  server.setTimeout(config.limits.idleTimeoutMs, (socket) => socket.destroy());
  return server;
}
