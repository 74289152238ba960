/**
 * The byte-level work on encrypted upload sessions for EncryptingBlobStore: taking a short last
 * segment off to seal it again with the next body (and putting it back when that body fails),
 * repairing what a crash left at the end of a session (a torn segment, a terminator written
 * just before the commit), and decrypting a session's bytes (reads, and the digest after a
 * restart). The session lock is the caller's (UploadStates.acquire).
 */
import { pipeline, Readable } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { createDigester, registryError, type Digest, type DigestAlgorithm } from '../oci/index.js';
import type { BlobStore, ByteRange } from '../storage/index.js';
import { SEGMENT_OVERHEAD, SealError, openSegment, segmentAad, terminatorLength } from './format.js';
import type { KeyRing } from './key-ring.js';
import { collect, DecryptTransform } from './segment-streams.js';
import type { UploadState, UploadStates } from './upload-state.js';

export class SessionBytes {
  constructor(
    private readonly inner: BlobStore,
    private readonly ring: KeyRing,
    private readonly uploads: UploadStates,
  ) {}

  /**
   * A crash between appending the terminator and the commit leaves it at the end of the session:
   * if the last bytes open as a terminator (final flag, right index), they are cut off again.
   */
  async trimTerminator(id: string, st: UploadState, total: number): Promise<boolean> {
    const layout = st.layout();
    const key = await this.ring.dataKey(st.objectId.toString('hex'), st.kek, st.wrapped);
    try {
      for (const algorithm of ['sha256', 'sha512'] as const) {
        const length = terminatorLength(`${algorithm}:${'0'.repeat(algorithm === 'sha256' ? 64 : 128)}`);
        const plain = layout.plainSizeOfUpload(total - length);
        if (plain === undefined || total - length < layout.headerLength) continue;
        const sealed = await collect(await this.inner.readUploadData(id, { start: total - length, end: total - 1 }));
        try {
          openSegment(key, segmentAad(st.objectId, st.segmentSize, layout.dataSegments(plain), true), sealed);
        } catch {
          continue;
        }
        await this.inner.truncateUpload(id, total - length);
        st.plainSize = plain;
        return true;
      }
      return false;
    } finally {
      key.fill(0);
    }
  }

  /**
   * A session from before a restart may end in a segment a crash tore: check the short last
   * segment and cut the session back to the last whole segment when it does not authenticate.
   */
  async repairTail(id: string, st: UploadState, storedBytes: number): Promise<void> {
    // The terminator first: its length can look like a torn segment.
    if (!(await this.trimTerminator(id, st, storedBytes)) && st.layout().plainSizeOfUpload(storedBytes) === undefined) {
      await this.inner.truncateUpload(id, st.layout().segmentOffset(st.plainSize / st.segmentSize));
    }
    const index = Math.floor(st.plainSize / st.segmentSize);
    const tailLength = st.plainSize - index * st.segmentSize;
    if (tailLength === 0) return;
    const key = await this.ring.dataKey(st.objectId.toString('hex'), st.kek, st.wrapped);
    try {
      const at = st.layout().segmentOffset(index);
      const sealed = await collect(await this.inner.readUploadData(id, { start: at, end: at + tailLength + SEGMENT_OVERHEAD - 1 }));
      openSegment(key, segmentAad(st.objectId, st.segmentSize, index, false), sealed);
    } catch (e) {
      if (!(e instanceof SealError)) throw e;
      await this.inner.truncateUpload(id, st.layout().segmentOffset(index));
      st.plainSize = index * st.segmentSize;
    } finally {
      key.fill(0);
    }
  }

  /**
   * Takes the session's short last segment off the end, returning its plaintext to be sealed
   * again in front of the new bytes, and its ciphertext to put back if the append fails.
   */
  async openTail(id: string, st: UploadState, key: Buffer): Promise<{ index: number; prefix: Buffer; tailCipher?: Buffer }> {
    const layout = st.layout();
    const index = Math.floor(st.plainSize / st.segmentSize);
    const tailLength = st.plainSize - index * st.segmentSize;
    if (tailLength === 0) return { index, prefix: Buffer.alloc(0) };
    const at = layout.segmentOffset(index);
    const tailCipher = await collect(await this.inner.readUploadData(id, { start: at, end: at + tailLength + SEGMENT_OVERHEAD - 1 }));
    const prefix = openSegment(key, segmentAad(st.objectId, st.segmentSize, index, false), tailCipher);
    await this.inner.truncateUpload(id, at);
    return { index, prefix, tailCipher };
  }

  /** Puts a short last segment back after a failed append; a session that cannot be repaired ends. */
  async restoreTail(id: string, tailCipher: Buffer): Promise<void> {
    try {
      await this.inner.appendUpload(id, Readable.from([tailCipher]), { length: tailCipher.length });
    } catch (e) {
      this.uploads.drop(id);
      await this.inner.cancelUpload(id).catch(() => false);
      throw registryError('BLOB_UPLOAD_INVALID', 'the server failed to restore the upload session; restart the upload', { cause: e });
    }
  }

  async decryptSession(id: string, st: UploadState, key: Buffer, range: ByteRange): Promise<Readable> {
    const layout = st.layout();
    const end = Math.min(range.end, st.plainSize - 1);
    const first = Math.floor(range.start / st.segmentSize);
    const last = end < range.start ? first - 1 : Math.floor(end / st.segmentSize);
    if (last < first) {
      key.fill(0);
      return Readable.from([]);
    }
    const cipherEnd = layout.segmentOffset(last) + layout.segmentPlainLength(last, st.plainSize) + SEGMENT_OVERHEAD - 1;
    const source = await this.inner.readUploadData(id, { start: layout.segmentOffset(first), end: cipherEnd }).catch((e: unknown) => {
      key.fill(0);
      throw e;
    });
    const decrypt = new DecryptTransform({
      key,
      objectId: st.objectId,
      segmentSize: st.segmentSize,
      size: st.plainSize,
      firstIndex: first,
      lastIndex: last,
      skip: range.start - first * st.segmentSize,
      take: end - range.start + 1,
    });
    decrypt.once('close', () => key.fill(0));
    return pipeline(source, decrypt, () => undefined);
  }

  async hashSession(id: string, st: UploadState, key: Buffer, algorithm: DigestAlgorithm): Promise<Digest> {
    const h = createDigester(algorithm);
    if (st.plainSize > 0) {
      await pipelineAsync(await this.decryptSession(id, st, Buffer.from(key), { start: 0, end: st.plainSize - 1 }), async (src: AsyncIterable<Buffer>) => {
        for await (const c of src) h.update(c);
      });
    }
    return `${algorithm}:${h.digest('hex')}` as const;
  }
}
