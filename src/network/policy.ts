/**
 * Network rules (issue 5), evaluated before authentication, like an Azure Container Registry's
 * firewall:
 * - A request that came in on a `private` listener (a private endpoint: open to its network) is
 *   not subject to them.
 * - On a `public` listener, everything is refused while `publicAccess` is `Disabled`. Otherwise
 *   the first rule whose range holds the client address decides (allow or deny), and
 *   `defaultAction` decides when none does.
 *
 * A client address that is not an IP (a forwarding hop that says `unknown`) matches no rule.
 */
import { AddressSet, parseCidr } from './address.js';

export type ListenerKind = 'private' | 'public';

export interface NetworkRule {
  readonly name: string;
  readonly action: 'allow' | 'deny';
  readonly range: string;
}

export interface Verdict {
  readonly allowed: boolean;
  /** what decided, as an operator names it: `rule office`, `defaultAction Deny`, ... */
  readonly rule: string;
}

/** Most rules a policy holds (Azure Container Registry allows 200 IP rules). */
export const MAX_RULES = 200;
const RULE = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})=(allow|deny):(\S+)$/;

/** `<name>=<allow|deny>:<address or CIDR>`; a description of what is wrong, or undefined. */
export function ruleProblem(text: string): string | undefined {
  const m = RULE.exec(text);
  if (m === null) return 'expected <name>=<allow|deny>:<address or CIDR>';
  return parseCidr(m[3] ?? '') === undefined ? `"${m[3] ?? ''}" is not an IPv4/IPv6 address or CIDR range` : undefined;
}

export function parseRule(text: string): NetworkRule {
  const m = RULE.exec(text);
  const problem = ruleProblem(text);
  if (m === null || problem !== undefined) throw new Error(`network rule "${text.slice(0, 100)}": ${problem ?? 'malformed'}`);
  return { name: m[1] ?? '', action: m[2] === 'allow' ? 'allow' : 'deny', range: m[3] ?? '' };
}

export interface NetworkPolicyOptions {
  readonly publicAccess: 'Enabled' | 'Disabled';
  readonly defaultAction: 'Allow' | 'Deny';
  readonly rules: readonly NetworkRule[];
}

export class NetworkPolicy {
  private readonly rules: ReadonlyArray<NetworkRule & { readonly set: AddressSet }>;

  constructor(private readonly o: NetworkPolicyOptions) {
    if (o.rules.length > MAX_RULES) throw new Error(`at most ${MAX_RULES} network rules, got ${o.rules.length}`);
    const names = new Set<string>();
    this.rules = o.rules.map((r) => {
      if (names.has(r.name)) throw new Error(`two network rules are named "${r.name}"`);
      names.add(r.name);
      const cidr = parseCidr(r.range);
      if (cidr === undefined) throw new Error(`network rule "${r.name}": "${r.range}" is not an address or CIDR range`);
      return { ...r, set: new AddressSet([cidr]) };
    });
  }

  decide(kind: ListenerKind, address: string | undefined): Verdict {
    if (kind === 'private') return { allowed: true, rule: 'private listener' };
    if (this.o.publicAccess === 'Disabled') return { allowed: false, rule: 'publicAccess Disabled' };
    if (address !== undefined) {
      for (const r of this.rules) if (r.set.has(address)) return { allowed: r.action === 'allow', rule: `rule ${r.name}` };
    }
    return { allowed: this.o.defaultAction === 'Allow', rule: `defaultAction ${this.o.defaultAction}` };
  }
}
