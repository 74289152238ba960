/**
 * IP addresses and CIDR ranges, IPv4 and IPv6, on node's own `net.BlockList` (no parsing of our
 * own beyond splitting `address/prefix`). An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a
 * dual-stack socket reports for an IPv4 peer) is the IPv4 address it maps.
 */
import { BlockList, isIP } from 'node:net';

export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

const MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** The address as rules see it: IPv4-mapped IPv6 unmapped, brackets and zone dropped; undefined when not an IP. */
export function normalizeAddress(raw: string): string | undefined {
  let a = raw.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = MAPPED.exec(a);
  if (mapped !== null) a = mapped[1] ?? a;
  return isIP(a) === 0 ? undefined : a.toLowerCase();
}

/** `address` or `address/prefix` (IPv4 prefix 0-32, IPv6 0-128); undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const addr = normalizeAddress(slash < 0 ? text : text.slice(0, slash));
  if (addr === undefined) return undefined;
  const family = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
  const max = family === 'ipv4' ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return undefined;
    prefix = Number(p);
  }
  return { address: addr, prefix, family };
}

/** A set of CIDR ranges, asked whether it holds an address. */
export class AddressSet {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(ranges: readonly Cidr[]) {
    for (const r of ranges) this.list.addSubnet(r.address, r.prefix, r.family);
    this.size = ranges.length;
  }

  has(address: string): boolean {
    const a = normalizeAddress(address);
    if (a === undefined) return false;
    return this.list.check(a, isIP(a) === 4 ? 'ipv4' : 'ipv6');
  }
}
