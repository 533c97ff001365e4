/**
 * The SDK's retry policy: which failures are worth sending the request again, and how long to
 * wait first. A retry only ever happens before the first chunk of a reply reached the client —
 * once text has been delivered, another agent's reply cannot be spliced onto it. The wait is the
 * gateway's hint when it gives one, else Nightjar's one backoff (full jitter, src/shared).
 */
import { NightjarError, backoffDelay, resolveBackoff, withDefaults, type ErrorCode, type ResolvedBackoff } from '../../shared/index.js';

/**
 * When the client sends a request again. Each retry asks the gateway for fresh candidates,
 * verifies their bundles and seals the request anew under a fresh jobId and content key.
 */
export interface RetryPolicy {
  /** Sends of one request, the first included; 1 turns retries off. Defaults to 3. */
  maxAttempts?: number;
  /**
   * Ceiling of the wait before the first retry when the gateway gives no hint; the ceiling
   * doubles each time and the wait is drawn below it (full jitter). Defaults to 250 ms.
   */
  baseDelayMs?: number;
  /**
   * Longest wait. A gateway hint (retryAfterMs) longer than this is not waited for: the error
   * is returned instead. Defaults to 5 000 ms.
   */
  maxDelayMs?: number;
  /** Error codes that are retried. Defaults to {@link DEFAULT_RETRY_ON}. */
  retryOn?: readonly ErrorCode[];
}

/**
 * Codes retried by default, each only before the first chunk:
 * - NJ_NO_CAPACITY: every candidate is busy, or the agents the request was sealed for have gone
 *   (the gateway's answer to a stale candidate list); the gateway hints how long to wait.
 * - NJ_SHUTTING_DOWN: the gateway is restarting.
 * - NJ_NOT_A_RECIPIENT: an agent rotated its box key after the client fetched its bundle.
 * - NJ_ENGINE_BUSY, NJ_DECLINED: the gateway tried every candidate and each turned the job down.
 * - NJ_AGENT_FAILED: every candidate failed before producing a chunk.
 */
export const DEFAULT_RETRY_ON: readonly ErrorCode[] = [
  'NJ_NO_CAPACITY',
  'NJ_SHUTTING_DOWN',
  'NJ_NOT_A_RECIPIENT',
  'NJ_ENGINE_BUSY',
  'NJ_DECLINED',
  'NJ_AGENT_FAILED',
];

/** The defaults of {@link RetryPolicy}. */
export const RETRY_DEFAULTS: Readonly<Required<RetryPolicy>> = {
  maxAttempts: 3,
  baseDelayMs: 250,
  maxDelayMs: 5000,
  retryOn: DEFAULT_RETRY_ON,
};

/** A retry policy with every default filled in, and the backoff it draws waits from. */
export interface ResolvedRetryPolicy extends Readonly<Required<RetryPolicy>> {
  /** baseDelayMs and maxDelayMs as the shared backoff's timing (factor 2). */
  readonly backoff: ResolvedBackoff;
}

/** Fills in the defaults of `policy`, once; `false` means no retries. */
export function resolveRetryPolicy(policy: RetryPolicy | false | undefined): ResolvedRetryPolicy {
  const o = policy === false ? { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0, retryOn: [] } : withDefaults(RETRY_DEFAULTS, policy);
  if (!Number.isInteger(o.maxAttempts) || o.maxAttempts < 1 || o.maxAttempts > 20) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'retry.maxAttempts must be an integer from 1 to 20');
  }
  const backoff = resolveBackoff({ initialMs: o.baseDelayMs, maxMs: o.maxDelayMs, factor: 2 });
  return { maxAttempts: o.maxAttempts, baseDelayMs: backoff.initialMs, maxDelayMs: backoff.maxMs, retryOn: o.retryOn, backoff };
}

/**
 * How long to wait before send number `sent + 1` after `error`, or null if the request must not
 * be sent again (code not retryable, attempts used up, or a hint beyond maxDelayMs). Without a
 * hint the wait is a uniform draw from [0, min(maxDelayMs, baseDelayMs·2^(sent−1))]; `random`
 * returns a number in [0, 1).
 */
export function retryDelay(
  policy: ResolvedRetryPolicy,
  error: NightjarError,
  sent: number,
  random: () => number = Math.random,
): number | null {
  if (sent >= policy.maxAttempts || !policy.retryOn.includes(error.code)) return null;
  if (error.retryAfterMs !== undefined) return error.retryAfterMs <= policy.maxDelayMs ? error.retryAfterMs : null;
  return backoffDelay(sent - 1, policy.backoff, random);
}
