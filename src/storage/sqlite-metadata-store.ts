/**
 * SQLite MetadataStore (better-sqlite3): WAL journal, and a write resolves only once its commit is
 * on disk, so a call that resolved survives kill -9 and power loss. Statements are prepared once.
 *
 * Writes use group commit (group-commit.ts): writes requested in the same turn of the event loop
 * share one transaction and one fsync, each in its own savepoint; the fsync of the WAL runs on the
 * thread pool, not inside the commit on the event loop (ADR 0008).
 */
import type Database from 'better-sqlite3';
import type { Digest } from '../oci/index.js';
import type { ManifestRecord, MetadataStore, Page } from './metadata-store.js';
import { GroupCommit } from './group-commit.js';
import { openSqlite } from './sqlite-connection.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS repositories (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_links (
  repository TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
  PRIMARY KEY (repository, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_links_digest ON blob_links (digest);
CREATE TABLE IF NOT EXISTS manifests (
  repository TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,
  artifact_type TEXT, subject TEXT, annotations TEXT, created_at INTEGER NOT NULL,
  PRIMARY KEY (repository, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (repository, subject) WHERE subject IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
  repository TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (repository, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags (repository, digest);
CREATE TABLE IF NOT EXISTS manifest_content (digest TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
`;

interface ManifestRow {
  repository: string;
  digest: string;
  media_type: string;
  size: number;
  artifact_type: string | null;
  subject: string | null;
  annotations: string | null;
  created_at: number;
}

function toRecord(r: ManifestRow): ManifestRecord {
  return {
    repository: r.repository,
    digest: r.digest as Digest,
    mediaType: r.media_type,
    size: r.size,
    artifactType: r.artifact_type ?? undefined,
    subject: (r.subject ?? undefined) as Digest | undefined,
    annotations: r.annotations === null ? undefined : (JSON.parse(r.annotations) as Record<string, string>),
    createdAt: r.created_at,
  };
}

export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Database.Database;
  private readonly q;
  private readonly commits: GroupCommit;

  constructor(path: string) {
    this.db = openSqlite(path);
    // WAL, each commit synced off the event loop before it is acknowledged (ADR 0008)
    this.commits = new GroupCommit(this.db, { walSync: true });
    this.db.exec(SCHEMA);
    const db = this.db;
    this.q = {
      addRepo: db.prepare('INSERT OR IGNORE INTO repositories (name, created_at) VALUES (?, ?)'),
      link: db.prepare('INSERT OR REPLACE INTO blob_links (repository, digest, size) VALUES (?, ?, ?)'),
      getLink: db.prepare<[string, string], { size: number }>('SELECT size FROM blob_links WHERE repository = ? AND digest = ?'),
      unlink: db.prepare('DELETE FROM blob_links WHERE repository = ? AND digest = ?'),
      reposWithBlob: db.prepare<[string, number], { repository: string }>('SELECT repository FROM blob_links WHERE digest = ? LIMIT ?'),
      putContent: db.prepare('INSERT OR IGNORE INTO manifest_content (digest, body) VALUES (?, ?)'),
      getContent: db.prepare<[string], { body: Buffer }>('SELECT body FROM manifest_content WHERE digest = ?'),
      putManifest: db.prepare(
        `INSERT INTO manifests (repository, digest, media_type, size, artifact_type, subject, annotations, created_at)
         VALUES (@repository, @digest, @media_type, @size, @artifact_type, @subject, @annotations, @created_at)
         ON CONFLICT (repository, digest) DO NOTHING`,
      ),
      getManifest: db.prepare<[string, string], ManifestRow>('SELECT * FROM manifests WHERE repository = ? AND digest = ?'),
      deleteManifest: db.prepare('DELETE FROM manifests WHERE repository = ? AND digest = ?'),
      deleteTagsOf: db.prepare('DELETE FROM tags WHERE repository = ? AND digest = ?'),
      putTag: db.prepare(
        'INSERT INTO tags (repository, tag, digest, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at',
      ),
      resolveTag: db.prepare<[string, string], { digest: string }>('SELECT digest FROM tags WHERE repository = ? AND tag = ?'),
      deleteTag: db.prepare('DELETE FROM tags WHERE repository = ? AND tag = ?'),
      listTags: db.prepare<[string, string, number], { tag: string }>('SELECT tag FROM tags WHERE repository = ? AND tag > ? ORDER BY tag LIMIT ?'),
      repoExists: db.prepare<[string], { x: number }>('SELECT 1 AS x FROM repositories WHERE name = ?'),
      listRepos: db.prepare<[string, number], { name: string }>('SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?'),
      referrers: db.prepare<[string, string], ManifestRow>('SELECT * FROM manifests WHERE repository = ? AND subject = ? ORDER BY digest'),
      allLinks: db.prepare<[], { repository: string; digest: string }>('SELECT repository, digest FROM blob_links'),
      allManifests: db.prepare<[], { repository: string; digest: string }>('SELECT repository, digest FROM manifests'),
    };
  }

  /** Queue a write for the next group commit (group-commit.ts); resolves after it is durable. */
  private write<T>(run: () => T): Promise<T> {
    return this.commits.write(run);
  }

  async linkBlob(repository: string, digest: Digest, size: number): Promise<void> {
    await this.write(() => {
      this.q.addRepo.run(repository, Date.now());
      this.q.link.run(repository, digest, size);
    });
  }

  async blobLink(repository: string, digest: Digest): Promise<number | undefined> {
    return this.q.getLink.get(repository, digest)?.size;
  }

  async unlinkBlob(repository: string, digest: Digest): Promise<boolean> {
    return this.write(() => this.q.unlink.run(repository, digest).changes > 0);
  }

  async repositoriesWithBlob(digest: Digest, limit: number): Promise<string[]> {
    return this.q.reposWithBlob.all(digest, limit).map((r) => r.repository);
  }

  async putManifest(m: ManifestRecord, body: Buffer, tag?: string): Promise<void> {
    await this.write(() => {
      this.q.addRepo.run(m.repository, m.createdAt);
      this.q.putContent.run(m.digest, body);
      this.q.putManifest.run({
        repository: m.repository,
        digest: m.digest,
        media_type: m.mediaType,
        size: m.size,
        artifact_type: m.artifactType ?? null,
        subject: m.subject ?? null,
        annotations: m.annotations === undefined ? null : JSON.stringify(m.annotations),
        created_at: m.createdAt,
      });
      if (tag !== undefined) this.q.putTag.run(m.repository, tag, m.digest, m.createdAt);
    });
  }

  async manifestBody(digest: Digest): Promise<Buffer | undefined> {
    return this.q.getContent.get(digest)?.body;
  }

  async getManifest(repository: string, digest: Digest): Promise<ManifestRecord | undefined> {
    const r = this.q.getManifest.get(repository, digest);
    return r === undefined ? undefined : toRecord(r);
  }

  async deleteManifest(repository: string, digest: Digest): Promise<boolean> {
    return this.write(() => {
      this.q.deleteTagsOf.run(repository, digest);
      return this.q.deleteManifest.run(repository, digest).changes > 0;
    });
  }

  async resolveTag(repository: string, tag: string): Promise<Digest | undefined> {
    return this.q.resolveTag.get(repository, tag)?.digest as Digest | undefined;
  }

  async deleteTag(repository: string, tag: string): Promise<boolean> {
    return this.write(() => this.q.deleteTag.run(repository, tag).changes > 0);
  }

  async listTags(repository: string, page: Page): Promise<string[]> {
    return this.q.listTags.all(repository, page.last ?? '', page.n).map((r) => r.tag);
  }

  async repositoryExists(repository: string): Promise<boolean> {
    return this.q.repoExists.get(repository) !== undefined;
  }

  async listRepositories(page: Page): Promise<string[]> {
    return this.q.listRepos.all(page.last ?? '', page.n).map((r) => r.name);
  }

  async listReferrers(repository: string, subject: Digest, artifactType?: string): Promise<ManifestRecord[]> {
    const rows = this.q.referrers.all(repository, subject).map(toRecord);
    return artifactType === undefined ? rows : rows.filter((r) => r.artifactType === artifactType);
  }

  async *referencedDigests(): AsyncIterable<{ repository: string; digest: Digest; kind: 'blob' | 'manifest' }> {
    for (const r of this.q.allLinks.all()) yield { repository: r.repository, digest: r.digest as Digest, kind: 'blob' };
    for (const r of this.q.allManifests.all()) yield { repository: r.repository, digest: r.digest as Digest, kind: 'manifest' };
  }

  async close(): Promise<void> {
    try {
      await this.commits.close();
    } finally {
      if (this.db.open) this.db.close();
    }
  }
}
