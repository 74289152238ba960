import { subscriberKey } from '../network/index.js';

/**
 * Throttling of failed sign-ins. Failures are counted per (identity, source address) and per
 * source address in a sliding window. A pair over its limit is refused with 429 and Retry-After
 * without checking the password; other addresses of the same identity are not affected, so an
 * attacker cannot lock the legitimate user out from elsewhere. Memory is bounded.
 */

export interface FailureLimits {
  /** failures allowed per identity and address within the window */
  readonly perIdentity: number;
  /** failures allowed per address (any identity) within the window */
  readonly perAddress: number;
  readonly windowMs: number;
}

const MAX_KEYS = 100_000;

export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(private readonly limits: FailureLimits) {}

  /** Seconds until the caller may try again, or 0 when it may try now. */
  retryAfter(identity: string, rawAddress: string, now = Date.now()): number {
    const address = subscriberKey(rawAddress);
    const pair = this.recent(`${identity}\0${address}`, now);
    const addr = this.recent(`\0${address}`, now);
    let until = 0;
    if (pair.length >= this.limits.perIdentity) until = Math.max(until, (pair[pair.length - this.limits.perIdentity] ?? now) + this.limits.windowMs);
    if (addr.length >= this.limits.perAddress) until = Math.max(until, (addr[addr.length - this.limits.perAddress] ?? now) + this.limits.windowMs);
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  fail(identity: string, rawAddress: string, now = Date.now()): void {
    const address = subscriberKey(rawAddress);
    for (const key of [`${identity}\0${address}`, `\0${address}`]) {
      const list = this.recent(key, now);
      list.push(now);
      this.failures.delete(key);
      this.failures.set(key, list.slice(-Math.max(this.limits.perIdentity, this.limits.perAddress)));
    }
    while (this.failures.size > MAX_KEYS) this.failures.delete(this.failures.keys().next().value as string);
  }

  /** A success clears the pair's failures (not the address's). */
  succeed(identity: string, rawAddress: string): void {
    this.failures.delete(`${identity}\0${subscriberKey(rawAddress)}`);
  }

  private recent(key: string, now: number): number[] {
    return (this.failures.get(key) ?? []).filter((t) => now - t < this.limits.windowMs);
  }
}
