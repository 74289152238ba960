/**
 * The gateway's configuration: one JSON file (`bulwark gateway --config gateway.json`), checked
 * against a JSON schema that reports every problem at once, then resolved into full defaults
 * (ADR 0012). It is a separate file from the registry's options because it is a list of sites,
 * pools and rules, not a flat set of settings.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parseCidr, type ForwardedHeader } from '../network/index.js';
import { parseAddress } from '../config/index.js';

export type RuleAction = 'Allow' | 'Block' | 'Log';
export type WafMode = 'Detection' | 'Prevention';

export type Condition =
  | { readonly match: 'geo'; readonly countries: readonly string[]; readonly negate: boolean }
  | { readonly match: 'ip'; readonly cidrs: readonly string[]; readonly negate: boolean }
  | { readonly match: 'method'; readonly methods: readonly string[]; readonly negate: boolean }
  | { readonly match: 'path'; readonly prefixes: readonly string[]; readonly negate: boolean }
  | { readonly match: 'size'; readonly maxHeaderBytes: number; readonly maxUrlBytes: number; readonly negate: boolean };

export interface WafRule {
  readonly name: string;
  readonly action: RuleAction;
  /** all must match (none: the rule matches every request) */
  readonly conditions: readonly Condition[];
  /** a rate-limit rule matches only a client over `requests` per window, among requests its conditions match */
  readonly rateLimit?: { readonly requests: number; readonly windowSeconds: number };
}

export interface SiteConfig {
  readonly name: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** the host names this site answers to (Host header and TLS SNI), lower case */
  readonly hostNames: readonly string[];
  /** the URL clients reach this site at: what upstream URLs are rewritten to */
  readonly publicUrl: string;
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  readonly pool: string;
}

export interface BackendConfig {
  readonly url: URL;
  /** the Host header sent upstream (the backend's own name); defaults to the URL's host */
  readonly hostHeader: string;
  /** PEM CA bundle the backend's certificate is verified against (https backends); system CAs when absent */
  readonly caFile?: string;
  /** the name the backend's certificate is checked for; defaults to the host header's host */
  readonly serverName: string;
}

export interface PoolConfig {
  readonly name: string;
  readonly backends: readonly BackendConfig[];
  readonly health: {
    readonly path: string;
    readonly healthyStatuses: readonly number[];
    readonly intervalSeconds: number;
    readonly timeoutSeconds: number;
    readonly unhealthyThreshold: number;
  };
}

export interface GatewayConfig {
  readonly sites: readonly SiteConfig[];
  readonly pools: readonly PoolConfig[];
  /** upstream URL prefix → public URL prefix, tried in order; the explicit ones first, then one per backend */
  readonly rewrites: readonly { readonly from: string; readonly to: string }[];
  /** origins an upstream may name in those headers unrewritten (object storage it redirects to); the sites' public URLs always may */
  readonly passThroughOrigins: readonly string[];
  readonly clientAddress: { readonly trustedProxies: readonly string[]; readonly header: ForwardedHeader };
  readonly waf: { readonly mode: WafMode; readonly geoDatabase?: { readonly file: string; readonly reloadCheckSeconds: number }; readonly rules: readonly WafRule[] };
  readonly limits: { readonly maxHeaderBytes: number; readonly headersTimeoutMs: number; readonly idleTimeoutMs: number; readonly upstreamTimeoutMs: number };
  readonly tlsReloadCheckSeconds: number;
  readonly allowPlainHttp: boolean;
}

const NAME = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';
const negate = { type: 'boolean' };
const strings = (pattern?: string, max = 256): object => ({ type: 'array', minItems: 1, maxItems: max, items: { type: 'string', minLength: 1, maxLength: 256, ...(pattern !== undefined ? { pattern } : {}) } });
const condition = {
  oneOf: [
    { type: 'object', additionalProperties: false, required: ['match', 'countries'], properties: { match: { const: 'geo' }, countries: strings('^[A-Z]{2}$'), negate } },
    { type: 'object', additionalProperties: false, required: ['match', 'cidrs'], properties: { match: { const: 'ip' }, cidrs: strings(undefined, 1000), negate } },
    { type: 'object', additionalProperties: false, required: ['match', 'methods'], properties: { match: { const: 'method' }, methods: strings('^[A-Z]{1,20}$'), negate } },
    { type: 'object', additionalProperties: false, required: ['match', 'prefixes'], properties: { match: { const: 'path' }, prefixes: strings('^/'), negate } },
    {
      type: 'object',
      additionalProperties: false,
      required: ['match'],
      anyOf: [{ required: ['maxHeaderBytes'] }, { required: ['maxUrlBytes'] }],
      properties: { match: { const: 'size' }, maxHeaderBytes: { type: 'integer', minimum: 1 }, maxUrlBytes: { type: 'integer', minimum: 1 }, negate },
    },
  ],
};
const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['sites', 'pools'],
  properties: {
    sites: {
      type: 'array',
      minItems: 1,
      maxItems: 32,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'listen', 'hostNames', 'pool'],
        properties: {
          name: { type: 'string', pattern: NAME },
          listen: { type: 'string', maxLength: 100 },
          hostNames: strings('^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$', 32),
          publicUrl: { type: 'string', maxLength: 300 },
          tls: { type: 'object', additionalProperties: false, required: ['certFile', 'keyFile'], properties: { certFile: { type: 'string', minLength: 1 }, keyFile: { type: 'string', minLength: 1 } } },
          pool: { type: 'string', pattern: NAME },
        },
      },
    },
    pools: {
      type: 'array',
      minItems: 1,
      maxItems: 32,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'backends'],
        properties: {
          name: { type: 'string', pattern: NAME },
          role: { enum: ['registry', 'data'] },
          backends: {
            type: 'array',
            minItems: 1,
            maxItems: 64,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['url'],
              properties: { url: { type: 'string', maxLength: 300 }, hostHeader: { type: 'string', pattern: '^[A-Za-z0-9.:\\[\\]-]{1,300}$' }, caFile: { type: 'string', minLength: 1 }, serverName: { type: 'string', minLength: 1, maxLength: 253 } },
            },
          },
          health: {
            type: 'object',
            additionalProperties: false,
            properties: {
              path: { type: 'string', pattern: '^/[^\\s]{0,200}$' },
              healthyStatuses: { type: 'array', minItems: 1, maxItems: 20, items: { type: 'integer', minimum: 100, maximum: 599 } },
              intervalSeconds: { type: 'number', minimum: 0.1, maximum: 3600 },
              timeoutSeconds: { type: 'number', minimum: 0.1, maximum: 600 },
              unhealthyThreshold: { type: 'integer', minimum: 1, maximum: 100 },
            },
          },
        },
      },
    },
    rewrites: { type: 'array', maxItems: 100, items: { type: 'object', additionalProperties: false, required: ['from', 'to'], properties: { from: { type: 'string', maxLength: 300 }, to: { type: 'string', maxLength: 300 } } } },
    passThroughOrigins: { type: 'array', maxItems: 100, items: { type: 'string', maxLength: 300 } },
    clientAddress: { type: 'object', additionalProperties: false, properties: { trustedProxies: { type: 'array', maxItems: 200, items: { type: 'string' } }, header: { enum: ['x-forwarded-for', 'forwarded'] } } },
    waf: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { enum: ['Detection', 'Prevention'] },
        geoDatabase: { type: 'object', additionalProperties: false, required: ['file'], properties: { file: { type: 'string', minLength: 1 }, reloadCheckSeconds: { type: 'number', minimum: 0.1, maximum: 86400 } } },
        rules: {
          type: 'array',
          maxItems: 100,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'action'],
            properties: {
              name: { type: 'string', pattern: NAME },
              action: { enum: ['Allow', 'Block', 'Log'] },
              conditions: { type: 'array', maxItems: 10, items: condition },
              rateLimit: { type: 'object', additionalProperties: false, required: ['requests', 'windowSeconds'], properties: { requests: { type: 'integer', minimum: 1, maximum: 1e9 }, windowSeconds: { type: 'integer', minimum: 1, maximum: 3600 } } },
            },
          },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxHeaderBytes: { type: 'integer', minimum: 1024, maximum: 1048576 },
        headersTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000 },
        idleTimeoutMs: { type: 'integer', minimum: 100, maximum: 3600000 },
        upstreamTimeoutMs: { type: 'integer', minimum: 100, maximum: 3600000 },
      },
    },
    tlsReloadCheckSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
    allowPlainHttp: { type: 'boolean' },
  },
} as const;

/** The file as written (after the schema accepted it). */
interface RawConfig {
  sites: { name: string; listen: string; hostNames: string[]; publicUrl?: string; tls?: { certFile: string; keyFile: string }; pool: string }[];
  pools: { name: string; role?: 'registry' | 'data'; backends: { url: string; hostHeader?: string; caFile?: string; serverName?: string }[]; health?: Partial<PoolConfig['health']> }[];
  rewrites?: { from: string; to: string }[];
  passThroughOrigins?: string[];
  clientAddress?: { trustedProxies?: string[]; header?: ForwardedHeader };
  waf?: { mode?: WafMode; geoDatabase?: { file: string; reloadCheckSeconds?: number }; rules?: (Omit<WafRule, 'conditions'> & { conditions?: (Omit<Condition, 'negate'> & { negate?: boolean })[] })[] };
  limits?: Partial<GatewayConfig['limits']>;
  tlsReloadCheckSeconds?: number;
  allowPlainHttp?: boolean;
}

export class GatewayConfigError extends Error {
  readonly code = 'GATEWAY_CONFIG_INVALID';
  constructor(readonly problems: readonly string[]) {
    super(`the gateway configuration is invalid:\n  ${problems.join('\n  ')}`);
  }
}

// strictRequired off: the size condition's anyOf names properties its parent declares
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
const validate = ajv.compile<RawConfig>(SCHEMA);
const describe = (e: ErrorObject): string => `${e.instancePath === '' ? '(top)' : e.instancePath}: ${e.message ?? 'is invalid'}`;

export function loadGatewayConfig(file: string): GatewayConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new GatewayConfigError([`${file}: ${(e as Error).message}`]);
  }
  return parseGatewayConfig(parsed);
}

/** Checks a configuration object and resolves its defaults; throws GatewayConfigError naming every problem. */
export function parseGatewayConfig(input: unknown): GatewayConfig {
  if (!validate(input)) {
    // oneOf failures repeat for every branch; keep each message once
    throw new GatewayConfigError([...new Set((validate.errors ?? []).map(describe))]);
  }
  const problems: string[] = [];
  const pools = input.pools.map((p, i) => resolvePool(p, `/pools/${i}`, problems));
  const sites = input.sites.map((s, i) => resolveSite(s, `/sites/${i}`, problems));
  unique(input.sites.map((s) => s.name), '/sites', problems);
  unique(input.pools.map((p) => p.name), '/pools', problems);
  unique(input.sites.flatMap((s) => s.hostNames.map((h) => `${s.listen} ${h.toLowerCase()}`)), '/sites hostNames on one address', problems);
  for (const s of input.sites) if (!input.pools.some((p) => p.name === s.pool)) problems.push(`/sites ${s.name}: no pool is named ${s.pool}`);
  const rules = (input.waf?.rules ?? []).map((r) => ({ ...r, conditions: (r.conditions ?? []).map((c) => ({ ...c, negate: c.negate ?? false }) as Condition) }));
  unique(rules.map((r) => r.name), '/waf/rules', problems);
  rules.forEach((r, i) => {
    for (const c of r.conditions) if (c.match === 'ip') for (const cidr of c.cidrs) if (parseCidr(cidr) === undefined) problems.push(`/waf/rules/${i}: ${cidr} is not an IPv4/IPv6 address or CIDR range`);
  });
  const trustedProxies = input.clientAddress?.trustedProxies ?? [];
  for (const t of trustedProxies) if (parseCidr(t) === undefined) problems.push(`/clientAddress/trustedProxies: ${t} is not an IPv4/IPv6 address or CIDR range`);
  const rewrites: { from: string; to: string }[] = [];
  for (const [i, r] of (input.rewrites ?? []).entries()) {
    if (urlProblem(r.from) !== undefined || urlProblem(r.to) !== undefined) problems.push(`/rewrites/${i}: from and to must be absolute http(s) URLs`);
    else rewrites.push({ from: r.from.replace(/\/$/, ''), to: r.to.replace(/\/$/, '') });
  }
  const passThroughOrigins = input.passThroughOrigins ?? [];
  for (const o of passThroughOrigins) if (urlProblem(o) !== undefined) problems.push(`/passThroughOrigins: ${o} is not an absolute http(s) URL`);
  if (problems.length > 0) throw new GatewayConfigError(problems);
  return {
    sites,
    pools,
    rewrites: [...rewrites, ...defaultRewrites(sites, pools)],
    passThroughOrigins: passThroughOrigins.map((o) => new URL(o).origin),
    clientAddress: { trustedProxies, header: input.clientAddress?.header ?? 'x-forwarded-for' },
    waf: {
      mode: input.waf?.mode ?? 'Prevention',
      ...(input.waf?.geoDatabase !== undefined ? { geoDatabase: { file: input.waf.geoDatabase.file, reloadCheckSeconds: input.waf.geoDatabase.reloadCheckSeconds ?? 60 } } : {}),
      rules,
    },
    limits: { maxHeaderBytes: 16384, headersTimeoutMs: 30000, idleTimeoutMs: 60000, upstreamTimeoutMs: 60000, ...input.limits },
    tlsReloadCheckSeconds: input.tlsReloadCheckSeconds ?? 30,
    allowPlainHttp: input.allowPlainHttp ?? false,
  };
}

function unique(values: readonly string[], where: string, problems: string[]): void {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) problems.push(`${where}: ${v} appears twice`);
    seen.add(v);
  }
}

function urlProblem(s: string): string | undefined {
  try {
    const u = new URL(s);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'not http(s)';
    if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') return 'no credentials, query or fragment';
    return undefined;
  } catch {
    return 'not a URL';
  }
}

function resolveSite(s: RawConfig['sites'][number], where: string, problems: string[]): SiteConfig {
  const listen = parseAddress(s.listen);
  if (listen === undefined) problems.push(`${where}/listen: expected host:port, got ${s.listen}`);
  const hostNames = s.hostNames.map((h) => h.toLowerCase());
  const scheme = s.tls === undefined ? 'http' : 'https';
  const port = listen?.port ?? 0;
  const defaultPort = scheme === 'https' ? 443 : 80;
  const publicUrl = (s.publicUrl ?? `${scheme}://${hostNames[0] ?? ''}${port === defaultPort ? '' : `:${port}`}`).replace(/\/$/, '');
  const p = urlProblem(publicUrl);
  if (p !== undefined) problems.push(`${where}/publicUrl: ${publicUrl} is ${p}`);
  return { name: s.name, listen: listen ?? { host: '', port: 0 }, hostNames, publicUrl, ...(s.tls !== undefined ? { tls: s.tls } : {}), pool: s.pool };
}

const HEALTH = {
  registry: { path: '/v2/', healthyStatuses: [200, 401] },
  data: { path: '/', healthyStatuses: [403] },
} as const;

function resolvePool(p: RawConfig['pools'][number], where: string, problems: string[]): PoolConfig {
  const backends = p.backends.flatMap((b, i): BackendConfig[] => {
    const problem = urlProblem(b.url);
    if (problem !== undefined) {
      problems.push(`${where}/backends/${i}/url: ${b.url} is ${problem}`);
      return [];
    }
    const url = new URL(b.url);
    const hostHeader = b.hostHeader ?? url.host;
    return [{ url, hostHeader, ...(b.caFile !== undefined ? { caFile: b.caFile } : {}), serverName: b.serverName ?? hostHeader.replace(/:\d+$/, '').replace(/^\[|\]$/g, '') }];
  });
  const role = HEALTH[p.role ?? 'registry'];
  return {
    name: p.name,
    backends,
    health: { path: role.path, healthyStatuses: role.healthyStatuses, intervalSeconds: 10, timeoutSeconds: 5, unhealthyThreshold: 2, ...p.health },
  };
}

/** Each backend's names (its URL's origin, and the origin of its Host header, both schemes) → the public URL of the site serving its pool. */
function defaultRewrites(sites: readonly SiteConfig[], pools: readonly PoolConfig[]): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = [];
  for (const site of sites) {
    const pool = pools.find((p) => p.name === site.pool);
    for (const b of pool?.backends ?? []) {
      for (const host of new Set([b.url.host, b.hostHeader])) for (const scheme of ['http', 'https']) out.push({ from: `${scheme}://${host.toLowerCase()}`, to: site.publicUrl });
    }
  }
  return out;
}
