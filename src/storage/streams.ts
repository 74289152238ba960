import type { Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { registryError } from '../oci/index.js';

/**
 * A pass-through that counts bytes, feeds an optional running hash, and enforces an exact
 * expected length (Content-Length): more bytes than declared fail immediately, fewer fail at
 * `assertComplete()`.
 */
export function countingDigest(hash: Hash | undefined, expected: number | undefined): {
  transform: Transform;
  readonly bytes: number;
  assertComplete(): void;
} {
  let bytes = 0;
  const transform = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      bytes += chunk.length;
      if (expected !== undefined && bytes > expected) {
        cb(registryError('SIZE_INVALID', `body is longer than the declared ${expected} bytes`));
        return;
      }
      hash?.update(chunk);
      cb(null, chunk);
    },
  });
  return {
    transform,
    get bytes() {
      return bytes;
    },
    assertComplete() {
      if (expected !== undefined && bytes !== expected) {
        throw registryError('SIZE_INVALID', `received ${bytes} bytes but ${expected} were declared`);
      }
    },
  };
}
