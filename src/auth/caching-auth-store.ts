/**
 * An AuthStore decorator that keeps what it has read, so the per-request checks (is this token
 * still enabled, is the admin still enabled) cost a map lookup and a JSON parse instead of a
 * SQLite query. Every write goes through it and drops the affected entries first, so a
 * revocation still takes effect on the next request. Correct when this process is the only
 * writer of the underlying store — true for the embedded `auth.db`, which only the server opens
 * (the CLI goes through the admin API). Several nodes on a shared store will need change
 * notification instead (ADR 0005).
 *
 * Values are kept as JSON text and parsed on every read: callers get a copy, as the contract says.
 * A read that overlaps a write is answered but not cached, so a slow read never re-caches a value
 * a write has just replaced.
 */
import type { AuthKind, AuthStore, Stored } from './store.js';

interface Entry {
  readonly id: string;
  readonly version: number;
  readonly json: string;
}

export class CachingAuthStore implements AuthStore {
  /** kind\0id → entry, or null for a known absence */
  private readonly records = new Map<string, Entry | null>();
  private readonly lists = new Map<AuthKind, Entry[]>();
  /** bumped by every write: a read that overlapped a write is returned but not kept */
  private writes = 0;

  constructor(private readonly inner: AuthStore) {}

  async get<T>(kind: AuthKind, id: string): Promise<Stored<T> | undefined> {
    const key = `${kind}\0${id}`;
    let e = this.records.get(key);
    if (e === undefined) {
      const before = this.writes;
      const s = await this.inner.get<T>(kind, id);
      e = s === undefined ? null : { id: s.id, version: s.version, json: JSON.stringify(s.value) };
      // Absences are not kept: every unknown name a client tries would stay in memory.
      if (this.writes === before && e !== null) this.records.set(key, e);
    }
    return e === null ? undefined : { id: e.id, version: e.version, value: JSON.parse(e.json) as T };
  }

  async list<T>(kind: AuthKind): Promise<Stored<T>[]> {
    let l = this.lists.get(kind);
    if (l === undefined) {
      const before = this.writes;
      l = (await this.inner.list<T>(kind)).map((s) => ({ id: s.id, version: s.version, json: JSON.stringify(s.value) }));
      if (this.writes === before) this.lists.set(kind, l);
    }
    return l.map((e) => ({ id: e.id, version: e.version, value: JSON.parse(e.json) as T }));
  }

  async put<T>(kind: AuthKind, id: string, value: T, expect?: number | 'absent'): Promise<number> {
    this.forget(kind, id);
    try {
      return await this.inner.put(kind, id, value, expect);
    } finally {
      this.forget(kind, id);
    }
  }

  async delete(kind: AuthKind, id: string, expect?: number): Promise<boolean> {
    this.forget(kind, id);
    try {
      return await this.inner.delete(kind, id, expect);
    } finally {
      this.forget(kind, id);
    }
  }

  close(): Promise<void> {
    this.records.clear();
    this.lists.clear();
    return this.inner.close();
  }

  /** Before and after a write: a read racing the write must not re-cache the old value. */
  private forget(kind: AuthKind, id: string): void {
    this.writes++;
    this.records.delete(`${kind}\0${id}`);
    this.lists.delete(kind);
  }
}
