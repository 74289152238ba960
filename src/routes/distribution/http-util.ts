/** Small helpers shared by the distribution routes: request parsing and common headers. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { clientInfo, readBounded } from '../../http/index.js';
import { finished, type Readable } from 'node:stream';
import { parseDigest, registryError, type Digest } from '../../oci/index.js';
import { isRecycling, type ByteRange } from '../../storage/index.js';
import type { OpContext } from '../../registry/index.js';

export function opContext(req: FastifyRequest): OpContext {
  return { client: clientInfo(req) };
}

export { readBounded };

/** Query parameters from the raw URL; a repeated parameter is a client error. */
export function query(req: FastifyRequest): URLSearchParams {
  const raw = req.raw.url ?? '';
  const i = raw.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : raw.slice(i + 1));
}

export function single(q: URLSearchParams, name: string): string | undefined {
  const all = q.getAll(name);
  if (all.length > 1) throw registryError('BAD_REQUEST', `query parameter ${name} given more than once`);
  return all[0];
}

export function digestParam(q: URLSearchParams, name: string): Digest | undefined {
  const v = single(q, name);
  return v === undefined ? undefined : parseDigest(v);
}

/** `n` for pagination: a non-negative integer. */
export function pageSize(q: URLSearchParams): number | undefined {
  const v = single(q, 'n');
  if (v === undefined) return undefined;
  if (!/^\d{1,9}$/.test(v)) throw registryError('BAD_REQUEST', 'n must be a non-negative integer');
  return Number(v);
}

/** Content-Length as a number, or undefined for chunked bodies. */
export function contentLength(raw: IncomingMessage): number | undefined {
  const v = raw.headers['content-length'];
  if (v === undefined) return undefined;
  if (!/^\d{1,16}$/.test(v)) throw registryError('SIZE_INVALID', 'invalid Content-Length');
  return Number(v);
}

/** Whether the request carries a body at all (Content-Length > 0 or chunked). */
export function hasBody(raw: IncomingMessage): boolean {
  const len = raw.headers['content-length'];
  return (len !== undefined && len !== '0') || raw.headers['transfer-encoding'] !== undefined;
}

/** `Content-Range: <start>-<end>` of a PATCH (spec "Pushing a blob in chunks"). */
export function contentRange(raw: IncomingMessage): ByteRange | undefined {
  const v = raw.headers['content-range'];
  if (v === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d{1,16})-(\d{1,16})(?:\/(?:\d{1,16}|\*))?$/.exec(v.trim());
  const start = Number(m?.[1]);
  const end = Number(m?.[2]);
  if (m === null || end < start) throw registryError('RANGE_INVALID', 'invalid Content-Range: expected <start>-<end>');
  return { start, end };
}

/** A single `Range: bytes=` request (RFC 9110 §14.1.2); undefined = serve everything. */
export function requestedRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (m === null) return undefined; // malformed or multi-range: ignore, serve the whole blob
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return undefined;
  const unsatisfiable = (): never => {
    throw registryError('RANGE_INVALID', 'requested range not satisfiable', { headers: { 'Content-Range': `bytes */${size}` } });
  };
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) unsatisfiable();
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  if (start >= size) unsatisfiable();
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  return end < start ? undefined : { start, end };
}

export function uploadLocation(base: string, name: string, id: string): string {
  return `${base}/v2/${name}/blobs/uploads/${id}`;
}

/** Headers every upload-session response carries (spec: Location, Range, Docker-Upload-UUID). */
export function sendUploadState(reply: FastifyReply, base: string, name: string, id: string, size: number, status: number): void {
  void reply
    .code(status)
    .header('Location', uploadLocation(base, name, id))
    .header('Range', `0-${Math.max(0, size - 1)}`)
    .header('Docker-Upload-UUID', id)
    .header('Content-Length', '0')
    .send();
}

/** A Link header for the next page (RFC 8288), as the spec's tags and catalog pagination use. */
export function nextLink(base: string, path: string, params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
  return `<${base}${path}?${q.toString()}>; rel="next"`;
}

/**
 * Send a blob body whose status and headers are set on the reply. A stream that recycles its
 * chunks (storage/file-range-stream.ts) is pumped into the socket here, handing each chunk back
 * once the socket has taken it, which keeps large pulls free of allocation and GC churn; any
 * other stream goes through fastify. Headers are final at this point: errors after it can only
 * cut the connection, as with any streamed body.
 */
export function sendBody(reply: FastifyReply, body: Readable): FastifyReply | Promise<void> {
  if (!isRecycling(body)) return reply.send(body);
  reply.hijack();
  const res = reply.raw;
  // The client may have gone while the blob was being looked up: its 'close' has fired already,
  // and writes to it would neither call back nor drain. Release the file now.
  if (res.destroyed || res.socket === null || res.socket.destroyed) {
    body.destroy();
    return Promise.resolve();
  }
  for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) res.setHeader(k, typeof v === 'number' ? String(v) : v);
  res.writeHead(reply.statusCode);
  return new Promise<void>((resolve) => {
    const onDrain = (): void => {
      body.resume();
    };
    body.on('data', (chunk: Buffer) => {
      const more = res.write(chunk, () => body.recycle(chunk));
      if (!more) {
        body.pause();
        res.once('drain', onDrain);
      }
    });
    body.once('end', () => res.end());
    body.once('error', (err) => {
      reply.log.warn({ err }, 'blob stream failed after the headers were sent; closing the connection');
      res.destroy(err);
    });
    // finished() also fires for a response that closes between the check above and here.
    finished(res, () => {
      res.off('drain', onDrain);
      if (!body.destroyed) body.destroy();
      resolve();
    });
  });
}
