/**
 * Listeners beside `listen` (`network.listeners`): each an http.Server of its own, configured like
 * fastify's (timeouts, header limit), handing its requests and parser errors to the same fastify
 * instance. Each socket is marked with its listener's kind for the network guard. They stop
 * accepting when fastify starts closing, their connections close as they fall idle, as the main
 * server's do (http/server.ts), and fastify's close waits until their last request has finished
 * (the stores close after it).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { parseListener, type Config } from '../config/index.js';
import { closeAsIdle, connectionsCheckingIntervalMs } from '../http/index.js';
import { markSocket } from './guard.js';

export interface ExtraListeners {
  /** Starts them (after fastify listens: its server must be ready to take their requests). */
  listen(): Promise<void>;
  /** the servers, for the TLS reloader */
  readonly servers: readonly Server[];
}

/** Prepares the extra listeners, HTTPS with `tls`; call before fastify is ready (this adds a hook). */
export function prepareListeners(app: FastifyInstance, config: Config, tls?: SecureContextOptions): ExtraListeners {
  const servers: Array<{ server: Server; host: string; port: number; kind: string }> = [];
  for (const spec of config.network.listeners) {
    const l = parseListener(spec);
    if (l === undefined) throw new Error(`network.listeners: "${spec}" is not private=<host:port> or public=<host:port>`);
    const options = {
      maxHeaderSize: config.http.maxHeaderBytes,
      headersTimeout: config.http.headersTimeoutMs,
      requestTimeout: 0,
      keepAliveTimeout: config.http.keepAliveTimeoutMs,
      connectionsCheckingInterval: connectionsCheckingIntervalMs(config.http.headersTimeoutMs),
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => void app.server.emit('request', req, res);
    // an https.Server is an http.Server as far as listening, closing and requests go
    const server: Server = tls === undefined ? createServer(options, handler) : createHttpsServer({ ...options, ...tls }, handler);
    server.setTimeout(config.http.idleTimeoutMs);
    // The guard looks up the socket a request came on: with TLS that is the TLSSocket of
    // 'secureConnection', not the TCP socket of 'connection' (marking that one would leave an
    // HTTPS public listener's requests unmarked, and the rules unapplied).
    if (tls === undefined) server.on('connection', (socket: Socket) => markSocket(socket, l.kind));
    else server.on('secureConnection', (socket: Socket) => markSocket(socket, l.kind));
    server.on('clientError', (err, socket) => app.server.emit('clientError', err, socket));
    servers.push({ server, ...l });
  }
  const closed: Array<Promise<void>> = [];
  app.addHook('preClose', (done) => {
    for (const { server } of servers) {
      if (!server.listening) continue;
      closed.push(new Promise<void>((resolve) => server.close(() => resolve())));
      closeAsIdle(server);
    }
    done();
  });
  // After fastify's own server has closed: wait for the extra listeners' last requests too.
  app.addHook('onClose', async () => {
    await Promise.all(closed);
  });
  return {
    servers: servers.map((s) => s.server),
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
