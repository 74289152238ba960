/**
 * Storage drivers chosen by name from validated configuration (a typed factory registry, not
 * string-built dispatch). Later drivers (postgres, azure-blob, s3) register here.
 */
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { BlobStore } from './blob-store.js';
import type { MetadataStore } from './metadata-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { MemoryBlobStore } from './memory-blob-store.js';
import { SqliteMetadataStore } from './sqlite-metadata-store.js';
import { MemoryMetadataStore } from './memory-metadata-store.js';

export type BlobDriver = 'filesystem' | 'memory';
export type MetadataDriver = 'sqlite' | 'memory';

const blobDrivers: Record<BlobDriver, (dataDir: string) => Promise<BlobStore>> = {
  filesystem: (dataDir) => new FsBlobStore(dataDir).init(),
  memory: async () => new MemoryBlobStore(),
};

const metadataDrivers: Record<MetadataDriver, (dataDir: string) => Promise<MetadataStore>> = {
  sqlite: async (dataDir) => {
    await mkdir(dataDir, { recursive: true });
    return new SqliteMetadataStore(join(dataDir, 'metadata.db'));
  },
  memory: async () => new MemoryMetadataStore(),
};

export function createBlobStore(driver: BlobDriver, dataDir: string): Promise<BlobStore> {
  return blobDrivers[driver](dataDir);
}

export function createMetadataStore(driver: MetadataDriver, dataDir: string): Promise<MetadataStore> {
  return metadataDrivers[driver](dataDir);
}
