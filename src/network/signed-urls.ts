/**
 * Short-lived signed URLs for the dedicated data endpoint (issue 5, item 4; ADR 0011). The
 * registry endpoint answers a blob GET it has authorized with 307 to the data endpoint, carrying
 * `exp` (unix seconds), `k` (the signing key's id) and `sig`: HMAC-SHA256 over the method, the
 * repository, the digest, the expiry and, when `bindClientAddress` is on, the client address. The
 * data endpoint serves nothing else.
 *
 * Keys are 32 random bytes, made in memory and rotated every `rotationMs`. The previous key still
 * verifies, and a URL never outlives its key's successor's period, because `rotationMs` must be at
 * least the URL lifetime. A restart makes new keys, so the URLs issued before it stop working,
 * which costs a client one more GET at the registry endpoint.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface SignedUrlOptions {
  readonly ttlMs: number;
  readonly rotationMs: number;
  readonly bindClientAddress: boolean;
  readonly now?: () => number;
}

export interface Signature {
  readonly exp: string;
  readonly k: string;
  readonly sig: string;
}

interface Key {
  readonly id: string;
  readonly secret: Buffer;
  readonly made: number;
}

export class UrlSigner {
  private current: Key;
  private previous: Key | undefined;
  private readonly now: () => number;

  constructor(private readonly o: SignedUrlOptions) {
    if (o.rotationMs < o.ttlMs) throw new Error('signing keys must live at least as long as the URLs they sign');
    this.now = o.now ?? Date.now;
    this.current = this.makeKey();
  }

  private makeKey(): Key {
    return { id: randomBytes(6).toString('base64url'), secret: randomBytes(32), made: this.now() };
  }

  private rotate(): void {
    if (this.now() - this.current.made < this.o.rotationMs) return;
    this.previous?.secret.fill(0);
    this.previous = this.current;
    this.current = this.makeKey();
  }

  private mac(key: Key, method: string, repository: string, digest: string, exp: string, client: string): Buffer {
    const bound = this.o.bindClientAddress ? client : '-';
    return createHmac('sha256', key.secret).update(['bulwark-data-v1', method, repository, digest, exp, bound].join('\n')).digest();
  }

  sign(method: string, repository: string, digest: string, client: string): Signature {
    this.rotate();
    const exp = String(Math.floor((this.now() + this.o.ttlMs) / 1000));
    return { exp, k: this.current.id, sig: this.mac(this.current, method, repository, digest, exp, client).toString('base64url') };
  }

  /** undefined when the URL is good; otherwise why not (for logs, never for the client). */
  verify(method: string, repository: string, digest: string, client: string, s: { readonly [K in keyof Signature]?: string | undefined }): string | undefined {
    this.rotate();
    const { exp, k, sig } = s;
    if (exp === undefined || k === undefined || sig === undefined || !/^\d{1,12}$/.test(exp) || !/^[A-Za-z0-9_-]{43}$/.test(sig)) return 'missing or malformed signature';
    if (Number(exp) * 1000 <= this.now()) return 'expired';
    const key = k === this.current.id ? this.current : k === this.previous?.id ? this.previous : undefined;
    if (key === undefined) return 'unknown signing key';
    const given = Buffer.from(sig, 'base64url');
    const expected = this.mac(key, method, repository, digest, exp, client);
    return given.length === expected.length && timingSafeEqual(given, expected) ? undefined : 'bad signature';
  }
}
