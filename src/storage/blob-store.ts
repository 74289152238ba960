/**
 * BlobStore: content-addressed bytes, shared by every repository (identical content is stored
 * once), plus the upload sessions that produce them.
 *
 * Contract (every implementation passes test/testkit/blob-store-suite.ts):
 * - A blob, once visible through `stat`/`read`, is complete, durable and its bytes hash to its
 *   digest. Commits are atomic: readers never see a partial blob.
 * - `appendUpload` either appends the whole body or nothing: on error (client abort, size limit,
 *   abort signal) the session is rolled back to its previous size and stays usable.
 * - Concurrent appends to one session are refused (BLOB_UPLOAD_INVALID), never interleaved.
 * - `commitUpload` recomputes the digest; on mismatch it throws DIGEST_INVALID and discards
 *   the session (a decorator that hashed bytes it produced itself may vouch for their digest
 *   instead). Committing content that is already stored is a no-op that succeeds. Without a
 *   digest, the store names the blob by the sha256 of what it holds (a decorator that stores
 *   transformed bytes, e.g. ciphertext, checks its own digest and lets the store name the rest).
 * - `readUploadData` and `truncateUpload` let a decorator rewrite the end of a session (the
 *   encryption decorator re-seals a partial last segment); truncating is refused while another
 *   request writes to the session, like an append.
 * - Missing blobs throw BLOB_UNKNOWN; missing sessions throw BLOB_UPLOAD_UNKNOWN.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/index.js';

export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

export interface ByteRange {
  /** first byte, inclusive */
  readonly start: number;
  /** last byte, inclusive */
  readonly end: number;
}

export interface UploadInfo {
  readonly id: string;
  readonly repository: string;
  readonly size: number;
  readonly startedAt: number;
  readonly updatedAt: number;
}

export interface AppendOptions {
  /** the session size the client believes it is appending at; mismatch → RANGE_INVALID (416) */
  readonly offset?: number;
  /** exact number of bytes expected (Content-Length); fewer or more → SIZE_INVALID */
  readonly length?: number;
  /** abort the append (request closed, server shutting down) */
  readonly signal?: AbortSignal;
  /**
   * Called with each body chunk once the store holds no reference to it (it is in the file), so
   * that the body's producer can reuse the memory (the encryption decorator's output buffers).
   * A store that keeps chunks never calls it.
   */
  readonly recycle?: ((chunk: Buffer) => void) | undefined;
  /**
   * The caller hashes these bytes itself and names the blob at commit (`CommitOptions.vouched`),
   * so the store need not hash them. Only for bytes the caller produced (the encryption
   * decorator's ciphertext), never for a client's body.
   */
  readonly callerHashes?: boolean;
}

export interface CommitOptions {
  /**
   * The digest passed to commitUpload is the caller's hash of exactly the bytes it appended
   * (`AppendOptions.callerHashes`, and the trailer); the store may take it instead of re-reading them.
   */
  readonly vouched?: boolean;
  /**
   * Bytes that end the session, appended by the commit itself (the encryption decorator's
   * terminator): the digest covers them, and a store writes them with the sync that makes the
   * blob durable instead of as an append of their own.
   */
  readonly trailer?: Buffer;
}

export interface BlobCheck {
  readonly digest: Digest;
  readonly ok: boolean;
  readonly problem?: string;
}

export interface BlobStore {
  /** Size of a stored blob, or undefined when absent. */
  stat(digest: Digest): Promise<BlobInfo | undefined>;
  /** Stream a stored blob, optionally a byte range. Throws BLOB_UNKNOWN. */
  read(digest: Digest, range?: ByteRange): Promise<Readable>;
  /** Read a small stored blob whole (manifests). Throws BLOB_UNKNOWN. */
  readAll(digest: Digest): Promise<Buffer>;
  /** Store a small buffer atomically under its digest (manifests). */
  put(data: Buffer, digest: Digest): Promise<BlobInfo>;
  /** Remove a blob's bytes. Returns false when it was not there. */
  delete(digest: Digest): Promise<boolean>;
  /** Every stored digest (fsck, garbage collection). */
  list(): AsyncIterable<Digest>;
  /** Recompute a stored blob's digest (fsck). */
  verify(digest: Digest): Promise<BlobCheck>;
  /** Move a blob aside so it is no longer served (fsck --repair). */
  quarantine(digest: Digest): Promise<void>;

  /**
   * Starts a session, holding `initial` when given (the encryption decorator's header: written
   * with the session, not as an append of its own).
   */
  startUpload(id: string, repository: string, initial?: Buffer): Promise<UploadInfo>;
  getUpload(id: string): Promise<UploadInfo | undefined>;
  /** Append a body to a session; returns the new session size. */
  appendUpload(id: string, body: Readable, opts?: AppendOptions): Promise<number>;
  /** Bytes [range.start, range.end] of a live session. Throws BLOB_UPLOAD_UNKNOWN. */
  readUploadData(id: string, range: ByteRange): Promise<Readable>;
  /** Shrinks a session to `size` bytes; RANGE_INVALID when it holds fewer. */
  truncateUpload(id: string, size: number): Promise<void>;
  /**
   * Verify the digest (or compute the sha256 name when none is given; or, `vouched`, take the
   * caller's) and move the bytes into the store; the session ends either way.
   */
  commitUpload(id: string, digest?: Digest, opts?: CommitOptions): Promise<BlobInfo>;
  cancelUpload(id: string): Promise<boolean>;
  /** Sessions not touched since `before` (ms since epoch), for purging. */
  staleUploads(before: number): Promise<string[]>;

  close(): Promise<void>;
}
