/**
 * A whole body (a small blob, a manifest) sealed under a data key of its own, with the record
 * that maps its plaintext digest to the sealed object: what the blob store's `put` and the
 * metadata store's manifest bodies both store.
 */
import { digestOf, type Digest } from '../oci/index.js';
import type { DataKeyRecord, SealedKind } from './data-key-store.js';
import { newObjectId, sealBuffer } from './format.js';
import type { KeyRing } from './key-ring.js';

export interface FreshlySealed {
  /** the sealed object, named in the record by its `cipherDigest` */
  readonly bytes: Buffer;
  readonly record: DataKeyRecord;
  /** the data key in the clear: the caller wipes it once it is done with it */
  readonly key: Buffer;
}

/** Seals `body` under a new data key the KEK wraps; the key is wiped here if sealing fails. */
export async function sealUnderNewKey(ring: KeyRing, kind: SealedKind, body: Buffer, digest: Digest, segmentSize: number): Promise<FreshlySealed> {
  const objectId = newObjectId();
  const dk = await ring.newDataKey(objectId.toString('hex'));
  try {
    const sealed = sealBuffer(body, digest, dk.key, { segmentSize, objectId, kek: dk.kek, wrapped: dk.wrapped });
    const record: DataKeyRecord = {
      kind,
      digest,
      cipherDigest: digestOf(sealed.bytes),
      size: body.length,
      objectId: objectId.toString('hex'),
      segmentSize,
      headerLength: sealed.headerLength,
      kek: dk.kek,
      wrapped: dk.wrapped,
      createdAt: Date.now(),
    };
    return { bytes: sealed.bytes, record, key: dk.key };
  } catch (e) {
    dk.key.fill(0);
    throw e;
  }
}
