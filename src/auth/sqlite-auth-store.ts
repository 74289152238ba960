/**
 * SQLite AuthStore in its own file (`<data-dir>/auth.db`), WAL with synchronous=FULL (ADR 0002): a
 * resolved write survives a crash. Auth writes are rare (admin changes, token issuance records)
 * and off the push and pull paths, so each is its own transaction, synced by SQLite itself (the
 * metadata and data-key stores sync theirs off the event loop instead, ADR 0008).
 */
import type Database from 'better-sqlite3';
import { chmodSync, closeSync, openSync } from 'node:fs';
import { openSqlite } from '../storage/index.js';
import { AuthStoreConflict, type AuthKind, type AuthStore, type Stored } from './store.js';

interface Row {
  id: string;
  version: number;
  value: string;
}

export class SqliteAuthStore implements AuthStore {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(path: string) {
    // auth.db holds the signing keys (their private halves sealed by the key vault when
    // encryption is on, ADR 0018) and the password hashes: owner-only, like the bootstrap
    // credential. SQLite gives its -wal and -shm files the database file's mode.
    closeSync(openSync(path, 'a', 0o600));
    chmodSync(path, 0o600);
    this.db = openSqlite(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    // What is deleted or overwritten (a retired key's private half, a revoked token's record) is
    // zeroed in the file, not left in free space.
    this.db.pragma('secure_delete = ON');
    this.db.exec(`CREATE TABLE IF NOT EXISTS auth_records (
      kind TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL,
      PRIMARY KEY (kind, id)) WITHOUT ROWID`);
    this.stmts = {
      get: this.db.prepare<[string, string], Row>('SELECT id, version, value FROM auth_records WHERE kind = ? AND id = ?'),
      list: this.db.prepare<[string], Row>('SELECT id, version, value FROM auth_records WHERE kind = ? ORDER BY id'),
      insert: this.db.prepare<[string, string, string]>('INSERT INTO auth_records (kind, id, version, value) VALUES (?, ?, 1, ?)'),
      update: this.db.prepare<[string, string, string, number]>('UPDATE auth_records SET version = version + 1, value = ? WHERE kind = ? AND id = ? AND version = ?'),
      upsert: this.db.prepare<[string, string, string]>(
        'INSERT INTO auth_records (kind, id, version, value) VALUES (?, ?, 1, ?) ON CONFLICT (kind, id) DO UPDATE SET version = version + 1, value = excluded.value',
      ),
      delete: this.db.prepare<[string, string]>('DELETE FROM auth_records WHERE kind = ? AND id = ?'),
      deleteVersion: this.db.prepare<[string, string, number]>('DELETE FROM auth_records WHERE kind = ? AND id = ? AND version = ?'),
    };
  }

  async get<T>(kind: AuthKind, id: string): Promise<Stored<T> | undefined> {
    const r = this.stmts.get.get(kind, id);
    return r === undefined ? undefined : { id: r.id, version: r.version, value: JSON.parse(r.value) as T };
  }

  async list<T>(kind: AuthKind): Promise<Stored<T>[]> {
    return this.stmts.list.all(kind).map((r) => ({ id: r.id, version: r.version, value: JSON.parse(r.value) as T }));
  }

  async put<T>(kind: AuthKind, id: string, value: T, expect?: number | 'absent'): Promise<number> {
    const json = JSON.stringify(value);
    try {
      return this.write(kind, id, json, expect);
    } finally {
      this.scrub(kind);
    }
  }

  /**
   * After a signing key changed (a private half dropped or replaced; rare), the WAL is folded into
   * the file and truncated: with secure_delete the old page images, which may hold a private half
   * in the clear, are then gone from the file and from the WAL alike.
   */
  private scrub(kind: AuthKind): void {
    if (kind === 'signing-key') this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  private write(kind: AuthKind, id: string, json: string, expect?: number | 'absent'): number {
    return this.db.transaction(() => {
      if (expect === undefined) {
        this.stmts.upsert.run(kind, id, json);
      } else if (expect === 'absent') {
        if (this.stmts.get.get(kind, id) !== undefined) throw new AuthStoreConflict(kind, id);
        this.stmts.insert.run(kind, id, json);
      } else if (this.stmts.update.run(json, kind, id, expect).changes !== 1) {
        throw new AuthStoreConflict(kind, id);
      }
      return this.stmts.get.get(kind, id)?.version ?? 0;
    })();
  }

  async delete(kind: AuthKind, id: string, expect?: number): Promise<boolean> {
    try {
      if (expect === undefined) return this.stmts.delete.run(kind, id).changes === 1;
      const changed = this.stmts.deleteVersion.run(kind, id, expect).changes === 1;
      if (!changed && this.stmts.get.get(kind, id) !== undefined) throw new AuthStoreConflict(kind, id);
      return changed;
    } finally {
      this.scrub(kind);
    }
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
