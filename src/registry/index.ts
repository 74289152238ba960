import { BlobService } from './blobs.js';
import { ManifestService } from './manifests.js';
import { ListingService } from './listing.js';
import type { RegistryDeps } from './context.js';

export { BlobService, type AppendRequest } from './blobs.js';
export { ManifestService, type PutManifestResult } from './manifests.js';
export { ListingService, REFERRERS_MEDIA_TYPE, type ListPage, type ReferrerDescriptor } from './listing.js';
export type { OpContext, RegistryDeps } from './context.js';
export { Throttled, checkHealth, type HealthCheck, type HealthDeps, type HealthReport } from './health.js';

export interface Registry {
  readonly blobs: BlobService;
  readonly manifests: ManifestService;
  readonly listing: ListingService;
}

export function createRegistry(deps: RegistryDeps): Registry {
  return { blobs: new BlobService(deps), manifests: new ManifestService(deps), listing: new ListingService(deps) };
}
