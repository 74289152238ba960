/**
 * Access and refresh tokens (JWT). Access tokens carry exactly the granted `access` list (Docker
 * token spec) and live `auth.accessTokenSeconds` (default 5 minutes); refresh tokens live longer,
 * are recorded by `jti` so that they can be revoked, and are what `docker login` stores when the
 * username is 00000000-0000-0000-0000-000000000000 (the ACR convention).
 *
 * Verification (jose): only our own algorithms (ES256, EdDSA; never `none` or HMAC), a known
 * `kid`, our issuer, the configured service as audience, `exp`/`nbf`/`iat` with bounded clock
 * skew, and the token's use (an access token is not a refresh token). A verified access token is
 * cached until it expires, so a request costs a map lookup, not a signature check.
 */
import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { Access } from './access.js';
import { authError } from './errors.js';
import type { SigningKeys } from './signing-keys.js';

export interface TokenSettings {
  readonly issuer: string;
  readonly service: string;
  readonly accessTokenSeconds: number;
  readonly refreshTokenSeconds: number;
  readonly clockSkewSeconds: number;
}

/** Who a token speaks for, and the credential it came from (checked again on every request). */
export interface Subject {
  /** principal id: `admin:<name>`, `token:<name>`, `service:<name>`, `user:<sub>@<issuer>` */
  readonly sub: string;
  /** for repository-scoped tokens: which of the two passwords was used */
  readonly pwd?: string | undefined;
  /** ... and when that password was generated: a regenerated password voids what the old value obtained */
  readonly pwdAt?: number | undefined;
  /** authentication methods of an OIDC-federated principal (`mfa`, ...) */
  readonly amr?: readonly string[] | undefined;
  /** signed in with a refresh token: never put in a token, it only stops a refresh token begetting another */
  readonly fromRefresh?: true | undefined;
}

export interface AccessClaims extends Subject {
  readonly access: readonly Access[];
  readonly jti: string;
  readonly exp: number;
}

export interface RefreshClaims extends Subject {
  readonly jti: string;
  readonly exp: number;
}

const ALGORITHMS = ['ES256', 'EdDSA'];
const CACHE_MAX = 10_000;

export class TokenService {
  private readonly verified = new Map<string, AccessClaims>();

  constructor(
    private readonly keys: SigningKeys,
    readonly settings: TokenSettings,
  ) {}

  async issueAccess(subject: Subject, access: readonly Access[], now = Date.now()): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    const iat = Math.floor(now / 1000);
    const token = await this.sign({ ...claimsOf(subject), access, token_use: 'access' }, iat, this.settings.accessTokenSeconds);
    return { token, expiresIn: this.settings.accessTokenSeconds, issuedAt: new Date(iat * 1000).toISOString() };
  }

  async issueRefresh(subject: Subject, now = Date.now()): Promise<{ token: string; jti: string; expiresAt: number }> {
    const iat = Math.floor(now / 1000);
    const jti = randomUUID();
    const token = await this.sign({ ...claimsOf(subject), token_use: 'refresh' }, iat, this.settings.refreshTokenSeconds, jti);
    return { token, jti, expiresAt: (iat + this.settings.refreshTokenSeconds) * 1000 };
  }

  /** Verify an access token; 401 UNAUTHORIZED for anything wrong with it. */
  async verifyAccess(token: string, now = Date.now()): Promise<AccessClaims> {
    const hit = this.verified.get(token);
    if (hit !== undefined && hit.exp * 1000 > now - this.settings.clockSkewSeconds * 1000) return hit;
    const payload = await this.verify(token, 'access', now);
    const claims: AccessClaims = { ...subjectOf(payload), access: payload.access as Access[], jti: payload.jti ?? '', exp: payload.exp ?? 0 };
    if (this.verified.size >= CACHE_MAX) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(token, claims);
    return claims;
  }

  async verifyRefresh(token: string, now = Date.now()): Promise<RefreshClaims> {
    const payload = await this.verify(token, 'refresh', now);
    return { ...subjectOf(payload), jti: payload.jti ?? '', exp: payload.exp ?? 0 };
  }

  private async sign(claims: JWTPayload, iat: number, lifetime: number, jti: string = randomUUID()): Promise<string> {
    const { kid, alg, key } = await this.keys.active();
    return new SignJWT(claims)
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setIssuer(this.settings.issuer)
      .setAudience(this.settings.service)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + lifetime)
      .setJti(jti)
      .sign(key);
  }

  private async verify(token: string, use: 'access' | 'refresh', now: number): Promise<JWTPayload> {
    const refuse = (why: string): never => {
      throw authError('UNAUTHORIZED', `invalid ${use} token: ${why}`);
    };
    if (token.length > 16 * 1024) refuse('too long');
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      refuse('malformed');
    }
    const key = kid === undefined ? undefined : this.keys.verificationKey(kid);
    if (key === undefined) return refuse('unknown signing key');
    try {
      const { payload } = await jwtVerify(token, key.key, {
        algorithms: ALGORITHMS.filter((a) => a === key.alg),
        issuer: this.settings.issuer,
        audience: this.settings.service,
        clockTolerance: this.settings.clockSkewSeconds,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'nbf', 'iat', 'sub', 'jti'],
      });
      if (payload.token_use !== use) refuse(`not an ${use} token`);
      if (use === 'access' && !Array.isArray(payload.access)) refuse('no access claim');
      // What this registry never issues, even under a key it holds: a token outliving the
      // configured lifetime, or one dated after its key was retired (a private half that leaked
      // before retirement, from a backup say, signs nothing that is accepted).
      const lifetime = use === 'access' ? this.settings.accessTokenSeconds : this.settings.refreshTokenSeconds;
      if ((payload.exp ?? 0) - (payload.iat ?? 0) > lifetime) refuse('lives longer than this registry issues');
      if (key.retiredAt !== undefined && (payload.iat ?? 0) > key.retiredAt / 1000 + this.settings.clockSkewSeconds) refuse('signed after its key was retired');
      return payload;
    } catch (e) {
      if ((e as { code?: string }).code === 'UNAUTHORIZED') throw e;
      return refuse((e as { code?: string }).code ?? 'verification failed');
    }
  }
}

function claimsOf(s: Subject): JWTPayload {
  return {
    sub: s.sub,
    ...(s.pwd !== undefined ? { pwd: s.pwd } : {}),
    ...(s.pwdAt !== undefined ? { pwd_at: s.pwdAt } : {}),
    ...(s.amr !== undefined ? { amr: [...s.amr] } : {}),
  };
}

function subjectOf(p: JWTPayload): Subject {
  return {
    sub: p.sub ?? '',
    ...(typeof p.pwd === 'string' ? { pwd: p.pwd } : {}),
    ...(typeof p.pwd_at === 'number' ? { pwdAt: p.pwd_at } : {}),
    ...(Array.isArray(p.amr) ? { amr: p.amr.filter((x): x is string => typeof x === 'string') } : {}),
  };
}
