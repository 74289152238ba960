/**
 * Fastify plumbing: raw bodies (routes stream them), request ids, timeouts against slow clients,
 * the one error handler, and a not-found handler in the OCI envelope.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Config } from '../config/index.js';
import { handleError, envelope } from './error-handler.js';

export function createHttpServer(config: Config): FastifyInstance {
  const app = Fastify({
    logger: config.log.level === 'silent' ? false : { level: config.log.level },
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // Timeouts (slow-loris): headers must arrive in time; a stalled connection or body is closed.
    connectionTimeout: config.http.idleTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    requestTimeout: 0, // large uploads may legitimately take long; idle timeout covers stalls
    http: { headersTimeout: config.http.headersTimeoutMs, maxHeaderSize: config.http.maxHeaderBytes },
    exposeHeadRoutes: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 1024 },
  });
  // Bodies are streams the routes consume themselves (blobs) or read with a bound (manifests).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).header('content-type', 'application/json; charset=utf-8');
    void reply.send(req.method === 'HEAD' ? undefined : envelope('NOT_FOUND', 'not an endpoint of this registry'));
  });
  return app;
}
