/**
 * Load configuration once: defaults < config file (JSON) < environment < command-line flags.
 * Every value is validated; all problems are reported together; the result is frozen.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isIP } from 'node:net';
import { OPTIONS, parseAddress, parseListener, type Config, type OptionSpec } from './schema.js';

/** A base URL, `scheme://host[:port]` without a path, as externalUrl and dataEndpoint.url must be. */
const BASE_URL = /^https?:\/\/[^/?#]+$/;

/** The URL of a listen address, IPv6 in brackets: the default of externalUrl and dataEndpoint.url. */
function urlOf(tls: boolean, a: { host: string; port: number }): string {
  return `${tls ? 'https' : 'http'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** 127.0.0.0/8, ::1 and localhost: the only addresses plain HTTP may listen on by default. */
function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(host) || /^::ffff:127\./i.test(host);
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadSources {
  env?: NodeJS.ProcessEnv;
  /** values from command-line flags, by option key */
  flags?: Record<string, string | undefined>;
  /** path of a JSON config file */
  file?: string | undefined;
  /** already-typed overrides by key (tests) */
  overrides?: Record<string, unknown>;
}

function fromFile(path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError([`config file ${path}: ${(e as Error).message}`]);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ConfigError([`config file ${path}: must be a JSON object`]);
  const flat: Record<string, unknown> = {};
  const walk = (v: unknown, prefix: string): void => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(x, prefix === '' ? k : `${prefix}.${k}`);
    } else flat[prefix] = v;
  };
  walk(doc, '');
  return flat;
}

function coerce(spec: OptionSpec, raw: unknown, problems: string[]): unknown {
  const bad = (why: string): undefined => {
    problems.push(`${spec.key} (${spec.env}): ${why}`);
    return undefined;
  };
  switch (spec.type) {
    case 'string':
      return typeof raw === 'string' ? raw : bad('must be a string');
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      return bad('must be true or false');
    case 'integer': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) return bad('must be an integer');
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        return bad(`must be between ${spec.min} and ${spec.max}`);
      }
      return n;
    }
    case 'enum':
      return typeof raw === 'string' && spec.values?.includes(raw) === true ? raw : bad(`must be one of ${spec.values?.join(', ')}`);
    case 'address':
      return (typeof raw === 'string' ? parseAddress(raw) : undefined) ?? bad('must be host:port');
    case 'list': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((x) => x.trim()).filter((x) => x !== '') : undefined;
      if (items === undefined || !items.every((x): x is string => typeof x === 'string')) return bad('must be a comma-separated list');
      for (const x of items) {
        const why = spec.item?.(x);
        if (why !== undefined) return bad(`${x.slice(0, 80)}: ${why}`);
      }
      return items;
    }
  }
}

function setPath(target: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) {
    node[p] ??= {};
    node = node[p] as Record<string, unknown>;
  }
  node[parts[parts.length - 1] ?? key] = value;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

export function loadConfig(sources: LoadSources = {}): Config {
  const env = sources.env ?? {};
  const file = sources.file !== undefined ? fromFile(sources.file) : {};
  const known = new Set(OPTIONS.map((o) => o.key));
  const problems = Object.keys(file).filter((k) => !known.has(k)).map((k) => `${k}: unknown option in config file`);
  const out: Record<string, unknown> = {};
  const raws = new Map<string, unknown>();
  for (const spec of OPTIONS) {
    if (spec.key in file && file[spec.key] === null) problems.push(`${spec.key}: null is not a value (omit the option for its default)`);
    const raw = sources.overrides?.[spec.key] ?? sources.flags?.[spec.key] ?? env[spec.env] ?? file[spec.key] ?? spec.default;
    raws.set(spec.key, raw);
    setPath(out, spec.key, coerce(spec, raw, problems));
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const dataDir = resolve(out.dataDir as string);
  out.dataDir = dataDir;
  const audit = out.audit as { file: string };
  if (audit.file !== '') audit.file = resolve(audit.file.replace('${dataDir}', dataDir));
  const local = (out.encryption as { local: { dir: string; masterKeyFile: string } }).local;
  local.dir = resolve(local.dir.replace('${dataDir}', dataDir));
  local.masterKeyFile = resolve(local.masterKeyFile.replace('${dataDir}', dataDir));
  const pkcs11 = (out.encryption as { pkcs11: { stateDir: string } }).pkcs11;
  pkcs11.stateDir = resolve(pkcs11.stateDir.replace('${dataDir}', dataDir));
  const key = (out.encryption as { key: string }).key;
  if (!/^[0-9A-Za-z-]{1,127}(\/[0-9A-Za-z._-]{1,128})?$/.test(key)) problems.push('encryption.key (BULWARK_ENCRYPTION_KEY): expected <name> or <name>/<version> (letters, digits and dashes)');
  if (problems.length > 0) throw new ConfigError(problems);
  const listen = out.listen as { host: string; port: number };
  const tlsOpts = out.tls as { certFile: string; keyFile: string };
  const tls = tlsOpts.certFile !== '' || tlsOpts.keyFile !== '';
  if (tls && (tlsOpts.certFile === '' || tlsOpts.keyFile === '')) problems.push('tls.certFile and tls.keyFile (BULWARK_TLS_CERT_FILE, BULWARK_TLS_KEY_FILE): give both, or neither');
  const mtls = out.tls as { clientCaFile: string; clientAuth: string; clientIdentities: string[] };
  if (mtls.clientAuth === 'required' && mtls.clientCaFile === '') problems.push('tls.clientAuth=required (BULWARK_TLS_CLIENT_AUTH): give tls.clientCaFile, the CAs that verify client certificates');
  if (mtls.clientCaFile !== '' && !tls) problems.push('tls.clientCaFile (BULWARK_TLS_CLIENT_CA_FILE): client certificates need TLS (tls.certFile, tls.keyFile)');
  if (mtls.clientIdentities.length > 0 && mtls.clientCaFile === '') problems.push('tls.clientIdentities (BULWARK_TLS_CLIENT_IDENTITIES): give tls.clientCaFile, the CAs that verify those certificates');
  if (mtls.clientCaFile !== '') mtls.clientCaFile = resolve(mtls.clientCaFile);
  if (tls) {
    tlsOpts.certFile = resolve(tlsOpts.certFile);
    tlsOpts.keyFile = resolve(tlsOpts.keyFile);
  }
  const network = out.network as { allowPlainHttp: boolean; listeners: string[] };
  const data = out.dataEndpoint as { listen: string; url: string; urlTtlSeconds: number; keyRotationSeconds: number };
  const dataListen = data.listen === '' ? undefined : parseAddress(data.listen);
  if (data.listen !== '' && dataListen === undefined) problems.push('dataEndpoint.listen (BULWARK_DATA_ENDPOINT_LISTEN): must be host:port');
  if (data.keyRotationSeconds < data.urlTtlSeconds) problems.push('dataEndpoint.keyRotationSeconds: must be at least dataEndpoint.urlTtlSeconds');
  if (data.url !== '' && !BASE_URL.test(data.url)) problems.push('dataEndpoint.url (BULWARK_DATA_ENDPOINT_URL): must be http(s)://host[:port] without a path');
  if (dataListen !== undefined && data.url === '') {
    // A wildcard is where the endpoint listens, not where clients find it: every redirect would break.
    if (['0.0.0.0', '::', '0:0:0:0:0:0:0:0'].includes(dataListen.host)) problems.push('dataEndpoint.url (BULWARK_DATA_ENDPOINT_URL): required when dataEndpoint.listen is a wildcard address');
    data.url = urlOf(tls, dataListen);
  }
  if (tls && data.url.startsWith('http://')) problems.push('dataEndpoint.url: an http:// URL while the data endpoint serves HTTPS');
  if (!tls && !network.allowPlainHttp) {
    const hosts = [listen.host, ...network.listeners.map((l) => parseListener(l)?.host ?? ''), ...(dataListen !== undefined ? [dataListen.host] : [])];
    const exposed = hosts.filter((h) => !isLoopbackHost(h));
    if (exposed.length > 0) problems.push(`listen, network.listeners, dataEndpoint.listen: plain HTTP on ${exposed.join(', ')}, which is not loopback: configure tls.certFile and tls.keyFile, or set network.allowPlainHttp=true (BULWARK_NETWORK_ALLOW_PLAIN_HTTP) behind a TLS-terminating proxy`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  // Headers that name the registry (Location, Link) are absolute on a configured external URL;
  // on the one derived from `listen` they stay relative, which the spec allows and which a
  // client resolves against the address it actually used.
  out.urlBase = out.externalUrl;
  if (out.externalUrl === '') out.externalUrl = urlOf(tls, listen);
  else if (!BASE_URL.test(out.externalUrl as string)) throw new ConfigError([`externalUrl (BULWARK_EXTERNAL_URL): must be http(s)://host[:port] without a path`]);
  return deepFreeze(out) as unknown as Config;
}
