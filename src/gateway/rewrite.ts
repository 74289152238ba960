/**
 * Upstream names → public names in the response headers that carry URLs (issue 5, item 5):
 * `Location` (upload sessions, data-endpoint redirects), the `realm` of `WWW-Authenticate` (where
 * clients fetch tokens) and every `<URL>` of `Link` (pagination). A client behind the gateway must
 * never learn, or be sent to, a private host name.
 *
 * - Matching is by origin (scheme, host and port, compared as URL origins: case-insensitive, a
 *   default port the same as none) and then a literal path prefix at a boundary, so that
 *   `http://a:5000` never matches `http://a:50001` or `http://a:5000.evil`. Patterns an operator
 *   can read, not regular expressions over headers.
 * - Fail closed: an absolute URL that no rule rewrites and whose origin is not public (a site's
 *   public URL, or one of the configured pass-through origins such as object storage a registry
 *   redirects to) is a leak, reported to the caller, which refuses to pass the response on.
 */

export interface Rewrite {
  readonly from: string;
  readonly to: string;
}

/** The result of rewriting one header: its new value, or the origin that would have leaked. */
export type Rewritten = { readonly value: string } | { readonly leak: string };

interface Rule {
  readonly origin: string;
  readonly path: string;
  readonly to: string;
}

/** Splits an absolute (or scheme-relative) URL into its normalized origin and the rest, unchanged; undefined for a relative one. */
function split(value: string): { origin: string; rest: string } | undefined {
  const m = /^((?:[a-z][a-z0-9+.-]*:)?\/\/[^/?#]*)(.*)$/is.exec(value);
  if (m === null) return undefined;
  const head = m[1] ?? '';
  try {
    const origin = new URL(head.startsWith('//') ? `https:${head}` : head).origin;
    return { origin: origin === 'null' ? head.toLowerCase() : origin, rest: m[2] ?? '' };
  } catch {
    return { origin: head.toLowerCase().slice(0, 100), rest: m[2] ?? '' };
  }
}

export class HeaderRewriter {
  private readonly rules: readonly Rule[];
  private readonly allowed: ReadonlySet<string>;

  /** `allowedOrigins`: absolute URLs on these may pass unchanged (the public sites, configured pass-through). */
  constructor(rewrites: readonly Rewrite[], allowedOrigins: readonly string[] = []) {
    this.rules = rewrites.map((r) => {
      const u = new URL(r.from);
      return { origin: u.origin, path: u.pathname.replace(/\/$/, ''), to: r.to.replace(/\/$/, '') };
    });
    this.allowed = new Set(allowedOrigins.map((o) => new URL(o).origin));
  }

  url(value: string): Rewritten {
    const parts = split(value.trim());
    if (parts === undefined) return { value };
    for (const r of this.rules) {
      if (parts.origin !== r.origin || !parts.rest.startsWith(r.path)) continue;
      const next = parts.rest.charAt(r.path.length);
      if (next === '' || next === '/' || next === '?' || next === '#') return { value: r.to + parts.rest.slice(r.path.length) };
    }
    return this.allowed.has(parts.origin) ? { value } : { leak: parts.origin };
  }

  location(value: string): Rewritten {
    return this.url(value);
  }

  /** `Bearer realm="https://upstream/oauth2/token",service="x",scope="y"`: only the realm's value changes. */
  wwwAuthenticate(value: string): Rewritten {
    return this.within(value, /(\brealm=")([^"]*)(")/gi);
  }

  /** `<https://upstream/v2/a/tags/list?n=10&last=x>; rel="next"` (one or several, comma-separated). */
  link(value: string): Rewritten {
    return this.within(value, /(<)([^>]*)(>)/g);
  }

  private within(value: string, pattern: RegExp): Rewritten {
    let leak: string | undefined;
    const out = value.replace(pattern, (_m, a: string, url: string, b: string) => {
      const r = this.url(url);
      if ('leak' in r) leak ??= r.leak;
      return a + ('value' in r ? r.value : url) + b;
    });
    return leak !== undefined ? { leak } : { value: out };
  }
}
