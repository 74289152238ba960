/**
 * Bulwark's native crypto (native/crypto.c, built by `npm ci` with node-gyp against the OpenSSL
 * that node itself links; ADR 0007):
 * - AES-256-GCM of one whole segment into buffers the caller owns. node:crypto returns a new
 *   buffer per call, and at registry throughput the garbage collector then cost more than AES.
 * - SHA-256 whose updates run on libuv's thread pool, so that hashing what a client pushes
 *   (twice when encrypting) leaves the event loop free.
 * - Sealing a batch of segments and hashing both sides of them in one thread-pool job: the
 *   encrypted push path (one wake-up of a pool thread per batch, not three per segment).
 */
import { createRequire } from 'node:module';

interface Binding {
  seal(this: void, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): void;
  open(this: void, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, plaintext: Uint8Array): boolean;
  sha256New(this: void): object;
  sha256Update(this: void, handle: object, chunks: Uint8Array[], done: (err?: Error) => void): void;
  sha256Digest(this: void, handle: object): Buffer;
  sealSegments(this: void, key: Uint8Array, plainHash: object | null, cipherHash: object | null, items: Uint8Array[], done: (err?: Error) => void): void;
}

const MODULE = '../../build/Release/bulwark_crypto.node';

function load(): Binding {
  try {
    return createRequire(import.meta.url)(MODULE) as Binding;
  } catch (e) {
    throw new Error('the native crypto module (build/Release/bulwark_crypto.node) is missing or broken: run `npm ci`, which builds it (it needs python3, make and a C compiler)', {
      cause: e,
    });
  }
}

const native = load();

/** Chunks hashed by one thread-pool job at most. */
const MAX_BATCH = 64;
/**
 * Bytes queued before a job starts at once; less starts at the end of the event loop's turn
 * (or when `whenBelow` or `digest` ask). A job per segment cost the event loop more, in queueing
 * and in being woken, than one per MiB.
 */
const BATCH_BYTES = 1 << 20;

export const aesGcm = {
  /** Encrypts `plaintext` into `ciphertext` (at least as long) and writes the 16-byte tag. */
  seal: native.seal,
  /**
   * Decrypts into `plaintext` (at least as long) when the tag authenticates; otherwise returns
   * false and leaves zeros where it wrote.
   */
  open: native.open,
} as const;

/** One segment for `sealSegments`. */
export interface SegmentToSeal {
  /** the plaintext, n bytes */
  readonly plain: Uint8Array;
  /** the part of `plain` the plaintext hash gets (a view inside it; may be empty) */
  readonly hashed: Uint8Array;
  /** n + 28 bytes: the nonce (filled by the caller), then the ciphertext and the tag are written */
  readonly out: Uint8Array;
  readonly aad: Uint8Array;
}

const NO_BYTES = new Uint8Array(0);

/**
 * Seals segments with AES-256-GCM in one thread-pool job, in order, feeding `plainHash` each
 * segment's hashed part and `cipherHash` each whole output (native/crypto.c), and wipes each
 * plaintext once sealed. Both hashes must be idle (`whenBelow(0)`) and are busy until `done`,
 * which gets the error of a failed job (the hashes are then unusable). The buffers must not
 * change until `done`; the key may (it is copied).
 */
export function sealSegments(key: Buffer, plainHash: AsyncSha256 | undefined, cipherHash: AsyncSha256 | undefined, segments: readonly SegmentToSeal[], done: (err?: Error) => void): void {
  const items: Uint8Array[] = [];
  for (const s of segments) items.push(s.plain, plainHash === undefined ? NO_BYTES : s.hashed, s.out, s.aad);
  const plain = plainHash?.lend() ?? null;
  let cipher: object | null;
  try {
    cipher = cipherHash?.lend() ?? null;
  } catch (e) {
    plainHash?.handBack();
    throw e;
  }
  const handBack = (err?: Error): void => {
    plainHash?.handBack(err);
    cipherHash?.handBack(err);
  };
  try {
    native.sealSegments(key, plain, cipher, items, (err) => {
      handBack(err);
      done(err);
    });
  } catch (e) {
    handBack();
    throw e;
  }
}

/**
 * A running SHA-256 whose updates run on libuv's thread pool, in the order given: what is
 * queued while one job runs goes into the next, as one batch (a job per chunk cost more in
 * bookkeeping than a batch). `update` only queues: the bytes must not change until `done`
 * (callers hand each buffer back for reuse from it), `whenBelow` or `digest`.
 */
export class AsyncSha256 {
  private readonly handle = native.sha256New();
  private readonly queue: { bytes: Uint8Array; done: (() => void) | undefined }[] = [];
  private running = false;
  private failure: Error | undefined;
  private waiters: (() => void)[] = [];
  private finished = false;
  /** bytes queued or being hashed */
  pendingBytes = 0;
  /** bytes queued, not yet handed to a job */
  private queuedBytes = 0;
  private kickScheduled = false;
  /** the handle is with a job that updates it itself (sealSegments) */
  private lent = false;

  /** The native handle, for one job that updates it in order; the hash must be idle. */
  lend(): object {
    if (this.lent || this.running || this.queue.length > 0 || this.finished || this.failure !== undefined) throw new Error('sha256 is not idle');
    this.lent = true;
    return this.handle;
  }

  /** The job holding the handle is done (with `err`, it failed: the hash is unusable). */
  handBack(err?: Error): void {
    this.lent = false;
    if (err !== undefined) this.failure ??= err;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Queues `bytes`; `done` runs once they are hashed and may be reused. */
  update(bytes: Uint8Array, done?: () => void): void {
    if (this.finished) throw new Error('sha256 already finished');
    if (this.lent) throw new Error('sha256 is lent to a job');
    this.pendingBytes += bytes.length;
    this.queuedBytes += bytes.length;
    this.queue.push({ bytes, done });
    if (this.running) return;
    if (this.queuedBytes >= BATCH_BYTES) {
      this.next();
    } else if (!this.kickScheduled) {
      // Less than a batch waits for the rest of this turn of the event loop, never longer: a
      // caller may be waiting on these bytes without asking (their `done` frees its output).
      this.kickScheduled = true;
      setImmediate(() => {
        this.kickScheduled = false;
        if (!this.running) this.next();
      });
    }
  }

  /**
   * Resolves once at most `max` bytes are still queued (with 0: every update is done, even empty
   * ones); rejects with a failed update's error.
   */
  async whenBelow(max: number): Promise<void> {
    const behind = (): boolean => this.pendingBytes > max || (max === 0 && (this.running || this.queue.length > 0 || this.lent));
    if (!this.running && behind()) this.next();
    while (behind() && this.failure === undefined) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure !== undefined) throw this.failure;
  }

  /** `sha256:<hex>` of everything updated, once every update is done; the hash is finished. */
  async digest(): Promise<`sha256:${string}`> {
    await this.whenBelow(0);
    this.finished = true;
    return `sha256:${native.sha256Digest(this.handle).toString('hex')}`;
  }

  private next(): void {
    if (this.queue.length === 0) {
      this.running = false;
      return;
    }
    this.running = true;
    const batch = this.queue.splice(0, MAX_BATCH);
    for (const j of batch) this.queuedBytes -= j.bytes.length;
    // After a failure nothing more is hashed: the queue drains (buffers go back, waiters learn).
    if (this.failure !== undefined) {
      this.settled(batch);
      return;
    }
    try {
      native.sha256Update(
        this.handle,
        batch.map((j) => j.bytes),
        (err) => {
          if (err !== undefined) this.failure ??= err;
          this.settled(batch);
        },
      );
    } catch (e) {
      this.failure ??= e as Error;
      this.settled(batch);
    }
  }

  /** A batch is done with (hashed, or abandoned after a failure): its buffers and waiters are released. */
  private settled(batch: readonly { bytes: Uint8Array; done: (() => void) | undefined }[]): void {
    for (const j of batch) {
      this.pendingBytes -= j.bytes.length;
      j.done?.();
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
    this.next();
  }
}
