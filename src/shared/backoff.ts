/**
 * The one retry schedule every part of Nightjar uses (the agent's reconnects, resumed downloads,
 * the SDK's retries): exponential growth with full jitter, so many peers that failed together do
 * not come back together. The delay is computed here; the wait runs on the caller's injected clock
 * (`delay` in event.ts), which is why no timer library is used.
 */

/** Retry timing. */
export interface BackoffOptions {
  /** Ceiling of the first delay. Defaults to 500 ms. */
  initialMs?: number;
  /** Ceiling of any delay. Defaults to 30 000 ms. */
  maxMs?: number;
  /** Growth of the ceiling per failure. Defaults to 2. */
  factor?: number;
}

/** Backoff timing with every default filled in. */
export type ResolvedBackoff = Readonly<Required<BackoffOptions>>;

/** The defaults of {@link BackoffOptions}. */
export const DEFAULT_BACKOFF: ResolvedBackoff = { initialMs: 500, maxMs: 30_000, factor: 2 };

/** `options` with the defaults filled in, once, where the owner is built. */
export function resolveBackoff(options: BackoffOptions = {}, defaults: ResolvedBackoff = DEFAULT_BACKOFF): ResolvedBackoff {
  return {
    initialMs: Math.max(0, options.initialMs ?? defaults.initialMs),
    maxMs: Math.max(0, options.maxMs ?? defaults.maxMs),
    factor: Math.max(1, options.factor ?? defaults.factor),
  };
}

/**
 * The wait before retry number `retry` (0 for the first): a uniform draw from
 * [0, min(maxMs, initialMs·factor^retry)]. `random` returns a number in [0, 1).
 */
export function backoffDelay(retry: number, backoff: ResolvedBackoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** Math.min(Math.max(0, retry), 64));
  return Math.round(random() * ceiling);
}
