import type { ClientInfo, EventBus, RegistryEvent, RegistryEventType } from '../audit/index.js';
import type { Config } from '../config/index.js';
import { isRegistryError } from '../oci/index.js';
import type { BlobStore, MetadataStore } from '../storage/index.js';

/** Who is asking: carried from the HTTP layer into every service call for the event record. */
export interface OpContext {
  readonly client: ClientInfo;
}

export interface RegistryDeps {
  readonly blobs: BlobStore;
  readonly meta: MetadataStore;
  readonly bus: EventBus;
  readonly config: Config;
  /**
   * How long a manifest body may be served from memory (ms); undefined: until evicted, 0: not
   * cached. With encryption at rest the composition root sets 0: a decrypted body must not
   * outlive a revoked key (EncryptingMetadataStore keeps opened bodies for their key's lifetime).
   */
  readonly manifestCacheTtlMs?: number | undefined;
}

type EventFields = Omit<RegistryEvent, 'type' | 'time' | 'client' | 'outcome' | 'error'>;

/** Run an operation and emit its event with the outcome; failures are re-thrown unchanged. */
export async function observed<T>(
  deps: RegistryDeps,
  ctx: OpContext,
  type: RegistryEventType,
  fields: EventFields,
  op: () => Promise<T>,
  enrich?: (result: T) => Partial<EventFields>,
): Promise<T> {
  try {
    const result = await op();
    deps.bus.emit({ type, time: new Date().toISOString(), ...fields, ...enrich?.(result), client: ctx.client, outcome: 'success' });
    return result;
  } catch (e) {
    deps.bus.emit({
      type,
      time: new Date().toISOString(),
      ...fields,
      client: ctx.client,
      outcome: 'failure',
      error: isRegistryError(e) ? e.code : 'UNKNOWN',
    });
    throw e;
  }
}
