/**
 * A SQLite connection as Bulwark's stores open it (metadata.db, data-keys.db, auth.db).
 *
 * - `busy_timeout` first: another process (fsck, the admin CLI) may hold the write lock for a
 *   moment.
 * - A page cache of 2,000 KiB, SQLite's own default. better-sqlite3 is built with 16 MiB per
 *   connection, and as the databases grew the connections filled theirs, all of it resident: the
 *   benchmark's server peaked 27-40 MiB higher in the manifests, images and encryption scenarios,
 *   for no throughput it could measure (ADR 0016). Pages beyond it stay in the kernel's page
 *   cache, a read away.
 */
import Database from 'better-sqlite3';

/** Per-connection page cache, KiB. */
export const PAGE_CACHE_KIB = 2000;

export function openSqlite(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  return db;
}
