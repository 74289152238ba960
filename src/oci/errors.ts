/**
 * The OCI Distribution error-code registry (distribution-spec v1.1, "Error Codes").
 * Protocol errors are data: each code is registered once with its HTTP status, and handlers
 * throw `registryError(code, ...)`; the one HTTP error handler writes the envelope.
 */

export interface ErrorDescriptor {
  readonly code: ErrorCode;
  readonly message: string;
  readonly httpStatus: number;
  readonly description: string;
}

export type ErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'MANIFEST_TOO_LARGE'
  | 'METHOD_NOT_ALLOWED'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'REQUEST_TIMEOUT'
  | 'HEADERS_TOO_LARGE'
  | 'UNAVAILABLE'
  | 'MISDIRECTED'
  | 'BAD_GATEWAY'
  | 'UNKNOWN';

const registry = new Map<ErrorCode, ErrorDescriptor>();

function register(code: ErrorCode, httpStatus: number, message: string, description: string): void {
  registry.set(code, { code, httpStatus, message, description });
}

// The fourteen codes of the distribution spec, with the statuses its endpoints table gives.
register('BLOB_UNKNOWN', 404, 'blob unknown to registry', 'The blob is not known to the repository.');
register('BLOB_UPLOAD_INVALID', 400, 'blob upload invalid', 'The upload failed: the body was cut short, another request was writing to the same session, or the session is inconsistent. The client should restart the upload.');
register('BLOB_UPLOAD_UNKNOWN', 404, 'blob upload unknown to registry', 'The upload session does not exist, was cancelled, completed or expired.');
register('DIGEST_INVALID', 400, 'provided digest did not match uploaded content', 'The digest is malformed, uses an unsupported algorithm, or does not match the uploaded content.');
register('MANIFEST_BLOB_UNKNOWN', 404, 'manifest references a manifest or blob unknown to registry', 'A blob or manifest referenced by the manifest (other than its subject) is not in the repository.');
register('MANIFEST_INVALID', 400, 'manifest invalid', 'The manifest is not valid JSON, does not match its media type, or fails validation.');
register('MANIFEST_UNKNOWN', 404, 'manifest unknown to registry', 'No manifest with that tag or digest exists in the repository.');
register('NAME_INVALID', 400, 'invalid repository name', 'The repository name does not match the spec grammar `[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*` or is longer than 255 characters.');
register('NAME_UNKNOWN', 404, 'repository name not known to registry', 'The repository does not exist.');
register('SIZE_INVALID', 400, 'provided length did not match content length', 'Content-Length, Content-Range or the declared size does not match the content received.');
register('UNAUTHORIZED', 401, 'authentication required', 'The client must authenticate; see the WWW-Authenticate header.');
register('DENIED', 403, 'requested access to the resource is denied', 'The principal is authenticated but not allowed to perform this action, or a policy denies it.');
register('UNSUPPORTED', 415, 'the operation is unsupported', 'The media type, digest algorithm or operation is not supported by this registry.');
register('TOOMANYREQUESTS', 429, 'too many requests', 'The client exceeded a rate limit; retry after the time in Retry-After.');
// Codes Bulwark adds for cases the spec leaves to plain HTTP statuses, in the same envelope.
register('RANGE_INVALID', 416, 'requested range not satisfiable', 'The Range or Content-Range header is malformed, out of order, or outside the content.');
register('MANIFEST_TOO_LARGE', 413, 'manifest too large', 'The manifest exceeds the configured maximum size (`limits.manifestMaxBytes`).');
register('METHOD_NOT_ALLOWED', 405, 'method not allowed', 'The HTTP method is not supported on this endpoint, or the operation (for example delete) is disabled.');
register('NOT_FOUND', 404, 'not found', 'The path is not an endpoint of this registry.');
register('BAD_REQUEST', 400, 'bad request', 'The request is malformed at the HTTP level (for example an unparseable header).');
register('REQUEST_TIMEOUT', 408, 'request timeout', 'The request headers did not arrive within `http.headersTimeoutMs` (slow-loris protection); the connection is closed.');
register('HEADERS_TOO_LARGE', 431, 'request header fields too large', 'The request header block is larger than `http.maxHeaderBytes`; the connection is closed.');
register('UNAVAILABLE', 503, 'service unavailable', 'The registry is shutting down or a dependency is unavailable; retry later.');
register('MISDIRECTED', 421, 'misdirected request', 'The gateway serves no site with that host name on this address, or the TLS server name (SNI) and the Host header name different sites.');
register('BAD_GATEWAY', 502, 'bad gateway', 'The gateway could not get an answer from the registry behind it (connection refused or reset, TLS verification failed, or no answer within `limits.upstreamTimeoutMs`).');
register('UNKNOWN', 500, 'unknown error', 'An unexpected error occurred; details are logged on the server under the request id, never returned.');

export function describeError(code: ErrorCode): ErrorDescriptor {
  const d = registry.get(code);
  if (d === undefined) throw new Error(`unregistered error code ${code}`);
  return d;
}

export function allErrorCodes(): readonly ErrorDescriptor[] {
  return [...registry.values()];
}

/** A protocol error: carries a registered code, a message for the client and optional detail. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly httpStatus: number;
  readonly detail: unknown;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message?: string, opts: { detail?: unknown; headers?: Record<string, string>; cause?: unknown } = {}) {
    const d = describeError(code);
    super(message ?? d.message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.httpStatus = d.httpStatus;
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
  }
}

export function registryError(
  code: ErrorCode,
  message?: string,
  opts?: { detail?: unknown; headers?: Record<string, string>; cause?: unknown },
): RegistryError {
  return new RegistryError(code, message, opts);
}

export function isRegistryError(e: unknown): e is RegistryError {
  return e instanceof RegistryError;
}
