/**
 * Authentication and token issuance: the token endpoint's logic and the per-request check.
 *
 * Sign-in methods at `/oauth2/token`:
 * - Basic/password grant with the bootstrap admin's or a repository-scoped token's credentials;
 * - username 00000000-0000-0000-0000-000000000000 with a registry refresh token as password, or
 *   the refresh_token grant (what `docker login` stores, the ACR convention);
 * - no credentials: anonymous, which only `auth.anonymousPull` grants anything to.
 *
 * Every request with a bearer token is checked again against the directory: a disabled token, a
 * deleted or expired password, a disabled admin or a deleted service identity stops working on
 * the next request, whatever access tokens are still in circulation.
 */
import { createHash } from 'node:crypto';
import type { ClientInfo, EventBus } from '../audit/index.js';
import { formatScope, type Access } from './access.js';
import { AccessRequests, elevationsUsed } from './access-requests.js';
import { registryError } from '../oci/index.js';
import { KeyedQueue } from '../storage/index.js';
import { Directory, type Actor } from './directory.js';
import { authError } from './errors.js';
import { FailureLimiter, type Attempt, type FailureLimits } from './failure-limiter.js';
import { subscriberKey } from '../network/index.js';
import { MAX_PASSWORD_LENGTH, verifyPassword } from './passwords.js';
import type { RepositoryPattern } from './patterns.js';
import { AccessPolicy, ANONYMOUS } from './policy.js';
import { OidcVerifier } from './oidc.js';
import type { AdminRecord, FederatedCredentialRecord, RefreshTokenRecord, ServiceRecord, TokenRecord } from './records.js';
import { SigningKeys, type KeySealer, type SigningAlgorithm } from './signing-keys.js';
import type { AuthStore } from './store.js';
import { TokenService, type AccessClaims, type Subject, type TokenSettings } from './tokens.js';

export const REFRESH_TOKEN_USERNAME = '00000000-0000-0000-0000-000000000000';

export interface AuthSettings extends TokenSettings {
  readonly algorithm: SigningAlgorithm;
  readonly keyRotationDays: number;
  readonly anonymousPull: readonly RepositoryPattern[];
  readonly failures: FailureLimits;
  readonly disableAdminOnFirstOwner: boolean;
  /** OpenID providers whose ID tokens people may exchange (`auth.oidc.userIssuers`) */
  readonly userIssuers: readonly { readonly issuer: string; readonly audience: string }[];
}

export interface Issued {
  readonly token: string;
  readonly expiresIn: number;
  readonly issuedAt: string;
  readonly refreshToken?: string;
  readonly granted: readonly Access[];
}

/** Verified password → the hash it matched, so repeated logins skip scrypt (see passwordCache). */
const PASSWORD_CACHE_MS = 60_000;
const PASSWORD_CACHE_MAX = 10_000;
/** live refresh tokens one identity may hold (devices, pipelines); the oldest goes first */
export const MAX_LIVE_REFRESH_TOKENS = 50;

/** The name failed token exchanges are counted under by the failure limiter (an exchange names no identity before it succeeds). */
const EXCHANGE = '(oidc-exchange)';

export class AuthService {
  readonly policy: AccessPolicy;
  readonly directory: Directory;
  readonly tokens: TokenService;
  readonly accessRequests: AccessRequests;
  private readonly limiter: FailureLimiter;
  /**
   * Sign-in attempts of one identity from one address, and token exchanges from one address, run
   * one after the other, so that each sees the failures counted before it (the failure limiter
   * counts a failure only once it is known).
   */
  private readonly attempts = new KeyedQueue();
  private readonly oidc: OidcVerifier;
  /**
   * sha256(username, password) → stored hash it verified against, for 60 s. Only
   * server-generated 256-bit passwords exist, so a fast hash of one reveals nothing useful; a
   * regenerated or deleted password no longer matches the stored hash and is verified again.
   */
  private readonly passwordCache = new Map<string, { hash: string; until: number }>();

  private constructor(
    private readonly store: AuthStore,
    private readonly bus: EventBus,
    readonly settings: AuthSettings,
    readonly keys: SigningKeys,
  ) {
    this.policy = new AccessPolicy(store, settings.anonymousPull);
    this.directory = new Directory(store, this.policy, bus, { disableAdminOnFirstOwner: settings.disableAdminOnFirstOwner });
    this.tokens = new TokenService(keys, settings);
    this.accessRequests = new AccessRequests(store, this.directory, this.policy, bus);
    this.limiter = new FailureLimiter(settings.failures);
    this.oidc = new OidcVerifier({ clockSkewSeconds: settings.clockSkewSeconds });
  }

  /** `sealer` seals the token-signing keys at rest (the key vault, when encryption is on; ADR 0018). */
  static async create(store: AuthStore, bus: EventBus, settings: AuthSettings, sealer?: KeySealer): Promise<AuthService> {
    const dayMs = 86_400_000;
    const keys = await new SigningKeys(store, {
      algorithm: settings.algorithm,
      rotateAfterMs: settings.keyRotationDays * dayMs,
      // a retired key verifies every token it signed: the longest lifetime, plus skew
      retainMs: (Math.max(settings.accessTokenSeconds, settings.refreshTokenSeconds) + settings.clockSkewSeconds) * 1000,
      sealer,
    }).init();
    return new AuthService(store, bus, settings, keys);
  }

  /** Periodic upkeep: key rotation and pruning, expired refresh-token records. */
  async maintain(now = Date.now()): Promise<void> {
    // A key vault that refuses a due key replacement does not stop the pruning; it is reported after.
    const keys = await this.keys.maintain(now).then(
      () => undefined,
      (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
    );
    for (const r of await this.store.list<RefreshTokenRecord>('refresh-token')) {
      if (r.value.expiresAt + this.settings.clockSkewSeconds * 1000 < now) await this.store.delete('refresh-token', r.id);
    }
    if (keys !== undefined) throw keys;
  }

  // --- sign-in ---------------------------------------------------------------------------

  /** Basic credentials (or the password grant). Throws UNAUTHORIZED or TOOMANYREQUESTS. */
  async signIn(username: string, password: string, client: ClientInfo): Promise<Subject> {
    const identity = username.slice(0, 100);
    // Attempts of one identity from one address run one after the other, so each sees the
    // failures before it: concurrency cannot slip past the limit (and a correct password
    // verified once is cached, so a legitimate burst stays fast).
    return this.attempts.run(`sign-in\0${identity}\0${subscriberKey(client.address)}`, () => this.signInOnce(identity, username, password, client));
  }

  private async signInOnce(identity: string, username: string, password: string, client: ClientInfo): Promise<Subject> {
    // in flight, this attempt counts against the address's limit (see FailureLimiter)
    const attempt = this.limiter.begin(identity, client.address);
    try {
      const throttle = (): void => {
        const wait = attempt.retryAfter();
        if (wait <= 0) return;
        attempt.end();
        this.audit('auth.throttled', client, { principal: identity, outcome: 'failure', reason: 'too many failed sign-ins' });
        throw registryError('TOOMANYREQUESTS', 'too many failed sign-ins; retry later', { headers: { 'Retry-After': String(wait) } });
      };
      throttle();
      const subject = username === REFRESH_TOKEN_USERNAME ? await this.refreshSubject(password).catch(() => undefined) : await this.checkPassword(username, password, throttle);
      if (subject === undefined) {
        attempt.fail();
        this.audit('auth.failure', client, { principal: identity, outcome: 'failure', reason: 'invalid credentials' });
        throw authError('UNAUTHORIZED', 'invalid credentials');
      }
      attempt.succeed();
      return subject;
    } finally {
      attempt.end();
    }
  }

  /**
   * A client certificate the TLS handshake verified, mapped to a service identity by
   * `tls.clientIdentities` (ADR 0013). The identity must exist; the certificate is the credential.
   */
  async signInWithCertificate(principal: string, client: ClientInfo): Promise<Subject> {
    const subject: Subject = { sub: principal, amr: ['mtls'] };
    if (!principal.startsWith('service:') || !(await this.stillValid(subject))) {
      this.audit('auth.failure', client, { principal, outcome: 'failure', reason: 'client certificate of an identity that does not exist' });
      throw authError('UNAUTHORIZED', 'the identity this client certificate names does not exist');
    }
    return subject;
  }

  /** The refresh_token grant. */
  async signInWithRefresh(refreshToken: string, client: ClientInfo): Promise<Subject> {
    try {
      return await this.refreshSubject(refreshToken);
    } catch (e) {
      this.audit('auth.failure', client, { outcome: 'failure', reason: 'invalid refresh token' });
      throw e;
    }
  }

  /** Grant the intersection of what was asked and what is allowed, as an access token. */
  async issue(subject: Subject | undefined, requested: readonly Access[], client: ClientInfo, opts: { refresh?: boolean } = {}): Promise<Issued> {
    const now = Date.now();
    const principal = subject?.sub ?? ANONYMOUS;
    const ctx = { principal, clientAddress: client.address, amr: subject?.amr, now };
    const granted = await this.policy.decide(ctx, requested);
    const elevations = elevationsUsed(await this.policy.assignmentsFor(ctx), granted);
    const access = await this.tokens.issueAccess(subject ?? { sub: ANONYMOUS }, granted, now);
    // Just-in-time elevations are audited each time a token relies on one (access.use), once the
    // token exists: a signing key the vault refuses issues none, and none is recorded.
    for (const id of elevations) {
      this.bus.emit({ type: 'access.use', time: new Date(now).toISOString(), repository: '', client, outcome: 'success', principal, target: `access-request ${id}`, reason: `granted ${granted.map(formatScope).join(' ')}` });
    }
    let refreshToken: string | undefined;
    // A refresh token signs in but never begets another, whichever grant carried it: holding one
    // must not let it be renewed forever past a revocation.
    // Nor does a client certificate (ADR 0013): it can ask again at any time, and a refresh token would outlive the certificate.
    if (opts.refresh === true && subject !== undefined && subject.fromRefresh !== true && subject.amr?.includes('mtls') !== true) refreshToken = await this.newRefreshToken(subject, now);
    this.audit('auth.token', client, {
      principal,
      outcome: 'success',
      target: requested.map(formatScope).join(' '),
      reason: `granted ${granted.map(formatScope).join(' ') || 'nothing'}`,
    });
    return { ...access, granted, ...(refreshToken !== undefined ? { refreshToken } : {}) };
  }

  /**
   * Issue and record a refresh token. An identity keeps at most MAX_LIVE_REFRESH_TOKENS live
   * ones: the oldest is revoked to make room, so no caller can grow the store without bound.
   */
  async newRefreshToken(subject: Subject, now = Date.now()): Promise<string> {
    const live = (await this.store.list<RefreshTokenRecord>('refresh-token'))
      .filter((x) => x.value.sub === subject.sub && !x.value.revoked && x.value.expiresAt > now)
      .sort((a, b) => a.value.expiresAt - b.value.expiresAt);
    for (const old of live.slice(0, Math.max(0, live.length - MAX_LIVE_REFRESH_TOKENS + 1))) {
      await this.store.put('refresh-token', old.id, { ...old.value, revoked: true });
    }
    const r = await this.tokens.issueRefresh(subject, now);
    const rec: RefreshTokenRecord = { jti: r.jti, sub: subject.sub, expiresAt: r.expiresAt, revoked: false };
    await this.store.put('refresh-token', r.jti, rec, 'absent');
    return r.token;
  }

  /** Revoke every refresh token of a principal (or one by jti). Returns how many. Audited when an actor is given. */
  async revokeRefreshTokens(match: { sub?: string; jti?: string }, actor?: Actor): Promise<number> {
    let n = 0;
    for (const r of await this.store.list<RefreshTokenRecord>('refresh-token')) {
      if (r.value.revoked || (match.sub !== undefined && r.value.sub !== match.sub) || (match.jti !== undefined && r.id !== match.jti)) continue;
      await this.store.put('refresh-token', r.id, { ...r.value, revoked: true });
      n++;
    }
    if (actor !== undefined) this.adminChange(actor, 'refresh-token', `revoked ${n} refresh token(s) of ${match.sub ?? `jti ${match.jti ?? '?'}`}`);
    return n;
  }

  /** Replace the signing key now (older keys keep verifying what they signed); audited. */
  async rotateSigningKey(actor: Actor): Promise<string> {
    const kid = await this.keys.rotate();
    this.adminChange(actor, 'signing-key', `rotated; new key ${kid}`);
    return kid;
  }

  private adminChange(actor: Actor, target: string, reason: string): void {
    this.bus.emit({ type: 'admin.change', time: new Date().toISOString(), repository: '', client: actor.client, outcome: 'success', principal: actor.principal, target, reason });
  }

  /**
   * `/oauth2/exchange`: trade an OIDC token for a registry refresh token (the ACR flow). A token
   * whose (issuer, subject, audience) matches a federated credential signs in as that service
   * identity (CI with no stored secret); one from a configured user issuer signs in as the
   * person `user:<sub>@<issuer>`. Anything else, or any verification failure, is 401.
   */
  exchange(idToken: string, client: ClientInfo): Promise<{ refreshToken: string; subject: Subject }> {
    // Failed exchanges count like failed sign-ins (per address, and under one name for all of them):
    // each attempt may cost a JWKS fetch and a signature check, so guessing is throttled too, and
    // the attempts of one address run one after the other, so that a burst cannot slip past it.
    return this.attempts.run(`exchange\0${subscriberKey(client.address)}`, () => this.exchangeOnce(idToken, client));
  }

  private async exchangeOnce(idToken: string, client: ClientInfo): Promise<{ refreshToken: string; subject: Subject }> {
    const attempt = this.limiter.begin(EXCHANGE, client.address);
    try {
      return await this.exchangeChecked(idToken, client, attempt);
    } finally {
      attempt.end();
    }
  }

  private async exchangeChecked(idToken: string, client: ClientInfo, attempt: Attempt): Promise<{ refreshToken: string; subject: Subject }> {
    const wait = attempt.retryAfter();
    if (wait > 0) {
      // over now, not a microtask later when the caller's finally runs: a refused attempt holds no place
      attempt.end();
      this.audit('auth.throttled', client, { principal: EXCHANGE, outcome: 'failure', reason: 'too many failed token exchanges' });
      throw registryError('TOOMANYREQUESTS', 'too many failed token exchanges; retry later', { headers: { 'Retry-After': String(wait) } });
    }
    const fail = (reason: string): never => {
      attempt.fail();
      this.audit('auth.exchange', client, { outcome: 'failure', reason });
      throw authError('UNAUTHORIZED', 'the token cannot be exchanged: not from a trusted issuer for this registry, or invalid');
    };
    const issuer = OidcVerifier.unverifiedIssuer(idToken);
    if (issuer === undefined) return fail('not a JWT with an issuer');
    const bindings = (await this.store.list<FederatedCredentialRecord>('federated-credential')).map((f) => f.value).filter((f) => f.issuer === issuer);
    let subject: Subject | undefined;
    let lastError = 'no federated credential or user issuer matches the issuer';
    for (const audience of new Set(bindings.map((b) => b.audience))) {
      try {
        const v = await this.oidc.verify(idToken, { issuer, audience });
        const b = bindings.find((x) => x.audience === audience && x.subject === v.subject);
        if (b !== undefined && (await this.store.get('service', b.service)) !== undefined) {
          subject = { sub: `service:${b.service}`, ...(v.amr !== undefined ? { amr: v.amr } : {}) };
          break;
        }
        lastError = 'no federated credential matches the subject';
      } catch (e) {
        lastError = (e as Error).message;
      }
    }
    if (subject === undefined) {
      const user = this.settings.userIssuers.find((u) => u.issuer === issuer);
      if (user !== undefined) {
        try {
          const v = await this.oidc.verify(idToken, user);
          subject = { sub: `user:${v.subject}@${v.issuer}`, ...(v.amr !== undefined ? { amr: v.amr } : {}) };
        } catch (e) {
          lastError = (e as Error).message;
        }
      }
    }
    if (subject === undefined) return fail(lastError);
    attempt.succeed();
    const refreshToken = await this.newRefreshToken(subject);
    this.audit('auth.exchange', client, { principal: subject.sub, outcome: 'success', target: issuer });
    return { refreshToken, subject };
  }

  // --- per request -----------------------------------------------------------------------

  /**
   * The bearer token of a request, verified and checked against the directory; undefined when
   * the request carries none (anonymous). Throws UNAUTHORIZED for a bad or revoked one.
   */
  async authenticate(authorization: string | undefined, client: ClientInfo): Promise<AccessClaims | undefined> {
    if (authorization === undefined || authorization === '') return undefined;
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization);
    if (m?.[1] === undefined) {
      // Basic on a resource route is not how the token flow works: challenge for a token.
      if (/^Basic /i.test(authorization)) return undefined;
      this.audit('auth.failure', client, { outcome: 'failure', reason: 'unsupported authorization scheme or malformed bearer token' });
      throw authError('UNAUTHORIZED', 'unsupported authorization scheme');
    }
    try {
      const claims = await this.tokens.verifyAccess(m[1]);
      if (claims.sub !== ANONYMOUS && !(await this.stillValid(claims))) throw authError('UNAUTHORIZED', 'the credential behind this token was disabled or removed');
      return claims;
    } catch (e) {
      this.audit('auth.failure', client, { outcome: 'failure', reason: (e as Error).message });
      throw e;
    }
  }

  /** Whether the credential a token came from still exists and is enabled. */
  async stillValid(subject: Subject, now = Date.now()): Promise<boolean> {
    const i = subject.sub.indexOf(':');
    const kind = subject.sub.slice(0, i);
    const name = subject.sub.slice(i + 1);
    switch (kind) {
      case 'admin':
        return (await this.store.get<AdminRecord>('admin', name))?.value.enabled === true;
      case 'token': {
        const t = (await this.store.get<TokenRecord>('token', name))?.value;
        if (t === undefined || t.status !== 'enabled') return false;
        if (subject.pwd === undefined) return true; // signed in through a refresh token of the token itself
        const p = t.passwords.find((x) => x.name === subject.pwd);
        // A regenerated slot has a new createdAt: tokens the old value obtained stop here.
        return p !== undefined && p.createdAt === subject.pwdAt && (p.expiresAt === undefined || p.expiresAt > now);
      }
      case 'service':
        return (await this.store.get<ServiceRecord>('service', name)) !== undefined;
      case 'user':
        return true;
      default:
        return false;
    }
  }

  audit(
    type: 'auth.token' | 'auth.refresh' | 'auth.exchange' | 'auth.failure' | 'auth.throttled' | 'auth.denied',
    client: ClientInfo,
    fields: { principal?: string; outcome: 'success' | 'failure'; target?: string; reason?: string },
  ): void {
    this.bus.emit({ type, time: new Date().toISOString(), repository: '', client, ...fields });
  }

  // --- internals -------------------------------------------------------------------------

  /**
   * Exactly two scrypt computations per attempt whatever the username (unknown, disabled, an
   * admin with one password, a token with none, one or two live ones), so answer times do not tell
   * names, slots or states apart. A password verified in the last minute is remembered (see
   * passwordCache), which only the right password can hit.
   */
  private async checkPassword(username: string, password: string, gate: () => void): Promise<Subject | undefined> {
    if (password.length === 0 || password.length > MAX_PASSWORD_LENGTH || username.length > 100) return undefined;
    const now = Date.now();
    const candidates: { hash: string; subject: Subject }[] = [];
    const admin = (await this.store.get<AdminRecord>('admin', username))?.value;
    if (admin?.enabled === true) candidates.push({ hash: admin.passwordHash, subject: { sub: `admin:${username}` } });
    const token = admin === undefined ? (await this.store.get<TokenRecord>('token', username))?.value : undefined;
    if (token?.status === 'enabled') {
      for (const p of token.passwords) {
        if (p.expiresAt === undefined || p.expiresAt > now) candidates.push({ hash: p.hash, subject: { sub: `token:${username}`, pwd: p.name, pwdAt: p.createdAt } });
      }
    }
    const cacheKey = createHash('sha256').update(username).update('\0').update(password).digest('base64url');
    const cached = this.passwordCache.get(cacheKey);
    const hit = cached !== undefined && cached.until > now ? candidates.find((c) => c.hash === cached.hash) : undefined;
    if (hit !== undefined) return hit.subject;
    let found: { hash: string; subject: Subject } | undefined;
    for (let i = 0; i < 2; i++) {
      const c = candidates[i];
      const ok = await verifyPassword(password, c?.hash ?? DUMMY_HASH, gate);
      if (ok && c !== undefined) found ??= c;
    }
    if (found === undefined) return undefined;
    if (this.passwordCache.size >= PASSWORD_CACHE_MAX) this.passwordCache.clear();
    this.passwordCache.set(cacheKey, { hash: found.hash, until: now + PASSWORD_CACHE_MS });
    return found.subject;
  }

  private async refreshSubject(refreshToken: string): Promise<Subject> {
    const claims = await this.tokens.verifyRefresh(refreshToken);
    const rec = (await this.store.get<RefreshTokenRecord>('refresh-token', claims.jti))?.value;
    if (rec === undefined || rec.revoked || rec.sub !== claims.sub) throw authError('UNAUTHORIZED', 'invalid refresh token: revoked or unknown');
    if (!(await this.stillValid(claims))) throw authError('UNAUTHORIZED', 'invalid refresh token: the identity was disabled or removed');
    return {
      sub: claims.sub,
      ...(claims.pwd !== undefined ? { pwd: claims.pwd } : {}),
      ...(claims.pwdAt !== undefined ? { pwdAt: claims.pwdAt } : {}),
      ...(claims.amr !== undefined ? { amr: claims.amr } : {}),
      fromRefresh: true,
    };
  }
}

/** A valid scrypt encoding of a random password nobody knows. */
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
