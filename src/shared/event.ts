/**
 * Events: an {@link Emitter} fires values to listeners; subscribing returns a {@link Disposable}
 * that unsubscribes. Code awaits an event ({@link nextEvent}) instead of polling for a state, and
 * every wait that can time out runs on the injected {@link Clock} ({@link delay}, {@link raceClock}).
 */
import type { Clock } from './clock.js';
import { NightjarError, errorMessage } from './errors.js';
import type { Logger } from './log.js';
import type { Disposable } from './lifecycle.js';

/** Subscribes `listener`; dispose the result to unsubscribe. */
export type Event<T> = (listener: (value: T) => void) => Disposable;

/** Options of {@link Emitter}. */
export interface EmitterOptions {
  /**
   * Receives an error a listener threw (the other listeners still run). Defaults to rethrowing it
   * on a fresh task, where the process's uncaught-exception handling sees it.
   */
  onListenerError?: (err: unknown) => void;
}

const rethrowLater = (err: unknown): void => {
  queueMicrotask(() => {
    throw err;
  });
};

const NO_SUBSCRIPTION: Disposable = { dispose: () => undefined };

/**
 * Fires values of type T to its listeners, in the order they subscribed. Light enough to hold
 * several per connection: the listener list and the `event` function are made on first use.
 */
export class Emitter<T> implements Disposable {
  #listeners: ((value: T) => void)[] | null = null;
  #event: Event<T> | null = null;
  readonly #onError: (err: unknown) => void;
  #disposed = false;

  constructor(options: EmitterOptions = {}) {
    this.#onError = options.onListenerError ?? rethrowLater;
  }

  /** The subscription function handed to listeners (the same function every time). */
  get event(): Event<T> {
    return (this.#event ??= (listener) => this.#subscribe(listener));
  }

  #subscribe(listener: (value: T) => void): Disposable {
    if (this.#disposed) return NO_SUBSCRIPTION;
    // A listener subscribed twice is called twice; each subscription removes one of its entries.
    // Most events have one listener: an array literal holds exactly it, where push() on an empty
    // array reserves 17 slots (136 bytes per emitter, and there are several per agent on a gateway).
    if (this.#listeners) this.#listeners.push(listener);
    else this.#listeners = [listener];
    let subscribed = true;
    return {
      dispose: () => {
        if (!subscribed) return;
        subscribed = false;
        const i = this.#listeners?.indexOf(listener) ?? -1;
        if (i >= 0) this.#listeners!.splice(i, 1);
      },
    };
  }

  /** Listeners subscribed now. */
  get listenerCount(): number {
    return this.#listeners?.length ?? 0;
  }

  /**
   * Calls every listener with `value`, those subscribed when it was called: one that subscribes
   * meanwhile hears the next value. A listener that throws does not stop the others.
   */
  fire(value: T): void {
    const listeners = this.#listeners;
    if (!listeners || listeners.length === 0) return;
    if (listeners.length === 1) this.#call(listeners[0]!, value);
    else for (const listener of listeners.slice()) this.#call(listener, value);
  }

  #call(listener: (value: T) => void, value: T): void {
    try {
      listener(value);
    } catch (err) {
      this.#onError(err);
    }
  }

  /** Drops every listener; later subscriptions do nothing. */
  dispose(): void {
    this.#disposed = true;
    this.#listeners = null;
  }
}

/**
 * An emitter whose throwing listeners are logged on `log` as "an event listener failed", naming
 * `what` (the other listeners still run, and the process carries on).
 */
export function loggedEmitter<T>(log: Logger, what: string): Emitter<T> {
  return new Emitter<T>({ onListenerError: (err) => log.error('an event listener failed', { event: what, err: errorMessage(err) }) });
}

/** Options of {@link nextEvent}. */
export interface NextEventOptions {
  /** With `timeoutMs`: the clock the timeout runs on. */
  clock?: Clock;
  /** Give up after this long (needs `clock`), rejecting with NJ_TIMEOUT naming `what`. Defaults to never. */
  timeoutMs?: number;
  /** Rejects with NJ_CANCELLED when aborted. Defaults to none. */
  signal?: AbortSignal;
  /** What is awaited, for the timeout's message. Defaults to 'the event'. */
  what?: string;
}

/** Resolves with the next value `event` fires that satisfies `accept` (every value by default). */
export function nextEvent<T>(event: Event<T>, accept: (value: T) => boolean = () => true, options: NextEventOptions = {}): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const { clock, timeoutMs, signal } = options;
    if (signal?.aborted) return reject(new NightjarError('NJ_CANCELLED', `stopped waiting for ${options.what ?? 'the event'}`));
    const cleanup = (): void => {
      subscription.dispose();
      if (timer !== null && clock) clock.clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      cleanup();
      reject(new NightjarError('NJ_CANCELLED', `stopped waiting for ${options.what ?? 'the event'}`));
    };
    const subscription = event((value) => {
      if (!accept(value)) return;
      cleanup();
      resolve(value);
    });
    const timer =
      clock && timeoutMs !== undefined
        ? clock.setTimeout(() => {
            cleanup();
            reject(new NightjarError('NJ_TIMEOUT', `${options.what ?? 'the event'} did not happen within ${timeoutMs} ms`));
          }, timeoutMs)
        : null;
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves after `ms` on `clock`; rejects with NJ_CANCELLED as soon as `signal` aborts. */
export function delay(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = (): NightjarError => new NightjarError('NJ_CANCELLED', 'the wait was cancelled');
    if (signal?.aborted) return reject(cancelled());
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      reject(cancelled());
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Waits for `work` for at most `ms` on `clock`: resolves with `{ done: true, value }`, or with
 * `{ done: false }` once the time is up (the work carries on; the caller decides what to cut).
 * A rejection of `work` before the time is up rejects.
 */
export function raceClock<T>(clock: Clock, ms: number, work: Promise<T>): Promise<{ done: true; value: T } | { done: false }> {
  return new Promise((resolve, reject) => {
    const timer = clock.setTimeout(() => resolve({ done: false }), Math.max(0, ms));
    work.then(
      (value) => {
        clock.clearTimeout(timer);
        resolve({ done: true, value });
      },
      (err: unknown) => {
        clock.clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
