/**
 * A minimal OCI distribution client on node:http, for black-box tests of the built server:
 * streamed request bodies (Buffers or async iterables, so gigabytes never sit in memory),
 * streamed response bodies, per-request timeouts, and the push/pull flows of the spec
 * ("Pushing blobs": monolithic POST, POST+PUT, chunked POST/PATCH/PUT; "Pushing manifests").
 * Hand-written because the tests need control a registry SDK hides (exact bytes, exact headers).
 */
import { Agent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { createHash } from 'node:crypto';

export type Body = Buffer | string | AsyncIterable<Buffer>;

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface RequestOptions {
  readonly headers?: OutgoingHttpHeaders;
  readonly body?: Body;
  /** destroy the request when no response has completed after this long */
  readonly timeoutMs?: number;
  /** receive the response body here instead of buffering it */
  readonly sink?: (chunk: Buffer) => void;
}

export class HttpStatusError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${method} ${path}: expected success, got ${status} ${body.slice(0, 500)}`);
    this.name = 'HttpStatusError';
  }
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface BlobRef {
  readonly digest: string;
  readonly size: number;
}

/** An OCI image manifest referencing `config` and `layers` (bytes as they will be stored). */
export function imageManifest(config: BlobRef, layers: readonly BlobRef[], annotations?: Record<string, string>): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: l.digest, size: l.size })),
      ...(annotations !== undefined ? { annotations } : {}),
    }),
  );
}

async function writeBody(req: ClientRequest, body: Body | undefined): Promise<void> {
  if (body === undefined) {
    req.end();
    return;
  }
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    req.end(body);
    return;
  }
  for await (const chunk of body) {
    if (req.destroyed) return;
    if (!req.write(chunk)) {
      // Wait for drain, or stop if the request dies meanwhile (server answered early, reset).
      await new Promise<void>((res) => {
        const done = (): void => {
          req.off('drain', done);
          req.off('close', done);
          res();
        };
        req.on('drain', done);
        req.on('close', done);
      });
    }
  }
  if (!req.destroyed) req.end();
}

export class OciClient {
  readonly agent: Agent;
  private readonly base: URL;

  constructor(baseUrl: string, opts: { keepAlive?: boolean; maxSockets?: number } = {}) {
    this.base = new URL(baseUrl);
    this.agent = new Agent({ keepAlive: opts.keepAlive ?? true, maxSockets: opts.maxSockets ?? 16 });
  }

  /** One request; resolves with any status. Rejects on network errors and timeouts only. */
  request(method: string, path: string, opts: RequestOptions = {}): Promise<HttpResponse> {
    const headers: OutgoingHttpHeaders = { ...opts.headers };
    if ((typeof opts.body === 'string' || Buffer.isBuffer(opts.body)) && headers['content-length'] === undefined) {
      headers['content-length'] = Buffer.byteLength(opts.body);
    }
    return new Promise<HttpResponse>((resolve, reject) => {
      let settled = false;
      let responded = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const fail = (e: Error): void => settle(() => reject(e));
      const req = httpRequest(
        { host: this.base.hostname, port: this.base.port, method, path, headers, agent: this.agent },
        (res) => {
          responded = true;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => (opts.sink !== undefined ? opts.sink(c) : chunks.push(c)));
          res.on('error', fail);
          res.on('aborted', () => fail(new Error(`${method} ${path}: response aborted`)));
          res.on('end', () => {
            settle(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
            // Answered before the whole body was sent (an early error): node would keep this socket
            // out of the pool forever, so close it and stop writing, as HTTP clients do.
            if (!req.writableFinished) req.destroy();
          });
        },
      );
      // Once a response is in, a write error on the request side (server answered early) is moot.
      req.on('error', (e) => {
        if (!responded) fail(e);
      });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          fail(new Error(`${method} ${path}: no complete response within ${opts.timeoutMs} ms`));
          req.destroy();
        }, opts.timeoutMs);
      }
      writeBody(req, opts.body).catch((e: unknown) => req.destroy(e as Error));
    });
  }

  /** A request that must answer with one of `statuses`; HttpStatusError otherwise. */
  async expect(method: string, path: string, statuses: number | readonly number[], opts: RequestOptions = {}): Promise<HttpResponse> {
    const r = await this.request(method, path, opts);
    const ok = typeof statuses === 'number' ? r.status === statuses : statuses.includes(r.status);
    if (!ok) throw new HttpStatusError(method, path, r.status, r.body.toString('utf8'));
    return r;
  }

  /** Path and query of a Location header (absolute or relative), plus extra query parameters. */
  location(r: HttpResponse, extra: Record<string, string> = {}): string {
    const loc = r.headers.location;
    if (typeof loc !== 'string') throw new Error(`response ${r.status} has no Location header`);
    return this.withQuery(loc, extra);
  }

  /** `pathOrUrl` (as a Location header gives it) as a request path with extra query parameters. */
  withQuery(pathOrUrl: string, extra: Record<string, string>): string {
    const u = new URL(pathOrUrl, this.base);
    for (const [k, v] of Object.entries(extra)) u.searchParams.set(k, v);
    return `${u.pathname}${u.search}`;
  }

  /** POST /v2/<repo>/blobs/uploads/ → the session path. */
  async startUpload(repo: string): Promise<string> {
    return this.location(await this.expect('POST', `/v2/${repo}/blobs/uploads/`, 202));
  }

  /** One PATCH with Content-Range; returns the next session path. */
  async patch(session: string, chunk: Buffer, start: number): Promise<string> {
    const r = await this.expect('PATCH', session, 202, {
      body: chunk,
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + chunk.length - 1}` },
    });
    return this.location(r);
  }

  /** Push a blob held in memory: single POST, or POST + PATCHes of `chunkSize` + PUT. */
  async pushBlob(repo: string, data: Buffer, mode: 'monolithic' | 'chunked', chunkSize = 1 << 20): Promise<BlobRef> {
    const digest = sha256(data);
    if (mode === 'monolithic') {
      await this.expect('POST', `/v2/${repo}/blobs/uploads/?digest=${digest}`, 201, {
        body: data,
        headers: { 'content-type': 'application/octet-stream' },
      });
      return { digest, size: data.length };
    }
    let session = await this.startUpload(repo);
    for (let off = 0; off < data.length; off += chunkSize) {
      session = await this.patch(session, data.subarray(off, Math.min(data.length, off + chunkSize)), off);
    }
    await this.expect('PUT', this.withQuery(session, { digest }), 201, { headers: { 'content-length': '0' } });
    return { digest, size: data.length };
  }

  async putManifest(repo: string, reference: string, body: Buffer, mediaType = OCI_MANIFEST): Promise<string> {
    const r = await this.expect('PUT', `/v2/${repo}/manifests/${reference}`, 201, { body, headers: { 'content-type': mediaType } });
    return String(r.headers['docker-content-digest']);
  }

  /** GET a blob, hashing it as it streams: never buffered. */
  async hashBlob(repo: string, digest: string, timeoutMs?: number): Promise<BlobRef & { status: number }> {
    const h = createHash('sha256');
    let size = 0;
    const r = await this.request('GET', `/v2/${repo}/blobs/${digest}`, {
      sink: (c) => {
        size += c.length;
        h.update(c);
      },
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
    return { status: r.status, digest: `sha256:${h.digest('hex')}`, size };
  }

  close(): void {
    this.agent.destroy();
  }
}
