/**
 * Digests (image-spec "Digests"): `algorithm ":" encoded`. Only the registered algorithms
 * sha256 and sha512 are accepted; digests from clients are always recomputed, never trusted.
 */
import { createHash, type Hash } from 'node:crypto';
import { registryError } from './errors.js';

export type DigestAlgorithm = 'sha256' | 'sha512';
export type Digest = `${DigestAlgorithm}:${string}`;

const ENCODED_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST_RE = /^(sha256|sha512):([a-f0-9]+)$/;

export function isDigest(s: string): s is Digest {
  const m = DIGEST_RE.exec(s);
  if (m === null) return false;
  return m[2]?.length === ENCODED_LENGTH[m[1] as DigestAlgorithm];
}

/** Throws DIGEST_INVALID for a malformed digest or an algorithm other than sha256/sha512. */
export function parseDigest(s: string): Digest {
  if (isDigest(s)) return s;
  throw registryError('DIGEST_INVALID', 'invalid digest: expected sha256:<64 hex> or sha512:<128 hex>', {
    detail: { digest: s.slice(0, 200) },
  });
}

export function digestAlgorithm(d: Digest): DigestAlgorithm {
  return d.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function createDigester(alg: DigestAlgorithm = 'sha256'): Hash {
  return createHash(alg);
}

export function digestOf(data: Uint8Array | string, alg: DigestAlgorithm = 'sha256'): Digest {
  return `${alg}:${createHash(alg).update(data).digest('hex')}`;
}
