/**
 * The gateway's web application firewall: ordered custom rules, each a set of conditions that must
 * all match (country, address range, method, path prefix, header and URL size) and an action.
 * `Allow` ends the evaluation and lets the request through; `Block` ends it and refuses the request
 * (in `Detection` mode it is only logged, and evaluation goes on); `Log` records the match and goes
 * on. A rule with a rate limit matches only a client that has sent more than its allowance of
 * matching requests in the current window. A request no rule decides is let through: the network
 * rules of the registry behind the gateway are the deny-by-default layer (ADR 0012).
 */
import { AddressSet, parseCidr, subscriberKey, type Cidr, UNKNOWN_COUNTRY } from '../network/index.js';
import type { Condition, RuleAction, WafMode, WafRule } from './config.js';

export interface WafRequest {
  readonly method: string;
  /** the path without the query (never logged with it: signed URLs carry their signature there) */
  readonly path: string;
  readonly urlBytes: number;
  readonly headerBytes: number;
  /** the client address, undefined when it is not an IP */
  readonly client: string | undefined;
}

export interface RuleMatch {
  readonly rule: string;
  readonly action: RuleAction;
  /** a Block that Detection mode turned into a log entry */
  readonly detected: boolean;
}

export interface WafVerdict {
  readonly blocked: boolean;
  /** the rule that blocked it; for a rate limit, the seconds to retry after, and whether to log it (the first refusal in the window) */
  readonly by?: { readonly rule: string; readonly retryAfterSeconds?: number; readonly log: boolean };
  /** every rule that matched, in order, for the log */
  readonly matches: readonly RuleMatch[];
  /** looked up only when a geo rule asked */
  readonly country?: string;
}

/** Clients counted per rate-limit rule; beyond it, new clients share one counter (they are limited together, never let off). */
const MAX_TRACKED_CLIENTS = 100_000;
const OVERFLOW = '(overflow)';

/** Who a rate limit counts: an IPv4 address, or an IPv6 client's /64 (network/address.ts). */
export function rateKey(client: string | undefined): string {
  return client === undefined ? 'unknown' : subscriberKey(client);
}

class RateCounter {
  private readonly windows = new Map<string, { start: number; count: number }>();
  private lastSweep = 0;

  constructor(
    private readonly requests: number,
    private readonly windowMs: number,
  ) {}

  /**
   * Counts one request; when the client is over the limit, returns the seconds until its window
   * ends and whether this is its first request over it (logged; the rest of the window is not).
   */
  hit(key: string, now: number): { retryAfterSeconds: number; first: boolean } | undefined {
    // expired windows are dropped once per window, not on every new client (that would be a scan per request once full)
    if (now - this.lastSweep >= this.windowMs) {
      this.lastSweep = now;
      for (const [k, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(k);
    }
    const k = this.windows.has(key) || this.windows.size < MAX_TRACKED_CLIENTS ? key : OVERFLOW;
    let w = this.windows.get(k);
    if (w === undefined || now - w.start >= this.windowMs) {
      w = { start: now, count: 0 };
      this.windows.set(k, w);
    }
    w.count++;
    if (w.count <= this.requests) return undefined;
    return { retryAfterSeconds: Math.max(1, Math.ceil((w.start + this.windowMs - now) / 1000)), first: w.count === this.requests + 1 };
  }
}

type Test = (r: WafRequest, country: () => string) => boolean;

function compile(c: Condition): Test {
  let test: Test;
  switch (c.match) {
    case 'geo': {
      const set = new Set(c.countries);
      test = (_r, country) => set.has(country());
      break;
    }
    case 'ip': {
      const set = new AddressSet(c.cidrs.map((s) => parseCidr(s)).filter((x): x is Cidr => x !== undefined));
      test = (r) => r.client !== undefined && set.has(r.client);
      break;
    }
    case 'method': {
      const set = new Set(c.methods);
      test = (r) => set.has(r.method);
      break;
    }
    case 'path':
      test = (r) => c.prefixes.some((p) => r.path.startsWith(p));
      break;
    case 'size':
      test = (r) => r.headerBytes > c.maxHeaderBytes || r.urlBytes > c.maxUrlBytes;
      break;
  }
  return c.negate ? (r, country) => !test(r, country) : test;
}

interface CompiledRule {
  readonly name: string;
  readonly action: RuleAction;
  readonly tests: readonly Test[];
  readonly counter?: RateCounter;
}

export class Waf {
  private readonly rules: readonly CompiledRule[];
  readonly usesGeo: boolean;

  constructor(
    private readonly mode: WafMode,
    rules: readonly WafRule[],
    private readonly countryOf: ((address: string) => string) | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.rules = rules.map((r) => ({
      name: r.name,
      action: r.action,
      tests: r.conditions.map(compile),
      ...(r.rateLimit !== undefined ? { counter: new RateCounter(r.rateLimit.requests, r.rateLimit.windowSeconds * 1000) } : {}),
    }));
    this.usesGeo = rules.some((r) => r.conditions.some((c) => c.match === 'geo'));
    if (this.usesGeo && countryOf === undefined) throw new Error('a WAF rule matches on country but no waf.geoDatabase is configured');
  }

  evaluate(r: WafRequest): WafVerdict {
    let country: string | undefined;
    const countryOf = (): string => (country ??= r.client === undefined || this.countryOf === undefined ? UNKNOWN_COUNTRY : this.countryOf(r.client));
    const matches: RuleMatch[] = [];
    const verdict = (blocked: boolean, by?: WafVerdict['by']): WafVerdict => ({ blocked, matches, ...(by !== undefined ? { by } : {}), ...(country !== undefined ? { country } : {}) });
    for (const rule of this.rules) {
      if (!rule.tests.every((t) => t(r, countryOf))) continue;
      let over: { retryAfterSeconds: number; first: boolean } | undefined;
      if (rule.counter !== undefined) {
        over = rule.counter.hit(rateKey(r.client), this.now());
        if (over === undefined) continue;
      }
      const detected = rule.action === 'Block' && this.mode === 'Detection';
      if (over === undefined || over.first) matches.push({ rule: rule.name, action: rule.action, detected });
      if (rule.action === 'Allow') return verdict(false);
      if (rule.action === 'Block' && !detected) return verdict(true, { rule: rule.name, log: over === undefined || over.first, ...(over !== undefined ? { retryAfterSeconds: over.retryAfterSeconds } : {}) });
    }
    return verdict(false);
  }
}
