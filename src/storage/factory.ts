/**
 * Storage drivers chosen by name from validated configuration (a typed factory registry, not
 * string-built dispatch). Later drivers (postgres, azure-blob, s3) register here.
 */
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { BlobStore } from './blob-store.js';
import type { MetadataStore } from './metadata-store.js';
import { FsBlobStore, type FsBlobStoreOptions } from './fs-blob-store.js';
import { MemoryBlobStore } from './memory-blob-store.js';
import { SqliteMetadataStore } from './sqlite-metadata-store.js';
import { MemoryMetadataStore } from './memory-metadata-store.js';

export type BlobDriver = 'filesystem' | 'memory';
export type MetadataDriver = 'sqlite' | 'memory';

const blobDrivers: Record<BlobDriver, (dataDir: string, opts: FsBlobStoreOptions) => Promise<BlobStore>> = {
  filesystem: (dataDir, opts) => new FsBlobStore(dataDir, opts).init(),
  memory: async () => new MemoryBlobStore(),
};

const metadataDrivers: Record<MetadataDriver, (dataDir: string) => Promise<MetadataStore>> = {
  sqlite: async (dataDir) => {
    await mkdir(dataDir, { recursive: true });
    return new SqliteMetadataStore(join(dataDir, 'metadata.db'));
  },
  memory: async () => new MemoryMetadataStore(),
};

/** `opts`: the filesystem driver's (the others take none). */
export function createBlobStore(driver: BlobDriver, dataDir: string, opts: FsBlobStoreOptions = {}): Promise<BlobStore> {
  return blobDrivers[driver](dataDir, opts);
}

export function createMetadataStore(driver: MetadataDriver, dataDir: string): Promise<MetadataStore> {
  return metadataDrivers[driver](dataDir);
}
