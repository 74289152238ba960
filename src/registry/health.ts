/**
 * Health checks (`GET /api/v1/health`, `bulwark check-health`), named like Azure Container
 * Registry's check-health errors: each check runs for real (a metadata query, a blob lookup, a
 * wrap/unwrap round trip with the key-encryption key), so a failure names its cause.
 */
import { isRegistryError } from '../oci/index.js';
import type { BlobStore, MetadataStore } from '../storage/index.js';

export interface HealthCheck {
  readonly name: 'METADATA' | 'BLOBS' | 'CMK';
  readonly ok: boolean;
  /** the error code when not ok: METADATA_ERROR, BLOBS_ERROR, CMK_ERROR */
  readonly code?: string;
  readonly message?: string;
}

export interface HealthReport {
  readonly ok: boolean;
  readonly checks: readonly HealthCheck[];
}

export interface HealthDeps {
  readonly meta: MetadataStore;
  readonly blobs: BlobStore;
  /** a round trip with the key-encryption key; absent when encryption is off */
  readonly probeKey?: (() => Promise<void>) | undefined;
}

const NEVER_STORED = 'sha256:0000000000000000000000000000000000000000000000000000000000000000';

async function run(name: HealthCheck['name'], op: () => Promise<unknown>): Promise<HealthCheck> {
  try {
    await op();
    return { name, ok: true };
  } catch (e) {
    const detail = isRegistryError(e) ? e.message : e instanceof Error ? e.message : String(e);
    return { name, ok: false, code: `${name}_ERROR`, message: detail };
  }
}

export async function checkHealth(deps: HealthDeps): Promise<HealthReport> {
  const checks = [
    await run('METADATA', () => deps.meta.listRepositories({ n: 1 })),
    await run('BLOBS', () => deps.blobs.stat(NEVER_STORED)),
  ];
  if (deps.probeKey !== undefined) checks.push(await run('CMK', deps.probeKey));
  return { ok: checks.every((c) => c.ok), checks };
}

/**
 * Shares one successful run of `op` among all callers within `ms`, as long as `healthy()` still
 * holds (a failure seen meanwhile, e.g. by a pull, forces a fresh run); failures are not kept.
 */
export class Throttled {
  private okAt = -Infinity;
  private inFlight: Promise<void> | undefined;
  constructor(
    private readonly ms: number,
    private readonly healthy: () => boolean,
    private readonly op: () => Promise<void>,
  ) {}
  run(): Promise<void> {
    if (Date.now() - this.okAt < this.ms && this.healthy()) return Promise.resolve();
    this.inFlight ??= this.op()
      .then(() => {
        this.okAt = Date.now();
      })
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }
}
