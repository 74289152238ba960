/**
 * Tasks that run one after another per key: each starts once every earlier task of its key has
 * settled, whatever its outcome. Used where concurrent work on one thing must not interleave: the
 * commits of one content in the encrypting blob store (ADR 0017), the sign-in and token-exchange
 * attempts of one client, so that each sees the failures counted before it.
 */
export class KeyedQueue {
  /** the last task queued per key, settled or not; removed once it settles with none after it */
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(task);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, settled);
    void settled.then(() => {
      if (this.tails.get(key) === settled) this.tails.delete(key);
    });
    return run;
  }
}
