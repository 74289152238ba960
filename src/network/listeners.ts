/**
 * Listeners beside `listen` (`network.listeners`): each an http.Server of its own, configured like
 * fastify's (timeouts, header limit), handing its requests and parser errors to the same fastify
 * instance. Each socket is marked with its listener's kind for the network guard. They stop
 * accepting when fastify starts closing, their connections close as they fall idle, as the main
 * server's do (http/server.ts), and fastify's close waits until their last request has finished
 * (the stores close after it).
 */
import { createServer, type Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { parseListener, type Config } from '../config/index.js';
import { markSocket } from './guard.js';

export interface ExtraListeners {
  /** Starts them (after fastify listens: its server must be ready to take their requests). */
  listen(): Promise<void>;
}

/** Prepares the extra listeners; call before fastify is ready (this adds a hook). */
export function prepareListeners(app: FastifyInstance, config: Config): ExtraListeners {
  const servers: Array<{ server: Server; host: string; port: number; kind: string }> = [];
  for (const spec of config.network.listeners) {
    const l = parseListener(spec);
    if (l === undefined) throw new Error(`network.listeners: "${spec}" is not private=<host:port> or public=<host:port>`);
    const server = createServer(
      {
        maxHeaderSize: config.http.maxHeaderBytes,
        headersTimeout: config.http.headersTimeoutMs,
        requestTimeout: 0,
        keepAliveTimeout: config.http.keepAliveTimeoutMs,
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(config.http.headersTimeoutMs / 4))),
      },
      (req, res) => app.server.emit('request', req, res),
    );
    server.setTimeout(config.http.idleTimeoutMs);
    server.on('connection', (socket) => markSocket(socket, l.kind));
    server.on('clientError', (err, socket) => app.server.emit('clientError', err, socket));
    servers.push({ server, ...l });
  }
  const closed: Array<Promise<void>> = [];
  app.addHook('preClose', (done) => {
    for (const { server } of servers) {
      if (!server.listening) continue;
      const sweep = setInterval(() => server.closeIdleConnections(), 100);
      sweep.unref();
      closed.push(
        new Promise<void>((resolve) =>
          server.close(() => {
            clearInterval(sweep);
            resolve();
          }),
        ),
      );
      server.closeIdleConnections();
    }
    done();
  });
  // After fastify's own server has closed: wait for the extra listeners' last requests too.
  app.addHook('onClose', async () => {
    await Promise.all(closed);
  });
  return {
    listen: async () => {
      for (const { server, host, port, kind } of servers) {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        server.on('error', (err) => app.log.error({ err, listen: `${host}:${port}` }, 'listener failed'));
        app.log.info({ listen: `${host}:${port}`, kind }, 'listening');
      }
    },
  };
}
