/**
 * Fastify plumbing: raw bodies (routes stream them), request ids, timeouts against slow clients,
 * the one error handler, and a not-found handler in the OCI envelope.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Server } from 'node:http';
import type { SecureContextOptions } from 'node:tls';
import type { Config } from '../config/index.js';
import { handleClientError, handleError, envelope } from './error-handler.js';

/**
 * How often node sweeps connections to enforce `headersTimeout`: by default every 30 s, which
 * would let a slow-loris client hold a socket 30 s whatever the configured timeout. Also used by
 * the extra listeners (network/listeners.ts) and the gateway.
 */
export function connectionsCheckingIntervalMs(headersTimeoutMs: number): number {
  return Math.max(50, Math.min(1000, Math.floor(headersTimeoutMs / 4)));
}

/**
 * Closes a closing server's connections as they fall idle, until it has closed. close() closes
 * the connections idle at that instant only; a keep-alive connection whose in-flight request
 * finishes later would hold the process until keepAliveTimeout (past the shutdown timeout).
 * Also used by the extra listeners (network/listeners.ts) and the gateway.
 */
export function closeAsIdle(server: Server): void {
  const sweep = setInterval(() => server.closeIdleConnections(), 100);
  sweep.unref();
  server.once('close', () => clearInterval(sweep));
  server.closeIdleConnections();
}

/**
 * `tls`: serve HTTPS with these options (network/tls.ts) instead of plain HTTP. `notFound`: what
 * a request no route takes gets (default: 404 in the OCI envelope).
 */
export function createHttpServer(config: Config, tls?: SecureContextOptions, notFound?: (req: FastifyRequest, reply: FastifyReply) => void): FastifyInstance {
  const app = Fastify({
    ...(tls !== undefined ? { https: tls } : {}),
    logger: config.log.level === 'silent' ? false : { level: config.log.level },
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // Timeouts (slow-loris): headers must arrive in time; a stalled connection or body is closed.
    connectionTimeout: config.http.idleTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    requestTimeout: 0, // large uploads may legitimately take long; idle timeout covers stalls
    http: {
      headersTimeout: config.http.headersTimeoutMs,
      maxHeaderSize: config.http.maxHeaderBytes,
      connectionsCheckingInterval: connectionsCheckingIntervalMs(config.http.headersTimeoutMs),
    },
    // Parser-level and routing-level errors get the OCI envelope too, not fastify's own JSON.
    clientErrorHandler: handleClientError,
    frameworkErrors: handleError,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 1024 },
  });
  // Bodies are streams the routes consume themselves (blobs) or read with a bound (manifests).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  app.setErrorHandler(handleError);
  app.addHook('preClose', (done) => {
    closeAsIdle(app.server);
    done();
  });
  app.setNotFoundHandler(
    notFound ??
      ((req, reply) => {
        void reply.code(404).header('content-type', 'application/json; charset=utf-8');
        void reply.send(req.method === 'HEAD' ? undefined : envelope('NOT_FOUND', 'not an endpoint of this registry'));
      }),
  );
  return app;
}
