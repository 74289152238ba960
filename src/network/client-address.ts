/**
 * Which address a request comes from. The socket's peer, unless that peer is a configured trusted
 * proxy: then the forwarding header the proxies write (`X-Forwarded-For`, or RFC 7239 `Forwarded`,
 * whichever `network.forwardedHeader` names; never both, so a client cannot slip its own value in
 * through the header the proxies leave alone) is walked from the right, hop by hop, for as long
 * as each hop is itself a trusted proxy. The first hop that is not is the client. Everything to
 * its left was written by that client or by proxies nobody trusts, and is ignored.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { normalizeAddress, type AddressSet } from './address.js';

export type ForwardedHeader = 'x-forwarded-for' | 'forwarded';

/** Hops looked at, at most: more is a loop or an attack, and the walk stops (at an untrusted value). */
const MAX_HOPS = 32;

export interface ClientAddress {
  /** the normalized IP address, or undefined when the hop that counts is not an IP (`unknown`, `_hidden`, garbage) */
  readonly address: string | undefined;
  /** what the hop said, for logs and audit (bounded) */
  readonly raw: string;
  /** whether it came from a forwarding header rather than the socket */
  readonly forwarded: boolean;
}

/** A node as a proxy names it, without its port: `[2001:db8::1]:4711` and `192.0.2.1:80` (Azure Application Gateway writes ports). */
function withoutPort(node: string): string {
  if (node.startsWith('[')) return node.slice(1, node.indexOf(']') < 0 ? node.length : node.indexOf(']'));
  return /^[\d.]+:\d+$/.test(node) ? node.slice(0, node.indexOf(':')) : node;
}

/**
 * One node per `Forwarded` element, in order (quotes, brackets and ports removed). An element
 * without `for=` is a hop that did not say whom it serves: it counts, as an unknown node, so a
 * `for=` a client put further left is never mistaken for it.
 */
function forwardedFor(value: string): string[] {
  const out: string[] = [];
  for (const element of value.split(',')) {
    let node = 'unknown';
    for (const pair of element.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim().toLowerCase() !== 'for') continue;
      let v = pair.slice(eq + 1).trim();
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
      node = withoutPort(v);
      break;
    }
    out.push(node);
  }
  return out;
}

function hopsOf(headers: IncomingHttpHeaders, header: ForwardedHeader): string[] {
  const v = headers[header];
  const text = Array.isArray(v) ? v.join(',') : (v ?? '');
  if (text.trim() === '') return [];
  return header === 'forwarded' ? forwardedFor(text) : text.split(',').map((s) => withoutPort(s.trim()));
}

export function clientAddress(peer: string | undefined, headers: IncomingHttpHeaders, trusted: AddressSet, header: ForwardedHeader): ClientAddress {
  const socket = peer ?? '';
  let current: ClientAddress = { address: normalizeAddress(socket), raw: socket.slice(0, 100), forwarded: false };
  if (trusted.size === 0 || current.address === undefined || !trusted.has(current.address)) return current;
  const hops = hopsOf(headers, header);
  for (let i = hops.length - 1, seen = 0; i >= 0; i--, seen++) {
    const raw = hops[i] ?? '';
    current = { address: normalizeAddress(raw), raw: raw.slice(0, 100), forwarded: true };
    if (seen >= MAX_HOPS) return { address: undefined, raw: '(too many forwarding hops)', forwarded: true };
    if (current.address === undefined || !trusted.has(current.address)) return current;
  }
  // Every hop was a trusted proxy: the leftmost is as close to the client as anyone can tell.
  return current;
}
