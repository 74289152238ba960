/**
 * In-memory DataKeyStore: the reference implementation of the contract in data-key-store.ts, for
 * tests. Records are copied on the way in and on the way out (the wrapped key is a Buffer, which
 * callers could otherwise mutate), so the only way to change stored state is through the methods.
 */
import type { Digest } from '../oci/index.js';
import { sameKek, type DataKeyRecord, type DataKeyStore, type KekCount, type KekRef, type SealedKind } from './data-key-store.js';

/** A deep copy holding exactly the record's fields (no extra properties, no aliased Buffer). */
export function copyRecord(r: DataKeyRecord): DataKeyRecord {
  return {
    kind: r.kind,
    digest: r.digest,
    cipherDigest: r.cipherDigest,
    size: r.size,
    objectId: r.objectId,
    segmentSize: r.segmentSize,
    headerLength: r.headerLength,
    kek: { vault: r.kek.vault, name: r.kek.name, version: r.kek.version },
    wrapped: Buffer.from(r.wrapped),
    createdAt: r.createdAt,
    ...(r.rewrappedAt === undefined ? {} : { rewrappedAt: r.rewrappedAt }),
  };
}

/**
 * (kind, digest) order as SQLite's BINARY collation sorts it: by UTF-8 bytes, which for these
 * ASCII values is also code-unit order, but a backend must not depend on that.
 */
export function compareKeys(a: { kind: string; digest: string }, b: { kind: string; digest: string }): number {
  return Buffer.compare(Buffer.from(a.kind), Buffer.from(b.kind)) || Buffer.compare(Buffer.from(a.digest), Buffer.from(b.digest));
}

function keyOf(kind: SealedKind, digest: Digest): string {
  // a space cannot occur in a kind, so the key is unambiguous
  return `${kind} ${digest}`;
}

export class MemoryDataKeyStore implements DataKeyStore {
  private readonly records = new Map<string, DataKeyRecord>();
  private readonly settings = new Map<string, string>();

  async get(kind: SealedKind, digest: Digest): Promise<DataKeyRecord | undefined> {
    const r = this.records.get(keyOf(kind, digest));
    return r === undefined ? undefined : copyRecord(r);
  }

  async putIfAbsent(record: DataKeyRecord): Promise<DataKeyRecord> {
    const key = keyOf(record.kind, record.digest);
    // check and set in one synchronous step: no other call can run in between
    const existing = this.records.get(key);
    if (existing !== undefined) return copyRecord(existing);
    const stored = copyRecord(record);
    this.records.set(key, stored);
    return copyRecord(stored);
  }

  async rewrap(
    kind: SealedKind,
    digest: Digest,
    expected: { readonly kek: KekRef; readonly wrapped: Buffer },
    next: { readonly kek: KekRef; readonly wrapped: Buffer; readonly at: number },
  ): Promise<boolean> {
    const key = keyOf(kind, digest);
    const r = this.records.get(key);
    if (r === undefined || !sameKek(r.kek, expected.kek) || !r.wrapped.equals(expected.wrapped)) return false;
    this.records.set(key, copyRecord({ ...r, kek: next.kek, wrapped: next.wrapped, rewrappedAt: next.at }));
    return true;
  }

  async delete(kind: SealedKind, digest: Digest, cipherDigest: Digest): Promise<boolean> {
    const key = keyOf(kind, digest);
    if (this.records.get(key)?.cipherDigest !== cipherDigest) return false;
    return this.records.delete(key);
  }

  async listNotWrappedBy(
    key: KekRef,
    limit: number,
    after?: { readonly kind: SealedKind; readonly digest: Digest },
  ): Promise<DataKeyRecord[]> {
    if (!(limit > 0)) return [];
    return [...this.records.values()]
      .filter((r) => !sameKek(r.kek, key) && (after === undefined || compareKeys(r, after) > 0))
      .sort(compareKeys)
      .slice(0, Math.floor(limit))
      .map(copyRecord);
  }

  async countByKey(): Promise<KekCount[]> {
    const counts = new Map<string, KekCount>();
    for (const r of this.records.values()) {
      // JSON of the tuple: unambiguous whatever characters the names hold
      const k = JSON.stringify([r.kek.vault, r.kek.name, r.kek.version, r.kind]);
      const c = counts.get(k);
      counts.set(k, { kek: { ...r.kek }, kind: r.kind, count: (c?.count ?? 0) + 1 });
    }
    return [...counts.values()];
  }

  async *list(): AsyncIterable<DataKeyRecord> {
    // a snapshot: writes made while the caller iterates neither break nor reorder the iteration
    const snapshot = [...this.records.values()].sort(compareKeys).map(copyRecord);
    yield* snapshot;
  }

  async getSetting(name: string): Promise<string | undefined> {
    return this.settings.get(name);
  }

  async setSetting(name: string, value: string): Promise<void> {
    this.settings.set(name, value);
  }

  async close(): Promise<void> {
    this.records.clear();
    this.settings.clear();
  }
}
