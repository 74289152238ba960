/**
 * The token service endpoints (Docker "Token Authentication Specification" and its OAuth2
 * variant; ACR's `/oauth2/exchange`):
 * - `GET /oauth2/token?service=&scope=...` with optional Basic credentials (`offline_token=true`
 *   adds a refresh token), or, without them, a client certificate that names a service identity
 *   (mutual TLS: what docker, podman and skopeo send from `certs.d` when they have no password);
 * - `POST /oauth2/token`, form `grant_type=password|refresh_token`, `service`, `scope`,
 *   `username`/`password` or `refresh_token`, `access_type=offline` for a refresh token;
 * - `POST /oauth2/exchange`, form `grant_type=access_token`, `service`, `access_token=<OIDC token>`:
 *   a registry refresh token for the federated service identity or person (ACR's exchange);
 * - `GET /oauth2/jwks`: the public signing keys.
 * Bodies are read bounded; credentials never reach a log, an error message or a URL we build.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseScopes, type AuthService, type Issued, type Subject } from '../../auth/index.js';
import { clientInfo, readBounded, verifiedClientCertificate } from '../../http/index.js';
import type { ClientIdentities } from '../../network/index.js';
import { registryError } from '../../oci/index.js';

const FORM_MAX_BYTES = 64 * 1024;

function send(reply: FastifyReply, issued: Issued): void {
  void reply
    .code(200)
    .header('Content-Type', 'application/json')
    .header('Cache-Control', 'no-store')
    .send(
      JSON.stringify({
        token: issued.token,
        access_token: issued.token,
        expires_in: issued.expiresIn,
        issued_at: issued.issuedAt,
        ...(issued.refreshToken !== undefined ? { refresh_token: issued.refreshToken } : {}),
      }),
    );
}

/** Basic credentials of a request; undefined without an Authorization header. */
function basic(req: FastifyRequest): { username: string; password: string } | undefined {
  const h = req.headers.authorization;
  if (h === undefined || h === '') return undefined;
  const m = /^Basic ([A-Za-z0-9+/]+=*)$/i.exec(h);
  if (m?.[1] === undefined) throw registryError('UNAUTHORIZED', 'the token endpoint takes Basic credentials');
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) throw registryError('UNAUTHORIZED', 'malformed Basic credentials');
  return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

function checkService(auth: AuthService, service: string | null | undefined): void {
  if (service !== null && service !== undefined && service !== auth.settings.service) {
    throw registryError('BAD_REQUEST', `unknown service; this registry is "${auth.settings.service}"`);
  }
}

async function form(req: FastifyRequest): Promise<URLSearchParams> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\b/i.test(type)) throw registryError('UNSUPPORTED', 'expected an application/x-www-form-urlencoded body');
  return new URLSearchParams((await readBounded(req.raw, FORM_MAX_BYTES, 'body')).toString('utf8'));
}

/**
 * The identity a request's client certificate signs in as (mutual TLS, ADR 0013): only a
 * certificate the handshake verified against `tls.clientCaFile`, and only one named in
 * `tls.clientIdentities`.
 */
async function certificateSubject(req: FastifyRequest, auth: AuthService, identities: ClientIdentities | undefined): Promise<Subject | undefined> {
  if (identities === undefined || identities.size === 0) return undefined;
  const cert = verifiedClientCertificate(req);
  const principal = cert === undefined ? undefined : identities.principalOf(cert);
  return principal === undefined ? undefined : auth.signInWithCertificate(principal, clientInfo(req));
}

export function oauthRoutes(app: FastifyInstance, auth: AuthService, identities?: ClientIdentities): void {
  app.get('/oauth2/token', async (req, reply) => {
    const url = req.raw.url ?? '';
    const q = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
    checkService(auth, q.get('service'));
    const scopes = parseScopes(q.getAll('scope'));
    const client = clientInfo(req);
    const creds = basic(req);
    // Basic credentials when given; otherwise the client certificate, when it names an identity
    const subject: Subject | undefined = creds === undefined ? await certificateSubject(req, auth, identities) : await auth.signIn(creds.username, creds.password, client);
    // (a refresh token used as the password never begets another: AuthService.issue sees to it)
    send(reply, await auth.issue(subject, scopes, client, { refresh: q.get('offline_token') === 'true' }));
  });

  app.post('/oauth2/token', async (req, reply) => {
    const f = await form(req);
    checkService(auth, f.get('service'));
    const scopes = parseScopes(f.getAll('scope'));
    const client = clientInfo(req);
    const grant = f.get('grant_type');
    let subject: Subject;
    let refresh = f.get('access_type') === 'offline';
    if (grant === 'password') {
      subject = await auth.signIn(f.get('username') ?? '', f.get('password') ?? '', client);
    } else if (grant === 'refresh_token') {
      subject = await auth.signInWithRefresh(f.get('refresh_token') ?? '', client);
      refresh = false; // the client keeps the refresh token it has
    } else {
      throw registryError('BAD_REQUEST', 'grant_type must be password or refresh_token');
    }
    send(reply, await auth.issue(subject, scopes, client, { refresh }));
  });

  // ACR's exchange: form grant_type=access_token, service, access_token=<OIDC token> → refresh token.
  app.post('/oauth2/exchange', async (req, reply) => {
    const f = await form(req);
    checkService(auth, f.get('service'));
    if (f.get('grant_type') !== 'access_token') throw registryError('BAD_REQUEST', 'grant_type must be access_token');
    const token = f.get('access_token') ?? '';
    if (token === '') throw registryError('BAD_REQUEST', 'access_token is required');
    const { refreshToken } = await auth.exchange(token, clientInfo(req));
    void reply.code(200).header('Content-Type', 'application/json').header('Cache-Control', 'no-store').send(JSON.stringify({ refresh_token: refreshToken }));
  });

  app.get('/oauth2/jwks', async (_req, reply) => {
    void reply.code(200).header('Content-Type', 'application/json').header('Cache-Control', 'max-age=300').send(JSON.stringify(auth.keys.jwks()));
  });
}
