/**
 * The shared rate limits' cluster options: their defaults, and the values resolveGatewayOptions
 * refuses (NJ_CONFIG_INVALID, with what to fix) before any node starts.
 */
import { describe, expect, it } from 'vitest';
import { CLUSTER_DEFAULTS, resolveGatewayOptions, type ClusterOptions } from '../../src/gateway/index.js';
import { NightjarError } from '../../src/shared/index.js';

function refusal(cluster: ClusterOptions): NightjarError {
  try {
    resolveGatewayOptions({ cluster });
  } catch (err) {
    expect(err).toBeInstanceOf(NightjarError);
    return err as NightjarError;
  }
  throw new Error('resolved');
}

describe('the shared rate limits’ options', () => {
  it('default to the limits bucket, 250 ms per operation, 1 s back-off, 5 attempts and 10 000 callers in flight', () => {
    const c = resolveGatewayOptions({ cluster: { nodeId: 'gw-1' } }).cluster!;
    expect({
      limitsBucket: c.limitsBucket,
      rateLimitTimeoutMs: c.rateLimitTimeoutMs,
      rateLimitRetryMs: c.rateLimitRetryMs,
      rateLimitCasAttempts: c.rateLimitCasAttempts,
      rateLimitMaxPending: c.rateLimitMaxPending,
    }).toEqual({
      limitsBucket: 'nightjar_limits',
      rateLimitTimeoutMs: 250,
      rateLimitRetryMs: 1000,
      rateLimitCasAttempts: 5,
      rateLimitMaxPending: 10_000,
    });
    expect(CLUSTER_DEFAULTS.limitsBucket).toBe('nightjar_limits');
  });

  // Fails without the checks in resolveCluster: a 0 timeout would send every take to the node's bucket.
  it('refuses a zero, negative or fractional figure and a bucket name NATS cannot take', () => {
    for (const bad of [
      { rateLimitTimeoutMs: 0 },
      { rateLimitRetryMs: -1 },
      { rateLimitCasAttempts: 1.5 },
      { rateLimitMaxPending: 0 },
    ] satisfies ClusterOptions[]) {
      const err = refusal(bad);
      expect({ code: err.code, message: err.message }).toEqual({
        code: 'NJ_CONFIG_INVALID',
        message:
          'cluster: rateLimitTimeoutMs, rateLimitRetryMs, rateLimitCasAttempts and rateLimitMaxPending must be positive whole numbers',
      });
    }
    const err = refusal({ limitsBucket: 'a.b' });
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_CONFIG_INVALID',
      message: 'cluster: presenceBucket, limitsBucket and subjectPrefix are letters, digits, _ and - only',
    });
  });
});

describe('the other cluster options', () => {
  // Fails without the checks in resolveCluster for kvReplicas and lateReceiptWaitMs.
  it('default kvReplicas to 1 and lateReceiptWaitMs to 15 s; refuse replicas outside 1–5 and a negative wait', () => {
    const c = resolveGatewayOptions({ cluster: { nodeId: 'gw-1' } }).cluster!;
    expect({ kvReplicas: c.kvReplicas, lateReceiptWaitMs: c.lateReceiptWaitMs, natsToken: c.natsToken }).toEqual({
      kvReplicas: 1,
      lateReceiptWaitMs: 15_000,
      natsToken: null,
    });
    for (const kvReplicas of [0, 6, 2.5]) {
      expect(refusal({ kvReplicas }).message).toBe('cluster: kvReplicas must be an integer from 1 to 5');
    }
    expect(refusal({ lateReceiptWaitMs: -1 }).message).toBe('cluster: lateReceiptWaitMs must be 0 or more');
  });
});
