/** Request plumbing shared by every route family: who is asking, bounded bodies. */
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { ClientInfo } from '../audit/index.js';
import { registryError } from '../oci/index.js';

/** Client addresses resolved by the network guard (network/guard.ts), by request. */
const resolved = new WeakMap<IncomingMessage, string>();

export function setClientAddress(raw: IncomingMessage, address: string): void {
  resolved.set(raw, address);
}

/**
 * The client's address: as the network guard resolved it (through trusted proxies), else the
 * socket's peer. Everything that records or decides on an address (audit, throttling, access
 * policy) asks here, never `req.ip` or a header.
 */
export function clientAddressOf(req: FastifyRequest): string {
  return resolved.get(req.raw) ?? req.ip;
}

export function clientInfo(req: FastifyRequest): ClientInfo {
  const ua = req.headers['user-agent'];
  return { address: clientAddressOf(req), userAgent: typeof ua === 'string' ? ua.slice(0, 512) : '', requestId: req.id };
}

function contentLengthOf(raw: IncomingMessage): number | undefined {
  const v = raw.headers['content-length'];
  return v === undefined || !/^\d{1,15}$/.test(v) ? undefined : Number(v);
}

/** Read a bounded body into memory (manifests). Oversized → MANIFEST_TOO_LARGE before buffering. */
export async function readBounded(raw: IncomingMessage, max: number, what: 'manifest' | 'body' = 'manifest'): Promise<Buffer> {
  const tooLarge = (): Error => (what === 'manifest' ? registryError('MANIFEST_TOO_LARGE', `manifest is larger than ${max} bytes`) : registryError('SIZE_INVALID', `request body is larger than ${max} bytes`));
  const declared = contentLengthOf(raw);
  if (declared !== undefined && declared > max) {
    raw.resume();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  // Leaving the loop early must not destroy the request: node detaches it from the socket first,
  // which leaves the rest of a chunked body unread and the keep-alive connection wedged (the 413
  // goes out, the next request on the connection never gets an answer). Drain the rest instead,
  // once the iterator has let go of the stream.
  for await (const chunk of raw.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) break;
    chunks.push(chunk);
  }
  if (size > max) {
    raw.resume();
    throw tooLarge();
  }
  return Buffer.concat(chunks, size);
}


/** The client certificate of a TLS connection, only when the handshake verified it (mutual TLS, ADR 0013). */
export function verifiedClientCertificate(req: FastifyRequest): PeerCertificate | undefined {
  const socket = req.raw.socket as Partial<TLSSocket>;
  // authorizationError too: a failed later handshake leaves `authorized` as it was (renegotiation is off, ADR 0013; belt and braces)
  if (socket.encrypted !== true || socket.authorized !== true || (socket.authorizationError ?? undefined) !== undefined || socket.getPeerCertificate === undefined) return undefined;
  const cert = socket.getPeerCertificate();
  return cert.fingerprint256 === undefined || cert.fingerprint256 === '' ? undefined : cert;
}
