/** In-memory AuthStore: tests and `storage.metadataDriver=memory`. */
import { AuthStoreConflict, type AuthKind, type AuthStore, type Stored } from './store.js';

export class MemoryAuthStore implements AuthStore {
  private readonly records = new Map<string, { version: number; json: string }>();

  async get<T>(kind: AuthKind, id: string): Promise<Stored<T> | undefined> {
    const r = this.records.get(`${kind}\0${id}`);
    return r === undefined ? undefined : { id, version: r.version, value: JSON.parse(r.json) as T };
  }

  async list<T>(kind: AuthKind): Promise<Stored<T>[]> {
    const prefix = `${kind}\0`;
    return [...this.records.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, r]) => ({ id: k.slice(prefix.length), version: r.version, value: JSON.parse(r.json) as T }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async put<T>(kind: AuthKind, id: string, value: T, expect?: number | 'absent'): Promise<number> {
    const key = `${kind}\0${id}`;
    const cur = this.records.get(key);
    if (expect === 'absent' ? cur !== undefined : expect !== undefined && cur?.version !== expect) throw new AuthStoreConflict(kind, id);
    const version = (cur?.version ?? 0) + 1;
    this.records.set(key, { version, json: JSON.stringify(value) });
    return version;
  }

  async delete(kind: AuthKind, id: string, expect?: number): Promise<boolean> {
    const key = `${kind}\0${id}`;
    const cur = this.records.get(key);
    if (cur === undefined) return false;
    if (expect !== undefined && cur.version !== expect) throw new AuthStoreConflict(kind, id);
    return this.records.delete(key);
  }

  async close(): Promise<void> {}
}
