/**
 * The one configuration schema. Each option is declared once, with its environment variable,
 * type, default and documentation; docs/configuration.md is generated from this table
 * (`bulwark config-docs`) and a test keeps the two in sync.
 */

import { parseCidr } from '../network/address.js';
import { MAX_RULES, ruleProblem } from '../network/policy.js';
import { clientIdentityProblem } from '../network/client-certs.js';

export type OptionType = 'string' | 'integer' | 'boolean' | 'enum' | 'address' | 'list';

export interface OptionSpec {
  /** dotted path in the config file and in Config */
  readonly key: string;
  readonly env: string;
  /** command-line flag of `bulwark serve`, when there is one */
  readonly flag?: string;
  readonly type: OptionType;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** default; a string containing `${dataDir}` is resolved against the data folder */
  readonly default: string | number | boolean;
  readonly doc: string;
  /** for `list` (comma-separated) options: a problem with one item, or undefined when it is fine */
  readonly item?: (value: string) => string | undefined;
}

/** `host:port`, IPv6 in brackets (`[::1]:5000`); undefined when malformed. */
export function parseAddress(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port };
}

/** `private=host:port` or `public=host:port` (network.listeners). */
export function parseListener(s: string): { kind: 'private' | 'public'; host: string; port: number } | undefined {
  const m = /^(private|public)=(.+)$/.exec(s);
  const address = m === null ? undefined : parseAddress(m[2] ?? '');
  return m === null || address === undefined ? undefined : { kind: m[1] === 'public' ? 'public' : 'private', ...address };
}

const REPO_PATTERN = /^(\*|[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*(?:\/\*)?)$/;
const issuerPair = (v: string): string | undefined => {
  const i = v.lastIndexOf('=');
  if (i <= 0 || i === v.length - 1) return 'expected <issuer URL>=<audience>';
  try {
    const u = new URL(v.slice(0, i));
    const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname);
    return u.protocol === 'https:' || (u.protocol === 'http:' && loopback) ? undefined : 'the issuer must be an https URL (http only on loopback)';
  } catch {
    return 'the issuer is not a URL';
  }
};

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'listen', env: 'BULWARK_LISTEN', flag: '--listen', type: 'address', default: '127.0.0.1:5000', doc: 'Address and port to serve on, `host:port` (IPv6 as `[::1]:5000`).' },
  { key: 'dataDir', env: 'BULWARK_DATA_DIR', flag: '--data-dir', type: 'string', default: './data', doc: 'Folder for the embedded blob store, the SQLite metadata and the audit log; created on first start.' },
  { key: 'storage.blobDriver', env: 'BULWARK_STORAGE_BLOB_DRIVER', type: 'enum', values: ['filesystem', 'memory'], default: 'filesystem', doc: 'Blob store implementation. `memory` keeps nothing across restarts (tests only).' },
  { key: 'storage.metadataDriver', env: 'BULWARK_STORAGE_METADATA_DRIVER', type: 'enum', values: ['sqlite', 'memory'], default: 'sqlite', doc: 'Metadata store implementation. `memory` keeps nothing across restarts (tests only).' },
  { key: 'storage.directIoMinBytes', env: 'BULWARK_STORAGE_DIRECT_IO_MIN_BYTES', type: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER, default: 8 * 1024 * 1024, doc: 'Request bodies and blob reads of at least this many bytes bypass the page cache (`O_DIRECT`, ADR 0024) where the file system allows it; smaller ones, the hot small objects, go through it. 0 turns direct I/O off.' },
  { key: 'storage.deleteEnabled', env: 'BULWARK_STORAGE_DELETE_ENABLED', type: 'boolean', default: true, doc: 'Allow `DELETE` of manifests, tags and blobs. When false those requests get 405 `METHOD_NOT_ALLOWED`.' },
  { key: 'limits.manifestMaxBytes', env: 'BULWARK_LIMITS_MANIFEST_MAX_BYTES', type: 'integer', min: 1024, max: 64 * 1024 * 1024, default: 4 * 1024 * 1024, doc: 'Largest manifest accepted on `PUT`; larger bodies get 413 `MANIFEST_TOO_LARGE`.' },
  { key: 'limits.listMax', env: 'BULWARK_LIMITS_LIST_MAX', type: 'integer', min: 1, max: 100000, default: 10000, doc: 'Most entries one page of tags, catalog or referrers returns; a `Link` header points at the next page.' },
  { key: 'limits.blobMaxBytes', env: 'BULWARK_LIMITS_BLOB_MAX_BYTES', type: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER, default: 0, doc: 'Largest blob accepted, in bytes; 0 means no limit.' },
  { key: 'uploads.purgeAfterSeconds', env: 'BULWARK_UPLOADS_PURGE_AFTER_SECONDS', type: 'integer', min: 1, max: 30 * 86400, default: 86400, doc: 'Upload sessions untouched for this long are deleted.' },
  { key: 'uploads.purgeIntervalSeconds', env: 'BULWARK_UPLOADS_PURGE_INTERVAL_SECONDS', type: 'integer', min: 1, max: 86400, default: 600, doc: 'How often abandoned upload sessions are looked for.' },
  { key: 'uploads.chunkMinLength', env: 'BULWARK_UPLOADS_CHUNK_MIN_LENGTH', type: 'integer', min: 0, max: 1024 * 1024 * 1024, default: 0, doc: 'When above 0, announced as `OCI-Chunk-Min-Length` on upload creation: the smallest chunk clients should send (the last one excepted).' },
  { key: 'http.headersTimeoutMs', env: 'BULWARK_HTTP_HEADERS_TIMEOUT_MS', type: 'integer', min: 100, max: 600000, default: 30000, doc: 'Time a client has to send the complete request headers (slow-loris protection).' },
  { key: 'http.idleTimeoutMs', env: 'BULWARK_HTTP_IDLE_TIMEOUT_MS', type: 'integer', min: 100, max: 3600000, default: 60000, doc: 'A connection (or request body) that sends nothing for this long is closed; an interrupted upload chunk is rolled back.' },
  { key: 'http.keepAliveTimeoutMs', env: 'BULWARK_HTTP_KEEP_ALIVE_TIMEOUT_MS', type: 'integer', min: 100, max: 600000, default: 65000, doc: 'How long an idle keep-alive connection stays open.' },
  { key: 'http.maxHeaderBytes', env: 'BULWARK_HTTP_MAX_HEADER_BYTES', type: 'integer', min: 1024, max: 1024 * 1024, default: 16384, doc: 'Largest request header block; larger gets 431.' },
  { key: 'http.shutdownTimeoutMs', env: 'BULWARK_HTTP_SHUTDOWN_TIMEOUT_MS', type: 'integer', min: 0, max: 600000, default: 30000, doc: 'On SIGTERM/SIGINT, how long in-flight requests may take to finish before the process exits anyway.' },
  { key: 'audit.file', env: 'BULWARK_AUDIT_FILE', type: 'string', default: '${dataDir}/audit.log', doc: 'JSON-lines audit log of every registry operation; empty string disables it.' },
  { key: 'externalUrl', env: 'BULWARK_EXTERNAL_URL', flag: '--external-url', type: 'string', default: '', doc: 'The URL clients reach the registry at (e.g. `https://registry.example.com`, a custom domain); the token realm and issuer derive from it, and when it is set, `Location` and `Link` headers are absolute URLs on it (so nothing in front of Bulwark needs to rewrite them). Empty: `http://<listen>` for the realm, relative `Location` and `Link`.' },
  { key: 'auth.enabled', env: 'BULWARK_AUTH_ENABLED', type: 'boolean', default: true, doc: 'Require an identity for every request (token authentication). `false` serves everything to everyone and logs a warning at every start: for isolated tests and benchmarks only.' },
  { key: 'auth.service', env: 'BULWARK_AUTH_SERVICE', type: 'string', default: 'bulwark', doc: 'The `service` of the token flow: the audience of the tokens this registry issues and accepts.' },
  { key: 'auth.accessTokenSeconds', env: 'BULWARK_AUTH_ACCESS_TOKEN_SECONDS', type: 'integer', min: 30, max: 3600, default: 300, doc: 'Lifetime of an access token. Nothing a token grants outlives a revocation by more than this.' },
  { key: 'auth.refreshTokenSeconds', env: 'BULWARK_AUTH_REFRESH_TOKEN_SECONDS', type: 'integer', min: 300, max: 30 * 86400, default: 3 * 3600, doc: 'Lifetime of a refresh token (`docker login` with a token from `/oauth2/exchange`, or `access_type=offline`).' },
  { key: 'auth.signingAlgorithm', env: 'BULWARK_AUTH_SIGNING_ALGORITHM', type: 'enum', values: ['ES256', 'EdDSA'], default: 'ES256', doc: 'Signature algorithm of issued tokens.' },
  { key: 'auth.signingKeyRotationDays', env: 'BULWARK_AUTH_SIGNING_KEY_ROTATION_DAYS', type: 'integer', min: 1, max: 365, default: 30, doc: 'The token-signing key is replaced after this many days; older keys keep verifying the tokens they signed until those expire.' },
  { key: 'auth.clockSkewSeconds', env: 'BULWARK_AUTH_CLOCK_SKEW_SECONDS', type: 'integer', min: 0, max: 300, default: 60, doc: 'Clock skew tolerated when checking `exp`, `nbf` and `iat` of tokens.' },
  { key: 'auth.anonymousPull', env: 'BULWARK_AUTH_ANONYMOUS_PULL', type: 'list', default: '', doc: 'Repositories anyone may pull without credentials: comma-separated `*`, names, or `prefix/*`. Empty: none (the default).', item: (v) => (REPO_PATTERN.test(v) && v.length <= 257 ? undefined : 'expected *, a repository name or <prefix>/*') },
  { key: 'auth.disableAdminOnFirstOwner', env: 'BULWARK_AUTH_DISABLE_ADMIN_ON_FIRST_OWNER', type: 'boolean', default: true, doc: 'Disable the bootstrap admin when the first Owner role is assigned to another identity.' },
  { key: 'auth.failures.perIdentity', env: 'BULWARK_AUTH_FAILURES_PER_IDENTITY', type: 'integer', min: 1, max: 1000, default: 5, doc: 'Failed sign-ins allowed per identity and source address within the window; more get 429 with `Retry-After`.' },
  { key: 'auth.failures.perAddress', env: 'BULWARK_AUTH_FAILURES_PER_ADDRESS', type: 'integer', min: 1, max: 100000, default: 50, doc: 'Failed sign-ins allowed per source address (any identity) within the window.' },
  { key: 'auth.failures.windowSeconds', env: 'BULWARK_AUTH_FAILURES_WINDOW_SECONDS', type: 'integer', min: 1, max: 86400, default: 300, doc: 'Window over which failed sign-ins are counted.' },
  { key: 'auth.oidc.userIssuers', env: 'BULWARK_AUTH_OIDC_USER_ISSUERS', type: 'list', default: '', doc: 'OpenID Connect providers whose ID tokens people may exchange at `/oauth2/exchange`: comma-separated `<issuer URL>=<audience>`. The person is `user:<sub>@<issuer>`.', item: issuerPair },
  { key: 'encryption.enabled', env: 'BULWARK_ENCRYPTION_ENABLED', type: 'boolean', default: true, doc: 'Encrypt every stored blob, manifest body and annotation (envelope encryption, docs/encryption.md). `false` stores plaintext and logs a warning at every start; it is refused on a data folder that holds encrypted content.' },
  { key: 'encryption.vault', env: 'BULWARK_ENCRYPTION_VAULT', type: 'enum', values: ['local', 'pkcs11', 'azure'], default: 'local', doc: 'Where the key-encryption key lives: `local` (the embedded vault under the data folder, a service-managed key), `pkcs11` (an HSM), `azure` (Azure Key Vault).' },
  { key: 'encryption.key', env: 'BULWARK_ENCRYPTION_KEY', type: 'string', default: 'bulwark-kek', doc: 'The key-encryption key: `<name>` (its newest version, followed automatically) or `<name>/<version>` (pinned). The local vault creates it on first start.' },
  { key: 'encryption.identity', env: 'BULWARK_ENCRYPTION_IDENTITY', type: 'string', default: 'bulwark-registry', doc: 'The identity the registry presents to the key vault (needs `get`, `wrapKey` and `unwrapKey`).' },
  { key: 'encryption.segmentBytes', env: 'BULWARK_ENCRYPTION_SEGMENT_BYTES', type: 'integer', min: 64 * 1024, max: 1024 * 1024, default: 256 * 1024, doc: 'Plaintext bytes per AES-256-GCM segment of new objects; a range request decrypts only the segments it touches.' },
  { key: 'encryption.dataKeyCacheSeconds', env: 'BULWARK_ENCRYPTION_DATA_KEY_CACHE_SECONDS', type: 'integer', min: 0, max: 86400, default: 300, doc: 'How long an unwrapped data key stays in memory (0: never cached). A revoked or disabled key stops all reads and writes within this time.' },
  { key: 'encryption.rotationCheckSeconds', env: 'BULWARK_ENCRYPTION_ROTATION_CHECK_SECONDS', type: 'integer', min: 10, max: 7 * 86400, default: 3600, doc: 'How often an unversioned `encryption.key` is checked for a new version; when one appears, every data key is re-wrapped under it.' },
  { key: 'encryption.local.dir', env: 'BULWARK_ENCRYPTION_LOCAL_DIR', type: 'string', default: '${dataDir}/keyvault', doc: 'Folder of the embedded key vault (`keys.json`, mode 0600).' },
  { key: 'encryption.local.masterKeyFile', env: 'BULWARK_ENCRYPTION_LOCAL_MASTER_KEY_FILE', type: 'string', default: '${dataDir}/master.key', doc: 'File holding the embedded vault\'s master key (created on first start, mode 0600; refused if others can read it). Keep a copy apart from the data: without it the data cannot be read.' },
  { key: 'encryption.local.masterKeyEnv', env: 'BULWARK_ENCRYPTION_LOCAL_MASTER_KEY_ENV', type: 'string', default: '', doc: 'When set, the name of an environment variable holding the master key (base64 of 32 bytes) instead of the file.' },
  { key: 'encryption.local.keySize', env: 'BULWARK_ENCRYPTION_LOCAL_KEY_SIZE', type: 'enum', values: ['2048', '3072', '4096'], default: '3072', doc: 'RSA modulus size of a key the local vault creates.' },
  { key: 'encryption.pkcs11.module', env: 'BULWARK_ENCRYPTION_PKCS11_MODULE', type: 'string', default: '/usr/lib/softhsm/libsofthsm2.so', doc: 'PKCS#11 library of the HSM (`encryption.vault=pkcs11`).' },
  { key: 'encryption.pkcs11.token', env: 'BULWARK_ENCRYPTION_PKCS11_TOKEN', type: 'string', default: 'bulwark', doc: 'Label of the HSM token holding the key-encryption key.' },
  { key: 'encryption.pkcs11.pinEnv', env: 'BULWARK_ENCRYPTION_PKCS11_PIN_ENV', type: 'string', default: 'BULWARK_HSM_PIN', doc: 'Name of the environment variable holding the token\'s user PIN (the PIN itself is never an option).' },
  { key: 'encryption.pkcs11.pinFile', env: 'BULWARK_ENCRYPTION_PKCS11_PIN_FILE', type: 'string', default: '', doc: 'When set, a file (mode 0600) holding the user PIN, instead of `pinEnv`.' },
  { key: 'encryption.pkcs11.stateDir', env: 'BULWARK_ENCRYPTION_PKCS11_STATE_DIR', type: 'string', default: '${dataDir}/hsm-state', doc: 'Folder of the HSM vault\'s key metadata (versions, soft delete), signed by a key on the token.' },
  { key: 'encryption.pkcs11.allowRawRsa', env: 'BULWARK_ENCRYPTION_PKCS11_ALLOW_RAW_RSA', type: 'boolean', default: false, doc: 'For tokens without RSA-OAEP-256 (SoftHSM2 2.6): the token does raw RSA and the host does OAEP padding. The private key then also allows raw RSA.' },
  { key: 'encryption.azure.vaultUrl', env: 'BULWARK_ENCRYPTION_AZURE_VAULT_URL', type: 'string', default: '', doc: 'Azure Key Vault URL (`encryption.vault=azure`), `https://<name>.vault.azure.net`; credentials from the environment, workload identity or managed identity. Not tested against Azure itself (docs/keyvault-azure.md).' },
  { key: 'tls.certFile', env: 'BULWARK_TLS_CERT_FILE', type: 'string', default: '', doc: 'PEM certificate chain of the HTTPS listeners. With `tls.keyFile`, every listener (`listen` and `network.listeners`) serves HTTPS only, TLS 1.2 or newer. Re-read when it changes, without a restart (`tls.reloadCheckSeconds`).' },
  { key: 'tls.keyFile', env: 'BULWARK_TLS_KEY_FILE', type: 'string', default: '', doc: 'PEM private key matching `tls.certFile` (keep it mode 0600).' },
  { key: 'tls.reloadCheckSeconds', env: 'BULWARK_TLS_RELOAD_CHECK_SECONDS', type: 'integer', min: 1, max: 3600, default: 30, doc: 'How often the certificate and key files are checked for a change; a changed pair that loads is used for new connections, one that does not is logged and ignored.' },
  { key: 'tls.clientCaFile', env: 'BULWARK_TLS_CLIENT_CA_FILE', type: 'string', default: '', doc: 'PEM bundle of the CAs that sign client certificates (mutual TLS). When set, the HTTPS listeners ask every client for a certificate and verify it against these CAs; a verified certificate named in `tls.clientIdentities` signs in as that service identity at the token endpoint. Re-read with the certificate pair.' },
  { key: 'tls.clientAuth', env: 'BULWARK_TLS_CLIENT_AUTH', type: 'enum', values: ['optional', 'required'], default: 'optional', doc: 'With `tls.clientCaFile`: `optional` serves clients without a certificate too (they sign in otherwise); `required` refuses the TLS handshake of any client without a certificate the CAs verify.' },
  { key: 'tls.clientIdentities', env: 'BULWARK_TLS_CLIENT_IDENTITIES', type: 'list', default: '', doc: 'Which verified client certificates sign in as which service identity: comma-separated `service:<name>=sha256:<fingerprint>` (one certificate), `service:<name>=uri:<SAN URI>` (e.g. a SPIFFE ID) or `service:<name>=dns:<SAN DNS name>`; the first match decides. A certificate matching none signs nobody in.', item: clientIdentityProblem },
  { key: 'network.allowPlainHttp', env: 'BULWARK_NETWORK_ALLOW_PLAIN_HTTP', type: 'boolean', default: false, doc: 'Without TLS, Bulwark listens only on loopback addresses and refuses to start otherwise. `true` allows plain HTTP on any address (behind a TLS-terminating proxy on the same host or network) and logs a warning at every start.' },
  { key: 'dataEndpoint.listen', env: 'BULWARK_DATA_ENDPOINT_LISTEN', type: 'string', default: '', doc: 'The dedicated data endpoint\'s own listener, `host:port`. When set, blob GETs on the registry endpoint answer 307 with a short-lived signed URL on the data endpoint, which serves only such URLs (403 to anything else, never a listing). Empty: off, blobs are served by the registry endpoint.' },
  { key: 'dataEndpoint.url', env: 'BULWARK_DATA_ENDPOINT_URL', type: 'string', default: '', doc: 'The URL clients reach the data endpoint at (its host name, e.g. `https://data.example.com`), which the redirects name. Empty: `http(s)://<dataEndpoint.listen>`.' },
  { key: 'dataEndpoint.kind', env: 'BULWARK_DATA_ENDPOINT_KIND', type: 'enum', values: ['inherit', 'private', 'public'], default: 'inherit', doc: 'Whether the network rules apply on the data endpoint\'s listener (`public`) or not (`private`); `inherit` takes `network.listenKind`.' },
  { key: 'dataEndpoint.urlTtlSeconds', env: 'BULWARK_DATA_ENDPOINT_URL_TTL_SECONDS', type: 'integer', min: 5, max: 3600, default: 120, doc: 'How long a signed data URL is good for (it is checked when the download starts).' },
  { key: 'dataEndpoint.keyRotationSeconds', env: 'BULWARK_DATA_ENDPOINT_KEY_ROTATION_SECONDS', type: 'integer', min: 5, max: 86400, default: 3600, doc: 'How often the key that signs data URLs is replaced (in memory; the previous one keeps verifying). At least `dataEndpoint.urlTtlSeconds`.' },
  { key: 'dataEndpoint.keyFile', env: 'BULWARK_DATA_ENDPOINT_KEY_FILE', type: 'string', default: '', doc: 'A secret (at least 32 bytes, e.g. `openssl rand -base64 48`; mode 0600) the data-URL signing keys are derived from, one per rotation period: every registry process given the same file signs and verifies the same URLs, across restarts. Empty: random keys in this process\'s memory.' },
  { key: 'dataEndpoint.bindClientAddress', env: 'BULWARK_DATA_ENDPOINT_BIND_CLIENT_ADDRESS', type: 'boolean', default: false, doc: 'Sign the client address into data URLs: only the address that was redirected may use one.' },
  { key: 'network.listenKind', env: 'BULWARK_NETWORK_LISTEN_KIND', type: 'enum', values: ['private', 'public'], default: 'private', doc: 'What the `listen` address is: `private` (like a private endpoint: open to its network, network rules do not apply) or `public` (the network rules apply). The default listens on loopback.' },
  { key: 'network.listeners', env: 'BULWARK_NETWORK_LISTENERS', type: 'list', default: '', doc: 'More addresses to serve on, beside `listen`: comma-separated `private=<host:port>` or `public=<host:port>` (IPv6 as `public=[::]:5443`).', item: (v) => (parseListener(v) === undefined ? 'expected private=<host:port> or public=<host:port>' : undefined) },
  { key: 'network.publicAccess', env: 'BULWARK_NETWORK_PUBLIC_ACCESS', type: 'enum', values: ['Enabled', 'Disabled'], default: 'Enabled', doc: '`Disabled` refuses every request that arrives on a public listener (403 `DENIED`), whatever the rules say; private listeners still serve.' },
  { key: 'network.defaultAction', env: 'BULWARK_NETWORK_DEFAULT_ACTION', type: 'enum', values: ['Allow', 'Deny'], default: 'Deny', doc: 'What happens on a public listener to a client address no rule matches. Deny by default: a public listener serves only the ranges a rule allows.' },
  { key: 'network.rules', env: 'BULWARK_NETWORK_RULES', type: 'list', default: '', doc: `Network rules for public listeners, in order, the first match deciding: comma-separated \`<name>=<allow|deny>:<address or CIDR>\` (IPv4 or IPv6), at most ${MAX_RULES}. A refused request gets 403 \`DENIED\` naming the rule.`, item: ruleProblem },
  { key: 'network.trustedProxies', env: 'BULWARK_NETWORK_TRUSTED_PROXIES', type: 'list', default: '', doc: 'Addresses or CIDR ranges of reverse proxies whose forwarding header is believed: the client address is then taken from that header, walked from the right while each hop is a trusted proxy. A header from any other peer is ignored.', item: (v) => (parseCidr(v) === undefined ? 'expected an IPv4/IPv6 address or CIDR range' : undefined) },
  { key: 'network.forwardedHeader', env: 'BULWARK_NETWORK_FORWARDED_HEADER', type: 'enum', values: ['x-forwarded-for', 'forwarded'], default: 'x-forwarded-for', doc: 'The one header the trusted proxies write the client address into: `x-forwarded-for` or `forwarded` (RFC 7239). Only that one is read, so a client cannot supply the other.' },
  { key: 'log.level', env: 'BULWARK_LOG_LEVEL', type: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', doc: 'Server log level (structured JSON on stdout).' },
];

export interface Config {
  readonly listen: { readonly host: string; readonly port: number };
  readonly dataDir: string;
  readonly storage: { readonly blobDriver: 'filesystem' | 'memory'; readonly metadataDriver: 'sqlite' | 'memory'; readonly directIoMinBytes: number; readonly deleteEnabled: boolean };
  readonly limits: { readonly manifestMaxBytes: number; readonly listMax: number; readonly blobMaxBytes: number };
  readonly uploads: { readonly purgeAfterSeconds: number; readonly purgeIntervalSeconds: number; readonly chunkMinLength: number };
  readonly http: {
    readonly headersTimeoutMs: number;
    readonly idleTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly maxHeaderBytes: number;
    readonly shutdownTimeoutMs: number;
  };
  readonly audit: { readonly file: string };
  readonly externalUrl: string;
  /** `externalUrl` when it was configured, else '': the prefix of Location and Link headers */
  readonly urlBase: string;
  readonly auth: {
    readonly enabled: boolean;
    readonly service: string;
    readonly accessTokenSeconds: number;
    readonly refreshTokenSeconds: number;
    readonly signingAlgorithm: 'ES256' | 'EdDSA';
    readonly signingKeyRotationDays: number;
    readonly clockSkewSeconds: number;
    readonly anonymousPull: readonly string[];
    readonly disableAdminOnFirstOwner: boolean;
    readonly failures: { readonly perIdentity: number; readonly perAddress: number; readonly windowSeconds: number };
    readonly oidc: { readonly userIssuers: readonly string[] };
  };
  readonly encryption: {
    readonly enabled: boolean;
    readonly vault: 'local' | 'pkcs11' | 'azure';
    readonly key: string;
    readonly identity: string;
    readonly segmentBytes: number;
    readonly dataKeyCacheSeconds: number;
    readonly rotationCheckSeconds: number;
    readonly local: { readonly dir: string; readonly masterKeyFile: string; readonly masterKeyEnv: string; readonly keySize: '2048' | '3072' | '4096' };
    readonly pkcs11: { readonly module: string; readonly token: string; readonly pinEnv: string; readonly pinFile: string; readonly stateDir: string; readonly allowRawRsa: boolean };
    readonly azure: { readonly vaultUrl: string };
  };
  readonly tls: {
    readonly certFile: string;
    readonly keyFile: string;
    readonly reloadCheckSeconds: number;
    readonly clientCaFile: string;
    readonly clientAuth: 'optional' | 'required';
    readonly clientIdentities: readonly string[];
  };
  readonly dataEndpoint: {
    /** '' when off */
    readonly listen: string;
    readonly url: string;
    readonly kind: 'inherit' | 'private' | 'public';
    readonly urlTtlSeconds: number;
    readonly keyRotationSeconds: number;
    readonly keyFile: string;
    readonly bindClientAddress: boolean;
  };
  readonly network: {
    readonly allowPlainHttp: boolean;
    readonly listenKind: 'private' | 'public';
    readonly listeners: readonly string[];
    readonly publicAccess: 'Enabled' | 'Disabled';
    readonly defaultAction: 'Allow' | 'Deny';
    readonly rules: readonly string[];
    readonly trustedProxies: readonly string[];
    readonly forwardedHeader: 'x-forwarded-for' | 'forwarded';
  };
  readonly log: { readonly level: string };
}
