/**
 * What the encryption decorator knows about each live upload session: the header (object id,
 * segment size, wrapped data key), the plaintext size, the running sha256 of the plaintext, and
 * a busy flag (one request writes at a time). The session's bytes in the store below are the
 * truth: a session from before a restart is rebuilt from its header and length, and a torn last
 * segment (a crash mid-write) is cut back to the last whole segment, which the client sees as a
 * shorter upload (the spec's upload status tells it where to resume).
 */
import { registryError } from '../oci/index.js';
import type { BlobStore, UploadInfo } from '../storage/index.js';
import type { KekRef } from './data-key-store.js';
import { collect } from './segment-streams.js';
import { AsyncSha256 } from './native.js';
import { HEADER_PREFIX_BYTES, Layout, SEGMENT_OVERHEAD, SealError, decodeHeader, hashHeader, headerLength } from './format.js';

export interface SessionHeader {
  readonly objectId: Buffer;
  readonly segmentSize: number;
  readonly headerLength: number;
  /** sha256 of the header bytes, sealed into the terminator */
  readonly headerHash: Buffer;
  readonly kek: KekRef;
  readonly wrapped: Buffer;
}

export interface UploadState extends SessionHeader {
  readonly id: string;
  plainSize: number;
  /** sha256 of the plaintext so far; undefined when unknown (then the commit re-reads) */
  hash: AsyncSha256 | undefined;
  /**
   * sha256 of every byte of the session in the store below (header, segments), which names the
   * ciphertext at commit without re-reading it; undefined after anything it did not see (a
   * rewritten tail, a failed append, a restart), and then the store below hashes at commit.
   */
  cipherHash: AsyncSha256 | undefined;
  busy: boolean;
  /**
   * Set while the request holding the session has lost its body and is rolling the session
   * back: a retry that arrives meanwhile (the client saw its connection close at once) waits for
   * the rollback instead of being refused as a concurrent writer.
   */
  settling: Promise<void> | undefined;
  layout(): Layout;
}

function stateOf(id: string, h: SessionHeader, plainSize: number, hash: AsyncSha256 | undefined): UploadState {
  return {
    ...h,
    id,
    plainSize,
    hash,
    cipherHash: undefined,
    busy: false,
    settling: undefined,
    layout: () => new Layout(h.headerLength, h.segmentSize),
  };
}

export class UploadStates {
  private readonly states = new Map<string, UploadState>();
  private readonly loading = new Map<string, Promise<UploadState | undefined>>();

  /**
   * @param repair checks a rebuilt session's short last segment and cuts the session back when
   *   a crash tore it (it needs the data key, which only the decorator has)
   */
  constructor(
    private readonly inner: BlobStore,
    private readonly repair: (id: string, st: UploadState, storedBytes: number) => Promise<void>,
  ) {}

  /** A session this process just started. */
  adopt(id: string, h: SessionHeader): UploadState {
    const st = stateOf(id, h, 0, new AsyncSha256());
    this.states.set(id, st);
    return st;
  }

  /** The session's state without locking it; undefined when the session is unknown or unusable. */
  async peek(id: string, info?: UploadInfo): Promise<UploadState | undefined> {
    const known = this.states.get(id);
    if (known !== undefined) return known;
    let p = this.loading.get(id);
    if (p === undefined) {
      p = this.load(id, info).finally(() => this.loading.delete(id));
      this.loading.set(id, p);
    }
    return p;
  }

  /** Locks the session for one request; BLOB_UPLOAD_INVALID while another holds it. */
  async acquire(id: string): Promise<UploadState> {
    let st = await this.peek(id);
    while (st?.busy === true && st.settling !== undefined) {
      await st.settling;
      st = await this.peek(id);
    }
    if (st === undefined) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id } });
    if (st.busy) throw registryError('BLOB_UPLOAD_INVALID', 'another request is writing to this upload session');
    st.busy = true;
    return st;
  }

  release(st: UploadState): void {
    st.busy = false;
    st.settling = undefined;
  }

  drop(id: string): void {
    this.states.delete(id);
  }

  private async load(id: string, known?: UploadInfo): Promise<UploadState | undefined> {
    const info = known ?? (await this.inner.getUpload(id));
    // Shorter than a header: the session's start was cut short by a crash; the purge removes it.
    if (info === undefined || info.size < HEADER_PREFIX_BYTES) return undefined;
    let header;
    let length: number;
    let headerBytes: Buffer;
    try {
      length = headerLength(await collect(await this.inner.readUploadData(id, { start: 0, end: HEADER_PREFIX_BYTES - 1 })));
      if (info.size < length) return undefined;
      headerBytes = await collect(await this.inner.readUploadData(id, { start: 0, end: length - 1 }));
      header = decodeHeader(headerBytes);
    } catch (e) {
      if (e instanceof SealError) return undefined;
      throw e;
    }
    const layout = new Layout(length, header.segmentSize);
    // Provisional: the repair looks at the real end (a terminator, a torn segment) and fixes it.
    const whole = Math.floor((info.size - layout.headerLength) / (header.segmentSize + SEGMENT_OVERHEAD));
    const plain = layout.plainSizeOfUpload(info.size) ?? whole * header.segmentSize;
    const st = stateOf(id, { ...header, headerLength: layout.headerLength, headerHash: hashHeader(headerBytes) }, plain, undefined);
    await this.repair(id, st, info.size);
    const raced = this.states.get(id);
    if (raced !== undefined) return raced;
    this.states.set(id, st);
    return st;
  }
}
