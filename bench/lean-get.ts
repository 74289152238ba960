/**
 * Blob GETs for the benchmark's client without node:http: kept-alive plain-TCP connections that
 * read into one buffer of their own (`onread`), parse the response head themselves and hash the
 * body straight out of that buffer.
 *
 * Why: node:http's client copies every body byte into a fresh buffer (its parser's `on_body`), and
 * the collector then frees them. Measured on the 2-core development machine (2026-12-02, bench
 * probes, 1 MiB and 64 MiB GETs of one blob): node:http's client spent 3.7 to 11 CPU s per GiB
 * pulled, depending on the server and the minute, against 0.8-2.5 for this one (0.7 of which is
 * SHA-256), while the servers themselves spent 0.8-7 CPU s per GiB. On two cores shared with the
 * server, a client that costs more than the server per byte sets the pace of the pull rows, and
 * how much more varied with the server's way of writing: the rows measured the client.
 *
 * Only the plain case is taken here: `GET` over http, answered 200 with a Content-Length and no
 * transfer coding. An error status (400 and up) fails at once, as node:http's path would; any other
 * answer (a redirect, a chunked or close-delimited body) answers `undefined` after closing that
 * connection, and the caller asks again through node:http, which handles it; `fallbacks` counts
 * those, so that a row that was not read the same way for both servers shows. A response that
 * sends more bytes than its length fails.
 */
import { connect, type Socket } from 'node:net';
import { createHash, type Hash } from 'node:crypto';

/** Bytes of one read: large enough that a fast server fills few of them per MiB. */
const READ_BYTES = 256 * 1024;
/** A response head larger than this is refused. */
const MAX_HEAD = 64 * 1024;

export interface LeanResult {
  /** `sha256:<hex>` of the body */
  digest: string;
  bytes: number;
}

/** How an exchange ended short of a body: not the plain case, or a kept-alive connection the server had dropped. */
type NotTaken = 'other' | 'dropped';

interface Exchange {
  /** what is asked, for error messages */
  readonly what: string;
  head: string;
  /** body bytes still to come, once the head is in (-1 before) */
  left: number;
  bytes: number;
  readonly hash: Hash;
  /** any byte of the answer arrived (a connection closed before that may be retried) */
  answered: boolean;
  settle(result: LeanResult | NotTaken | Error): void;
}

class LeanConnection {
  readonly socket: Socket;
  private readonly buffer = Buffer.allocUnsafe(READ_BYTES);
  private exchange: Exchange | undefined;
  /** an exchange has completed on it: a close before any answer may be a kept-alive connection the server dropped */
  reused = false;
  closed = false;

  constructor(host: string, port: number, timeoutMs: number) {
    this.socket = connect({ host, port, onread: { buffer: this.buffer, callback: (n: number) => this.read(n) } });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(timeoutMs, () => this.fail(new Error(`idle for ${timeoutMs} ms`)));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('close', () => this.fail(undefined));
  }

  /** Whether a new exchange may start on it (the server has not closed its side). */
  get usable(): boolean {
    return !this.closed && this.socket.writable && !this.socket.readableEnded;
  }

  /** Sends `request` (a whole GET head) and reads its answer. */
  send(request: string, what: string): Promise<LeanResult | NotTaken> {
    return new Promise((resolve, reject) => {
      this.exchange = {
        what,
        head: '',
        left: -1,
        bytes: 0,
        hash: createHash('sha256'),
        answered: false,
        settle: (r) => {
          this.exchange = undefined;
          if (r instanceof Error) reject(r);
          else resolve(r);
        },
      };
      this.socket.write(request);
    });
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private read(n: number): boolean {
    const x = this.exchange;
    if (x === undefined) {
      // bytes nobody asked for: the connection cannot be trusted any more
      this.destroy();
      return false;
    }
    x.answered = true;
    let at = 0;
    if (x.left < 0) {
      // only what can still be head is decoded: the body bytes after it are hashed from the buffer
      const before = x.head.length;
      x.head += this.buffer.toString('latin1', 0, Math.min(n, MAX_HEAD + 4 - before));
      const end = x.head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (x.head.length >= MAX_HEAD + 4) this.fail(new Error(`a response head larger than ${MAX_HEAD} bytes`));
        return true;
      }
      at = end + 4 - before;
      const head = x.head.slice(0, end);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      if (status >= 400 || status === 0) {
        this.destroy();
        x.settle(new Error(`GET ${x.what} -> ${status === 0 ? 'not an HTTP/1.1 answer' : status} (expected 200)\n  response head: ${head.slice(0, 1000)}`));
        return false;
      }
      const length = plainLength(head);
      if (length === undefined) {
        // not the plain case: node:http takes it from here, on a connection of its own
        this.destroy();
        x.settle('other');
        return false;
      }
      x.left = length;
    }
    const take = Math.min(n - at, x.left);
    if (take < n - at) {
      this.fail(new Error(`${n - at - take} bytes beyond the response's Content-Length`));
      return false;
    }
    if (take > 0) x.hash.update(this.buffer.subarray(at, at + take));
    x.left -= take;
    x.bytes += take;
    if (x.left === 0) {
      this.reused = true;
      x.settle({ digest: `sha256:${x.hash.digest('hex')}`, bytes: x.bytes });
    }
    return true;
  }

  private fail(err: Error | undefined): void {
    const x = this.exchange;
    this.destroy();
    if (x === undefined) return;
    // a kept-alive connection the server closed (or reset) as the request left: the caller retries once
    if (!x.answered && this.reused) x.settle('dropped');
    else x.settle(new Error(`GET ${x.what}: ${err?.message ?? (x.answered ? 'the server closed the connection before the end of the response' : 'the server closed the connection without answering')}`, { cause: err }));
  }
}

/**
 * The body length of a `200` head with a Content-Length and no transfer coding, that keeps the
 * connection open; undefined for any other head.
 */
function plainLength(head: string): number | undefined {
  const lines = head.split('\r\n');
  if (!/^HTTP\/1\.1 200( |$)/.test(lines[0] ?? '')) return undefined;
  let length: number | undefined;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'transfer-encoding') return undefined;
    if (name === 'connection' && value.toLowerCase() === 'close') return undefined;
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) return undefined;
      length = Number(value);
    }
  }
  return length;
}

/** Kept-alive connections to one http origin, one exchange at a time each. */
export class LeanGets {
  private readonly idle: LeanConnection[] = [];
  private readonly all = new Set<LeanConnection>();
  private closed = false;
  /** answers left to node:http (not a plain 200 with a length) */
  fallbacks = 0;
  /** requests sent again after the server dropped a kept-alive connection */
  retries = 0;

  constructor(
    private readonly base: URL,
    private readonly timeoutMs: number,
  ) {}

  /** GET `path` (starting with /): the body's digest and length, or undefined when node:http must answer instead. */
  async get(path: string, authorization: string | undefined): Promise<LeanResult | undefined> {
    const extra = authorization === undefined ? '' : `Authorization: ${authorization}\r\n`;
    if (/[\r\n]/.test(path + extra.slice(0, -2))) throw new Error('GET: a line break in the request');
    const request = `GET ${path} HTTP/1.1\r\nHost: ${this.base.host}\r\nUser-Agent: bulwark-bench\r\n${extra}\r\n`;
    const what = `${this.base.origin}${path}`;
    let result = await this.exchange(this.take(), request, what);
    if (result === 'dropped') {
      // a kept-alive connection the server had dropped: once more, on a new one (which cannot be dropped)
      this.retries++;
      result = await this.exchange(this.open(), request, what);
    }
    if (typeof result === 'object') return result;
    this.fallbacks++;
    return undefined;
  }

  /** One exchange on `conn`; a connection that served it goes back to the idle ones. */
  private async exchange(conn: LeanConnection, request: string, what: string): Promise<LeanResult | NotTaken> {
    try {
      const result = await conn.send(request, what);
      if (typeof result === 'object' && !this.closed && conn.usable) {
        this.idle.push(conn);
        return result;
      }
      conn.destroy();
      this.all.delete(conn);
      return result;
    } catch (e) {
      this.all.delete(conn);
      throw e;
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.all) c.destroy();
    this.all.clear();
    this.idle.length = 0;
  }

  private take(): LeanConnection {
    for (let c = this.idle.pop(); c !== undefined; c = this.idle.pop()) {
      if (c.usable) return c;
      this.all.delete(c);
      c.destroy();
    }
    return this.open();
  }

  private open(): LeanConnection {
    const c = new LeanConnection(this.base.hostname, Number(this.base.port || 80), this.timeoutMs);
    this.all.add(c);
    return c;
  }
}
