/**
 * The one place errors become HTTP responses: the OCI error envelope
 * `{"errors":[{"code","message","detail"}]}` with the status registered for the code.
 * Anything unrecognised is logged with the request id and answered UNKNOWN/500, never leaking
 * internals.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { describeError, isRegistryError, type ErrorCode } from '../oci/index.js';

export function envelope(code: ErrorCode, message: string, detail?: unknown): string {
  return JSON.stringify({ errors: [{ code, message, ...(detail !== undefined ? { detail } : {}) }] });
}

/** Map errors raised by fastify or node itself (not ours) to a registered code by status. */
function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 413:
      return 'SIZE_INVALID';
    case 415:
      return 'UNSUPPORTED';
    case 416:
      return 'RANGE_INVALID';
    case 429:
      return 'TOOMANYREQUESTS';
    case 503:
      return 'UNAVAILABLE';
    default:
      return status >= 400 && status < 500 ? 'BAD_REQUEST' : 'UNKNOWN';
  }
}

function isClientAbort(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ABORT_ERR' || (e as Error).message === 'aborted';
}

export function handleError(this: unknown, err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply): void {
  let code: ErrorCode;
  let message: string;
  let detail: unknown;
  if (isRegistryError(err)) {
    ({ code, message, detail } = err);
    for (const [k, v] of Object.entries(err.headers)) void reply.header(k, v);
  } else if (isClientAbort(err)) {
    // The client went away mid-body; the storage layer already rolled the write back.
    code = 'BLOB_UPLOAD_INVALID';
    message = 'request body was not received completely';
  } else {
    const status = (err as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      code = codeForStatus(status);
      message = describeError(code).message;
    } else {
      request.log.error({ err, reqId: request.id }, 'failed to handle request');
      code = 'UNKNOWN';
      message = `internal error (request id ${request.id})`;
    }
  }
  const d = describeError(code);
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  void reply.code(d.httpStatus).header('content-type', 'application/json; charset=utf-8');
  // HEAD responses carry no body (RFC 9110 §9.3.2); the status says enough.
  void reply.send(request.method === 'HEAD' ? undefined : envelope(code, message, detail));
}

const answeredSockets = new WeakSet<Duplex>();
const LINGER_MS = 2000;

/**
 * Errors node's HTTP parser raises on a connection (malformed request line or headers, a body cut
 * short, headers larger than `http.maxHeaderBytes`, headers not in within `http.headersTimeoutMs`):
 * there is no request to reply to, so the envelope is written on the socket, which is then closed.
 * Like node's default, nothing is written once the in-flight response has started (it would corrupt it).
 */
export function handleClientError(err: Error & { code?: string }, socket: Duplex & { _httpMessage?: { headersSent?: boolean } | null }): void {
  const code: ErrorCode =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST';
  answerClientError(err, socket, code);
}

/**
 * Answers a connection whose request the parser could not read with `code` (and `message`, else
 * the code's own), once: the first answer wins, so a listener that runs before handleClientError
 * (the network guard refusing the address) decides what the client is told.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex & { _httpMessage?: { headersSent?: boolean } | null }, code: ErrorCode, message?: string): void {
  // The parser repeats its error for every later read of a failed connection: answer once.
  if (err.code === 'ECONNRESET' || socket.destroyed || answeredSockets.has(socket)) return;
  answeredSockets.add(socket);
  const d = describeError(code);
  if (socket.writable && socket._httpMessage?.headersSent !== true) {
    const body = envelope(code, message ?? d.message);
    // end(), then destroy a little later: closing with request bytes still unread (the rest of an
    // oversized header block) makes the kernel send RST, which discards the response before the
    // client reads it. Meanwhile the parser keeps reading and dropping what the client sends.
    socket.end(
      `HTTP/1.1 ${d.httpStatus} ${STATUS_CODES[d.httpStatus] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    // A timed-out parser is still live (headers completing now must not become a request): close now.
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') socket.destroy();
    else setTimeout(() => socket.destroy(), LINGER_MS).unref();
    return;
  }
  socket.destroy(err);
}
