/**
 * Token buckets per caller (an API key, or an address in open mode): each holds up to `burst`
 * tokens and refills at `perSecond`; a request takes one. The table is bounded: when full, the
 * entries idle longest are dropped (a dropped entry starts again full, which only ever favours
 * the caller).
 */
import type { Clock } from '../shared/index.js';

/** Options of {@link RateLimiter}. */
export interface RateLimiterOptions {
  clock: Clock;
  /** Sustained requests per second. */
  perSecond: number;
  /** Requests allowed at once after a quiet spell. */
  burst: number;
  /** Callers tracked at once. Defaults to 10 000. */
  maxEntries?: number;
}

/** Per-caller token buckets. */
export class RateLimiter {
  readonly #o: RateLimiterOptions;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: RateLimiterOptions) {
    this.#o = options;
  }

  /** Takes one token for `key`: ok, or how long until one is there. */
  take(key: string): { ok: true } | { ok: false; retryAfterMs: number } {
    const now = this.#o.clock.now();
    const { perSecond, burst } = this.#o;
    const b = this.#buckets.get(key) ?? { tokens: burst, at: now };
    b.tokens = Math.min(burst, b.tokens + (Math.max(0, now - b.at) / 1000) * perSecond);
    b.at = now;
    // Re-insert to keep the map in least-recently-used order.
    this.#buckets.delete(key);
    this.#buckets.set(key, b);
    this.#trim();
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil(((1 - b.tokens) / perSecond) * 1000)) };
  }

  #trim(): void {
    const max = this.#o.maxEntries ?? 10_000;
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size <= max) break;
      this.#buckets.delete(key);
    }
  }

  /** Callers tracked now. */
  get size(): number {
    return this.#buckets.size;
  }
}
