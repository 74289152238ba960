/**
 * The request target as the WAF sees it. Path rules must match the path the registry behind will
 * route on, and registries route on the decoded path: `/%61pi/v1` is `/api/v1` to find-my-way and
 * to Go's mux. So the path is percent-decoded before any rule looks at it, and a target whose
 * decoding could be read two ways (an encoded `/` or `\`, NUL or control characters, empty or dot
 * segments) is refused instead: no OCI endpoint needs one, and each is a known way past a prefix
 * rule.
 */

export type CanonicalTarget = { readonly path: string } | { readonly problem: string };

// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f]/;

export function canonicalTarget(target: string): CanonicalTarget {
  // origin-form only (RFC 9112 §3.2.1): an absolute-form or authority-form target would let a client choose the upstream
  if (!target.startsWith('/')) return { problem: 'the request target must be a path' };
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  if (raw.includes('#')) return { problem: 'the request target must not carry a fragment' };
  if (/%2f|%5c/i.test(raw)) return { problem: 'the path must not contain an encoded / or \\' };
  let path: string;
  try {
    path = raw.includes('%') ? decodeURIComponent(raw) : raw;
  } catch {
    return { problem: 'the path has a malformed percent-encoding' };
  }
  if (path.includes('\\') || CONTROL.test(path)) return { problem: 'the path must not contain \\ or control characters' };
  const segments = path.split('/').slice(1);
  // an empty segment is allowed last only (`/v2/`)
  if (segments.some((s, i) => s === '.' || s === '..' || (s === '' && i < segments.length - 1))) return { problem: 'the path must not contain empty, . or .. segments' };
  return { path };
}
