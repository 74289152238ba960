/**
 * EME-OAEP decoding (RFC 8017 §7.1.2, step 3) with SHA-256, MGF1-SHA-256 and an empty label:
 * the padding half of RSA-OAEP-256 for tokens that can only do the raw RSA half (CKM_RSA_X_509;
 * SoftHSM2 2.6 accepts CKM_RSA_PKCS_OAEP with SHA-1 only).
 *
 * The input is the result of decrypting attacker-supplied bytes, so every check runs on every
 * byte and all failures end in one error at the end: telling "first byte not zero" apart from
 * the other failures is Manger's chosen-ciphertext attack (RFC 8017 §7.1.2, note). Branch-free
 * in JavaScript is as close to constant time as this gets; the secret-dependent work is the
 * hashing, whose length depends only on the modulus size.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { KeyVaultError } from './key-vault.js';

const H_LEN = 32;
/** SHA-256 of the empty label. */
const L_HASH = createHash('sha256').digest();

function mgf1(seed: Buffer, length: number): Buffer {
  const out = Buffer.alloc(Math.ceil(length / H_LEN) * H_LEN);
  const counter = Buffer.alloc(4);
  for (let i = 0; i * H_LEN < length; i += 1) {
    counter.writeUInt32BE(i);
    createHash('sha256').update(seed).update(counter).digest().copy(out, i * H_LEN);
  }
  return out.subarray(0, length);
}

function xorInto(target: Buffer, mask: Buffer): void {
  for (let i = 0; i < target.length; i += 1) target[i] = (target[i] ?? 0) ^ (mask[i] ?? 0);
}

/** 1 when b (0..255) is zero, else 0, without a branch. */
const isZero = (b: number): number => ((b - 1) >>> 31) & 1;

/**
 * Decodes EM (the k-byte raw RSA result) to the message; UNWRAP_FAILED for anything that is
 * not a valid OAEP-256 encoding. Zeroes its working copies.
 */
export function oaepSha256Decode(em: Buffer): Buffer {
  const k = em.length;
  if (k < 2 * H_LEN + 2) throw new KeyVaultError('UNWRAP_FAILED', 'wrapped key does not match this key version');
  const seed = Buffer.from(em.subarray(1, 1 + H_LEN));
  const db = Buffer.from(em.subarray(1 + H_LEN));
  try {
    xorInto(seed, mgf1(db, H_LEN));
    xorInto(db, mgf1(seed, db.length));
    let good = isZero(em[0] ?? 1) & (timingSafeEqual(db.subarray(0, H_LEN), L_HASH) ? 1 : 0);
    // PS is zero bytes, then 0x01, then M: find the first 0x01 and check nothing else comes before it.
    let found = 0;
    let index = 0;
    for (let i = H_LEN; i < db.length; i += 1) {
      const b = db[i] ?? 0;
      const one = isZero(b ^ 1);
      const take = one & (found ^ 1);
      index |= -take & i;
      good &= found | one | isZero(b);
      found |= one;
    }
    good &= found;
    if (good !== 1) throw new KeyVaultError('UNWRAP_FAILED', 'wrapped key does not match this key version');
    return Buffer.from(db.subarray(index + 1));
  } finally {
    seed.fill(0);
    db.fill(0);
  }
}
