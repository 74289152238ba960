/**
 * Raw TCP exchanges with an HTTP server, for bytes no HTTP client library will send: broken
 * request lines, unescaped unicode, slow headers, bodies shorter than their Content-Length,
 * stalls. The first response is parsed leniently (status, headers, Content-Length or chunked body).
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface RawResult {
  /** the first response, when one arrived */
  readonly response: RawResponse | undefined;
  /** every byte received */
  readonly raw: Buffer;
  /** the server closed (or reset) the connection before the deadline */
  readonly closedByServer: boolean;
  readonly elapsedMs: number;
}

export interface RawOptions {
  /** give up (and destroy the socket) after this long */
  readonly timeoutMs: number;
  /** stop waiting as soon as one complete response is in */
  readonly untilResponse?: boolean;
  /** the server's address (default 127.0.0.1) */
  readonly host?: string;
  /** connect from this local address (e.g. 127.0.0.7, to look like another client) */
  readonly localAddress?: string;
}

function dechunk(b: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) return undefined;
    const n = parseInt(b.subarray(i, eol).toString('latin1').split(';')[0] ?? '', 16);
    if (!Number.isFinite(n)) return undefined;
    if (n === 0) return Buffer.concat(parts);
    if (b.length < eol + 2 + n) return undefined;
    parts.push(b.subarray(eol + 2, eol + 2 + n));
    i = eol + 2 + n + 2;
  }
}

/** Parse the first HTTP/1.x response in `raw`; undefined while it is incomplete. */
export function parseResponse(raw: Buffer, complete: boolean): RawResponse | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (m === null) return undefined;
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
  }
  const rest = raw.subarray(end + 4);
  let body: Buffer | undefined;
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    body = rest.length >= n ? rest.subarray(0, n) : undefined;
  } else if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    body = dechunk(rest);
  } else {
    body = complete ? rest : undefined;
  }
  if (body === undefined) return complete ? { status: Number(m[1]), headers, body: rest } : undefined;
  return { status: Number(m[1]), headers, body };
}

/**
 * Connect, let `write` drive the socket (it may write slowly, stall, half-close), collect what
 * comes back until the server closes, the deadline passes, or (untilResponse) a response is in.
 */
export function rawExchange(port: number, write: (s: Socket) => Promise<void> | void, opts: RawOptions): Promise<RawResult> {
  const started = Date.now();
  return new Promise<RawResult>((resolve) => {
    const socket = connect({ host: opts.host ?? '127.0.0.1', port, allowHalfOpen: true, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      socket.destroy();
      resolve({ response: parseResponse(raw, closedByServer), raw, closedByServer, elapsedMs: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (opts.untilResponse === true && parseResponse(Buffer.concat(chunks), false) !== undefined) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.once('connect', () => {
      Promise.resolve()
        .then(() => write(socket))
        .catch(() => undefined);
    });
  });
}

/** Write `data` one piece at a time with a pause between pieces; stops when the socket dies. */
export async function trickle(s: Socket, data: Buffer, pieceBytes: number, pauseMs: number, maxMs: number): Promise<void> {
  const until = Date.now() + maxMs;
  for (let i = 0; i < data.length && Date.now() < until; i += pieceBytes) {
    if (s.destroyed || s.writableEnded) return;
    s.write(data.subarray(i, i + pieceBytes));
    await new Promise((r) => setTimeout(r, pauseMs));
  }
}
