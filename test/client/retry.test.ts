/**
 * The SDK's retry policy as a table: which failures are sent again, how many times, how long the
 * wait is (the gateway's hint, else the shared backoff's full jitter), and the SDK drawing its
 * jitter from the injected random source.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RETRY_ON,
  NightjarClient,
  RETRY_DEFAULTS,
  resolveRetryPolicy,
  retryDelay,
  type RetryState,
} from '../../src/client/index.js';
import { NightjarError } from '../../src/shared/index.js';
import { ManualClock } from './support/net.js';

const failed = new NightjarError('NJ_AGENT_FAILED', 'every candidate failed');
const busy = (retryAfterMs: number): NightjarError => new NightjarError('NJ_NO_CAPACITY', 'busy', { retryAfterMs });
const unknown = new NightjarError('NJ_MODEL_UNKNOWN', 'no connected agent serves m yet', { retryAfterMs: 500 });
/** What a gateway past its agents' return window answers: no hint, so a model nobody serves. */
const unserved = new NightjarError('NJ_MODEL_UNKNOWN', 'no connected agent serves m');
/** The state after `sent` sends, none answered NJ_MODEL_UNKNOWN. */
const after = (sent: number): RetryState => ({ sent, modelUnknown: 0, elapsedMs: 0 });

describe('resolveRetryPolicy', () => {
  it('fills in the defaults once, and `false` turns retries off', () => {
    expect(resolveRetryPolicy(undefined)).toMatchObject({ ...RETRY_DEFAULTS, backoff: { initialMs: 250, maxMs: 5000, factor: 2 } });
    expect(RETRY_DEFAULTS).toEqual({ maxAttempts: 3, baseDelayMs: 250, maxDelayMs: 5000, retryOn: DEFAULT_RETRY_ON, modelUnknownMs: 6000 });
    expect(resolveRetryPolicy({ maxAttempts: 5, baseDelayMs: undefined })).toMatchObject({ maxAttempts: 5, baseDelayMs: 250 });
    const off = resolveRetryPolicy(false);
    expect(off.maxAttempts).toBe(1);
    expect(retryDelay(off, failed, after(1))).toBeNull();
  });

  it.each([0, 21, 1.5, Number.NaN])('refuses maxAttempts %s', (maxAttempts) => {
    expect(() => resolveRetryPolicy({ maxAttempts })).toThrow(expect.objectContaining({ code: 'NJ_CONFIG_INVALID' }));
  });
});

describe('retryDelay', () => {
  const policy = resolveRetryPolicy({ maxAttempts: 4, baseDelayMs: 200, maxDelayMs: 1000 });

  it.each([
    // sent, random → wait: a uniform draw below min(maxDelayMs, baseDelayMs·2^(sent−1)).
    [1, 0, 0],
    [1, 0.5, 100],
    [1, 0.999, 200],
    [2, 0.5, 200],
    [3, 0.999, 799],
    [3, 0.5, 400],
  ])('without a hint, after send %i with random %f, waits %i ms', (sent, r, wait) => {
    expect(retryDelay(policy, failed, after(sent), () => r)).toBe(wait);
  });

  it('never waits past maxDelayMs when the ceiling grows beyond it', () => {
    const long = resolveRetryPolicy({ maxAttempts: 20, baseDelayMs: 200, maxDelayMs: 1000 });
    expect(retryDelay(long, failed, after(10), () => 0.999)).toBe(999);
  });

  it("honours the gateway's hint, and gives up on a hint longer than maxDelayMs", () => {
    expect(retryDelay(policy, busy(750), after(1), () => 0)).toBe(750);
    expect(retryDelay(policy, busy(1000), after(1))).toBe(1000);
    expect(retryDelay(policy, busy(1001), after(1))).toBeNull();
  });

  it('sends no more than maxAttempts times, and retries only the codes listed', () => {
    expect(retryDelay(policy, failed, after(3), () => 0.5)).not.toBeNull();
    expect(retryDelay(policy, failed, after(4), () => 0.5)).toBeNull();
    for (const code of ['NJ_BAD_REQUEST', 'NJ_TRUST_POLICY', 'NJ_CANCELLED', 'NJ_PINNED_KEY_CHANGED'] as const) {
      expect(retryDelay(policy, new NightjarError(code, 'no'), after(1))).toBeNull();
    }
    const narrow = resolveRetryPolicy({ retryOn: ['NJ_DECLINED'] });
    expect(retryDelay(narrow, failed, after(1))).toBeNull();
    expect(retryDelay(narrow, new NightjarError('NJ_DECLINED', 'no'), after(1), () => 0)).toBe(0);
  });
});

describe('a model the gateway does not know (yet)', () => {
  const policy = resolveRetryPolicy({ baseDelayMs: 200, maxDelayMs: 1000 });
  const state = (modelUnknown: number, elapsedMs: number, sent = modelUnknown): RetryState => ({ sent, modelUnknown, elapsedMs });

  it('is sent again after the hinted wait while that wait ends within modelUnknownMs of the first send', () => {
    expect(RETRY_DEFAULTS.modelUnknownMs).toBe(6000);
    expect(DEFAULT_RETRY_ON).toContain('NJ_MODEL_UNKNOWN');
    expect(retryDelay(policy, unknown, state(1, 0), () => 0.5)).toBe(500);
    // Not counted against maxAttempts (3): the tenth send still goes, 5.5 s in.
    expect(retryDelay(policy, unknown, state(10, 5500), () => 0.5)).toBe(500);
    // A wait that would end past the window is not taken; after it, the error stands.
    expect(retryDelay(policy, unknown, state(11, 5600), () => 0.5)).toBeNull();
    expect(retryDelay(policy, unknown, state(11, 6000), () => 0.5)).toBeNull();
  });

  // Fails if an unhinted NJ_MODEL_UNKNOWN is retried: a misspelt model would take modelUnknownMs to fail.
  it('is final without the gateway hint: a model nobody serves fails at once', () => {
    expect(retryDelay(policy, unserved, state(1, 0), () => 0.5)).toBeNull();
  });

  it('counts only its own sends in the window, and the other codes keep their maxAttempts', () => {
    // Three "unknown" sends and a second failed one: its wait is the second ceiling (400); a third
    // failure is the last (maxAttempts 3).
    expect(retryDelay(policy, failed, state(3, 1000, 5), () => 0.5)).toBe(200);
    expect(retryDelay(policy, failed, state(3, 1000, 6), () => 0.5)).toBeNull();
    // A gateway hint is taken if it ends inside the window, else the error stands.
    const hinted = new NightjarError('NJ_MODEL_UNKNOWN', 'no', { retryAfterMs: 800 });
    expect(retryDelay(policy, hinted, state(1, 0))).toBe(800);
    expect(retryDelay(policy, hinted, state(1, 5000))).toBe(800);
    expect(retryDelay(policy, hinted, state(1, 5500))).toBeNull();
  });

  it('is off with modelUnknownMs 0, without the code in retryOn, with maxAttempts 1 or retry: false', () => {
    expect(retryDelay(resolveRetryPolicy({ modelUnknownMs: 0 }), unknown, state(1, 0))).toBeNull();
    expect(retryDelay(resolveRetryPolicy({ retryOn: ['NJ_NO_CAPACITY'] }), unknown, state(1, 0))).toBeNull();
    expect(retryDelay(resolveRetryPolicy({ maxAttempts: 1 }), unknown, state(1, 0))).toBeNull();
    expect(retryDelay(resolveRetryPolicy(false), unknown, state(1, 0))).toBeNull();
  });

  it.each([-1, 60_001, Number.NaN])('refuses modelUnknownMs %s', (modelUnknownMs) => {
    expect(() => resolveRetryPolicy({ modelUnknownMs })).toThrow(expect.objectContaining({ code: 'NJ_CONFIG_INVALID' }));
  });
});

describe('the SDK waiting to retry', () => {
  it('draws the wait from its injected random source when the gateway gives no hint', async () => {
    const clock = new ManualClock();
    // A gateway that answers everything with "every candidate failed", without a hint.
    const gateway: typeof fetch = async () => Response.json({ error: { code: 'NJ_AGENT_FAILED', message: 'gone' } }, { status: 502 });
    const client = new NightjarClient({ gatewayUrl: 'http://gateway.test', fetch: gateway, clock, random: () => 0.5 });
    const waits: number[] = [];
    const pending = client
      .complete({ model: 'm', messages: [{ role: 'user', content: 'x' }], onRetry: (r) => waits.push(r.delayMs) })
      .catch((e: unknown) => e);
    expect(await clock.nextTimer()).toBe(125);
    clock.fire();
    expect(await clock.nextTimer()).toBe(250);
    clock.fire();
    expect(await pending).toMatchObject({ code: 'NJ_AGENT_FAILED' });
    expect(waits).toEqual([125, 250]);
    // Three sends in all (maxAttempts): no third wait.
    expect(clock.timers).toEqual([]);
  });

  it('stops waiting, cancelled, when the request is aborted during the wait', async () => {
    const clock = new ManualClock();
    const gateway: typeof fetch = async () => Response.json({ error: { code: 'NJ_AGENT_FAILED', message: 'gone' } }, { status: 502 });
    const controller = new AbortController();
    const client = new NightjarClient({ gatewayUrl: 'http://gateway.test', fetch: gateway, clock });
    const pending = client
      .complete({ model: 'm', messages: [{ role: 'user', content: 'x' }], signal: controller.signal })
      .catch((e: unknown) => e);
    await clock.nextTimer();
    controller.abort();
    expect(await pending).toMatchObject({ code: 'NJ_CANCELLED', message: 'the request was cancelled' });
    expect(clock.timers).toEqual([]);
  });
});
