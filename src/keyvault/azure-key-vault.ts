/**
 * AzureKeyVault: the KeyVault contract on Azure Key Vault, through @azure/keyvault-keys and
 * @azure/identity. Private keys never leave Azure; Key Vault wraps and unwraps with RSA-OAEP-256.
 *
 * What was tested, and what was not: this class, with the real SDK (HTTPS, challenge-based sign-in,
 * pollers, error objects), passes the KeyVault conformance suite against
 * test/testkit/fake-azure-key-vault.ts, a local REST double that we wrote from the REST reference.
 * That proves agreement with our reading of the protocol, not compatibility with the real
 * service. Never tested here: the real Azure Key Vault service, and signing in with
 * DefaultAzureCredential (managed identity, workload identity, environment credentials).
 * docs/keyvault-azure.md says more.
 *
 * How the contract maps onto Key Vault (docs/keyvault-azure.md has the full list):
 * - Azure decides permissions (access policies or RBAC) for this vault's one credential. The
 *   `identity` argument is what Bulwark audits. With `options.identity` set, a call made for any
 *   other identity is refused (FORBIDDEN): Azure would only ever see this credential. Bulwark
 *   cannot change Azure permissions, so setAccessPolicy always fails with INVALID.
 * - Key Vault wraps even with a disabled key version; only unwrap is refused. So wrapKey first
 *   reads the version (keys/get), refuses a disabled one itself, and learns which version is newest.
 * - Key Vault keeps `enabled` per version, so setEnabled sets it on every version.
 * - The keys API answers 404 for a soft-deleted key. After a 404 we look at the deleted keys, so
 *   the caller gets KEY_DELETED rather than KEY_NOT_FOUND.
 * - Key Vault's "create" adds a version when the name exists, so createKey checks first: two
 *   racing createKey calls can both succeed. rotateKey is Key Vault's rotate (no accidental create).
 * - Retention and purge protection are settings of the vault in Azure, not options here.
 */
import type * as AzureKeys from '@azure/keyvault-keys';
import type { CryptographyClient, DeletedKey, KeyClient, KeyClientOptions, KeyProperties, KeyVaultKey } from '@azure/keyvault-keys';
import type { TokenCredential } from '@azure/identity';
import { KEY_NAME, KEY_SIZES, KeyVaultError, type KeyId, type KeyInfo, type KeyPermission, type KeySize, type KeyVault } from './key-vault.js';
import type { KeyVaultAudit, KeyVaultErrorCode, KeyVaultOp, KeyVersionInfo, WrappedKey } from './key-vault.js';

export interface AzureKeyVaultOptions {
  /** https://<vault-name>.vault.azure.net */
  readonly vaultUrl: string;
  readonly audit: KeyVaultAudit;
  /** Default: DefaultAzureCredential (environment, workload identity, managed identity, ...). */
  readonly credential?: TokenCredential;
  /** The one identity this vault acts for; calls made for any other identity are refused. */
  readonly identity?: string;
  /** Bound on each call, Azure SDK retries included. Default 30 s. */
  readonly timeoutMs?: number;
  /** Passed to the SDK: HTTP agent, proxy, retry policy. */
  readonly transport?: Pick<KeyClientOptions, 'agent' | 'proxyOptions' | 'retryOptions'>;
}

const ALGORITHM = 'RSA-OAEP-256';
/** RSA-OAEP-256 on a 2048-bit modulus carries at most 256 - 2*32 - 2 bytes. */
const MAX_DATA_KEY = 190;
/** CryptographyClients are reused (each has its own pipeline and sign-in); this bounds how many. */
const CRYPTO_CLIENTS = 64;
const POLL_MS = 500;

type Event = { op: KeyVaultOp; identity: string; key: string; version?: string };
/** What we keep of an SDK error: no request, no headers, so no token can leak through `cause`. */
type AzureFailure = { readonly name: string; readonly status?: number; readonly code?: string; readonly inner?: string; readonly message: string };

function fail(code: KeyVaultErrorCode, message: string): never {
  throw new KeyVaultError(code, message);
}

/** Names and versions become URL path segments; KEY_NAME admits no '/', '.', or '%'. */
function checkName(value: string, what: string): void {
  if (!KEY_NAME.test(value)) fail('INVALID', `${what} must be 1-127 letters, digits and dashes`);
}

function statusOf(e: unknown): number | undefined {
  return e instanceof Error && e.name === 'RestError' ? (e as { statusCode?: number }).statusCode : undefined;
}

/** `call`'s value, or `absent` when Key Vault answers with one of `statuses`. */
async function unless<T, A>(statuses: readonly number[], absent: A, call: Promise<T>): Promise<T | A> {
  try {
    return await call;
  } catch (e) {
    if (statuses.includes(statusOf(e) ?? 0)) return absent;
    throw e;
  }
}

function withVersion(ev: Event, info: KeyInfo): KeyInfo {
  ev.version = info.version;
  return info;
}

/** Drops anything shaped like a bearer token or JWT from text that came from outside. */
function redact(text: string): string {
  return text.replace(/Bearer\s+\S+/gi, 'Bearer [redacted]').replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '[redacted]').slice(0, 300);
}

function describe(e: unknown): AzureFailure {
  if (!(e instanceof Error)) return { name: 'unknown', message: 'non-Error thrown' };
  if (e.name !== 'RestError') return { name: e.name, message: redact(e.message) };
  const r = e as Error & { statusCode?: number; code?: string; details?: { error?: { innerError?: { code?: string } } } };
  const [status, code, inner] = [r.statusCode, r.code, r.details?.error?.innerError?.code];
  return { name: e.name, message: redact(e.message), ...(status !== undefined ? { status } : {}), ...(code !== undefined ? { code } : {}), ...(inner !== undefined ? { inner } : {}) };
}

/**
 * Key Vault's answer -> contract code. PURGE_PROTECTED and KEY_DISABLED share 403 "Forbidden" with
 * plain denial; the service's message (and innererror KeyDisabled) is all that tells them apart.
 * 401 after the challenge means our credential was rejected: a configuration fault, UNAVAILABLE.
 */
function codeFor(op: KeyVaultOp, f: AzureFailure): KeyVaultErrorCode {
  switch (f.status) {
    case 400:
      return op === 'unwrapKey' ? 'UNWRAP_FAILED' : 'INVALID';
    case 403:
      if (f.inner === 'KeyDisabled' || /disabled key/i.test(f.message)) return 'KEY_DISABLED';
      return op === 'purge' && /purge protection/i.test(f.message) ? 'PURGE_PROTECTED' : 'FORBIDDEN';
    case 404:
      return 'KEY_NOT_FOUND';
    case 409:
      return op === 'createKey' ? 'KEY_EXISTS' : 'KEY_DELETED';
    case undefined:
    default:
      return 'UNAVAILABLE'; // 401, 408, 429, 5xx, network, credential and timeout failures
  }
}

/** Bits of the modulus: the JWK's `n` may carry a leading zero byte. */
function modulusBits(n: Uint8Array | undefined): number {
  const first = n?.findIndex((b) => b !== 0) ?? -1;
  return first < 0 || n === undefined ? 0 : (n.length - first) * 8;
}

function toInfo(name: string, k: KeyVaultKey | DeletedKey): KeyInfo {
  const p: KeyProperties & Partial<DeletedKey['properties']> = k.properties;
  const size = modulusBits(k.key?.n) as KeySize;
  if (p.version === undefined || p.createdOn === undefined) fail('UNAVAILABLE', `Key Vault returned key ${name} without a version or creation time`);
  if (!KEY_SIZES.includes(size)) fail('INVALID', `key ${name} is not a ${KEY_SIZES.join('/')}-bit RSA key`);
  const deleted = p.deletedOn === undefined ? {} : { deletedAt: p.deletedOn.toISOString(), ...(p.scheduledPurgeDate ? { recoverableUntil: p.scheduledPurgeDate.toISOString() } : {}) };
  return { name, version: p.version, createdAt: p.createdOn.toISOString(), size, enabled: p.enabled === true, ...deleted };
}

export class AzureKeyVault implements KeyVault {
  private readonly keys: KeyClient;
  private readonly clientOptions: KeyClientOptions;
  private readonly cryptoClients = new Map<string, CryptographyClient>();
  private readonly pending = new Set<Promise<unknown>>();

  /** Loads the Azure SDK only here, so registries that never use Azure do not pay for it. */
  static async open(options: AzureKeyVaultOptions): Promise<AzureKeyVault> {
    const url = URL.canParse(options.vaultUrl) ? new URL(options.vaultUrl) : undefined;
    if (url?.protocol !== 'https:' || url.pathname !== '/') fail('INVALID', 'vaultUrl must be https://<vault-name>.vault.azure.net');
    const timeout = options.timeoutMs ?? 30_000;
    if (!Number.isInteger(timeout) || timeout <= 0) fail('INVALID', 'timeoutMs must be a positive integer');
    const sdk = await import('@azure/keyvault-keys');
    const credential = options.credential ?? new (await import('@azure/identity')).DefaultAzureCredential();
    return new AzureKeyVault(options, url.origin, timeout, sdk, credential);
  }

  private constructor(
    private readonly options: AzureKeyVaultOptions,
    private readonly vaultUrl: string,
    private readonly timeoutMs: number,
    private readonly sdk: typeof AzureKeys,
    private readonly credential: TokenCredential,
  ) {
    this.clientOptions = { ...options.transport };
    this.keys = new sdk.KeyClient(vaultUrl, credential, this.clientOptions);
  }

  async getKey(identity: string, name: string, version?: string): Promise<KeyInfo> {
    return this.run({ op: 'getKey', identity, key: name }, async (ev, abortSignal) => {
      if (version !== undefined) checkName(version, 'key version');
      const live = await unless([404], undefined, this.keys.getKey(name, { ...(version !== undefined ? { version } : {}), abortSignal }));
      const deleted = live === undefined ? await this.findDeleted(name, abortSignal) : undefined;
      const found = live ?? deleted;
      if (found === undefined) fail('KEY_NOT_FOUND', `key ${name}${version !== undefined ? ` version ${version}` : ''} not found`);
      const info = toInfo(name, found);
      if (version !== undefined && version !== info.version) fail('KEY_DELETED', `key ${name} is soft-deleted; only its newest version can be read`);
      return withVersion(ev, info);
    });
  }

  async listVersions(identity: string, name: string): Promise<KeyVersionInfo[]> {
    return this.run({ op: 'listVersions', identity, key: name }, async (_ev, abortSignal) => {
      const versions = await this.versionsOf(name, abortSignal);
      // Key Vault lists versions without their size; each version is read for it.
      const keys = await Promise.all(versions.map((v) => this.keys.getKey(name, { version: v, abortSignal })));
      return keys.map((k) => toInfo(name, k)).map(({ version, createdAt, size }) => ({ version, createdAt, size }));
    });
  }

  async createKey(identity: string, name: string, options: { size: KeySize }): Promise<KeyInfo> {
    return this.run({ op: 'createKey', identity, key: name }, async (ev, abortSignal) => {
      if (!KEY_SIZES.includes(options.size)) fail('INVALID', `key size must be one of ${KEY_SIZES.join(', ')}`);
      if (await this.isLive(name, abortSignal)) fail('KEY_EXISTS', `key ${name} already exists`);
      // key_ops limits the key to wrapping: it can never sign or decrypt arbitrary data.
      return withVersion(ev, toInfo(name, await this.keys.createRsaKey(name, { keySize: options.size, keyOps: ['wrapKey', 'unwrapKey'], abortSignal })));
    });
  }

  async rotateKey(identity: string, name: string): Promise<KeyInfo> {
    return this.run({ op: 'rotateKey', identity, key: name }, async (ev, abortSignal) => {
      return withVersion(ev, toInfo(name, await this.orDeleted(name, abortSignal, () => this.keys.rotateKey(name, { abortSignal }))));
    });
  }

  async wrapKey(identity: string, name: string, version: string | undefined, dataKey: Buffer): Promise<WrappedKey> {
    return this.run({ op: 'wrapKey', identity, key: name }, async (ev, abortSignal) => {
      if (dataKey.length === 0 || dataKey.length > MAX_DATA_KEY) fail('INVALID', `data keys are 1..${MAX_DATA_KEY} bytes`);
      if (version !== undefined) checkName(version, 'key version');
      const key = await this.orDeleted(name, abortSignal, () => this.keys.getKey(name, { ...(version !== undefined ? { version } : {}), abortSignal }));
      const { version: used, enabled } = toInfo(name, key);
      if (!enabled) fail('KEY_DISABLED', `key ${name} is disabled`);
      const result = await this.crypto(name, used).wrapKey(ALGORITHM, dataKey, { abortSignal });
      ev.version = used;
      return { keyId: { name, version: used }, wrapped: Buffer.from(result.result) };
    });
  }

  async unwrapKey(identity: string, keyId: KeyId, wrapped: Buffer): Promise<Buffer> {
    const { name, version } = keyId;
    return this.run({ op: 'unwrapKey', identity, key: name, version }, async (_ev, abortSignal) => {
      const result = await this.orDeleted(name, abortSignal, () => this.crypto(name, version).unwrapKey(ALGORITHM, wrapped, { abortSignal }));
      return Buffer.from(result.result);
    });
  }

  async setEnabled(identity: string, name: string, enabled: boolean): Promise<KeyInfo> {
    return this.run({ op: 'setEnabled', identity, key: name }, async (_ev, abortSignal) => {
      // Oldest first, so the last answer is the newest version. A failure part-way leaves a mix;
      // calling again finishes the job.
      let newest: KeyVaultKey | undefined;
      for (const version of await this.versionsOf(name, abortSignal)) newest = await this.keys.updateKeyProperties(name, version, { enabled, abortSignal });
      if (newest === undefined) fail('KEY_NOT_FOUND', `key ${name} not found`);
      return toInfo(name, newest);
    });
  }

  async softDelete(identity: string, name: string): Promise<KeyInfo> {
    return this.run({ op: 'softDelete', identity, key: name }, async (_ev, abortSignal) => {
      const poller = await this.orDeleted(name, abortSignal, () => this.keys.beginDeleteKey(name, { abortSignal, intervalInMs: POLL_MS }));
      return toInfo(name, await poller.pollUntilDone({ abortSignal }));
    });
  }

  async recover(identity: string, name: string): Promise<KeyInfo> {
    return this.run({ op: 'recover', identity, key: name }, async (_ev, abortSignal) => {
      const poller = await this.keys.beginRecoverDeletedKey(name, { abortSignal, intervalInMs: POLL_MS });
      // The SDK's poller reads the live key first and finishes without asking Key Vault to
      // recover when it exists; "not started" is how a live key shows.
      if (poller.getOperationState().isStarted !== true) fail('KEY_NOT_DELETED', `key ${name} is not deleted`);
      return toInfo(name, await poller.pollUntilDone({ abortSignal }));
    });
  }

  async purge(identity: string, name: string): Promise<void> {
    await this.run({ op: 'purge', identity, key: name }, async (_ev, abortSignal) => {
      try {
        await this.keys.purgeDeletedKey(name, { abortSignal });
      } catch (e) {
        if (statusOf(e) === 404 && (await this.isLive(name, abortSignal))) fail('KEY_NOT_DELETED', `key ${name} must be soft-deleted before it is purged`);
        throw e;
      }
    });
  }

  async setAccessPolicy(identity: string, _target: string, _permissions: readonly KeyPermission[]): Promise<void> {
    await this.run({ op: 'setAccessPolicy', identity, key: '*' }, async () =>
      fail('INVALID', 'Azure Key Vault permissions are managed in Azure (vault access policies or RBAC role assignments through ARM), not by Bulwark'),
    );
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pending]);
    this.cryptoClients.clear();
  }

  /** Checks the identity, runs `body` under the time bound, maps its failure, audits either way. */
  private async run<T>(ev: Event, body: (ev: Event, abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const task = (async () => {
      let result: T;
      try {
        const self = this.options.identity;
        if (self !== undefined && ev.identity !== self) fail('FORBIDDEN', `this vault acts only for ${self}, not ${ev.identity}`);
        if (ev.op !== 'setAccessPolicy') checkName(ev.key, 'key name');
        if (ev.version !== undefined) checkName(ev.version, 'key version');
        result = await body(ev, AbortSignal.timeout(this.timeoutMs));
      } catch (e) {
        const err = this.translate(ev.op, ev.key, e);
        this.options.audit({ ...ev, outcome: 'failure', error: err.code });
        throw err;
      }
      this.options.audit({ ...ev, outcome: 'success' });
      return result;
    })();
    this.pending.add(task);
    const forget = (): boolean => this.pending.delete(task);
    void task.then(forget, forget);
    return task;
  }

  private translate(op: KeyVaultOp, key: string, e: unknown): KeyVaultError {
    if (e instanceof KeyVaultError) return e;
    const f = describe(e);
    const what = f.status !== undefined ? `Key Vault answered ${f.status} ${f.code ?? ''}${f.inner !== undefined ? `/${f.inner}` : ''}` : f.name;
    const timedOut = f.name === 'AbortError' || f.name === 'TimeoutError' ? ` (no answer within ${this.timeoutMs} ms)` : '';
    return new KeyVaultError(codeFor(op, f), `failed to ${op} ${key} in Azure Key Vault: ${what}: ${f.message}${timedOut}`, { cause: f });
  }

  /** Runs `call`; a 404 becomes KEY_DELETED when the key sits among the deleted keys. */
  private async orDeleted<T>(name: string, abortSignal: AbortSignal, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      if (statusOf(e) === 404 && (await this.findDeleted(name, abortSignal)) !== undefined) fail('KEY_DELETED', `key ${name} is soft-deleted`);
      throw e;
    }
  }

  /** Version ids, oldest first; KEY_DELETED or KEY_NOT_FOUND when there are none. */
  private async versionsOf(name: string, abortSignal: AbortSignal): Promise<string[]> {
    const props = await this.orDeleted(name, abortSignal, async () => {
      const all: KeyProperties[] = [];
      for await (const p of this.keys.listPropertiesOfKeyVersions(name, { abortSignal })) all.push(p);
      return all;
    });
    if (props.length === 0) {
      if ((await this.findDeleted(name, abortSignal)) !== undefined) fail('KEY_DELETED', `key ${name} is soft-deleted`);
      fail('KEY_NOT_FOUND', `key ${name} not found`);
    }
    // Stable sort: versions created in the same second keep Key Vault's order.
    props.sort((a, b) => (a.createdOn?.getTime() ?? 0) - (b.createdOn?.getTime() ?? 0));
    return props.flatMap((p) => (p.version === undefined ? [] : [p.version]));
  }

  /** The soft-deleted key, or undefined when there is none or we may not see it. */
  private async findDeleted(name: string, abortSignal: AbortSignal): Promise<DeletedKey | undefined> {
    return unless([403, 404], undefined, this.keys.getDeletedKey(name, { abortSignal }));
  }

  private async isLive(name: string, abortSignal: AbortSignal): Promise<boolean> {
    return unless([404], false, this.keys.getKey(name, { abortSignal }).then(() => true));
  }

  private crypto(name: string, version: string): CryptographyClient {
    const id = `${this.vaultUrl}/keys/${name}/${version}`;
    let client = this.cryptoClients.get(id);
    if (client === undefined) {
      const oldest = this.cryptoClients.keys().next();
      if (this.cryptoClients.size >= CRYPTO_CLIENTS && oldest.done !== true) this.cryptoClients.delete(oldest.value);
      client = new this.sdk.CryptographyClient(id, this.credential, this.clientOptions);
      this.cryptoClients.set(id, client);
    }
    return client;
  }
}
