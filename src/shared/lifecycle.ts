/**
 * One lifecycle idiom for everything that holds a resource (a socket, a timer, a file, a model, a
 * context): it has `dispose()` and `Symbol.asyncDispose`, disposing twice is harmless, and a parent
 * registers its children in a {@link DisposableStore} so that disposing the parent disposes them,
 * last registered first. Subscriptions to events ({@link Emitter}) are disposables too.
 */
import type { Clock, TimerHandle } from './clock.js';

/** Something that releases what it holds when disposed. Disposing twice does nothing more. */
export interface Disposable {
  dispose(): void | Promise<void>;
}

/** A resource with an asynchronous `dispose()` that `await using` also understands. */
export interface AsyncResource extends AsyncDisposable {
  dispose(): Promise<void>;
}

/** What a {@link DisposableStore} accepts: a disposable, an `AsyncDisposable`, or a function to call. */
export type DisposableLike = Disposable | AsyncDisposable | (() => void | Promise<void>);

/** A disposable that calls `fn` once, on the first dispose(). */
export function toDisposable(fn: () => void | Promise<void>): Disposable {
  let done = false;
  return {
    dispose() {
      if (done) return;
      done = true;
      return fn();
    },
  };
}

function disposeOne(item: DisposableLike): void | PromiseLike<void> {
  if (typeof item === 'function') return item();
  if ('dispose' in item && typeof item.dispose === 'function') return item.dispose();
  return (item as AsyncDisposable)[Symbol.asyncDispose]();
}

/**
 * The children of a parent. `dispose()` disposes every child, the last added first, awaiting each,
 * and throws an AggregateError afterwards if any failed (every child is still disposed). A child
 * added after the store was disposed is disposed at once.
 */
export class DisposableStore implements AsyncResource {
  readonly #items: DisposableLike[] = [];
  #disposed: Promise<void> | null = null;

  /** True once dispose() has been called. */
  get isDisposed(): boolean {
    return this.#disposed !== null;
  }

  /** Registers `item`; returns it, so `const t = store.add(thing)` reads naturally. */
  add<T extends DisposableLike>(item: T): T {
    if (this.#disposed) void Promise.resolve(disposeOne(item)).catch(() => undefined);
    else this.#items.push(item);
    return item;
  }

  /** Forgets `item` without disposing it (it was disposed some other way). */
  delete(item: DisposableLike): void {
    const i = this.#items.lastIndexOf(item);
    if (i >= 0) this.#items.splice(i, 1);
  }

  /** Disposes every child, last added first. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      const errors: unknown[] = [];
      while (this.#items.length > 0) {
        const item = this.#items.pop()!;
        try {
          await disposeOne(item);
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, `${errors.length} children failed to dispose`);
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/**
 * A base for classes that hold resources: children go in `this.disposables`; subclasses override
 * `onDispose()` for what must happen before the children go (draining, saying goodbye). dispose()
 * runs once, however often it is called, and every call returns the same promise.
 */
export abstract class Resource implements AsyncResource {
  /** The children, disposed after {@link Resource.onDispose}. */
  protected readonly disposables = new DisposableStore();
  #disposed: Promise<void> | null = null;

  /** True once dispose() has been called. */
  get isDisposed(): boolean {
    return this.#disposed !== null;
  }

  /** What the subclass does first when disposed. Defaults to nothing. */
  protected onDispose(): void | Promise<void> {}

  /** Runs onDispose(), then disposes the children. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      try {
        await this.onDispose();
      } finally {
        await this.disposables.dispose();
      }
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/**
 * One timer on a clock: `set` replaces whatever was pending, `clear` cancels it, and disposing
 * cancels it for good (a later `set` does nothing).
 */
export class TimerSlot implements Disposable {
  readonly #clock: Clock;
  #handle: TimerHandle | null = null;
  #disposed = false;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** True while a timer is pending. */
  get pending(): boolean {
    return this.#handle !== null;
  }

  /** Calls `fn` once after `ms`, cancelling the timer pending before. */
  set(ms: number, fn: () => void): void {
    this.clear();
    if (this.#disposed) return;
    const handle = this.#clock.setTimeout(() => {
      if (this.#handle === handle) this.#handle = null;
      fn();
    }, ms);
    this.#handle = handle;
  }

  /** Cancels the pending timer, if any. */
  clear(): void {
    if (this.#handle !== null) this.#clock.clearTimeout(this.#handle);
    this.#handle = null;
  }

  /** Cancels the pending timer; later `set` calls do nothing. */
  dispose(): void {
    this.#disposed = true;
    this.clear();
  }
}
