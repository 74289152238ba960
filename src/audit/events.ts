/**
 * The typed events every registry operation emits. Subscribers (audit log now; webhooks,
 * metrics, replication and scanning later) listen on the bus; business code never calls them.
 */

export type RegistryEventType =
  | 'blob.push'
  | 'blob.pull'
  | 'blob.redirect'
  | 'blob.mount'
  | 'blob.delete'
  | 'manifest.push'
  | 'manifest.pull'
  | 'manifest.delete'
  | 'tag.delete'
  | 'upload.start'
  | 'upload.finish'
  | 'upload.cancel'
  | 'upload.purge'
  // identity and access (auth/): token issuance and refusals, policy changes, elevations
  | 'auth.token'
  | 'auth.refresh'
  | 'auth.exchange'
  | 'auth.failure'
  | 'auth.throttled'
  | 'auth.denied'
  | 'admin.change'
  | 'access.request'
  | 'access.approve'
  | 'access.deny'
  | 'access.use'
  | 'access.expire'
  // customer-managed keys (keyvault/, encryption/): every key-vault operation
  | 'key.operation'
  // network rules (network/): a request refused before authentication
  | 'network.denied';

export interface ClientInfo {
  readonly address: string;
  readonly userAgent: string;
  readonly requestId: string;
}

export interface RegistryEvent {
  readonly type: RegistryEventType;
  /** ISO 8601 */
  readonly time: string;
  readonly repository: string;
  readonly digest?: string | undefined;
  readonly tag?: string | undefined;
  readonly size?: number | undefined;
  readonly mediaType?: string | undefined;
  /** for mounts: the source repository */
  readonly from?: string | undefined;
  readonly uploadId?: string | undefined;
  readonly client: ClientInfo;
  readonly outcome: 'success' | 'failure';
  /** the registry error code on failure */
  readonly error?: string | undefined;
  /** who acted (principal id), for auth and admin events; never a secret */
  readonly principal?: string | undefined;
  /** what was asked or changed (scopes, the object changed), for auth and admin events */
  readonly target?: string | undefined;
  /** why a request was refused, in words */
  readonly reason?: string | undefined;
}

export type EventListener = (e: RegistryEvent) => void;

/** A synchronous, typed bus. A failing listener is reported, never breaks the operation. */
export class EventBus {
  private readonly listeners = new Set<EventListener>();

  constructor(private readonly onListenerError: (err: unknown, e: RegistryEvent) => void = () => undefined) {}

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(e: RegistryEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.onListenerError(err, e);
      }
    }
  }
}
