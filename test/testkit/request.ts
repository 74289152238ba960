/**
 * One HTTP or HTTPS request as a test needs it: a fresh connection (no agent, so the local address
 * and the TLS options hold), redirects not followed, the whole body read. For what fetch cannot
 * do: choose the local address, trust a test CA, present a client certificate, set SNI apart from
 * Host.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions as HttpsOptions } from 'node:https';

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** the body as UTF-8 */
  readonly text: string;
}

export interface SendOptions {
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer | string;
  /** connect from this address (e.g. 127.0.0.2, to look like another client) */
  readonly localAddress?: string;
  readonly timeoutMs?: number;
  /** for https URLs: ca, servername, cert, key, checkServerIdentity, ... */
  readonly tls?: Pick<HttpsOptions, 'ca' | 'servername' | 'cert' | 'key' | 'checkServerIdentity'>;
}

/**
 * `url` is `http(s)://host:port` followed by the request target exactly as it is to be sent: it is
 * not parsed as a URL, which would resolve `%2e%2e`, turn `\` into `/` and so on (tests send such
 * targets on purpose).
 */
export function send(url: string, o: SendOptions = {}): Promise<Reply> {
  const m = /^(https?):\/\/(\[[^\]]+\]|[^/:]+):(\d+)(.*)$/s.exec(url);
  if (m === null) throw new Error(`not an http(s)://host:port/... URL: ${url}`);
  const secure = m[1] === 'https';
  const options = {
    host: (m[2] ?? '').replace(/^\[|\]$/g, ''),
    port: Number(m[3]),
    path: m[4] === undefined || m[4] === '' ? '/' : m[4],
    method: o.method ?? 'GET',
    headers: { ...o.headers },
    agent: false as const,
    timeout: o.timeoutMs ?? 10_000,
    ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
  };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage): void => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const body = Buffer.concat(parts);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
      res.on('error', reject);
    };
    const req = secure ? httpsRequest({ ...options, ...o.tls }, onResponse) : httpRequest(options, onResponse);
    req.on('timeout', () => req.destroy(new Error(`${options.method} ${url}: no answer within ${options.timeout} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
