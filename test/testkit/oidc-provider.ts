/**
 * A real OpenID provider (npm `oidc-provider`) on a loopback port, for the tests of OIDC
 * federation. Tokens are never signed by the test: `token()` runs the provider's authorization
 * code flow with PKCE (RFC 7636) over HTTP, as a native app would (RFC 8252):
 *
 *   GET  /auth?client_id=<audience>&code_challenge=…  → 303 /interaction/<uid>   (cookies set)
 *   GET  /interaction/<uid>  answered here: logs `subject` in with `amr`  → 303 /auth/<uid>
 *   GET  /auth/<uid>  → 303 /interaction/<uid2>;  GET it: consents to `openid` → 303 /auth/<uid2>
 *   GET  /auth/<uid2>  → 303 http://127.0.0.1/callback?code=…&state=…    (never fetched)
 *   POST /token  code + code_verifier  → { id_token }   (aud = client_id = audience)
 *
 * The interactions (login, then the consent native clients always need) are answered through the
 * provider's documented custom-interaction API (`interactionDetails`/`interactionFinished`), not
 * its devInteractions HTML forms: only an interaction result can set `amr`. Clients are created on
 * demand in the provider's storage adapter, one per audience.
 *
 * `completeAuthorization(url)` plays the person's part for a native app under test (`bulwark
 * login`): the same interactions for the app's own authorization URL, up to the redirect to the
 * app's loopback `redirect_uri` (any port, RFC 8252 §7.3); the app redeems the code itself.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

export interface TestIdp {
  /** e.g. http://127.0.0.1:<port> */
  readonly issuer: string;
  /** An ID token the provider signed for `subject`, audience `audience` (and `amr` when given). */
  token(opts: { subject: string; audience: string; amr?: string[] }): Promise<string>;
  /**
   * What a person does in the browser with an authorization URL a native app printed (RFC 8252):
   * open it, log in as `subject` (with `amr`), consent. Returns the provider's final redirect to
   * the app's `redirect_uri` (with `code` and `state`), without requesting it: the caller does.
   */
  completeAuthorization(authorizeUrl: string, login: { subject: string; amr?: string[] }): Promise<string>;
  /** Restart the provider with a new signing key on the same port and issuer; the old key is gone. */
  rotateKeys(): Promise<void>;
  close(): Promise<void>;
}

export interface TestIdpOptions {
  /** lifetime of the ID tokens issued (default 300 s); short for expiry tests */
  readonly idTokenTtlSeconds?: number;
}

const REDIRECT_URI = 'http://127.0.0.1/callback';
const STEP_TIMEOUT_MS = 5000;

// -- the slice of oidc-provider's API used here (the package ships no types) --
type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;
type InteractionResult = { login: { accountId: string; amr?: string[]; remember: boolean } } | { consent: { grantId: string } };
interface Provider {
  callback(): Handler;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<{ params: Record<string, unknown>; prompt: { name: string }; session?: { accountId: string } }>;
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: InteractionResult, opts: { mergeWithLastSubmission: boolean }): Promise<void>;
  Grant: new (init: { accountId: string; clientId: string }) => { addOIDCScope(scope: string): void; save(): Promise<string> };
}
type ProviderClass = new (issuer: string, configuration: Record<string, unknown>) => Provider;

let providerClass: Promise<ProviderClass> | undefined;

/** oidc-provider v9 warns once at import that it wants Node 22; that line alone is dropped. */
function loadProvider(): Promise<ProviderClass> {
  providerClass ??= (async () => {
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (!String(args[0]).includes('oidc-provider WARNING: Unsupported runtime')) warn(...args);
    };
    try {
      // @ts-expect-error -- no type declarations; the surface used is typed above
      const mod = (await import('oidc-provider')) as { default: ProviderClass };
      return mod.default;
    } finally {
      console.warn = warn;
    }
  })();
  return providerClass;
}

/** A minimal oidc-provider storage adapter (its built-in one warns): one Map, with expiry. */
class Store {
  readonly entries = new Map<string, { payload: Record<string, unknown>; expiresAt: number }>();
  readonly sessionByUid = new Map<string, string>();

  adapter(model: string): Record<string, (...args: never[]) => Promise<unknown>> {
    const key = (id: string): string => `${model}:${id}`;
    const find = (id: string): Record<string, unknown> | undefined => {
      const e = this.entries.get(key(id));
      if (e === undefined || e.expiresAt > Date.now()) return e?.payload;
      this.entries.delete(key(id));
      return undefined;
    };
    return {
      upsert: async (id: string, payload: Record<string, unknown>, expiresIn?: number) => {
        this.entries.set(key(id), { payload, expiresAt: expiresIn === undefined ? Infinity : Date.now() + expiresIn * 1000 });
        if (model === 'Session' && typeof payload.uid === 'string') this.sessionByUid.set(payload.uid, id);
      },
      find: async (id: string) => find(id),
      findByUid: async (uid: string) => { const id = this.sessionByUid.get(uid); return id === undefined ? undefined : find(id); },
      findByUserCode: async () => undefined,
      consume: async (id: string) => { const p = find(id); if (p !== undefined) p.consumed = Math.floor(Date.now() / 1000); },
      destroy: async (id: string) => { this.entries.delete(key(id)); },
      revokeByGrantId: async (grantId: string) => {
        for (const [k, e] of this.entries) if (e.payload.grantId === grantId) this.entries.delete(k);
      },
    };
  }

  /** A public native client per audience: an ID token's `aud` is the client_id. */
  ensureClient(clientId: string): void {
    this.entries.set(`Client:${clientId}`, {
      payload: {
        client_id: clientId, application_type: 'native', token_endpoint_auth_method: 'none',
        redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'],
      },
      expiresAt: Infinity,
    });
  }
}

async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

export async function startTestIdp(opts: TestIdpOptions = {}): Promise<TestIdp> {
  const Provider = await loadProvider();
  const store = new Store();
  const logins = new Map<string, { subject: string; amr?: string[] }>();
  let provider: Provider;
  let handle: Handler;

  const server: Server = createServer((req, res) => {
    void (req.url?.startsWith('/interaction/') === true ? answerInteraction(req, res) : handle(req, res));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // The login and consent pages of a real IdP: whoever the pending request (by state) names logs
  // in, and consents to `openid` for the client, the way oidc-provider's own example does it.
  async function answerInteraction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const { params, prompt, session } = await provider.interactionDetails(req, res);
      const login = logins.get(String(params.state));
      if (login === undefined) throw new Error('no pending login for this state');
      if (prompt.name === 'login') {
        const result = { login: { accountId: login.subject, remember: false, ...(login.amr === undefined ? {} : { amr: login.amr }) } };
        return await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
      }
      if (prompt.name !== 'consent' || session === undefined) throw new Error(`unexpected prompt ${prompt.name}`);
      const grant = new provider.Grant({ accountId: session.accountId, clientId: String(params.client_id) });
      grant.addOIDCScope('openid');
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`failed to finish the interaction: ${String(e)}`);
    }
  }

  // (Re)start the provider behind the same listener: same issuer, same storage, new key only.
  async function boot(): Promise<void> {
    provider = new Provider(issuer, {
      adapter: (model: string) => store.adapter(model),
      jwks: { keys: [await signingKey()] },
      findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
      // an ID token carries the claims of its scopes: put the session's amr in `openid`'s
      claims: { acr: null, auth_time: null, sid: null, iss: null, openid: ['sub', 'amr'] },
      features: { devInteractions: { enabled: false } },
      interactions: { url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
      clientBasedCORS: () => false,
      ttl: { AccessToken: 60, AuthorizationCode: 60, Grant: 600, Interaction: 600, Session: 600, IdToken: opts.idTokenTtlSeconds ?? 300 },
    });
    handle = provider.callback();
  }
  await boot();

  async function token(req: { subject: string; audience: string; amr?: string[] }): Promise<string> {
    store.ensureClient(req.audience);
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    logins.set(state, { subject: req.subject, ...(req.amr === undefined ? {} : { amr: req.amr }) });
    try {
      const jar = new Map<string, string>(); // a fresh browser per token: no session carries over
      const query = new URLSearchParams({
        client_id: req.audience, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state,
        nonce: randomBytes(16).toString('base64url'), code_challenge_method: 'S256',
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      });
      const url = await followToRedirect(new URL(`/auth?${query.toString()}`, issuer), REDIRECT_URI, jar);
      const code = url.searchParams.get('code');
      if (url.searchParams.get('state') !== state || code === null) throw new Error(`failed to get an authorization code: ${url.search}`);
      const body = new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier, client_id: req.audience });
      const res = await send(new URL('/token', issuer), { method: 'POST', body }, jar);
      const json = (await res.json()) as { id_token?: unknown };
      if (res.status !== 200 || typeof json.id_token !== 'string') throw new Error(`failed to redeem the code: ${res.status} ${JSON.stringify(json)}`);
      return json.id_token;
    } finally {
      logins.delete(state);
    }
  }

  async function completeAuthorization(authorizeUrl: string, login: { subject: string; amr?: string[] }): Promise<string> {
    const url = new URL(authorizeUrl);
    const clientId = url.searchParams.get('client_id');
    const state = url.searchParams.get('state');
    const redirectUri = url.searchParams.get('redirect_uri');
    if (url.origin !== issuer || clientId === null || state === null || redirectUri === null) throw new Error(`not an authorization request to this provider: ${authorizeUrl}`);
    store.ensureClient(clientId);
    logins.set(state, { subject: login.subject, ...(login.amr === undefined ? {} : { amr: login.amr }) });
    try {
      return (await followToRedirect(url, redirectUri, new Map())).href;
    } finally {
      logins.delete(state);
    }
  }

  return {
    issuer,
    token,
    completeAuthorization,
    rotateKeys: boot,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Follow the provider's redirects (through the interactions) until one goes to `redirectUri`. */
async function followToRedirect(start: URL, redirectUri: string, jar: Map<string, string>): Promise<URL> {
  let url = start;
  for (let hop = 0; !url.href.startsWith(`${redirectUri}?`); hop++) {
    if (hop === 8) throw new Error('failed to get an authorization code: too many redirects');
    const res = await send(url, { method: 'GET' }, jar);
    const location = res.headers.get('location');
    if (location === null) throw new Error(`failed to get an authorization code: ${res.status} at ${url.pathname}: ${(await res.text()).slice(0, 300)}`);
    url = new URL(location, url);
  }
  return url;
}

/** One request of the flow: no redirect following, a deadline, and a cookie jar (names → values). */
async function send(url: URL, init: { method: string; body?: URLSearchParams }, jar: Map<string, string>): Promise<Response> {
  const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(STEP_TIMEOUT_MS), headers: cookie === '' ? {} : { cookie } });
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(';', 1)[0] ?? '';
    const eq = pair.indexOf('=');
    const [name, value] = [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
    if (value === '') jar.delete(name);
    else jar.set(name, value);
  }
  return res;
}
