/**
 * Group commit for a better-sqlite3 database: writes requested in the same turn of the event loop
 * run in one transaction, each in its own savepoint (a nested transaction), so one failing write
 * rolls back alone; they share one commit and one fsync, and each caller's promise settles only
 * after that commit is durable. Used by the SQLite metadata and data-key stores.
 *
 * better-sqlite3 is synchronous, so SQLite's own fsync at commit (`synchronous=FULL`) would stall
 * every other request for its duration. With `walSync` (ADR 0008) the database runs WAL with
 * `synchronous=NORMAL`, which commits without syncing the WAL, and this class makes the commit
 * durable itself: it fdatasyncs the WAL file on libuv's thread pool and settles the batch's
 * promises only after that. Frames are appended in commit order, so one sync covers every commit
 * made before it started; syncs are coalesced accordingly.
 *
 * A commit is visible to readers before its sync completes. A reader that goes on to write
 * something depending on what it read, into another database (a data-key record read, then a
 * manifest or blob link written to the metadata database), calls `durable()` first: the other
 * file's sync does not cover this one's WAL. A failed sync is fatal: Linux may mark the failed
 * pages clean, so a later sync would succeed over a hole, and WAL recovery drops every frame after
 * a bad one. Every later write and `durable()` fails with the sync's error.
 */
import { open, type FileHandle } from 'node:fs/promises';
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

  private readonly immediate: boolean;
  private readonly wal: WalSync | undefined;
  /** commits made, and how many of them are known to be on disk */
  private committed = 0;
  private synced = 0;
  private failure: Error | undefined;
  private closing = false;

  /**
   * @param o.immediate begin the batch with BEGIN IMMEDIATE (take the write lock up front), for a
   *   database another process may write to at the same time
   * @param o.walSync make commits durable by syncing the WAL off the event loop; sets the
   *   database to WAL with synchronous=NORMAL (a file database only); without it, synchronous=FULL
   */
  constructor(db: Database.Database, o: { immediate?: boolean; walSync?: boolean } = {}) {
    this.immediate = o.immediate === true;
    if (o.walSync === true) {
      if (db.memory) throw new Error('walSync needs a database file');
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
      if (mode !== 'wal') throw new Error(`${db.name}: cannot switch to WAL (journal_mode is ${mode})`);
      db.pragma('synchronous = NORMAL');
      this.wal = new WalSync(`${db.name}-wal`);
    } else {
      db.pragma('synchronous = FULL');
    }
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
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('the database is closing'));
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
    const settle = (): void =>
      batch.forEach((w, i) => {
        const o = outcomes[i];
        if (o?.ok === true) w.resolve(o.value);
        else w.reject(o?.error);
      });
    if (this.wal === undefined || outcomes.every((o) => !o.ok)) {
      settle();
      return;
    }
    // Committed and visible, but acknowledged only once on disk. A failed sync leaves durability
    // unknown: every write of the batch fails, though it may survive.
    this.committed++;
    this.durable().then(settle, (error: unknown) => {
      for (const w of batch) w.reject(error);
    });
  }

  /**
   * Resolves once every commit made so far is on disk (at once when they already are). Call it
   * before acting on something read from this database in a write to another one.
   */
  durable(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.wal === undefined || this.synced === this.committed) return Promise.resolve();
    const target = this.committed;
    return this.wal.sync().then(
      () => {
        this.synced = Math.max(this.synced, target);
      },
      (e: unknown) => {
        this.failure ??= new Error(`the database's WAL could not be synced; refusing further writes: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        throw this.failure;
      },
    );
  }

  /** Commits what is queued, waits until it is durable, and lets go of the WAL file; later writes are refused. */
  async close(): Promise<void> {
    this.flush();
    this.closing = true;
    try {
      await this.durable();
    } finally {
      await this.wal?.close();
    }
  }
}

/**
 * fdatasync of a database's WAL file, coalesced: a sync covers every commit made before it
 * started, so a commit made while one runs waits for the next, and every commit waiting for that
 * next one shares it.
 */
class WalSync {
  private handle: Promise<FileHandle> | undefined;
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly path: string) {}

  sync(): Promise<void> {
    if (this.running === undefined) return this.start();
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.start();
      });
    return this.queued;
  }

  private start(): Promise<void> {
    const run = (async (): Promise<void> => {
      if (this.closed) throw new Error(`${this.path}: closed`);
      // Opened once: SQLite keeps the WAL file (the same inode, truncated or overwritten from its
      // start) while a connection is open. fdatasync works on a read-only descriptor.
      this.handle ??= open(this.path, 'r').catch((e: unknown) => {
        this.handle = undefined;
        throw e;
      });
      await (await this.handle).datasync();
    })();
    const p = run.finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return p;
  }

  async close(): Promise<void> {
    await this.queued?.catch(() => undefined);
    await this.running?.catch(() => undefined);
    this.closed = true;
    const h = this.handle;
    this.handle = undefined;
    if (h !== undefined) await (await h.catch(() => undefined))?.close();
  }
}
