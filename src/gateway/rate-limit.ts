/**
 * Token buckets per caller (an API key, or an address in open mode): each holds up to `burst`
 * tokens and refills at `perSecond`; a request takes one. The table is bounded: when full, the
 * entries idle longest are dropped (a dropped entry starts again full, which only ever favours
 * the caller). In a cluster with NATS the HTTP layer takes its tokens from a shared bucket per caller
 * instead (src/gateway/cluster/shared-rate-limit.ts), which falls back to this one while NATS is down.
 */
import { withDefaults, type Clock } from '../shared/index.js';

/** What a take answers: a token, or how long until one is there. */
export type RateTaken = { ok: true } | { ok: false; retryAfterMs: number };

/**
 * What the HTTP layer takes request tokens from: this node's {@link RateLimiter} (synchronous, in
 * memory) in the embedded default, or the cluster's shared buckets (a promise: a NATS round trip).
 */
export interface RequestLimiter {
  /** Takes one token for `key`. */
  take(key: string): RateTaken | Promise<RateTaken>;
}

/** Options of {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Time source of the refill. Required. */
  clock: Clock;
  /** Sustained requests per second. Defaults to 10. */
  perSecond?: number;
  /** Requests allowed at once after a quiet spell. Defaults to 40. */
  burst?: number;
  /** Callers tracked at once. Defaults to 10 000. */
  maxEntries?: number;
}

/** The defaults of {@link RateLimiterOptions}. */
export const RATE_LIMITER_DEFAULTS: Required<Omit<RateLimiterOptions, 'clock'>> = { perSecond: 10, burst: 40, maxEntries: 10_000 };

/** Per-caller token buckets. */
export class RateLimiter implements RequestLimiter {
  readonly #o: Required<RateLimiterOptions>;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: RateLimiterOptions) {
    this.#o = withDefaults(RATE_LIMITER_DEFAULTS, options);
  }

  /** Takes one token for `key`: ok, or how long until one is there. */
  take(key: string): RateTaken {
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
    const max = this.#o.maxEntries;
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
