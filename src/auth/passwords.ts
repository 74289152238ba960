/**
 * Server-generated secrets and their slow hashes. Passwords are never chosen by people: each is
 * 32 random bytes (256 bits) shown once, and only an scrypt hash is stored. Verification compares
 * with crypto.timingSafeEqual.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const PARAMS = { N: 1 << 14, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } satisfies ScryptOptions;
const KEY_BYTES = 32;
/** Longest password accepted for verification: ours are 43 characters; anything much longer is not ours. */
export const MAX_PASSWORD_LENGTH = 256;

function scrypt(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, KEY_BYTES, opts, (err, key) => (err === null ? resolve(key) : reject(err))));
}

/**
 * scrypt runs on libuv's thread pool (4 threads), which the blob store's file I/O shares. At most
 * this many run at once, so a flood of sign-ins queues here instead of stalling pushes and pulls.
 */
const SCRYPT_SLOTS = 2;
let scryptBusy = 0;
const scryptWaiting: (() => void)[] = [];

async function withScryptSlot<T>(fn: () => Promise<T>): Promise<T> {
  if (scryptBusy >= SCRYPT_SLOTS) await new Promise<void>((resolve) => scryptWaiting.push(resolve));
  else scryptBusy++;
  try {
    return await fn();
  } finally {
    const next = scryptWaiting.shift();
    if (next !== undefined) next();
    else scryptBusy--;
  }
}

export function generatePassword(): string {
  return randomBytes(32).toString('base64url');
}

/** `scrypt$<N>$<r>$<p>$<salt b64url>$<key b64url>` */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await withScryptSlot(() => scrypt(password, salt, PARAMS));
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/**
 * `gate` runs when the computation is about to start (after waiting for a slot) and may throw to
 * abandon it: a throttle decided while the attempt was queued still applies.
 */
export async function verifyPassword(password: string, encoded: string, gate?: () => void): Promise<boolean> {
  if (password.length === 0 || password.length > MAX_PASSWORD_LENGTH) return false;
  const [alg, n, r, p, salt, key] = encoded.split('$');
  if (alg !== 'scrypt' || salt === undefined || key === undefined) return false;
  const expected = Buffer.from(key, 'base64url');
  const actual = await withScryptSlot(() => {
    gate?.();
    return scrypt(password, Buffer.from(salt, 'base64url'), { N: Number(n), r: Number(r), p: Number(p), maxmem: PARAMS.maxmem });
  });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
