/**
 * A clock that moves only when a test moves it. Timers fire in time order as the clock passes
 * them; `jump` models a sleep (or a clock set forward): time leaps, then every overdue timer fires.
 */
import type { Clock, TimerHandle } from '../../../src/shared/index.js';

interface Timer {
  readonly id: number;
  readonly at: number;
  readonly ms: number;
  readonly fn: () => void;
}

export class ManualClock implements Clock {
  #now: number;
  #next = 1;
  readonly #timers = new Map<number, Timer>();
  /** Delay of every timer ever set, in order. */
  readonly delays: number[] = [];

  constructor(start = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), ms, fn });
    this.delays.push(ms);
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete((handle as { id: number }).id);
  }

  /** Timers not yet fired. */
  pending(): { at: number; ms: number }[] {
    return [...this.#timers.values()].sort((a, b) => a.at - b.at).map(({ at, ms }) => ({ at, ms }));
  }

  /** Moves time forward by `ms`, firing each timer at its own time. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.values()].filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#timers.delete(due.id);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = end;
  }

  /** Sets time `ms` ahead at once (a sleep), then fires every overdue timer. */
  jump(ms: number): void {
    this.#now += ms;
    this.advance(0);
  }

  /** Sets the time (backwards too); fires nothing. */
  set(ms: number): void {
    this.#now = ms;
  }
}

/** Lets promises and I/O callbacks run (a real-time pause, for work on real sockets). */
export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
