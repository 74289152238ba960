export type { BlobStore, BlobInfo, ByteRange, UploadInfo, AppendOptions, BlobCheck } from './blob-store.js';
export type { MetadataStore, ManifestRecord, Page } from './metadata-store.js';
export { FsBlobStore } from './fs-blob-store.js';
export { MemoryBlobStore } from './memory-blob-store.js';
export { SqliteMetadataStore } from './sqlite-metadata-store.js';
export { MemoryMetadataStore } from './memory-metadata-store.js';
export { createBlobStore, createMetadataStore, type BlobDriver, type MetadataDriver } from './factory.js';
export { isUploadId } from './fs-layout.js';
export { fsck, type FsckReport, type FsckProblem, type FsckProblemKind } from './fsck.js';
