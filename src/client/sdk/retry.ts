/**
 * The SDK's retry policy: which failures are worth sending the request again, and how long to
 * wait first. A retry only ever happens before the first chunk of a reply reached the client —
 * once text has been delivered, another agent's reply cannot be spliced onto it.
 */
import { NightjarError, type Clock, type ErrorCode } from '../../shared/index.js';

/**
 * When the client sends a request again. Each retry asks the gateway for fresh candidates,
 * verifies their bundles and seals the request anew under a fresh jobId and content key.
 */
export interface RetryPolicy {
  /** Sends of one request, the first included; 1 turns retries off. Defaults to 3. */
  maxAttempts?: number;
  /** Wait before the first retry when the gateway gives no hint; doubles each time. Defaults to 250 ms. */
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

/** A retry policy with every default filled in. */
export type ResolvedRetryPolicy = Required<RetryPolicy>;

/** Fills in the defaults of `policy`; `false` means no retries. */
export function resolveRetryPolicy(policy: RetryPolicy | false | undefined): ResolvedRetryPolicy {
  if (policy === false) return { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0, retryOn: [] };
  const maxAttempts = policy?.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 20) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'retry.maxAttempts must be an integer from 1 to 20');
  }
  return {
    maxAttempts,
    baseDelayMs: Math.max(0, policy?.baseDelayMs ?? 250),
    maxDelayMs: Math.max(0, policy?.maxDelayMs ?? 5000),
    retryOn: policy?.retryOn ?? DEFAULT_RETRY_ON,
  };
}

/**
 * How long to wait before send number `sent + 1` after `error`, or null if the request must not
 * be sent again (code not retryable, attempts used up, or a hint beyond maxDelayMs).
 */
export function retryDelay(policy: ResolvedRetryPolicy, error: NightjarError, sent: number): number | null {
  if (sent >= policy.maxAttempts || !policy.retryOn.includes(error.code)) return null;
  if (error.retryAfterMs !== undefined) return error.retryAfterMs <= policy.maxDelayMs ? error.retryAfterMs : null;
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (sent - 1));
}

/** Resolves after `ms` on `clock`; rejects with NJ_CANCELLED as soon as `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = (): NightjarError => new NightjarError('NJ_CANCELLED', 'the request was cancelled');
    if (signal.aborted) {
      reject(cancelled());
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      reject(cancelled());
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
