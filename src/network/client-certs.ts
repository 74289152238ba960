/**
 * Mutual TLS (issue 5, item 1; ADR 0013): a client certificate, verified by the TLS handshake
 * against `tls.clientCaFile`, signs a workload in as a service identity. The mapping is explicit,
 * one entry per identity in `tls.clientIdentities`:
 *
 *   service:<name>=sha256:<certificate fingerprint>   pins one certificate
 *   service:<name>=uri:<SAN URI>                       e.g. a SPIFFE ID, spiffe://example.org/ci
 *   service:<name>=dns:<SAN DNS name>
 *
 * A certificate matching no entry signs nobody in. Only service identities can be named: a
 * certificate is a machine credential, and people, tokens and the admin sign in otherwise.
 */
import type { PeerCertificate } from 'node:tls';

export interface ClientIdentity {
  readonly principal: string;
  readonly kind: 'sha256' | 'uri' | 'dns';
  /** normalized: fingerprint lower-case hex without colons, dns lower-case */
  readonly value: string;
}

// the service-identity name grammar of the admin API (routes/admin/schemas.ts NAME)
const SERVICE = /^service:[a-zA-Z0-9][a-zA-Z0-9-]{4,49}$/;

export function parseClientIdentity(text: string): ClientIdentity | undefined {
  const eq = text.indexOf('=');
  const principal = text.slice(0, eq);
  const rest = text.slice(eq + 1);
  const colon = rest.indexOf(':');
  if (eq <= 0 || colon <= 0 || !SERVICE.test(principal)) return undefined;
  const kind = rest.slice(0, colon);
  const raw = rest.slice(colon + 1);
  if (kind === 'sha256') {
    const hex = raw.replace(/:/g, '').toLowerCase();
    return /^[0-9a-f]{64}$/.test(hex) ? { principal, kind, value: hex } : undefined;
  }
  // node quotes a SAN holding , " ' or \ (and such names are never matched, see sans()): refuse them here too
  if (kind === 'uri') return /^[a-z][a-z0-9+.-]*:[^\s,"'\\]{1,500}$/i.test(raw) ? { principal, kind, value: raw } : undefined;
  if (kind === 'dns') return /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i.test(raw) ? { principal, kind, value: raw.toLowerCase() } : undefined;
  return undefined;
}

export const clientIdentityProblem = (text: string): string | undefined =>
  parseClientIdentity(text) === undefined ? 'expected service:<name>=sha256:<fingerprint>, service:<name>=uri:<SAN URI> or service:<name>=dns:<SAN DNS name>' : undefined;

/**
 * The SAN entries of a certificate, `URI:...` and `DNS:...`. Node gives them as one string joined
 * by `, `, and puts an entry holding `,` `"` `'` or `\` in JSON quotes, type prefix included
 * (`"URI:a, URI:spiffe://x/ci"`). Splitting such a string would let a name a CA copied from a
 * request claim another identity, so a certificate with any quoted entry matches by fingerprint
 * only.
 */
function sans(cert: PeerCertificate): { uri: string[]; dns: string[] } {
  const uri: string[] = [];
  const dns: string[] = [];
  const text = cert.subjectaltname ?? '';
  if (text.includes('"')) return { uri, dns };
  for (const part of text.split(', ')) {
    if (part.startsWith('URI:')) uri.push(part.slice(4));
    else if (part.startsWith('DNS:')) dns.push(part.slice(4).toLowerCase());
  }
  return { uri, dns };
}

export class ClientIdentities {
  private readonly entries: readonly ClientIdentity[];

  constructor(texts: readonly string[]) {
    this.entries = texts.map((t) => parseClientIdentity(t)).filter((e): e is ClientIdentity => e !== undefined);
  }

  get size(): number {
    return this.entries.length;
  }

  /** The principal a verified certificate signs in as; the first entry that matches decides. */
  principalOf(cert: PeerCertificate): string | undefined {
    const fingerprint = (cert.fingerprint256 ?? '').replace(/:/g, '').toLowerCase();
    const names = sans(cert);
    for (const e of this.entries) {
      if (e.kind === 'sha256' && e.value === fingerprint) return e.principal;
      if (e.kind === 'uri' && names.uri.includes(e.value)) return e.principal;
      if (e.kind === 'dns' && names.dns.includes(e.value)) return e.principal;
    }
    return undefined;
  }
}
