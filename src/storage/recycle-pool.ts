/**
 * Buffers of one size that a stream lends its consumer and takes back once the consumer says
 * it is done with them (`recycle`), so that a long stream allocates a handful of buffers instead
 * of one per chunk: at registry throughput the garbage collection that fresh buffers cause costs
 * more CPU than the copies themselves (measured in docs/benchmarks.md and ADR 0004, 0007).
 *
 * Only buffers this pool lent are taken back, each once; a consumer that never recycles just
 * leaves the pool allocating, exactly like a stream without one.
 */
export class RecyclePool {
  /** this stream's own free buffers */
  private readonly free: Buffer[] = [];
  private readonly lent = new WeakSet<ArrayBufferLike>();
  private closed = false;

  /**
   * @param size bytes of every buffer
   * @param keep free buffers the stream keeps for itself: as many as its consumers hold at
   *   once, so that a steady stream stops allocating
   * @param shared where free buffers go beyond `keep`, and all of them once the stream has
   *   closed, for the next stream to start with (see sharedFreeList)
   */
  constructor(
    readonly size: number,
    private readonly keep: number,
    private readonly shared?: SharedFreeList,
  ) {
    if (shared !== undefined && shared.size !== size) throw new Error(`a pool of ${size}-byte buffers cannot share a list of ${shared.size}-byte ones`);
  }

  /** A buffer of `size` bytes, reused when one is free; the caller lends it out with `lend`. */
  take(): Buffer {
    return this.reuse() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** A free buffer of `size` bytes, if there is one: the stream's own first, then a shared one. */
  reuse(): Buffer | undefined {
    return this.free.pop() ?? this.shared?.buffers.pop();
  }

  /** Marks a taken buffer as handed to the consumer, who may give it back through `recycle`. */
  lend(b: Buffer): void {
    this.lent.add(b.buffer);
  }

  /** Back to a free list without having been lent (it held nothing worth handing out). */
  giveBack(b: Buffer): void {
    if (b.buffer.byteLength !== this.size) return;
    const whole = Buffer.from(b.buffer, 0, this.size);
    if (!this.closed && this.free.length < this.keep) this.free.push(whole);
    else if (this.shared !== undefined) this.shared.put(whole);
  }

  /** A chunk (any view of a lent buffer) the consumer no longer references. */
  recycle(chunk: Buffer): void {
    if (!this.lent.has(chunk.buffer)) return;
    this.lent.delete(chunk.buffer);
    this.giveBack(chunk);
  }

  /**
   * The stream is done: its free buffers go to the shared list (room permitting), or are
   * zero-filled and dropped (they may have held plaintext). Buffers its consumer recycles later
   * go to the shared list too; without one they are ignored.
   */
  close(): void {
    this.closed = true;
    for (const b of this.free) {
      if (this.shared !== undefined) this.shared.put(b);
      else b.fill(0);
    }
    this.free.length = 0;
  }
}

/**
 * Free buffers of one size that every pool using it shares, process-wide: a stream that starts
 * takes the buffers others left instead of allocating its own, which would live long enough to be
 * promoted by the collector and then become old-generation garbage that only full collections
 * free, and whose pages the kernel must fault in afresh. At most `keep` wait here; with `wipe`,
 * each is zero-filled on its way in, so none waits with the plaintext it held.
 */
export class SharedFreeList {
  readonly buffers: Buffer[] = [];

  constructor(
    readonly size: number,
    readonly keep: number,
    readonly wipe: boolean,
  ) {}

  /** Takes a free buffer if there is room (and wipes it first when the list wipes). */
  put(b: Buffer): void {
    if (this.wipe) b.fill(0);
    if (this.buffers.length < this.keep) this.buffers.push(b);
  }
}

const sharedLists = new Map<string, SharedFreeList>();

/**
 * The free list that every pool of `size`-byte buffers for `role` shares. Roles keep apart
 * buffers that must not meet (plaintext segments waiting to be sealed and sealed ones, for
 * instance); a role is created with its cap and wipe policy, and asking for it again with others
 * is a programming error.
 */
export function sharedFreeList(role: string, size: number, keep: number, wipe: boolean): SharedFreeList {
  const key = `${role}:${size}`;
  const list = sharedLists.get(key);
  if (list === undefined) {
    const made = new SharedFreeList(size, keep, wipe);
    sharedLists.set(key, made);
    return made;
  }
  if (list.keep !== keep || list.wipe !== wipe) throw new Error(`shared free list ${key} exists with keep=${list.keep}, wipe=${String(list.wipe)}`);
  return list;
}
