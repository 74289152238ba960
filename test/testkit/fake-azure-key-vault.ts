/**
 * A local double of Azure Key Vault's keys REST API: the subset @azure/keyvault-keys sends when
 * AzureKeyVault drives it. We wrote it from Microsoft's REST reference and the SDK's source, not
 * from the service, so passing against it shows that the client and our reading of the protocol
 * agree. It does not show that the real service agrees.
 *
 * Modelled: HTTPS on 127.0.0.1 with a throwaway self-signed certificate for HOST (`agent` pins
 * that name to loopback, so the SDK's challenge-resource check stays on); the challenge flow (a
 * request without a token gets 401 + WWW-Authenticate naming the tenant and resource); bearer
 * tokens issued by credentialFor() (standing in for Entra ID) and per-principal access policies
 * in Key Vault's permission names, checked before any key is looked up; versions with their own
 * `enabled`; soft delete with a retention; recover; purge refused under purge protection; real
 * RSA-OAEP-256 with node:crypto. Errors are {"error":{"code","message","innererror"?}}.
 * Assumptions we could not check here: a failed unwrap is 400 BadParameter; listing the versions
 * of a missing key is an empty page; wrapKey works on a disabled key (only decrypt, sign and
 * unwrapKey are refused: azure-sdk-for-python#45342 reports this from the live service).
 */
import { execFile } from 'node:child_process';
import { constants, generateKeyPair, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, createServer } from 'node:https';
import type { AddressInfo, LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';

export const HOST = 'bulwark-test.vault.azure.net';
export const TENANT = '72f988bf-0000-4000-8000-00000000b01c';
/** Key Vault's key permissions (access-policy names) that this double checks. */
export type AzureKeyPermission = 'get' | 'list' | 'create' | 'update' | 'delete' | 'recover' | 'purge' | 'rotate' | 'wrapKey' | 'unwrapKey';

export interface FakeAzureKeyVaultOptions {
  /** principal -> permissions; change later with setPolicy (the double's stand-in for ARM/RBAC). */
  readonly policies?: Readonly<Record<string, readonly AzureKeyPermission[]>>;
  readonly purgeProtection?: boolean;
  readonly retentionDays?: number;
  readonly now?: () => Date;
}

export type RequestRecord = { readonly method: string; readonly path: string; readonly authorized: boolean; readonly status: number };

/** Key Vault keeps `enabled` per version; timestamps are whole Unix seconds. */
type Version = { readonly version: string; readonly created: number; updated: number; enabled: boolean; readonly keyOps: readonly string[]; readonly privateKey: KeyObject; readonly n: string; readonly e: string };
type Key = { readonly versions: Version[]; deleted?: { readonly deletedDate: number; readonly scheduledPurgeDate: number } };
type Reply = readonly [status: number, body?: unknown];
class Fail extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly inner?: string) {
    super(message);
  }
}

const generateRsa = promisify(generateKeyPair);
const run = promisify(execFile);

/** A certificate for HOST, made once per process with the openssl CLI (node:crypto cannot issue X.509). */
let tlsMaterial: Promise<{ key: Buffer; cert: Buffer }> | undefined;
function tls(): Promise<{ key: Buffer; cert: Buffer }> {
  tlsMaterial ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bulwark-fake-akv-'));
    try {
      const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
      const subject = ['-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`];
      const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'];
      await run('openssl', [...args, ...subject, '-keyout', key, '-out', cert], { timeout: 20_000 });
      return { key: await readFile(key), cert: await readFile(cert) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return tlsMaterial;
}

/** Every name resolves to 127.0.0.1: the tests never leave loopback, whatever URL the SDK builds. */
const loopback: LookupFunction = (_host, options, callback) => {
  if (options.all === true) (callback as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
};

const PERMISSION_FOR: Record<string, AzureKeyPermission> = {
  'POST create': 'create', 'POST rotate': 'rotate', 'GET versions': 'list', 'GET key': 'get', 'PATCH key': 'update',
  'POST wrapkey': 'wrapKey', 'POST unwrapkey': 'unwrapKey', 'DELETE key': 'delete', 'GET deleted': 'get',
  'POST recover': 'recover', 'DELETE deleted': 'purge',
};

export class FakeAzureKeyVault {
  readonly requests: RequestRecord[] = [];
  /** Scopes and tenants the credentials were asked for, in order. */
  readonly tokenRequests: { scopes: string[]; tenantId?: string }[] = [];
  /** Statuses to answer the next authorized requests with, before looking at them (outages). */
  readonly failNext: number[] = [];
  /** When set, authorized requests are held until the client gives up (a hung service). */
  stall = false;
  private readonly keys = new Map<string, Key>();
  private readonly tokens = new Map<string, string>();
  private readonly policies = new Map<string, ReadonlySet<AzureKeyPermission>>();
  private readonly now: () => Date;
  private readonly purgeProtection: boolean;
  private readonly retentionDays: number;

  private constructor(
    private readonly server: ReturnType<typeof createServer>,
    readonly agent: Agent,
    readonly vaultUrl: string,
    options: FakeAzureKeyVaultOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    this.purgeProtection = options.purgeProtection ?? true;
    this.retentionDays = options.retentionDays ?? 90;
    for (const [p, perms] of Object.entries(options.policies ?? {})) this.setPolicy(p, perms);
  }

  static async start(options: FakeAzureKeyVaultOptions = {}): Promise<FakeAzureKeyVault> {
    const { key, cert } = await tls();
    const server = createServer({ key, cert });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const agent = new Agent({ ca: cert, lookup: loopback, keepAlive: true });
    const fake = new FakeAzureKeyVault(server, agent, `https://${HOST}:${port}`, options);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void fake.handle(req, res));
    return fake;
  }

  /** What Entra ID would hand `principal`: a credential whose tokens this vault accepts. */
  credentialFor(principal: string): TokenCredential {
    const token = `fake-akv-${randomBytes(16).toString('hex')}`;
    this.tokens.set(token, principal);
    return {
      getToken: async (scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> => {
        this.tokenRequests.push({ scopes: [scopes].flat(), ...(options?.tenantId !== undefined ? { tenantId: options.tenantId } : {}) });
        return { token, expiresOnTimestamp: Date.now() + 3_600_000 };
      },
    };
  }

  setPolicy(principal: string, permissions: readonly AzureKeyPermission[]): void {
    this.policies.set(principal, new Set(permissions));
  }

  async close(): Promise<void> {
    this.agent.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.vaultUrl);
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const principal = token === undefined ? undefined : this.tokens.get(token);
    let reply: Reply;
    try {
      const body = await readJson(req);
      if (principal === undefined) throw new Fail(401, 'Unauthorized', token === undefined ? 'Request is missing a Bearer or PoP token.' : 'AKV10032: Invalid issuer.');
      if (this.stall) return; // the client's timeout or abort ends it; close() drops the socket
      const injected = this.failNext.shift();
      if (injected !== undefined) throw new Fail(injected, 'ServiceUnavailable', 'injected failure');
      if (url.searchParams.get('api-version') === null) throw new Fail(400, 'BadParameter', 'The api-version query parameter is required.');
      reply = await this.route(req.method ?? 'GET', url.pathname.split('/').slice(1).map(decodeURIComponent), principal, body);
    } catch (e) {
      const f = e instanceof Fail ? e : new Fail(500, 'InternalServerError', String(e));
      reply = [f.status, { error: { code: f.code, message: f.message, ...(f.inner !== undefined ? { innererror: { code: f.inner } } : {}) } }];
    }
    this.requests.push({ method: req.method ?? '', path: url.pathname, authorized: principal !== undefined, status: reply[0] });
    // Key Vault's challenge: the SDK sends its first request bare and expects exactly this.
    if (reply[0] === 401) res.setHeader('WWW-Authenticate', `Bearer authorization="https://login.microsoftonline.com/${TENANT}", resource="https://vault.azure.net"`);
    res.writeHead(reply[0], reply[1] === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' });
    res.end(reply[1] === undefined ? undefined : JSON.stringify(reply[1]));
  }

  private async route(method: string, seg: string[], principal: string, body: Record<string, unknown>): Promise<Reply> {
    const [collection, name = '', third, fourth] = seg;
    const action =
      collection === 'deletedkeys' ? (third === 'recover' ? 'recover' : 'deleted')
      : fourth === 'wrapkey' || fourth === 'unwrapkey' ? fourth
      : third === 'create' || third === 'rotate' || third === 'versions' ? third
      : 'key';
    const permission = PERMISSION_FOR[`${method} ${action}`];
    if (collection !== 'keys' && collection !== 'deletedkeys') throw new Fail(404, 'NotFound', 'no such path');
    if (permission === undefined) throw new Fail(405, 'MethodNotAllowed', `${method} is not supported here`);
    // Authorization comes first: a caller without the permission learns nothing about the key.
    if (this.policies.get(principal)?.has(permission) !== true)
      throw new Fail(403, 'Forbidden', `The user, group or application '${principal}' does not have keys ${permission} permission on key vault '${HOST}'.`, 'AccessDenied');
    this.expire();
    const version = third; // for key, wrapkey and unwrapkey: the version segment ('' or absent = current)
    switch (`${method} ${action}`) {
      case 'POST create': return [200, await this.create(name, body)];
      case 'POST rotate': return [200, await this.rotate(name)];
      case 'GET versions': return [200, { value: this.listed(name), nextLink: null }]; // one page, even for a missing key
      case 'GET key': return [200, this.bundle(name, this.version(this.live(name), version))];
      case 'PATCH key': return [200, this.update(name, version, body)];
      case 'POST wrapkey': return [200, this.crypt('wrapKey', name, version, body)];
      case 'POST unwrapkey': return [200, this.crypt('unwrapKey', name, version, body)];
      case 'DELETE key': return [200, this.softDelete(name)];
      case 'GET deleted': return [200, this.deletedBundle(name, this.deleted(name))];
      case 'POST recover': return [200, this.recover(name)];
      default: return this.purge(name);
    }
  }

  private async create(name: string, body: Record<string, unknown>): Promise<unknown> {
    const size = body.key_size ?? 2048;
    if (body.kty !== 'RSA' || (size !== 2048 && size !== 3072 && size !== 4096)) throw new Fail(400, 'BadParameter', 'Unsupported key type or size.');
    if (this.keys.get(name)?.deleted !== undefined)
      throw new Fail(409, 'Conflict', `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`, 'ObjectIsDeletedButRecoverable');
    const ops = Array.isArray(body.key_ops) ? body.key_ops.map(String) : ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'];
    const enabled = (body.attributes as { enabled?: boolean } | undefined)?.enabled ?? true;
    const v = await this.newVersion(size, ops, enabled);
    const key = this.keys.get(name) ?? { versions: [] };
    key.versions.push(v);
    this.keys.set(name, key);
    return this.bundle(name, v);
  }

  private async rotate(name: string): Promise<unknown> {
    const current = this.version(this.live(name), '');
    const v = await this.newVersion(Buffer.from(current.n, 'base64url').length * 8, current.keyOps, true);
    this.live(name).versions.push(v);
    return this.bundle(name, v);
  }

  private listed(name: string): unknown[] {
    const key = this.keys.get(name);
    return key?.deleted !== undefined ? [] : (key?.versions ?? []).map((v) => ({ kid: this.kid(name, v), attributes: this.attributes(v) }));
  }

  private update(name: string, version: string | undefined, body: Record<string, unknown>): unknown {
    const v = this.version(this.live(name), version);
    const enabled = (body.attributes as { enabled?: unknown } | undefined)?.enabled;
    if (typeof enabled === 'boolean') v.enabled = enabled;
    v.updated = this.seconds();
    return this.bundle(name, v);
  }

  private crypt(op: 'wrapKey' | 'unwrapKey', name: string, version: string | undefined, body: Record<string, unknown>): unknown {
    const v = this.version(this.live(name), version);
    if (op === 'unwrapKey' && !v.enabled) throw new Fail(403, 'Forbidden', 'Operation unwrapKey is not allowed on a disabled key.', 'KeyDisabled');
    if (!v.keyOps.includes(op)) throw new Fail(403, 'Forbidden', `Operation ${op} is not allowed by the key's key_ops.`);
    if (body.alg !== 'RSA-OAEP-256' || typeof body.value !== 'string') throw new Fail(400, 'BadParameter', 'alg must be RSA-OAEP-256 and value base64url.');
    const input = Buffer.from(body.value, 'base64url');
    const params = { key: v.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' };
    try {
      const out = op === 'wrapKey' ? publicEncrypt(params, input) : privateDecrypt(params, input);
      return { kid: this.kid(name, v), value: out.toString('base64url') };
    } catch {
      throw new Fail(400, 'BadParameter', 'The parameter is incorrect.');
    }
  }

  private softDelete(name: string): unknown {
    const key = this.live(name);
    const deletedDate = this.seconds();
    key.deleted = { deletedDate, scheduledPurgeDate: deletedDate + this.retentionDays * 86_400 };
    return this.deletedBundle(name, key);
  }

  private recover(name: string): unknown {
    const key = this.deleted(name);
    delete key.deleted;
    return this.bundle(name, this.version(key, ''));
  }

  private purge(name: string): Reply {
    this.deleted(name);
    if (this.purgeProtection)
      throw new Fail(403, 'Forbidden', 'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.');
    this.keys.delete(name);
    return [204];
  }

  /** Soft-deleted keys leave for good once their scheduled purge date has come. */
  private expire(): void {
    const now = this.now().getTime();
    for (const [name, key] of this.keys) if (key.deleted !== undefined && key.deleted.scheduledPurgeDate * 1000 <= now) this.keys.delete(name);
  }

  private live(name: string): Key {
    const key = this.keys.get(name);
    if (key === undefined || key.deleted !== undefined)
      throw new Fail(404, 'KeyNotFound', `A key with (name/id) ${name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.`);
    return key;
  }

  private deleted(name: string): Key {
    const key = this.keys.get(name);
    if (key?.deleted === undefined) throw new Fail(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
    return key;
  }

  /** `undefined` or '' is the current (newest) version, as in Key Vault's URLs. */
  private version(key: Key, version: string | undefined): Version {
    const v = version === undefined || version === '' ? key.versions.at(-1) : key.versions.find((x) => x.version === version);
    if (v === undefined) throw new Fail(404, 'KeyNotFound', `A key version ${version ?? ''} was not found in this key vault.`);
    return v;
  }

  private async newVersion(size: number, keyOps: readonly string[], enabled: boolean): Promise<Version> {
    const { privateKey, publicKey } = await generateRsa('rsa', { modulusLength: size, publicExponent: 0x10001 });
    const jwk = publicKey.export({ format: 'jwk' });
    const now = this.seconds();
    return { version: randomBytes(16).toString('hex'), created: now, updated: now, enabled, keyOps, privateKey, n: jwk.n ?? '', e: jwk.e ?? '' };
  }

  private bundle(name: string, v: Version): Record<string, unknown> {
    return { key: { kid: this.kid(name, v), kty: 'RSA', key_ops: v.keyOps, n: v.n, e: v.e }, attributes: this.attributes(v) };
  }

  private deletedBundle(name: string, key: Key): unknown {
    const { deletedDate, scheduledPurgeDate } = key.deleted ?? { deletedDate: 0, scheduledPurgeDate: 0 };
    return { ...this.bundle(name, this.version(key, '')), recoveryId: `${this.vaultUrl}/deletedkeys/${name}`, deletedDate, scheduledPurgeDate };
  }

  private attributes(v: Version): Record<string, unknown> {
    const level = `${this.retentionDays < 90 ? 'CustomizedRecoverable' : 'Recoverable'}${this.purgeProtection ? '' : '+Purgeable'}`;
    return { enabled: v.enabled, created: v.created, updated: v.updated, recoverableDays: this.retentionDays, recoveryLevel: level };
  }

  private kid(name: string, v: Version): string {
    return `${this.vaultUrl}/keys/${name}/${v.version}`;
  }

  private seconds(): number {
    return Math.floor(this.now().getTime() / 1000);
  }
}

/** The request body as JSON ({} when empty); the SDK's bare challenge request has none. */
async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return {};
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    throw new Fail(400, 'BadParameter', 'The request body is not JSON.');
  }
}
