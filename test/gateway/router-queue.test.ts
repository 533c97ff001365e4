/**
 * The queue and the rate limiter on a fake clock: bounded per model, a deadline per wait,
 * arrival order without head-of-line blocking, waits that can never be served end at once;
 * token buckets refill at their rate and their table stays bounded.
 */
import { describe, expect, it } from 'vitest';
import { NightjarError } from '../../src/shared/index.js';
import { RateLimiter, Router, type QueueWaiter } from '../../src/gateway/index.js';
import { FakeClock } from './support/fake-clock.js';

function waiter(model: string, log: string[], name: string, state: { ready: boolean; viable?: boolean }): QueueWaiter {
  return {
    model,
    ready: () => state.ready,
    viable: () => state.viable ?? true,
    go: () => log.push(`go ${name}`),
    expire: (e) => log.push(`expire ${name} ${e.code} ${e.retryAfterMs}`),
  };
}

describe('router queue', () => {
  it('refuses past maxQueuePerModel with NJ_NO_CAPACITY and its retry hint, per model', () => {
    const r = new Router({ clock: new FakeClock(), maxQueuePerModel: 2, retryAfterMs: () => 1234 });
    const log: string[] = [];
    r.enqueue(waiter('m', log, 'a', { ready: false }));
    r.enqueue(waiter('m', log, 'b', { ready: false }));
    r.enqueue(waiter('n', log, 'c', { ready: false }));
    let err: unknown;
    try {
      r.enqueue(waiter('m', log, 'd', { ready: false }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NightjarError);
    expect({
      code: (err as NightjarError).code,
      message: (err as NightjarError).message,
      retry: (err as NightjarError).retryAfterMs,
    }).toEqual({
      code: 'NJ_NO_CAPACITY',
      message: 'every agent for m is busy and its queue is full',
      retry: 1234,
    });
    expect([r.depth('m'), r.depth('n'), r.depth()]).toEqual([2, 1, 3]);
  });

  it('ends a wait at queueTimeoutMs, and dispatches in arrival order without head-of-line blocking', () => {
    const clock = new FakeClock();
    const r = new Router({ clock, queueTimeoutMs: 1000 });
    const log: string[] = [];
    const a = { ready: false };
    const b = { ready: false };
    const c = { ready: false, viable: true };
    r.enqueue(waiter('m', log, 'a', a));
    r.enqueue(waiter('m', log, 'b', b));
    r.enqueue(waiter('m', log, 'c', c));
    b.ready = true;
    r.pump();
    expect(log).toEqual(['go b']); // a still waits; b does not wait behind it
    c.viable = false;
    r.pump();
    expect(log).toEqual(['go b', 'expire c NJ_NO_CAPACITY 1000']);
    clock.advance(999);
    expect(r.depth()).toBe(1);
    clock.advance(1);
    expect(log).toEqual(['go b', 'expire c NJ_NO_CAPACITY 1000', 'expire a NJ_NO_CAPACITY 1000']);
    expect([r.depth(), clock.pending]).toEqual([0, 0]);
  });

  it('removes a waiter whose client left, and its timer with it', () => {
    const clock = new FakeClock();
    const r = new Router({ clock });
    const w = waiter('m', [], 'a', { ready: false });
    r.enqueue(w);
    expect(r.remove(w)).toBe(true);
    expect(r.remove(w)).toBe(false);
    expect(clock.pending).toBe(0);
  });
});

describe('rate limiter', () => {
  it('lets a burst through, then one request per refill interval', () => {
    const clock = new FakeClock();
    const l = new RateLimiter({ clock, perSecond: 2, burst: 3 });
    expect([l.take('k'), l.take('k'), l.take('k')].every((t) => t.ok)).toBe(true);
    expect(l.take('k')).toEqual({ ok: false, retryAfterMs: 500 });
    clock.advance(499);
    expect(l.take('k').ok).toBe(false);
    clock.advance(2);
    expect(l.take('k').ok).toBe(true);
    expect(l.take('other').ok).toBe(true);
  });

  it('keeps at most maxEntries callers, dropping the longest idle', () => {
    const l = new RateLimiter({ clock: new FakeClock(), perSecond: 1, burst: 1, maxEntries: 100 });
    for (let i = 0; i < 1000; i++) l.take(`ip:${i}`);
    expect(l.size).toBe(100);
  });
});
