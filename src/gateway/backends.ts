/**
 * Backend pools: the upstream servers of a site, each reached over kept-alive connections
 * (upstream.ts; TLS verified against the configured CA, never switched off), probed on a timer
 * and taken out of rotation after `unhealthyThreshold` failed probes in a row. A registry is
 * healthy when `/v2/` answers 200 or 401 (it is up, and asks for a token); a data endpoint when it
 * answers 403 to a request that carries no signed URL. Requests go round-robin to the healthy
 * backends.
 */
import { readFileSync } from 'node:fs';
import type { BackendConfig, PoolConfig } from './config.js';
import { MIN_TLS_VERSION } from '../network/index.js';
import { discard, UpstreamPool, type Exchange, type UpstreamHandler, type UpstreamRequest } from './upstream.js';

interface Log {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
}

export class Backend {
  /** unknown until the first probe answers: nothing is sent to a backend never seen up */
  healthy = false;
  /** whether a probe has run yet */
  probed = false;
  private failures = 0;
  private readonly upstream: UpstreamPool;
  readonly label: string;

  constructor(readonly config: BackendConfig) {
    const u = config.url;
    const secure = u.protocol === 'https:';
    this.upstream = new UpstreamPool({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port === '' ? (secure ? 443 : 80) : Number(u.port),
      ...(secure ? { tls: { ...(config.caFile !== undefined ? { ca: readFileSync(config.caFile) } : {}), servername: config.serverName, minVersion: MIN_TLS_VERSION, rejectUnauthorized: true } } : {}),
    });
    this.label = u.origin;
  }

  /** Sends a request to this backend, with its `Host`; the target is already checked to start with `/`. */
  exchange(req: UpstreamRequest, handler: UpstreamHandler): Exchange {
    return this.upstream.exchange({ ...req, headers: { ...req.headers, host: this.config.hostHeader } }, handler);
  }

  /** One probe result; returns whether the health changed. */
  record(ok: boolean, threshold: number): boolean {
    const before = this.healthy;
    this.failures = ok ? 0 : this.failures + 1;
    this.healthy = ok || (this.healthy && this.failures < threshold);
    return before !== this.healthy;
  }

  close(): void {
    this.upstream.close();
  }
}

export class BackendPool {
  readonly backends: readonly Backend[];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;

  constructor(
    readonly config: PoolConfig,
    private readonly log: Log,
  ) {
    this.backends = config.backends.map((b) => new Backend(b));
  }

  /** The next healthy backend, round-robin; undefined when none is. */
  pick(): Backend | undefined {
    const n = this.backends.length;
    for (let i = 0; i < n; i++) {
      const b = this.backends[(this.next + i) % n];
      if (b?.healthy === true) {
        this.next = (this.next + i + 1) % n;
        return b;
      }
    }
    return undefined;
  }

  /** Probes every backend now, and then every interval. */
  async start(): Promise<void> {
    await this.probeAll();
    this.timer = setInterval(() => {
      this.probing ??= this.probeAll().finally(() => (this.probing = undefined));
    }, this.config.health.intervalSeconds * 1000);
    this.timer.unref();
  }

  private async probeAll(): Promise<void> {
    await Promise.all(
      this.backends.map(async (b) => {
        const { status, error } = await this.probe(b);
        const ok = status !== undefined && this.config.health.healthyStatuses.includes(status);
        const first = !b.probed;
        b.probed = true;
        const where = { pool: this.config.name, backend: b.label, status, error };
        if (b.record(ok, this.config.health.unhealthyThreshold)) {
          if (b.healthy) this.log.info(where, 'backend is healthy');
          else this.log.warn(where, 'backend failed its health probes; taken out of rotation');
        } else if (first && !ok) {
          // never seen up: say why, or an operator sees only 503s (a wrong CA, a name the certificate does not hold)
          this.log.warn(where, 'backend failed its first health probe; not in rotation');
        }
      }),
    );
  }

  private probe(b: Backend): Promise<{ status?: number; error?: string }> {
    return new Promise((resolve) => {
      b.exchange(
        { method: 'GET', target: this.config.health.path, headers: { 'user-agent': 'bulwark-gateway-probe' }, timeoutMs: this.config.health.timeoutSeconds * 1000 },
        {
          response: (status) => {
            resolve({ status });
            return discard();
          },
          fail: (err) => resolve({ error: err.message }),
        },
      );
    });
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.probing;
    for (const b of this.backends) b.close();
  }
}
