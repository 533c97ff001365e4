/**
 * Small pieces every part of the agent uses to hold timers and fire events the same way: a timer
 * slot on the injected clock that is a disposable, and emitters whose throwing listeners are
 * logged instead of crashing the process.
 */
import { Emitter, type Clock, type Disposable, type Logger, type TimerHandle } from '../../shared/index.js';

/** The message of a thrown value, for a log line (never its stack or its cause's text). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An emitter whose throwing listeners are logged on `log` (and do not stop the others). */
export function loggedEmitter<T>(log: Logger, what: string): Emitter<T> {
  return new Emitter<T>({ onListenerError: (err) => log.error('an event listener failed', { event: what, err: errorMessage(err) }) });
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
