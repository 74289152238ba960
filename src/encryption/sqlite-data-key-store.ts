/**
 * SQLite DataKeyStore (better-sqlite3) in its own file, `<data-dir>/data-keys.db`: WAL with
 * synchronous=FULL, so a write whose promise resolved survives kill -9 and power loss (ADR 0002).
 *
 * Writes use group commit (storage/group-commit.ts, shared with SqliteMetadataStore): pushes call
 * putIfAbsent once per blob, and an fsync per write would stall every request.
 *
 * `bulwark fsck` may open the same file from another process while the server runs, so
 * busy_timeout is set before anything else and the batch transaction is BEGIN IMMEDIATE: it takes the write lock up
 * front (waiting up to busy_timeout) instead of failing with SQLITE_BUSY_SNAPSHOT when a
 * savepoint reads before it writes while the other process commits.
 */
import type Database from 'better-sqlite3';
import { chmodSync, closeSync, openSync } from 'node:fs';
import type { Digest } from '../oci/index.js';
import { GroupCommit, openSqlite } from '../storage/index.js';
import { sameKek, type DataKeyRecord, type DataKeyStore, type KekCount, type KekRef, type SealedKind } from './data-key-store.js';
import { compareKeys } from './memory-data-key-store.js';

const SCHEMA_VERSION = 1;

// kek index: countByKey is a scan of it alone; listNotWrappedBy reads one (kind, digest)-ordered
// range of it per KEK. In a WITHOUT ROWID table an index ends with the primary key anyway; it is
// spelled out because the queries depend on that order.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS data_keys (
  kind TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')), digest TEXT NOT NULL,
  cipher_digest TEXT NOT NULL, size INTEGER NOT NULL, object_id TEXT NOT NULL,
  segment_size INTEGER NOT NULL, header_length INTEGER NOT NULL,
  kek_vault TEXT NOT NULL, kek_name TEXT NOT NULL, kek_version TEXT NOT NULL, wrapped BLOB NOT NULL,
  created_at INTEGER NOT NULL, rewrapped_at INTEGER,
  PRIMARY KEY (kind, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS data_keys_kek ON data_keys (kek_vault, kek_name, kek_version, kind, digest);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
`;

/** Records per query when list() pages through the table. */
const LIST_BATCH = 512;
/** Sorts before every stored key: the CHECK constraint keeps kind non-empty. */
const START = { kind: '', digest: '' } as const;

/** Why the store could not open; callers switch on `code` (STYLE rule 2). */
export class DataKeyStoreError extends Error {
  override readonly name = 'DataKeyStoreError';
  constructor(
    readonly code: 'SCHEMA_VERSION',
    message: string,
  ) {
    super(message);
  }
}

interface Row {
  kind: SealedKind;
  digest: string;
  cipher_digest: string;
  size: number;
  object_id: string;
  segment_size: number;
  header_length: number;
  kek_vault: string;
  kek_name: string;
  kek_version: string;
  wrapped: Buffer;
  created_at: number;
  rewrapped_at: number | null;
}

interface KekRow {
  vault: string;
  name: string;
  version: string;
}

/** better-sqlite3 returns a fresh Buffer per read, so records never alias stored state. */
function toRecord(r: Row): DataKeyRecord {
  return {
    kind: r.kind,
    digest: r.digest as Digest,
    cipherDigest: r.cipher_digest as Digest,
    size: r.size,
    objectId: r.object_id,
    segmentSize: r.segment_size,
    headerLength: r.header_length,
    kek: { vault: r.kek_vault, name: r.kek_name, version: r.kek_version },
    wrapped: r.wrapped,
    createdAt: r.created_at,
    ...(r.rewrapped_at === null ? {} : { rewrappedAt: r.rewrapped_at }),
  };
}

/** Create the file owner-only before SQLite opens it; SQLite gives -wal and -shm the same mode. */
function createPrivate(path: string): void {
  // the file holds wrapped data keys: whoever reads it can try them against a leaked KEK
  closeSync(openSync(path, 'a', 0o600));
  chmodSync(path, 0o600);
}

function prepare(db: Database.Database) {
  return {
    get: db.prepare<[string, string], Row>('SELECT * FROM data_keys WHERE kind = ? AND digest = ?'),
    insert: db.prepare(
      `INSERT INTO data_keys (kind, digest, cipher_digest, size, object_id, segment_size, header_length,
         kek_vault, kek_name, kek_version, wrapped, created_at, rewrapped_at)
       VALUES (@kind, @digest, @cipher_digest, @size, @object_id, @segment_size, @header_length,
         @kek_vault, @kek_name, @kek_version, @wrapped, @created_at, @rewrapped_at)
       ON CONFLICT (kind, digest) DO NOTHING`,
    ),
    rewrap: db.prepare(
      `UPDATE data_keys SET kek_vault = @vault, kek_name = @name, kek_version = @version, wrapped = @wrapped, rewrapped_at = @at
       WHERE kind = @kind AND digest = @digest AND kek_vault = @old_vault AND kek_name = @old_name
         AND kek_version = @old_version AND wrapped = @old_wrapped`,
    ),
    delete: db.prepare<[string, string, string]>('DELETE FROM data_keys WHERE kind = ? AND digest = ? AND cipher_digest = ?'),
    page: db.prepare<[string, string, number], Row>('SELECT * FROM data_keys WHERE (kind, digest) > (?, ?) ORDER BY kind, digest LIMIT ?'),
    pageOfKek: db.prepare<[string, string, string, string, string, number], Row>(
      `SELECT * FROM data_keys WHERE kek_vault = ? AND kek_name = ? AND kek_version = ? AND (kind, digest) > (?, ?)
       ORDER BY kind, digest LIMIT ?`,
    ),
    firstKek: db.prepare<[], KekRow>(
      'SELECT kek_vault AS vault, kek_name AS name, kek_version AS version FROM data_keys ORDER BY 1, 2, 3 LIMIT 1',
    ),
    nextKek: db.prepare<[string, string, string], KekRow>(
      `SELECT kek_vault AS vault, kek_name AS name, kek_version AS version FROM data_keys
       WHERE (kek_vault, kek_name, kek_version) > (?, ?, ?) ORDER BY 1, 2, 3 LIMIT 1`,
    ),
    count: db.prepare<[], KekRow & { kind: SealedKind; count: number }>(
      `SELECT kek_vault AS vault, kek_name AS name, kek_version AS version, kind, count(*) AS count FROM data_keys
       GROUP BY kek_vault, kek_name, kek_version, kind ORDER BY 1, 2, 3, 4`,
    ),
    getSetting: db.prepare<[string], { value: string }>('SELECT value FROM settings WHERE name = ?'),
    setSetting: db.prepare<[string, string]>(
      'INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),
  };
}

export class SqliteDataKeyStore implements DataKeyStore {
  private readonly db: Database.Database;
  private readonly q: ReturnType<typeof prepare>;
  private readonly commits: GroupCommit;
  private readonly snapshot: Database.Transaction<(read: () => Row[]) => Row[]>;

  constructor(path: string) {
    createPrivate(path);
    this.db = openSqlite(path);
    const db = this.db;
    // WAL, each commit synced off the event loop before it is acknowledged (ADR 0008)
    // BEGIN IMMEDIATE: another process (fsck) may write between a read and a write
    this.commits = new GroupCommit(db, { immediate: true, walSync: true });
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      db.close();
      throw new DataKeyStoreError('SCHEMA_VERSION', `${path} has schema version ${version}; this Bulwark knows up to ${SCHEMA_VERSION}`);
    }
    if (version < SCHEMA_VERSION) {
      db.transaction(() => {
        db.exec(SCHEMA);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      }).immediate();
    }
    this.q = prepare(db);
    // several SELECTs that must see one state, whatever the CLI commits between them
    this.snapshot = db.transaction((read: () => Row[]) => read());
  }

  /** Queue a write for the next group commit (storage's GroupCommit); resolves after it is durable. */
  private write<T>(run: () => T): Promise<T> {
    return this.commits.write(run);
  }

  /**
   * A row is visible once committed, before its commit's sync has finished (ADR 0008). Callers
   * act on what they read here in writes to other files (a manifest sealed under this key, a
   * blob linked because its record exists), so a record is returned only once it is on disk.
   */
  async get(kind: SealedKind, digest: Digest): Promise<DataKeyRecord | undefined> {
    const r = this.q.get.get(kind, digest);
    if (r === undefined) return undefined;
    await this.commits.durable();
    return toRecord(r);
  }

  async putIfAbsent(record: DataKeyRecord): Promise<DataKeyRecord> {
    // an existing row (a re-push) costs no new commit; it is returned once on disk, like get's
    const existing = this.q.get.get(record.kind, record.digest);
    if (existing !== undefined) {
      await this.commits.durable();
      return toRecord(existing);
    }
    // parameters are built now, not at flush: a caller reusing its Buffer cannot change what lands
    const params = {
      kind: record.kind,
      digest: record.digest,
      cipher_digest: record.cipherDigest,
      size: record.size,
      object_id: record.objectId,
      segment_size: record.segmentSize,
      header_length: record.headerLength,
      kek_vault: record.kek.vault,
      kek_name: record.kek.name,
      kek_version: record.kek.version,
      wrapped: Buffer.from(record.wrapped),
      created_at: record.createdAt,
      rewrapped_at: record.rewrappedAt ?? null,
    };
    return this.write(() => {
      this.q.insert.run(params);
      // the winner's row, whether that is this insert or an earlier one
      const stored = this.q.get.get(record.kind, record.digest);
      if (stored === undefined) throw new Error(`failed to read back data key ${record.kind} ${record.digest}`);
      return toRecord(stored);
    });
  }

  async rewrap(
    kind: SealedKind,
    digest: Digest,
    expected: { readonly kek: KekRef; readonly wrapped: Buffer },
    next: { readonly kek: KekRef; readonly wrapped: Buffer; readonly at: number },
  ): Promise<boolean> {
    const params = {
      kind,
      digest,
      old_vault: expected.kek.vault,
      old_name: expected.kek.name,
      old_version: expected.kek.version,
      old_wrapped: Buffer.from(expected.wrapped),
      vault: next.kek.vault,
      name: next.kek.name,
      version: next.kek.version,
      wrapped: Buffer.from(next.wrapped),
      at: next.at,
    };
    return this.write(() => this.q.rewrap.run(params).changes > 0);
  }

  async delete(kind: SealedKind, digest: Digest, cipherDigest: Digest): Promise<boolean> {
    return this.write(() => this.q.delete.run(kind, digest, cipherDigest).changes > 0);
  }

  /**
   * A `!=` on the KEK cannot be answered from an index in (kind, digest) order, and scanning the
   * table would block the event loop for a time proportional to the records already re-wrapped.
   * So: find the few distinct KEKs by skipping through the kek index, read the next `limit` rows
   * of each other KEK's (kind, digest)-ordered range, and merge. Each page costs
   * O(KEKs × (log n + limit)), however far the rotation has got.
   */
  async listNotWrappedBy(
    key: KekRef,
    limit: number,
    after?: { readonly kind: SealedKind; readonly digest: Digest },
  ): Promise<DataKeyRecord[]> {
    if (!(limit > 0)) return []; // SQLite reads a negative LIMIT as "no limit"
    const n = Math.floor(limit);
    const from = after ?? START;
    const rows = this.snapshot(() => {
      const out: Row[] = [];
      for (let k = this.q.firstKek.get(); k !== undefined; k = this.q.nextKek.get(k.vault, k.name, k.version)) {
        if (!sameKek(k, key)) out.push(...this.q.pageOfKek.all(k.vault, k.name, k.version, from.kind, from.digest, n));
      }
      return out;
    });
    return rows.map(toRecord).sort(compareKeys).slice(0, n);
  }

  async countByKey(): Promise<KekCount[]> {
    return this.q.count.all().map((r) => ({ kek: { vault: r.vault, name: r.name, version: r.version }, kind: r.kind, count: r.count }));
  }

  /**
   * Pages by primary key rather than holding a statement iterator open across yields: while an
   * iterator is open better-sqlite3 refuses every other statement on the connection, writes included.
   */
  async *list(): AsyncIterable<DataKeyRecord> {
    let from: { kind: string; digest: string } = START;
    for (;;) {
      const rows = this.q.page.all(from.kind, from.digest, LIST_BATCH);
      for (const r of rows) yield toRecord(r);
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < LIST_BATCH) return;
      from = last;
    }
  }

  async getSetting(name: string): Promise<string | undefined> {
    return this.q.getSetting.get(name)?.value;
  }

  async setSetting(name: string, value: string): Promise<void> {
    await this.write(() => this.q.setSetting.run(name, value));
  }

  async close(): Promise<void> {
    try {
      await this.commits.close();
    } finally {
      if (this.db.open) this.db.close();
    }
  }
}
