/**
 * The gateway's client to one backend (ADR 0019): HTTP/1.1 exchanges over kept-alive connections.
 * Node's http client reads a socket 64 KiB at a time and copies every body chunk out of its parser;
 * a blob pulled through the gateway cost the gateway more CPU than the registry spent serving it.
 * Here a plain-TCP connection reads into buffers that grow to 1 MiB while the backend is ahead of
 * the client, and hands each one to the client's response as it is; once every write of a buffer
 * has called back, the buffer is read into again (ReadBuffers). Only the head is parsed; the body
 * passes through by its framing (http1.ts).
 */
import { validateHeaderName, validateHeaderValue, type OutgoingHttpHeaders } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { Writable, type Readable } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { BodyDecoder, MAX_HEAD_BYTES, parseHead, UpstreamProtocolError, type ResponseHead } from './http1.js';

const MIN_READ = 64 * 1024;
const MAX_READ = 1024 * 1024;
const MAX_IDLE_CONNECTIONS = 64;
/** how long a backend keeps an idle connection when it does not say (Node's server default is 5 s) */
const DEFAULT_IDLE_MS = 5_000;
/** an idle connection is not reused this close to the backend's timeout: it could close under the request */
const IDLE_MARGIN_MS = 1_000;
/** safe methods (RFC 9110 §9.2.1) without a body: what may be sent twice, as Go's transport decides too */
const REPLAYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** interim answers (1xx) skipped before a final one; a backend sending more is holding the exchange open */
const MAX_INTERIM = 8;
/** free read buffers one backend's connections keep between reads, in bytes */
const KEEP_READ_BYTES = 4 * MAX_READ;

export interface UpstreamEndpoint {
  readonly host: string;
  readonly port: number;
  /** TLS to the backend, verified as these options say; undefined: plain TCP */
  readonly tls?: ConnectionOptions;
}

export interface UpstreamRequest {
  readonly method: string;
  /** origin-form, already checked */
  readonly target: string;
  /** end-to-end headers, `host` included; validated again before they are written */
  readonly headers: OutgoingHttpHeaders;
  /** the request body: `length` bytes (its Content-Length), or sent chunked when `length` is undefined */
  readonly body?: { readonly source: Readable; readonly length?: number };
  /** the longest the backend may stay silent, while connecting or answering */
  readonly timeoutMs: number;
}

export interface UpstreamHandler {
  /**
   * The response head. Returns where the body goes, or undefined to drop it. A `write` answering
   * false stops reading from the backend until the sink's 'drain'; the sink is ended when the body
   * is complete.
   */
  response(status: number, headers: Record<string, string | string[]>): Writable | undefined;
  /** The exchange failed, before the head (`answered` false) or while the body was on its way. Never after the body is complete, nor after abort(). */
  fail(err: Error, answered: boolean): void;
}

export interface Exchange {
  /** The client went away: the connection is closed and nothing more is reported. */
  abort(): void;
}

/**
 * The bytes of one read, as handed on. A small read is copied out: a slice would keep its whole
 * buffer alive while it waits in the client's queue, and a backend trickling bytes to a stalled
 * client would pin 64 KiB per read.
 */
export function handedOn(n: number, buf: Uint8Array): Buffer {
  const bytes = Buffer.from(buf.buffer, buf.byteOffset, n);
  return n < buf.length / 8 ? Buffer.from(bytes) : bytes;
}

/**
 * The read buffers of one backend's plain-TCP connections (ADR 0019). A fresh buffer per read
 * made every byte pulled through the gateway land in memory the kernel had to fault in and the
 * collector then freed: the copy out of the backend's socket cost half as much again as the copy
 * into the client's (perf: 28% and 19% of the gateway's samples). A buffer is held by its read
 * until that read is handed on, and by each piece of it written to a client until that write's
 * callback has run (the bytes are then in the kernel, or were never to be sent); the last holder
 * gives it back, and the next read of its size reuses it. A buffer whose write never calls back
 * (a client that went away) is left to the collector. Holds are counted per ArrayBuffer: `take`
 * allocates each buffer with an ArrayBuffer of its own, never a slice of a shared pool.
 */
export class ReadBuffers {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private readonly holders = new WeakMap<ArrayBufferLike, number>();

  /** A buffer of `size` bytes for a read, with the read as its one holder. */
  take(size: number): Buffer {
    const reused = this.free.get(size)?.pop();
    if (reused !== undefined) this.freeBytes -= size;
    const buf = reused ?? Buffer.allocUnsafeSlow(size);
    this.holders.set(buf.buffer, 1);
    return buf;
  }

  /**
   * One more holder of the buffer `piece` views, which must then `release` it; false, and nothing
   * to release, for memory that is not lent from here (a copied read, a TLS record).
   */
  hold(piece: Uint8Array): boolean {
    const n = this.holders.get(piece.buffer);
    if (n === undefined) return false;
    this.holders.set(piece.buffer, n + 1);
    return true;
  }

  /** A holder of the buffer `piece` views is done with it; the last one gives the buffer back. */
  release(piece: Uint8Array): void {
    const memory = piece.buffer;
    const n = this.holders.get(memory);
    if (n === undefined) return;
    if (n > 1) {
      this.holders.set(memory, n - 1);
      return;
    }
    this.holders.delete(memory);
    const size = memory.byteLength;
    if (this.freeBytes + size > KEEP_READ_BYTES) return;
    let list = this.free.get(size);
    if (list === undefined) this.free.set(size, (list = []));
    list.push(Buffer.from(memory, 0, size));
    this.freeBytes += size;
  }

  /** Drops the free buffers (the pool is closing); buffers still lent go to the collector. */
  clear(): void {
    this.free.clear();
    this.freeBytes = 0;
  }
}

/** A sink that drops a body, for answers only the status of matters (health probes). */
export const discard = (): Writable => new Writable({ write: (_chunk: Buffer, _enc, done) => done() });

interface Reader {
  data(chunk: Buffer): void;
  gone(err: Error | undefined): void;
  /** the socket was silent for the exchange's timeout */
  silent(): void;
}

/** One connection to the backend; it carries one exchange at a time. */
class Connection {
  readonly socket: Socket;
  /** whether an exchange has finished on it: a failure before any answer may then be a close that crossed the request */
  reused = false;
  idleUntil = 0;
  private reader: Reader | undefined;
  private readSize = MIN_READ;

  constructor(endpoint: UpstreamEndpoint, tlsSessions: { session?: Buffer }, private readonly buffers: ReadBuffers) {
    if (endpoint.tls !== undefined) {
      // a session ticket from an earlier connection makes the next handshake a resumption, as node's https agent does
      const socket = tlsConnect({ ...endpoint.tls, host: endpoint.host, port: endpoint.port, ...(tlsSessions.session !== undefined ? { session: tlsSessions.session } : {}) });
      socket.on('session', (session: Buffer) => (tlsSessions.session = session));
      socket.on('data', (b: Buffer) => this.received(b));
      this.socket = socket;
    } else {
      this.socket = netConnect({
        host: endpoint.host,
        port: endpoint.port,
        // a buffer for every read: each is handed on, and read into again once every write of it has called back
        onread: { buffer: () => this.buffers.take(this.readSize), callback: (n: number, buf: Uint8Array) => this.read(n, buf) },
      });
    }
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.ended(err));
    this.socket.on('close', () => this.ended(undefined));
    // one listener for the connection's life: each exchange only sets the time (socket.setTimeout(ms, cb) would add one per request)
    this.socket.on('timeout', () => this.reader?.silent());
  }

  attach(reader: Reader | undefined): void {
    this.reader = reader;
  }

  destroy(): void {
    this.reader = undefined;
    this.socket.destroy();
  }

  private read(n: number, buf: Uint8Array): boolean {
    // a read that filled its buffer means the backend is ahead: read more at once next time
    if (n === buf.length) this.readSize = Math.min(this.readSize * 2, MAX_READ);
    else if (n < this.readSize / 4) this.readSize = Math.max(this.readSize / 2, MIN_READ);
    try {
      this.received(handedOn(n, buf));
    } finally {
      this.buffers.release(buf);
    }
    return true;
  }

  private received(chunk: Buffer): void {
    // bytes on an idle connection answer nothing that was asked: the connection cannot be trusted any more
    if (this.reader === undefined) this.destroy();
    else this.reader.data(chunk);
  }

  private ended(err: Error | undefined): void {
    const r = this.reader;
    this.reader = undefined;
    r?.gone(err);
  }
}

/** The connections to one backend: LIFO reuse of idle ones, at most 64 kept. */
export class UpstreamPool {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly tlsSessions: { session?: Buffer } = {};
  /** the read buffers of this backend's connections */
  readonly buffers = new ReadBuffers();
  private closed = false;

  constructor(private readonly endpoint: UpstreamEndpoint) {}

  /** Sends a request; the handler hears the answer. */
  exchange(req: UpstreamRequest, handler: UpstreamHandler): Exchange {
    return runExchange(this, req, handler);
  }

  /** An idle connection still inside the backend's keep-alive window, or a new one. */
  take(): Connection {
    const now = Date.now();
    for (let c = this.idle.pop(); c !== undefined; c = this.idle.pop()) {
      // a backend's FIN may be read before its close event: such a connection cannot carry a request
      if (c.idleUntil > now && !c.socket.destroyed && !c.socket.readableEnded && c.socket.writable) return c;
      c.destroy();
    }
    const c = new Connection(this.endpoint, this.tlsSessions, this.buffers);
    this.all.add(c);
    c.socket.once('close', () => {
      this.all.delete(c);
      const i = this.idle.indexOf(c);
      if (i >= 0) this.idle.splice(i, 1);
    });
    return c;
  }

  /** A connection whose exchange ended cleanly, back for the next request. */
  release(c: Connection, idleMs: number): void {
    c.attach(undefined);
    c.reused = true;
    c.socket.setTimeout(0);
    c.socket.resume(); // paused for a slow client: while idle it must still notice a close
    if (this.closed || this.idle.length >= MAX_IDLE_CONNECTIONS || idleMs <= IDLE_MARGIN_MS) return c.destroy();
    c.idleUntil = Date.now() + idleMs - IDLE_MARGIN_MS;
    this.idle.push(c);
  }

  /** Closes every connection, idle or busy. */
  close(): void {
    this.closed = true;
    for (const c of this.all) c.destroy();
    this.idle.length = 0;
    this.buffers.clear();
  }
}

function requestHead(req: UpstreamRequest): Buffer {
  let head = `${req.method} ${req.target} HTTP/1.1\r\n`;
  for (const [name, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    validateHeaderName(name);
    for (const value of Array.isArray(v) ? v : [String(v)]) {
      validateHeaderValue(name, value);
      head += `${name}: ${value}\r\n`;
    }
  }
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** Streams the request body to the backend with backpressure; returns what stops it. */
function sendBody(body: NonNullable<UpstreamRequest['body']>, socket: Socket, sent: () => void): () => void {
  const chunked = body.length === undefined;
  const resume = (): void => void body.source.resume();
  const onData = (chunk: Buffer): void => {
    if (chunk.length === 0) return; // a zero-size chunk would end a chunked body
    if (chunked) {
      socket.cork();
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      socket.write('\r\n');
      process.nextTick(() => socket.uncork());
    } else if (socket.write(chunk)) return;
    if (socket.writableNeedDrain) {
      body.source.pause();
      socket.once('drain', resume);
    }
  };
  const onEnd = (): void => {
    if (chunked) socket.write('0\r\n\r\n');
    sent();
  };
  body.source.on('data', onData);
  body.source.once('end', onEnd);
  return () => {
    body.source.off('data', onData);
    body.source.off('end', onEnd);
    socket.off('drain', resume);
  };
}

function runExchange(pool: UpstreamPool, req: UpstreamRequest, handler: UpstreamHandler): Exchange {
  let state: 'head' | 'body' | 'done' = 'head';
  let conn: Connection | undefined;
  let retried = false;
  let answeredBytes = false;
  let bodySent = req.body === undefined;
  let stopBody = (): void => undefined;
  /** a head still coming: its reads so far, their length, and its last 3 bytes (a CRLF CRLF may straddle two reads) */
  let pieces: Buffer[] = [];
  let headBytes = 0;
  let seam = Buffer.alloc(0);
  let head: ResponseHead | undefined;
  let decoder: BodyDecoder | undefined;
  let sink: Writable | undefined;
  let paused = false;
  let interim = 0;
  /** the request head as sent, for the one retry */
  let wire: Buffer = Buffer.alloc(0);

  const resume = (): void => {
    paused = false;
    if (state === 'body') conn?.socket.resume();
  };
  const finish = (): void => {
    state = 'done';
    stopBody();
    sink?.off('drain', resume);
  };
  const fail = (err: Error): void => {
    if (state === 'done') return;
    const answered = state === 'body';
    finish();
    conn?.destroy();
    handler.fail(err, answered);
  };
  const complete = (): void => {
    if (state === 'done') return;
    finish();
    // the rest of a request body the backend did not wait for is read and dropped, so the client's request ends
    if (!bodySent) req.body?.source.resume();
    sink?.end();
    const c = conn;
    if (c === undefined) return;
    // a backend that answered before reading the whole request body left that connection mid-request
    if (head?.reusable === true && bodySent && decoder?.surplus === false) pool.release(c, head.idleTimeoutMs ?? DEFAULT_IDLE_MS);
    else c.destroy();
  };

  /**
   * The response head, once complete, and the bytes after it; interim 1xx answers are skipped
   * (RFC 9110 §15.2). Each read is searched once (with the seam before it) and the head is joined
   * once, so a backend dribbling its head byte by byte costs no more than sending it whole.
   */
  const readHead = (chunk: Buffer): Buffer | undefined => {
    let input = chunk;
    for (;;) {
      const window = seam.length > 0 ? Buffer.concat([seam, input]) : input;
      const at = window.indexOf('\r\n\r\n');
      const end = headBytes - seam.length + at;
      if (at < 0 || end > MAX_HEAD_BYTES) {
        headBytes += input.length;
        if (at >= 0 || headBytes > MAX_HEAD_BYTES) throw new UpstreamProtocolError(`the response head is larger than ${MAX_HEAD_BYTES} bytes`);
        // copied: the read's buffer is read into again once this read has been handed on
        pieces.push(Buffer.from(input));
        seam = Buffer.from(window.subarray(Math.max(0, window.length - 3)));
        return undefined;
      }
      const all = pieces.length > 0 ? Buffer.concat([...pieces, input]) : input;
      pieces = [];
      headBytes = 0;
      seam = Buffer.alloc(0);
      const h = parseHead(all.toString('latin1', 0, end), req.method);
      input = all.subarray(end + 4);
      if (h.status === 101) throw new UpstreamProtocolError('the backend switched protocols, which the gateway does not pass on');
      if (h.status < 200 && ++interim > MAX_INTERIM) throw new UpstreamProtocolError(`the backend sent more than ${MAX_INTERIM} interim answers`);
      if (h.status >= 200) {
        head = h;
        return input;
      }
    }
  };

  const data = (chunk: Buffer): void => {
    answeredBytes = true;
    try {
      let rest: Buffer | undefined = chunk;
      if (state === 'head') {
        rest = readHead(chunk);
        if (rest === undefined || head === undefined) return;
        state = 'body';
        decoder = new BodyDecoder(head.framing);
        sink = handler.response(head.status, head.headers);
        if (sink === undefined) {
          finish();
          conn?.destroy();
          return;
        }
      }
      if (state !== 'body' || decoder === undefined || sink === undefined) return;
      for (const piece of decoder.push(rest)) {
        // the piece's buffer is not read into again before this write has called back
        const held = pool.buffers.hold(piece);
        if (!sink.write(piece, held ? () => pool.buffers.release(piece) : undefined) && !paused) {
          paused = true;
          conn?.socket.pause();
          sink.once('drain', resume);
        }
      }
      if (decoder.done) complete();
    } catch (e) {
      fail(e instanceof Error ? e : new Error(String(e)));
    }
  };

  const gone = (err: Error | undefined): void => {
    if (state === 'done') return;
    // a kept-alive connection the backend closed as the request left: once more on a new one, for a request that is safe to send twice
    if (state === 'head' && !answeredBytes && conn?.reused === true && !retried && REPLAYABLE.has(req.method) && req.body === undefined) {
      retried = true;
      conn.destroy();
      start(pool.take(), wire);
      return;
    }
    // a close ends a body read to the close; a reset does not: the client must not take a cut body as whole
    if (state === 'body' && err === undefined && decoder?.closed() === true) {
      head = undefined; // read to the close: the connection is done with
      complete();
      return;
    }
    fail(err ?? new Error(state === 'head' ? 'the backend closed the connection without answering' : 'the backend closed the connection before the end of the response'));
  };

  const silent = (): void => fail(new Error(`no answer within ${req.timeoutMs} ms`));
  const start = (c: Connection, bytes: Buffer): void => {
    conn = c;
    c.attach({ data, gone, silent });
    c.socket.setTimeout(req.timeoutMs);
    c.socket.write(bytes);
    if (req.body !== undefined)
      stopBody = sendBody(req.body, c.socket, () => {
        bodySent = true;
      });
  };

  try {
    wire = requestHead(req);
    start(pool.take(), wire);
  } catch (e) {
    // a header that cannot go on the wire (validated again here): reported as any failure is, after this returns
    process.nextTick(() => fail(e instanceof Error ? e : new Error(String(e))));
  }
  return {
    abort: () => {
      if (state === 'done') return;
      finish();
      conn?.destroy();
    },
  };
}
