/**
 * Short-lived signed URLs for the dedicated data endpoint (issue 5, item 4; ADR 0011). The
 * registry endpoint answers a blob GET it has authorized with 307 to the data endpoint, carrying
 * `exp` (unix seconds), `k` (the signing key's id) and `sig`: HMAC-SHA256 over the method, the
 * repository, the digest, the expiry and, when `bindClientAddress` is on, the client address. The
 * data endpoint serves nothing else.
 *
 * Keys rotate every `rotationMs`; the previous key still verifies, and a URL never outlives its
 * key's successor's period, because `rotationMs` must be at least the URL lifetime.
 * - Without a shared secret, keys are 32 random bytes made in memory: one process signs and
 *   verifies, and a restart makes new keys (URLs issued before it stop working, which costs a
 *   client one more GET at the registry endpoint).
 * - With `sharedSecret` (`dataEndpoint.keyFile`), the key of rotation period `e` is
 *   HKDF-SHA256(secret, "bulwark-data-url-key-v1", e), named `e<e>`: every process holding the
 *   file signs and verifies the same URLs, across restarts, without talking to each other. Keys of
 *   the previous, current and next period verify (the next one: another process whose clock is a
 *   little ahead).
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';

/** The shared secret of `dataEndpoint.keyFile`: a regular file, owner-only (mode 0600), at least 32 bytes once trimmed. */
export async function readUrlSecret(path: string): Promise<Buffer> {
  const st = await stat(path);
  // whoever reads it can mint a download of any blob: it is as secret as the token signing keys
  if (!st.isFile() || (st.mode & 0o077) !== 0) throw new Error(`dataEndpoint.keyFile ${path} must be a regular file with mode 0600 (it has ${(st.mode & 0o777).toString(8)})`);
  const secret = Buffer.from((await readFile(path, 'utf8')).trim());
  if (secret.length < 32) throw new Error(`dataEndpoint.keyFile ${path} holds ${secret.length} bytes; give at least 32 (openssl rand -base64 48)`);
  return secret;
}

export interface SignedUrlOptions {
  readonly ttlMs: number;
  readonly rotationMs: number;
  readonly bindClientAddress: boolean;
  /** the secret keys are derived from, shared by every registry process (absent: random keys in memory) */
  readonly sharedSecret?: Buffer;
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
    if (o.sharedSecret !== undefined && o.sharedSecret.length < 32) throw new Error('the shared data-URL secret must be at least 32 bytes');
    this.now = o.now ?? Date.now;
    this.current = this.makeKey();
  }

  private period(): number {
    return Math.floor(this.now() / this.o.rotationMs);
  }

  private derived(period: number): Key {
    const secret = this.o.sharedSecret ?? Buffer.alloc(0);
    return { id: `e${period.toString(36)}`, secret: Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `bulwark-data-url-key-v1\n${period}`, 32)), made: period * this.o.rotationMs };
  }

  private makeKey(): Key {
    if (this.o.sharedSecret !== undefined) return this.derived(this.period());
    return { id: randomBytes(6).toString('base64url'), secret: randomBytes(32), made: this.now() };
  }

  private rotate(): void {
    if (this.now() - this.current.made < this.o.rotationMs) return;
    this.previous?.secret.fill(0);
    this.previous = this.o.sharedSecret !== undefined ? this.derived(this.period() - 1) : this.current;
    this.current = this.makeKey();
  }

  /** The key a URL names, among those that may still verify. */
  private keyNamed(k: string): Key | undefined {
    if (k === this.current.id) return this.current;
    if (k === this.previous?.id) return this.previous;
    // shared keys: the previous period's (before any rotation here) and the next one's (a process slightly ahead)
    if (this.o.sharedSecret !== undefined) {
      const p = this.period();
      for (const q of [p - 1, p + 1]) if (k === `e${q.toString(36)}`) return this.derived(q);
    }
    return undefined;
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
    const key = this.keyNamed(k);
    if (key === undefined) return 'unknown signing key';
    const given = Buffer.from(sig, 'base64url');
    const expected = this.mac(key, method, repository, digest, exp, client);
    return given.length === expected.length && timingSafeEqual(given, expected) ? undefined : 'bad signature';
  }
}
