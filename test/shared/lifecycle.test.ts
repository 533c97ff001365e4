import { describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_BACKOFF,
  DisposableStore,
  Emitter,
  NightjarError,
  Resource,
  backoffDelay,
  delay,
  nextEvent,
  raceClock,
  resolveBackoff,
  toDisposable,
  withDefaults,
} from '../../src/shared/index.js';
import { ManualClock } from '../main/support/manual-clock.js';

describe('DisposableStore', () => {
  it('disposes its children last added first, awaiting each, once', async () => {
    const order: string[] = [];
    const store = new DisposableStore();
    store.add(() => void order.push('fn'));
    store.add({ dispose: async () => void order.push('async') });
    store.add({ [Symbol.asyncDispose]: async () => void order.push('asyncDispose') });
    await store.dispose();
    await store.dispose();
    expect(order).toEqual(['asyncDispose', 'async', 'fn']);
    expect(store.isDisposed).toBe(true);
  });

  it('disposes every child even when some fail, then reports all failures', async () => {
    const store = new DisposableStore();
    const last = vi.fn();
    store.add(last);
    store.add(() => {
      throw new Error('one');
    });
    store.add(async () => Promise.reject(new Error('two')));
    const err = await store.dispose().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors.map((e: Error) => e.message)).toEqual(['two', 'one']);
    expect(last).toHaveBeenCalledOnce();
  });

  it('disposes at once what is added after it was disposed, and forgets what is deleted', async () => {
    const store = new DisposableStore();
    const kept = vi.fn();
    const forgotten = store.add(vi.fn());
    store.add(kept);
    store.delete(forgotten);
    await store.dispose();
    expect(forgotten).not.toHaveBeenCalled();
    const late = vi.fn();
    store.add(late);
    await Promise.resolve();
    expect(late).toHaveBeenCalledOnce();
  });

  it('toDisposable calls its function once', async () => {
    const fn = vi.fn();
    const d = toDisposable(fn);
    await d.dispose();
    await d.dispose();
    expect(fn).toHaveBeenCalledOnce();
  });
});

describe('Resource', () => {
  class Holder extends Resource {
    readonly order: string[] = [];
    constructor() {
      super();
      this.disposables.add(() => void this.order.push('child'));
    }
    protected override async onDispose(): Promise<void> {
      this.order.push('self');
    }
  }

  it('runs onDispose before its children, once, for dispose() and await using alike', async () => {
    const h = new Holder();
    const first = h.dispose();
    expect(h.dispose()).toBe(first);
    await h[Symbol.asyncDispose]();
    expect(h.order).toEqual(['self', 'child']);
    expect(h.isDisposed).toBe(true);
  });
});

describe('Emitter', () => {
  it('fires to listeners in order; a disposed subscription hears nothing more', () => {
    const e = new Emitter<number>();
    const heard: string[] = [];
    const a = e.event((v) => heard.push(`a${v}`));
    e.event((v) => heard.push(`b${v}`));
    e.fire(1);
    a.dispose();
    e.fire(2);
    expect(heard).toEqual(['a1', 'b1', 'b2']);
    expect(e.listenerCount).toBe(1);
  });

  it('a listener that throws does not stop the others, and its error goes to onListenerError', () => {
    const errors: unknown[] = [];
    const e = new Emitter<string>({ onListenerError: (err) => errors.push(err) });
    const heard: string[] = [];
    e.event(() => {
      throw new Error('bad listener');
    });
    e.event((v) => heard.push(v));
    e.fire('x');
    expect(heard).toEqual(['x']);
    expect((errors[0] as Error).message).toBe('bad listener');
  });

  it('drops its listeners when disposed', () => {
    const e = new Emitter<void>();
    const fn = vi.fn();
    e.event(fn);
    e.dispose();
    e.event(fn);
    e.fire();
    expect(fn).not.toHaveBeenCalled();
    expect(e.listenerCount).toBe(0);
  });
});

describe('nextEvent', () => {
  it('resolves with the first value that passes the filter and unsubscribes', async () => {
    const e = new Emitter<number>();
    const next = nextEvent(e.event, (v) => v > 1);
    e.fire(1);
    e.fire(2);
    e.fire(3);
    await expect(next).resolves.toBe(2);
    expect(e.listenerCount).toBe(0);
  });

  it('times out on the injected clock with NJ_TIMEOUT naming what it waited for', async () => {
    const clock = new ManualClock(0);
    const e = new Emitter<number>();
    const next = nextEvent(e.event, undefined, { clock, timeoutMs: 1000, what: 'the agent' });
    clock.advance(999);
    e.fire(1);
    await expect(next).resolves.toBe(1);
    const late = nextEvent(e.event, undefined, { clock, timeoutMs: 1000, what: 'the agent' });
    clock.advance(1000);
    const err = await late.catch((x: unknown) => x);
    expect(err).toBeInstanceOf(NightjarError);
    expect((err as NightjarError).code).toBe('NJ_TIMEOUT');
    expect((err as NightjarError).message).toBe('the agent did not happen within 1000 ms');
    expect(e.listenerCount).toBe(0);
    expect(clock.pending()).toEqual([]);
  });

  it('rejects with NJ_CANCELLED when its signal aborts', async () => {
    const e = new Emitter<number>();
    const ac = new AbortController();
    const next = nextEvent(e.event, undefined, { signal: ac.signal, what: 'x' });
    ac.abort();
    await expect(next).rejects.toMatchObject({ code: 'NJ_CANCELLED' });
    expect(e.listenerCount).toBe(0);
  });
});

describe('delay and raceClock', () => {
  it('delay waits on the injected clock and is cancelled by its signal', async () => {
    const clock = new ManualClock(0);
    let done = false;
    const d = delay(clock, 500).then(() => (done = true));
    clock.advance(499);
    await Promise.resolve();
    expect(done).toBe(false);
    clock.advance(1);
    await d;
    expect(done).toBe(true);
    const ac = new AbortController();
    const cancelled = delay(clock, 500, ac.signal);
    ac.abort();
    await expect(cancelled).rejects.toMatchObject({ code: 'NJ_CANCELLED' });
    expect(clock.pending()).toEqual([]);
  });

  it('raceClock gives the value in time, or says the time ran out (the work carries on)', async () => {
    const clock = new ManualClock(0);
    await expect(raceClock(clock, 100, Promise.resolve(7))).resolves.toEqual({ done: true, value: 7 });
    expect(clock.pending()).toEqual([]);
    const never = new Promise<number>(() => undefined);
    const raced = raceClock(clock, 100, never);
    clock.advance(100);
    await expect(raced).resolves.toEqual({ done: false });
    await expect(raceClock(clock, 100, Promise.reject(new Error('no')))).rejects.toThrow('no');
  });
});

describe('backoff', () => {
  it('draws a full-jitter delay under a ceiling that grows by the factor up to maxMs', () => {
    const b = resolveBackoff({ initialMs: 100, maxMs: 1000, factor: 3 });
    expect([0, 1, 2, 3].map((n) => backoffDelay(n, b, () => 0.999999))).toEqual([100, 300, 900, 1000]);
    expect(backoffDelay(5, b, () => 0)).toBe(0);
    expect(backoffDelay(1, b, () => 0.5)).toBe(150);
    expect(backoffDelay(10_000, b, () => 0.5)).toBe(500);
  });

  it('fills in the defaults once and clamps nonsense', () => {
    expect(resolveBackoff()).toEqual(DEFAULT_BACKOFF);
    expect(resolveBackoff({ initialMs: -5, factor: 0.5 })).toEqual({ initialMs: 0, maxMs: 30_000, factor: 1 });
  });
});

describe('withDefaults', () => {
  it('takes each option unless it is missing or undefined, and keeps fields the defaults lack', () => {
    const defaults = { port: 8787, host: '127.0.0.1', retries: 3 };
    expect(withDefaults(defaults, { port: 0, host: undefined, extra: true } as Partial<typeof defaults>)).toEqual({
      port: 0,
      host: '127.0.0.1',
      retries: 3,
      extra: true,
    });
    expect(withDefaults(defaults, undefined)).toEqual(defaults);
    expect(withDefaults(defaults, {})).not.toBe(defaults);
  });
});

describe('Emitter subscriptions during a fire', () => {
  it('a listener subscribed while firing hears the next value, not this one; one that leaves still heard this one', () => {
    const e = new Emitter<number>();
    const heard: string[] = [];
    const first = e.event((v) => {
      heard.push(`first ${v}`);
      if (v === 1) e.event((w) => heard.push(`late ${w}`));
    });
    e.fire(1);
    e.fire(2);
    first.dispose();
    e.fire(3);
    expect(heard).toEqual(['first 1', 'first 2', 'late 2', 'late 3']);
  });

  it('the same function subscribed twice is called twice, and each subscription removes one', () => {
    const e = new Emitter<void>();
    const fn = vi.fn();
    const a = e.event(fn);
    e.event(fn);
    e.fire();
    a.dispose();
    a.dispose();
    e.fire();
    expect(fn).toHaveBeenCalledTimes(3);
    expect(e.listenerCount).toBe(1);
  });
});
