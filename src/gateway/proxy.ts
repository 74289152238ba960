/**
 * One request through the gateway: which site it is for (Host header, agreeing with the TLS server
 * name), who sent it (the socket, or a trusted proxy's forwarding header), what the firewall says,
 * then a streaming exchange with a healthy backend of the site's pool. Bodies are piped both ways
 * with backpressure and never buffered; only the response headers that carry URLs are rewritten.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { clientAddress, type ForwardedHeader, type AddressSet } from '../network/index.js';
import { describeError, type ErrorCode } from '../oci/index.js';
import { envelope } from '../http/index.js';
import type { Backend, BackendPool } from './backends.js';
import type { SiteConfig } from './config.js';
import type { HeaderRewriter, Rewritten } from './rewrite.js';
import { canonicalTarget } from './target.js';
import { headerElements } from './http1.js';
import type { UpstreamRequest } from './upstream.js';
import type { Waf, WafVerdict } from './waf.js';

export interface GatewayLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

export interface Site {
  readonly config: SiteConfig;
  readonly pool: BackendPool;
}

export interface ProxyContext {
  readonly waf: Waf;
  readonly rewriter: HeaderRewriter;
  readonly trustedProxies: AddressSet;
  readonly forwardedHeader: ForwardedHeader;
  readonly upstreamTimeoutMs: number;
  readonly log: GatewayLog;
}

/** RFC 9110 §7.6.1: connection-specific, never forwarded; plus the forwarding headers only the gateway writes. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);
const FORWARDING = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip'];

function send(res: ServerResponse, method: string | undefined, code: ErrorCode, message: string, headers: OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = envelope(code, message);
  // the connection closes after a refusal: a body the client may still be sending is not read
  res.writeHead(describeError(code).httpStatus, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close', ...headers });
  res.end(method === 'HEAD' ? undefined : body);
}

/** Headers minus the hop-by-hop ones, and minus those the `Connection` header names. */
function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[]>): OutgoingHttpHeaders {
  const named = new Set(headerElements(headers.connection));
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k) && !named.has(k)) out[k] = v;
  return out;
}

const hostOf = (h: string | undefined): string => (h ?? '').toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
/** Attacker-controlled; shown back only as far as it looks like a host name. */
const printable = (s: string): string => s.replace(/[^a-z0-9.:[\]-]/g, '?').slice(0, 100);

/**
 * The site a request is for: its Host names it; over TLS, the server name it asked for must name
 * the same site, and a client that sent none (it got the address's default certificate) may only
 * reach the site that certificate is for. Anything else is domain fronting, or a mistake.
 */
export function siteFor(sites: readonly Site[], req: IncomingMessage): Site | undefined {
  const host = hostOf(req.headers.host);
  const site = sites.find((s) => s.config.hostNames.includes(host));
  const socket = req.socket as Partial<TLSSocket>;
  if (site === undefined || socket.encrypted !== true) return site;
  const sni = typeof socket.servername === 'string' ? socket.servername.toLowerCase() : '';
  if (sni === '') return site === sites.find((s) => s.config.tls !== undefined) ? site : undefined;
  return site.config.hostNames.includes(sni) ? site : undefined;
}

function headerBytes(req: IncomingMessage): number {
  let n = 0;
  for (const h of req.rawHeaders) n += h.length + 2;
  return n;
}

/** `expectContinue`: the request came through `checkContinue`; 100 Continue is sent only once it is on its way upstream. */
export function handle(ctx: ProxyContext, sites: readonly Site[], req: IncomingMessage, res: ServerResponse, expectContinue = false): void {
  const site = siteFor(sites, req);
  if (site === undefined) {
    send(res, req.method, 'MISDIRECTED', `this gateway serves no site named ${printable(hostOf(req.headers.host))} here`);
    return;
  }
  const target = req.url ?? '';
  const canonical = canonicalTarget(target);
  if ('problem' in canonical) {
    send(res, req.method, 'BAD_REQUEST', canonical.problem);
    return;
  }
  const client = clientAddress(req.socket.remoteAddress, req.headers, ctx.trustedProxies, ctx.forwardedHeader);
  const method = req.method ?? 'GET';
  const verdict = ctx.waf.evaluate({ method, path: canonical.path, urlBytes: target.length, headerBytes: headerBytes(req), client: client.address });
  if ((verdict.blocked || verdict.matches.length > 0) && refuse(ctx, verdict, site, req, res, { method, path: canonical.path, client: client.raw })) return;
  const backend = site.pool.pick();
  if (backend === undefined) {
    send(res, method, 'UNAVAILABLE', 'no backend of this site is healthy; retry later', { 'retry-after': '5' });
    return;
  }
  const headers = endToEnd(req.headers);
  for (const h of FORWARDING) delete headers[h];
  delete headers.expect;
  // One hop, the client as resolved here: the upstream trusts the gateway, and a client's own header never reaches it.
  headers['x-forwarded-for'] = client.address ?? 'unknown';
  // A body without a length (chunked, now decoded) goes on chunked: sent without framing, on a
  // kept-alive connection, it would be read upstream as the next request (smuggling past the WAF).
  let body: { source: IncomingMessage; length?: number } | undefined;
  if (req.headers['transfer-encoding'] !== undefined) {
    headers['transfer-encoding'] = 'chunked';
    delete headers['content-length'];
    body = { source: req };
  } else if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') {
    body = { source: req, length: Number(req.headers['content-length']) };
  }
  exchange(ctx, { site: site.config.name, backend, method, path: canonical.path }, req, res, { method, target, headers, timeoutMs: ctx.upstreamTimeoutMs, ...(body !== undefined ? { body } : {}) });
  if (expectContinue) res.writeContinue();
}

/** Streams the request body up and the response down; every failure ends both sides. */
function exchange(ctx: ProxyContext, what: { site: string; backend: Backend; method: string; path: string }, req: IncomingMessage, res: ServerResponse, up: UpstreamRequest): void {
  const ex = what.backend.exchange(up, {
    response: (status, upHeaders) => {
      const headers = rewritten(ctx.rewriter, upHeaders);
      if ('leak' in headers) {
        ctx.log.error({ site: what.site, backend: what.backend.label, header: headers.header, origin: headers.leak }, 'the backend named a host no rewrite covers; refused to pass it on (add a rewrite or passThroughOrigins)');
        send(res, what.method, 'BAD_GATEWAY', 'the registry behind this gateway gave an answer that cannot be passed on');
        return undefined;
      }
      res.writeHead(status, headers.value);
      return res;
    },
    fail: (err, answered) => {
      ctx.log.warn({ err, site: what.site, backend: what.backend.label, method: what.method, path: what.path.slice(0, 200) }, answered ? 'failed to pass on the backend\'s answer' : 'failed to get an answer from the backend');
      if (!res.headersSent) send(res, what.method, 'BAD_GATEWAY', 'the registry behind this gateway did not answer');
      else res.destroy();
    },
  });
  // the client went away: the backend's connection goes too (it is mid-exchange, never reused)
  res.on('close', () => {
    if (!res.writableFinished) ex.abort();
  });
  req.on('close', () => {
    if (!req.complete) ex.abort();
  });
}

function rewritten(rewriter: HeaderRewriter, headers: Record<string, string | string[]>): { value: OutgoingHttpHeaders } | { leak: string; header: string } {
  const out: Record<string, number | string | string[] | undefined> = endToEnd(headers);
  const one = (name: string, r: Rewritten): string | { leak: string; header: string } => ('leak' in r ? { leak: r.leak, header: name } : r.value);
  for (const name of ['location', 'www-authenticate', 'link'] as const) {
    const v = out[name];
    if (v === undefined) continue;
    const rewrite = (x: string): Rewritten => (name === 'location' ? rewriter.location(x) : name === 'link' ? rewriter.link(x) : rewriter.wwwAuthenticate(x));
    const values = (Array.isArray(v) ? v : [String(v)]).map((x) => one(name, rewrite(x)));
    const leak = values.find((x): x is { leak: string; header: string } => typeof x !== 'string');
    if (leak !== undefined) return leak;
    const strings = values.filter((x): x is string => typeof x === 'string');
    out[name] = Array.isArray(v) ? strings : strings[0];
  }
  return { value: out };
}

/** Logs the rules that matched; answers and returns true when one blocks the request. */
function refuse(ctx: ProxyContext, verdict: WafVerdict, site: Site, req: IncomingMessage, res: ServerResponse, what: { method: string; path: string; client: string }): boolean {
  const reference = randomBytes(8).toString('hex');
  // never the query (signed data URLs carry their signature there), never a header but the user agent
  const entry = { waf: true, reference, site: site.config.name, method: what.method, path: what.path.slice(0, 200), client: what.client, country: verdict.country, host: printable(hostOf(req.headers.host)), userAgent: String(req.headers['user-agent'] ?? '').slice(0, 200) };
  for (const m of verdict.matches) {
    if (verdict.by?.rule === m.rule) continue;
    ctx.log.info({ ...entry, rule: m.rule, action: m.action, detected: m.detected }, m.detected ? 'waf rule matched (Detection mode: not blocked)' : 'waf rule matched');
  }
  if (verdict.by === undefined) return false;
  if (verdict.by.log) ctx.log.warn({ ...entry, rule: verdict.by.rule, action: 'Block' }, verdict.by.retryAfterSeconds !== undefined ? 'waf blocked a request (rate limit; further refusals in this window are not logged)' : 'waf blocked a request');
  const retry = verdict.by.retryAfterSeconds;
  if (retry !== undefined) send(res, what.method, 'TOOMANYREQUESTS', `too many requests; retry later (reference ${reference})`, { 'retry-after': String(retry), 'x-bulwark-reference': reference });
  else send(res, what.method, 'DENIED', `the request was blocked by the gateway's firewall (reference ${reference})`, { 'x-bulwark-reference': reference });
  return true;
}
