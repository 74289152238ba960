/**
 * Group commit for a better-sqlite3 database: writes requested in the same turn of the event loop
 * run in one transaction, each in its own savepoint (a nested transaction), so one failing write
 * rolls back alone; they share one commit and one fsync, and each caller's promise settles only
 * after that commit. better-sqlite3 is synchronous, so an fsync per write would stall every other
 * request for its duration. Used by the SQLite metadata and data-key stores.
 */
import type Database from 'better-sqlite3';

interface PendingWrite {
  readonly run: () => unknown;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit {
  private pending: PendingWrite[] = [];
  private readonly commitBatch: Database.Transaction<(batch: PendingWrite[]) => Outcome[]>;

  /**
   * @param immediate begin the batch with BEGIN IMMEDIATE (take the write lock up front), for a
   *   database another process may write to at the same time
   */
  constructor(
    db: Database.Database,
    private readonly immediate = false,
  ) {
    const savepoint = db.transaction((run: () => unknown) => run());
    this.commitBatch = db.transaction((batch: PendingWrite[]) =>
      batch.map((w): Outcome => {
        try {
          return { ok: true, value: savepoint(w.run) };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    );
  }

  /** Queue a write for the next group commit; resolves after it is durable. */
  write<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush());
      this.pending.push({ run, resolve: (v) => resolve(v as T), reject });
    });
  }

  /** Commit what is queued now (also called on close). */
  flush(): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    let outcomes: Outcome[];
    try {
      outcomes = this.immediate ? this.commitBatch.immediate(batch) : this.commitBatch(batch);
    } catch (error) {
      // the commit itself failed (busy past the timeout, disk full, closed): nothing is durable
      for (const w of batch) w.reject(error);
      return;
    }
    batch.forEach((w, i) => {
      const o = outcomes[i];
      if (o?.ok === true) w.resolve(o.value);
      else w.reject(o?.error);
    });
  }
}
