/**
 * IP addresses and CIDR ranges, IPv4 and IPv6, on node's own `net.BlockList` (no parsing of our
 * own beyond splitting `address/prefix`). An IPv4-mapped IPv6 address (`::ffff:192.0.2.1` or
 * `::ffff:c000:201`, what a dual-stack socket reports for an IPv4 peer) is the IPv4 address it
 * maps. IPv4 addresses are matched only against IPv4 ranges and IPv6 against IPv6: BlockList
 * alone would let `::/0` hold every IPv4 address (it sees them as mapped).
 */
import { BlockList, isIP } from 'node:net';

export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

const MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;
const MAPPED_HEX = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i;

/** The address as rules see it: IPv4-mapped IPv6 unmapped, brackets and zone dropped; undefined when not an IP. */
export function normalizeAddress(raw: string): string | undefined {
  let a = raw.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = MAPPED.exec(a);
  if (mapped !== null) a = mapped[1] ?? a;
  const hex = MAPPED_HEX.exec(a);
  if (hex !== null) {
    const hi = parseInt(hex[1] ?? '0', 16);
    const lo = parseInt(hex[2] ?? '0', 16);
    a = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return isIP(a) === 0 ? undefined : a.toLowerCase();
}

/**
 * Who a per-client limit counts: an IPv4 address as is, an IPv6 address by its /64 (one host or
 * subscriber usually owns a whole /64, so counting single addresses would give it 2^64
 * allowances). IPv4-mapped addresses count as the IPv4 address; text that is no address is its
 * own key. Used by the sign-in failure limiter and the gateway's rate limits.
 */
export function subscriberKey(raw: string): string {
  const a = normalizeAddress(raw);
  if (a === undefined) return raw;
  if (isIP(a) !== 6) return a;
  const [head = '', tail = ''] = a.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (64:ff9b::192.0.2.1) is one element for two groups.
  const dotted = (t.at(-1) ?? h.at(-1) ?? '').includes('.') ? 1 : 0;
  const groups = a.includes('::') ? [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length - dotted)).fill('0'), ...t] : h;
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

/**
 * `address` or `address/prefix` (IPv4 prefix 0-32, IPv6 0-128); undefined when malformed. A range
 * in the IPv4-mapped block (`::ffff:192.0.2.0/120`) is the IPv4 range it maps (`192.0.2.0/24`);
 * one wider than that block stays an IPv6 range, which holds no IPv4 address.
 */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const literal = (slash < 0 ? text : text.slice(0, slash)).trim();
  const addr = normalizeAddress(literal);
  if (addr === undefined) return undefined;
  const v6 = isIP(literal.replace(/^\[|\]$/g, '').replace(/%.*$/, '')) === 6;
  const given = slash < 0 ? undefined : text.slice(slash + 1);
  if (given !== undefined && !/^\d{1,3}$/.test(given)) return undefined;
  if (isIP(addr) === 4 && v6) {
    // written as IPv4-mapped IPv6: prefixes count over 128 bits
    const p = given === undefined ? 128 : Number(given);
    if (p > 128) return undefined;
    if (p >= 96) return { address: addr, prefix: p - 96, family: 'ipv4' };
    return { address: literal.toLowerCase(), prefix: p, family: 'ipv6' };
  }
  const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
  const max = family === 'ipv4' ? 32 : 128;
  if (given !== undefined && Number(given) > max) return undefined;
  return { address: addr, prefix: given === undefined ? max : Number(given), family };
}

/** A set of CIDR ranges, asked whether it holds an address. */
export class AddressSet {
  private readonly v4 = new BlockList();
  private readonly v6 = new BlockList();
  readonly size: number;

  constructor(ranges: readonly Cidr[]) {
    for (const r of ranges) (r.family === 'ipv4' ? this.v4 : this.v6).addSubnet(r.address, r.prefix, r.family);
    this.size = ranges.length;
  }

  has(address: string): boolean {
    const a = normalizeAddress(address);
    if (a === undefined) return false;
    return isIP(a) === 4 ? this.v4.check(a, 'ipv4') : this.v6.check(a, 'ipv6');
  }
}
