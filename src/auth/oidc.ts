/**
 * OIDC token verification for federated workload identity: a CI pipeline presents a token from a
 * trusted issuer instead of a stored secret (OpenID Connect Core 1.0 §3.1.3.7, Discovery 1.0 §4).
 *
 * The signature is checked against the keys the issuer publishes: its discovery document (cached
 * per issuer) names the `jwks_uri`, whose key set jose caches and refetches when a token names a
 * `kid` it does not hold (key rotation), at most once per cooldown. Only asymmetric algorithms are
 * accepted: `none` is unsigned, and an HMAC "signature" could be made with a public key by anyone
 * who confuses the two (algorithm confusion). Every failure, including an issuer that cannot be
 * reached, is a 401 UNAUTHORIZED: we fail closed and never echo the token.
 */
import { createRemoteJWKSet, decodeJwt, errors, jwtVerify, type JWTPayload } from 'jose';
import { isRegistryError, type RegistryError } from '../oci/index.js';
import { authError } from './errors.js';

export interface VerifiedIdToken {
  readonly issuer: string;
  readonly subject: string;
  readonly audience: readonly string[];
  readonly amr?: readonly string[];
  readonly expiresAt: number;
  readonly claims: Readonly<Record<string, unknown>>;
}

export interface OidcVerifierOptions {
  /** bounded skew for exp/nbf/iat */
  readonly clockSkewSeconds: number;
  /** discovery + JWKS fetch timeout (default 5000) */
  readonly fetchTimeoutMs?: number;
  /** how long a discovery document is trusted (default 3600) */
  readonly discoveryCacheSeconds?: number;
  /** least time between two JWKS refetches caused by unknown kids (default 30): bounds how hard a
   * stream of made-up kids can make us hit the issuer */
  readonly jwksCooldownSeconds?: number;
}

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat'];
const MAX_TOKEN_CHARS = 16 * 1024;
/** a discovery document is a few KiB; more is an attack or a misconfiguration */
const MAX_DISCOVERY_BYTES = 256 * 1024;
/** Plain http is accepted only for issuers on this machine (tests, a local IdP): there is no
 * network between us for anyone to tamper with. Anything else must be https. */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

type Jwks = ReturnType<typeof createRemoteJWKSet>;
interface IssuerKeys { readonly jwksUri: string; readonly jwks: Jwks; readonly expiresAt: number }

const unauthorized = (message: string): RegistryError => authError('UNAUTHORIZED', message);

export class OidcVerifier {
  private readonly skew: number;
  private readonly timeoutMs: number;
  private readonly cacheMs: number;
  private readonly cooldownMs: number;
  private readonly issuers = new Map<string, IssuerKeys>();
  /** one discovery fetch per issuer at a time, however many requests wait for it */
  private readonly pending = new Map<string, Promise<IssuerKeys>>();

  constructor(opts: OidcVerifierOptions) {
    this.skew = opts.clockSkewSeconds;
    this.timeoutMs = opts.fetchTimeoutMs ?? 5000;
    this.cacheMs = (opts.discoveryCacheSeconds ?? 3600) * 1000;
    this.cooldownMs = (opts.jwksCooldownSeconds ?? 30) * 1000;
  }

  /**
   * Verify `token` as issued by `issuer` for `audience`. `expected.issuer` must come from the
   * configured trust list, never from the token itself: it decides which URLs we fetch.
   * Throws UNAUTHORIZED for any problem; the message says what, never echoing the token.
   */
  async verify(token: string, expected: { issuer: string; audience: string }): Promise<VerifiedIdToken> {
    if (typeof token !== 'string' || token.length === 0) throw unauthorized('token is missing');
    if (token.length > MAX_TOKEN_CHARS) throw unauthorized('token is larger than 16 KiB');
    const { jwks } = await this.keysFor(expected.issuer);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, {
        algorithms: ALGORITHMS,
        issuer: expected.issuer,
        audience: expected.audience,
        requiredClaims: REQUIRED_CLAIMS,
        clockTolerance: this.skew,
      }));
    } catch (e) {
      throw unauthorized(describeJoseError(e));
    }
    return this.toVerified(payload, expected.issuer);
  }

  /** Peek at the unverified `iss` claim to choose the issuer to verify against; undefined for garbage. */
  static unverifiedIssuer(token: string): string | undefined {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return undefined;
    try {
      const { iss } = decodeJwt(token);
      return typeof iss === 'string' && iss.length > 0 ? iss : undefined;
    } catch {
      return undefined;
    }
  }

  /** Checks jose leaves to us: `iat` not in the future (it only checks it with maxTokenAge), and
   * the shapes of `sub` and `amr`, which policies match on. */
  private toVerified(payload: JWTPayload, issuer: string): VerifiedIdToken {
    const now = Date.now() / 1000;
    if (typeof payload.iat !== 'number' || payload.iat > now + this.skew) throw unauthorized('token claim "iat" is in the future');
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw unauthorized('token claim "sub" is empty');
    if (typeof payload.exp !== 'number') throw unauthorized('token claim "exp" is missing');
    const audience = typeof payload.aud === 'string' ? [payload.aud] : payload.aud ?? [];
    const amr: unknown = payload.amr;
    if (amr !== undefined && !(Array.isArray(amr) && amr.every((m) => typeof m === 'string'))) {
      throw unauthorized('token claim "amr" is not a list of strings');
    }
    return {
      issuer,
      subject: payload.sub,
      audience,
      ...(amr === undefined ? {} : { amr }),
      expiresAt: payload.exp * 1000,
      claims: payload,
    };
  }

  private async keysFor(issuer: string): Promise<IssuerKeys> {
    const cached = this.issuers.get(issuer);
    if (cached !== undefined && cached.expiresAt > Date.now()) return cached;
    let inflight = this.pending.get(issuer);
    if (inflight === undefined) {
      // failures are not cached: the next request tries again (still failing closed meanwhile)
      inflight = this.discover(issuer, cached).finally(() => this.pending.delete(issuer));
      this.pending.set(issuer, inflight);
    }
    return inflight;
  }

  private async discover(issuer: string, previous: IssuerKeys | undefined): Promise<IssuerKeys> {
    const issuerUrl = checkedUrl(issuer, true, 'issuer');
    if (issuerUrl.search !== '' || issuerUrl.hash !== '') throw unauthorized('issuer must not have a query or fragment');
    // Discovery §4: remove one terminating "/" before appending the well-known path
    const base = issuer.endsWith('/') ? issuer.slice(0, -1) : issuer;
    const doc = await this.fetchJson(`${base}/.well-known/openid-configuration`);
    // Discovery §4.3: the document must name exactly the issuer we asked, or it is someone else's
    if (doc.issuer !== issuer) throw unauthorized("the issuer's discovery document names a different issuer");
    if (typeof doc.jwks_uri !== 'string') throw unauthorized("the issuer's discovery document has no jwks_uri");
    // an https issuer must not send us to plain http for its keys
    const jwksUrl = checkedUrl(doc.jwks_uri, issuerUrl.protocol === 'http:', 'jwks_uri');
    // keep the key set (and its cache and cooldown) when a refreshed document names the same URI
    const jwks = previous?.jwksUri === jwksUrl.href
      ? previous.jwks
      : createRemoteJWKSet(jwksUrl, { timeoutDuration: this.timeoutMs, cooldownDuration: this.cooldownMs });
    const keys = { jwksUri: jwksUrl.href, jwks, expiresAt: Date.now() + this.cacheMs };
    this.issuers.set(issuer, keys);
    return keys;
  }

  /** GET a JSON object with a deadline covering the body too, no redirects, and a size cap. */
  private async fetchJson(url: string): Promise<Record<string, unknown>> {
    const what = "failed to fetch the issuer's discovery document";
    let text: string;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.timeoutMs), redirect: 'error', headers: { accept: 'application/json' } });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw unauthorized(`${what}: HTTP ${res.status}`);
      }
      text = await readCapped(res, MAX_DISCOVERY_BYTES);
    } catch (e) {
      if (isRegistryError(e)) throw e;
      throw unauthorized(e instanceof Error && e.name === 'TimeoutError' ? `${what}: timed out` : what);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw unauthorized(`${what}: not JSON`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw unauthorized(`${what}: not a JSON object`);
    return doc as Record<string, unknown>;
  }
}

/** Parses `raw` and allows https, or http on loopback when `allowLoopbackHttp`. */
function checkedUrl(raw: string, allowLoopbackHttp: boolean, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw unauthorized(`${what} is not a URL`);
  }
  if (url.username !== '' || url.password !== '') throw unauthorized(`${what} must not carry credentials`);
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && allowLoopbackHttp && LOOPBACK_HOSTS.has(url.hostname)) return url;
  throw unauthorized(`${what} must use https`);
}

async function readCapped(res: Response, max: number): Promise<string> {
  if (res.body === null) return '';
  const reader: ReadableStreamDefaultReader<Uint8Array> = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    size += r.value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw unauthorized(`the issuer's discovery document is larger than ${max} bytes`);
    }
    chunks.push(r.value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** What went wrong, in words safe for the client: jose's classes, never the token's content. */
function describeJoseError(e: unknown): string {
  if (e instanceof errors.JWTExpired) return 'token has expired';
  if (e instanceof errors.JWTClaimValidationFailed) return `token claim "${e.claim}" check failed (${e.reason})`;
  if (e instanceof errors.JOSEAlgNotAllowed) return 'token algorithm is not allowed (asymmetric signatures only)';
  if (e instanceof errors.JWKSNoMatchingKey) return "no key of the issuer matches the token's key id";
  if (e instanceof errors.JWKSMultipleMatchingKeys) return 'token does not name a single key of the issuer';
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  if (e instanceof errors.JWKSTimeout) return "failed to fetch the issuer's JWKS: timed out";
  if (e instanceof errors.JWKSInvalid) return "the issuer's JWKS is invalid";
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid) return 'token is malformed';
  if (e instanceof errors.JOSENotSupported) return 'token uses an unsupported algorithm or key';
  // the JWKS fetch: network errors (TypeError from fetch) and non-200 answers (a bare JOSEError)
  return "failed to fetch the issuer's JWKS";
}
