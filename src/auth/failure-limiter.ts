import { subscriberKey } from '../network/index.js';

/**
 * Throttling of failed sign-ins. Failures are counted per (identity, source address) and per
 * source address in a sliding window. A pair over its limit is refused with 429 and Retry-After
 * without checking the password; other addresses of the same identity are not affected, so an
 * attacker cannot lock the legitimate user out from elsewhere. Memory is bounded.
 *
 * Attempts still running count against their address's limit as failures would (`begin`).
 * Attempts of one identity from one address already run one after the other, but those of
 * different identities run side by side: without this, a burst spread over many usernames would
 * all pass the check before the first failure counted, and the address could be tried far past its
 * limit. A legitimate burst from one address is refused only when its failures and its attempts
 * in flight together reach the limit, and then for a second.
 */

export interface FailureLimits {
  /** failures allowed per identity and address within the window */
  readonly perIdentity: number;
  /** failures allowed per address (any identity) within the window */
  readonly perAddress: number;
  readonly windowMs: number;
}

const MAX_KEYS = 100_000;

/** One sign-in attempt in flight (FailureLimiter.begin). */
export interface Attempt {
  /** Seconds until this attempt may go on, or 0: the failures so far and the other attempts in flight from its address. */
  retryAfter(now?: number): number;
  /** It failed: counted as a failure and over, in one step (it never counts twice). */
  fail(now?: number): void;
  /** It succeeded: the failures of its identity at its address are cleared (not the address's), and it is over. */
  succeed(): void;
  /** It is over without a verdict (refused, or an error): it no longer counts. Idempotent, like fail and succeed. */
  end(): void;
}

export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();
  /** attempts in flight, per address key */
  private readonly running = new Map<string, number>();

  constructor(private readonly limits: FailureLimits) {}

  /** An attempt begins: until it ends, it counts against its address's limit. */
  begin(identity: string, rawAddress: string): Attempt {
    const address = subscriberKey(rawAddress);
    this.running.set(address, (this.running.get(address) ?? 0) + 1);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      const n = (this.running.get(address) ?? 1) - 1;
      if (n > 0) this.running.set(address, n);
      else this.running.delete(address);
    };
    return {
      retryAfter: (now = Date.now()) => this.wait(identity, address, now, ended ? 0 : 1),
      fail: (now = Date.now()) => {
        if (!ended) this.record(identity, address, now);
        end();
      },
      succeed: () => {
        if (!ended) this.failures.delete(`${identity}\0${address}`);
        end();
      },
      end,
    };
  }

  private wait(identity: string, address: string, now: number, own: number): number {
    const pair = this.recent(`${identity}\0${address}`, now);
    const addr = this.recent(`\0${address}`, now);
    let until = 0;
    if (pair.length >= this.limits.perIdentity) until = Math.max(until, (pair[pair.length - this.limits.perIdentity] ?? now) + this.limits.windowMs);
    if (addr.length >= this.limits.perAddress) until = Math.max(until, (addr[addr.length - this.limits.perAddress] ?? now) + this.limits.windowMs);
    // others in flight could each still fail: they hold the rest of the address's allowance until they end (seconds, at
    // most, behind the scrypt queue), so the caller is told to come back in a second
    else if (addr.length + (this.running.get(address) ?? 0) - own >= this.limits.perAddress) until = Math.max(until, now + 1000);
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  private record(identity: string, address: string, now: number): void {
    for (const key of [`${identity}\0${address}`, `\0${address}`]) {
      const list = this.recent(key, now);
      list.push(now);
      this.failures.delete(key);
      this.failures.set(key, list.slice(-Math.max(this.limits.perIdentity, this.limits.perAddress)));
    }
    while (this.failures.size > MAX_KEYS) this.failures.delete(this.failures.keys().next().value as string);
  }

  private recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => now - t < this.limits.windowMs);
  }
}
