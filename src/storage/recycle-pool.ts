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
  private readonly free: Buffer[];
  private readonly lent = new WeakSet<ArrayBufferLike>();
  private closed = false;

  /**
   * @param size bytes of every buffer
   * @param keep free buffers kept for reuse
   * @param shared a free list that pools of this size share, across streams (`keep` is then
   *   its length): a stream that starts takes the buffers others left instead of allocating
   *   its own, which would live long enough to be promoted by the collector and then become
   *   old-generation garbage that only full collections free. What goes back to it must hold
   *   nothing secret; it still takes buffers back after `close` (the consumer's last ones).
   */
  constructor(
    readonly size: number,
    private readonly keep: number,
    private readonly shared?: Buffer[],
  ) {
    this.free = shared ?? [];
  }

  /** A buffer of `size` bytes, reused when one is free; the caller lends it out with `lend`. */
  take(): Buffer {
    return this.reuse() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** A free buffer of `size` bytes, if there is one. */
  reuse(): Buffer | undefined {
    return this.free.pop();
  }

  /** Marks a taken buffer as handed to the consumer, who may give it back through `recycle`. */
  lend(b: Buffer): void {
    this.lent.add(b.buffer);
  }

  /** Back to the free list without having been lent (it held nothing worth handing out). */
  giveBack(b: Buffer): void {
    if ((!this.closed || this.shared !== undefined) && this.free.length < this.keep && b.buffer.byteLength === this.size) this.free.push(Buffer.from(b.buffer, 0, this.size));
  }

  /** A chunk (any view of a lent buffer) the consumer no longer references. */
  recycle(chunk: Buffer): void {
    if (!this.lent.has(chunk.buffer)) return;
    this.lent.delete(chunk.buffer);
    this.giveBack(chunk);
  }

  /**
   * Drops the free buffers, zero-filled (they may have held plaintext); later recycles are
   * ignored. A shared free list stays as it is, for the other streams.
   */
  close(): void {
    this.closed = true;
    if (this.shared !== undefined) return;
    for (const b of this.free) b.fill(0);
    this.free.length = 0;
  }
}
