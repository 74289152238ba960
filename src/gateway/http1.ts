/**
 * HTTP/1.1 responses from a backend, as the gateway's upstream client reads them (ADR 0019): the
 * head (RFC 9112 §4, §5) and the framing of the body (§6). Parsed strictly: a backend is trusted to
 * be a registry, not to be well-formed, and anything a second reader could frame differently (two
 * lengths, a length beside chunked, folded lines, a bare CR or LF) is refused rather than guessed.
 */

/** The most a response head, or a chunked body's trailer section, may take. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line with its extensions (RFC 9112 §7.1.1); extensions are read past, not kept. */
const MAX_CHUNK_LINE = 4096;

/** The backend's bytes cannot be read as an HTTP/1.1 response. */
export class UpstreamProtocolError extends Error {
  readonly code = 'UPSTREAM_PROTOCOL';
}

/** How the body ends (RFC 9112 §6.3). */
export type Framing = { readonly kind: 'none' } | { readonly kind: 'length'; readonly length: number } | { readonly kind: 'chunked' } | { readonly kind: 'close' };

export interface ResponseHead {
  readonly status: number;
  /** lower-case names; a field sent more than once keeps every value, in order */
  readonly headers: Record<string, string | string[]>;
  readonly framing: Framing;
  /** whether the connection may carry another request once this response is read */
  readonly reusable: boolean;
  /** how long the backend keeps an idle connection open, when it says (`Keep-Alive: timeout=N`) */
  readonly idleTimeoutMs?: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// field-value (RFC 9110 §5.5): visible characters, space, tab and obs-text; never CR, LF or NUL
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const BAD_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?$/;

function refuse(why: string): never {
  throw new UpstreamProtocolError(why);
}

/** One `name: value` line (RFC 9112 §5.1): no whitespace before the colon, no line folding. */
function fieldLine(line: string): [string, string] {
  const colon = line.indexOf(':');
  const name = line.slice(0, colon);
  // the line itself is never quoted back: it could be a Set-Cookie, or body bytes
  if (colon <= 0 || !TOKEN.test(name)) refuse('a header line is malformed');
  const raw = line.slice(colon + 1);
  if (BAD_VALUE.test(raw)) refuse(`header ${name} holds a control character`);
  // only spaces and tabs are whitespace here (RFC 9110 §5.6.3), not what String.trim() also drops
  return [name.toLowerCase(), raw.replace(/^[ \t]+|[ \t]+$/g, '')];
}

/** The comma-separated elements of a field, every value of it (RFC 9110 §5.6.1), lower-cased, empty ones dropped. */
export const headerElements = (v: string | string[] | undefined): string[] =>
  (v === undefined ? [] : Array.isArray(v) ? v : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim().toLowerCase())
    .filter((x) => x !== '');

/**
 * Parses a complete response head: `text` runs from the status line up to, not including, the
 * empty line that ends it, decoded as latin1. `method` is the request's: the answer to a HEAD has
 * no body, whatever its length says.
 */
export function parseHead(text: string, method: string): ResponseHead {
  const lines = text.split('\r\n');
  if (lines.some((l) => l.includes('\r') || l.includes('\n'))) refuse('the response head holds a bare CR or LF');
  const status = STATUS_LINE.exec(lines[0] ?? '');
  if (status === null) refuse('the response does not begin with an HTTP/1.x status line');
  const headers: Record<string, string | string[]> = {};
  for (const line of lines.slice(1)) {
    if (line.startsWith(' ') || line.startsWith('\t')) refuse('the response head folds a header line (obs-fold)');
    const [name, value] = fieldLine(line);
    const had = headers[name];
    headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
  }
  const code = Number(status[2]);
  // checked whatever the framing: the answer to a HEAD passes its length on to the client
  const length = contentLength(headers['content-length']);
  const framing = framingOf(code, method, headers, length);
  // the same length sent twice is passed on once: strict clients refuse a repeated Content-Length
  if (length !== undefined) headers['content-length'] = String(length);
  const connection = headerElements(headers.connection);
  const reusable = status[1] === '1' && !connection.includes('close') && framing.kind !== 'close';
  const timeout = /(?:^|,)\s*timeout=(\d{1,6})\b/i.exec(headerElements(headers['keep-alive']).join(','));
  return { status: code, headers, framing, reusable, ...(timeout?.[1] !== undefined ? { idleTimeoutMs: Number(timeout[1]) * 1000 } : {}) };
}

/** The Content-Length, when there is one: every value sent must be the same decimal number. */
function contentLength(cl: string | string[] | undefined): number | undefined {
  if (cl === undefined) return undefined;
  const lengths = new Set(headerElements(cl));
  const only = [...lengths][0];
  if (lengths.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) refuse('the response carries an invalid or conflicting Content-Length');
  return Number(only);
}

function framingOf(status: number, method: string, headers: Record<string, string | string[]>, length: number | undefined): Framing {
  if (method === 'HEAD' || status < 200 || status === 204 || status === 304) return { kind: 'none' };
  const te = headerElements(headers['transfer-encoding']);
  // present at all, even empty: a reader that takes an empty coding as chunked must not see a length framing it
  if (headers['transfer-encoding'] !== undefined) {
    // §6.1: a length beside a transfer coding is how responses are smuggled; only plain chunked is passed on
    if (length !== undefined) refuse('the response carries both Transfer-Encoding and Content-Length');
    if (te.length !== 1 || te[0] !== 'chunked') refuse(`transfer coding ${te.join(', ')} is not supported`);
    return { kind: 'chunked' };
  }
  return length === undefined ? { kind: 'close' } : { kind: 'length', length };
}

/**
 * Reads a body by its framing. Data comes back as slices of the buffers pushed in, never copied;
 * nothing of a pushed buffer is kept once `push` returns.
 * Bytes after the end of the body are not part of it: they answer nothing that was asked, and the
 * connection that carried them is not used again (`surplus`).
 */
export class BodyDecoder {
  private remaining: number;
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done';
  /** a chunk-size line or trailer line split across reads */
  private line: Buffer[] = [];
  private lineBytes = 0;
  private trailerBytes = 0;
  /** bytes came after the end of the body */
  surplus = false;

  constructor(private readonly framing: Framing) {
    this.remaining = framing.kind === 'length' ? framing.length : 0;
    this.state = framing.kind === 'none' || (framing.kind === 'length' && framing.length === 0) ? 'done' : framing.kind === 'chunked' ? 'size' : 'data';
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /** The body's bytes in `chunk`, in order. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.state === 'done') {
        this.surplus = true;
        break;
      }
      if (this.state === 'data') {
        if (this.framing.kind === 'close') {
          out.push(chunk.subarray(at));
          break;
        }
        const n = Math.min(this.remaining, chunk.length - at);
        out.push(chunk.subarray(at, at + n));
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = this.framing.kind === 'chunked' ? 'data-end' : 'done';
        continue;
      }
      const lf = chunk.indexOf(0x0a, at);
      const end = lf < 0 ? chunk.length : lf + 1;
      this.lineBytes += end - at;
      if (this.lineBytes > (this.state === 'trailer' ? MAX_HEAD_BYTES - this.trailerBytes : MAX_CHUNK_LINE)) refuse('a chunk-size line or the trailer section is too long');
      // a line that goes on in the next read is copied: the reader may reuse this read's buffer
      this.line.push(lf < 0 ? Buffer.from(chunk.subarray(at, end)) : chunk.subarray(at, end));
      at = end;
      if (lf >= 0) this.endOfLine();
    }
    return out;
  }

  /** The connection closed: whether that was the end of the body. */
  closed(): boolean {
    if (this.framing.kind === 'close' && this.state === 'data') this.state = 'done';
    return this.state === 'done';
  }

  private endOfLine(): void {
    const raw = Buffer.concat(this.line);
    const bytes = this.lineBytes;
    this.line = [];
    this.lineBytes = 0;
    if (raw.length < 2 || raw[raw.length - 2] !== 0x0d) refuse('a line of the chunked body does not end with CRLF');
    const text = raw.subarray(0, raw.length - 2).toString('latin1');
    if (text.includes('\r')) refuse('a line of the chunked body holds a bare CR');
    switch (this.state) {
      case 'data-end':
        if (text !== '') refuse('a chunk is longer than its size says');
        this.state = 'size';
        return;
      case 'size': {
        const size = /^([0-9a-fA-F]{1,13})[ \t]*(?:;.*)?$/.exec(text);
        if (size?.[1] === undefined) refuse('a chunk size is malformed');
        this.remaining = parseInt(size[1], 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
        return;
      }
      case 'trailer':
        // trailer fields are checked and dropped: nothing the gateway forwards is taken from them
        this.trailerBytes += bytes;
        if (text === '') this.state = 'done';
        else fieldLine(text);
        return;
      case 'data':
      case 'done':
        return;
    }
  }
}
