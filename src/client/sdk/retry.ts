/**
 * The SDK's retry policy: which failures are worth sending the request again, and how long to
 * wait first. A retry only ever happens before the first chunk of a reply reached the client —
 * once text has been delivered, another agent's reply cannot be spliced onto it. The wait is the
 * gateway's hint when it gives one, else Nightjar's one backoff (full jitter, src/shared).
 *
 * A model the gateway does not list (NJ_MODEL_UNKNOWN) is retried by time rather than by count,
 * and only when the gateway hints a wait: a gateway that has just restarted lists a model only
 * once an agent serving it is back (within 5 s of its return with the agents' default reconnect
 * timing), and says so with retryAfterMs during its first seconds (its agentReturnMs). Such a
 * request is sent again, after each hinted wait, for up to `modelUnknownMs` from its first send.
 * Without the hint the model is one nobody serves, and the error is returned at once.
 */
import { NightjarError, backoffDelay, resolveBackoff, withDefaults, type ErrorCode, type ResolvedBackoff } from '../../shared/index.js';

/**
 * When the client sends a request again. Each retry asks the gateway for fresh candidates,
 * verifies their bundles and seals the request anew under a fresh jobId and content key.
 */
export interface RetryPolicy {
  /**
   * Sends of one request, the first included, not counting those answered NJ_MODEL_UNKNOWN (see
   * modelUnknownMs); 1 turns every retry off. Defaults to 3.
   */
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
  /**
   * How long after its first send a request for a model the gateway does not list yet
   * (NJ_MODEL_UNKNOWN with a retry hint, when `retryOn` has it) is still sent again: long enough
   * for a restarted gateway's agents to come back. Without the hint it is not sent again. These
   * sends do not count against maxAttempts; a hinted wait that would end after this time is not
   * waited for. 0 turns them off. Defaults to 6 000 ms.
   */
  modelUnknownMs?: number;
}

/**
 * Codes retried by default, each only before the first chunk:
 * - NJ_NO_CAPACITY: every candidate is busy, or the agents the request was sealed for have gone
 *   (the gateway's answer to a stale candidate list); the gateway hints how long to wait.
 * - NJ_SHUTTING_DOWN: the gateway is restarting.
 * - NJ_NOT_A_RECIPIENT: an agent rotated its box key after the client fetched its bundle.
 * - NJ_ENGINE_BUSY, NJ_DECLINED: the gateway tried every candidate and each turned the job down.
 * - NJ_AGENT_FAILED: every candidate failed before producing a chunk.
 * - NJ_MODEL_UNKNOWN: no connected agent serves the model — only when the gateway hints a wait
 *   (it has just started and its agents are reconnecting), and for `modelUnknownMs` only.
 */
export const DEFAULT_RETRY_ON: readonly ErrorCode[] = [
  'NJ_NO_CAPACITY',
  'NJ_SHUTTING_DOWN',
  'NJ_NOT_A_RECIPIENT',
  'NJ_ENGINE_BUSY',
  'NJ_DECLINED',
  'NJ_AGENT_FAILED',
  'NJ_MODEL_UNKNOWN',
];

/** The defaults of {@link RetryPolicy}. */
export const RETRY_DEFAULTS: Readonly<Required<RetryPolicy>> = {
  maxAttempts: 3,
  baseDelayMs: 250,
  maxDelayMs: 5000,
  retryOn: DEFAULT_RETRY_ON,
  modelUnknownMs: 6000,
};

/** Where a request stands after a failed send: what {@link retryDelay} decides from. */
export interface RetryState {
  /** Sends so far, the failed one included. */
  sent: number;
  /** Of those, the sends that failed with NJ_MODEL_UNKNOWN (bounded by modelUnknownMs, not maxAttempts). */
  modelUnknown: number;
  /** Time since the first send began, in ms. */
  elapsedMs: number;
}

/** A retry policy with every default filled in, and the backoff it draws waits from. */
export interface ResolvedRetryPolicy extends Readonly<Required<RetryPolicy>> {
  /** baseDelayMs and maxDelayMs as the shared backoff's timing (factor 2). */
  readonly backoff: ResolvedBackoff;
}

/** Fills in the defaults of `policy`, once; `false` means no retries. */
export function resolveRetryPolicy(policy: RetryPolicy | false | undefined): ResolvedRetryPolicy {
  const o =
    policy === false
      ? { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0, retryOn: [], modelUnknownMs: 0 }
      : withDefaults(RETRY_DEFAULTS, policy);
  if (!Number.isInteger(o.maxAttempts) || o.maxAttempts < 1 || o.maxAttempts > 20) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'retry.maxAttempts must be an integer from 1 to 20');
  }
  if (!(o.modelUnknownMs >= 0 && o.modelUnknownMs <= 60_000)) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'retry.modelUnknownMs must be from 0 to 60000 ms');
  }
  const backoff = resolveBackoff({ initialMs: o.baseDelayMs, maxMs: o.maxDelayMs, factor: 2 });
  return {
    maxAttempts: o.maxAttempts,
    baseDelayMs: backoff.initialMs,
    maxDelayMs: backoff.maxMs,
    retryOn: o.retryOn,
    modelUnknownMs: o.modelUnknownMs,
    backoff,
  };
}

/**
 * How long to wait before the next send after `error`, or null if the request must not be sent
 * again: the code is not retryable, the attempts are used up, or the gateway hints a wait beyond
 * maxDelayMs. Without a hint the wait is a uniform draw from [0, min(maxDelayMs,
 * baseDelayMs·2^(n−1))], n counting the sends that count (full jitter); `random` returns a number
 * in [0, 1). NJ_MODEL_UNKNOWN instead is sent again only after the gateway's hinted wait, and only
 * while that wait ends within modelUnknownMs of the first send; without a hint it is final.
 */
export function retryDelay(
  policy: ResolvedRetryPolicy,
  error: NightjarError,
  state: RetryState,
  random: () => number = Math.random,
): number | null {
  if (policy.maxAttempts <= 1 || !policy.retryOn.includes(error.code)) return null;
  if (error.code === 'NJ_MODEL_UNKNOWN') {
    const left = policy.modelUnknownMs - state.elapsedMs;
    if (left <= 0) return null;
    // Only a gateway that expects agents back hints a wait; without one the model is simply not served.
    if (error.retryAfterMs === undefined) return null;
    return error.retryAfterMs <= Math.min(left, policy.maxDelayMs) ? error.retryAfterMs : null;
  }
  const counted = state.sent - state.modelUnknown;
  if (counted >= policy.maxAttempts) return null;
  if (error.retryAfterMs !== undefined) return error.retryAfterMs <= policy.maxDelayMs ? error.retryAfterMs : null;
  return backoffDelay(counted - 1, policy.backoff, random);
}
