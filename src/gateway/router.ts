/**
 * The router's queue: a job whose candidate agents are all busy waits here, per model, for a
 * free slot among them, instead of failing at once. The queue is bounded (a full queue answers
 * NJ_NO_CAPACITY with a retry hint) and every wait has a deadline. Whenever capacity may have
 * changed (a heartbeat, a finished job, an agent connecting or answering its challenge) the
 * queue is pumped in arrival order; a job whose agents are still busy does not hold up the
 * ones behind it.
 */
import type { Emitter } from '../shared/index.js';
import {
  NightjarError,
  silentLogger,
  withDefaults,
  type Clock,
  type Disposable,
  type Event,
  type Logger,
  type TimerHandle,
  loggedEmitter,
} from '../shared/index.js';

/** A job waiting for a slot. */
export interface QueueWaiter {
  readonly model: string;
  /** True if one of its agents can take it now. */
  ready(): boolean;
  /** Called (once, after removal) when it may dispatch. */
  go(): void;
  /** Called (once, after removal) when its wait ends without a slot. */
  expire(error: NightjarError): void;
  /** False once no agent it could use is connected any more (it is then expired at once). Defaults to always true. */
  viable?(): boolean;
}

/** Options of {@link Router}. */
export interface RouterOptions {
  /** Time source of the queue's deadlines. Required. */
  clock: Clock;
  /** Jobs that may wait per model. Defaults to 64. */
  maxQueuePerModel?: number;
  /** Longest wait for a slot. Defaults to 30 000 ms. */
  queueTimeoutMs?: number;
  /** Retry hint for a full queue, given the model. Defaults to 1000 ms whatever the model. */
  retryAfterMs?(model: string): number;
  /** Where a throwing event listener is logged. Defaults to a silent logger. */
  logger?: Logger;
}

/** The defaults of {@link RouterOptions}. */
export const ROUTER_DEFAULTS: Required<Omit<RouterOptions, 'clock'>> = {
  maxQueuePerModel: 64,
  queueTimeoutMs: 30_000,
  retryAfterMs: () => 1000,
  logger: silentLogger,
};

/** A change in the depth of one model's queue. */
export interface QueueChange {
  readonly model: string;
  /** Jobs waiting for the model now. */
  readonly depth: number;
}

interface Entry {
  readonly waiter: QueueWaiter;
  readonly timer: TimerHandle;
}

/** Per-model bounded FIFO queues of jobs waiting for a slot. */
export class Router implements Disposable {
  readonly #o: Required<RouterOptions>;
  readonly #queues = new Map<string, Entry[]>();
  readonly #changes: Emitter<QueueChange>;
  /** A job joined or left a queue. */
  readonly onDepthChanged: Event<QueueChange>;
  #pumping = false;
  #again = false;

  constructor(options: RouterOptions) {
    this.#o = withDefaults(ROUTER_DEFAULTS, options);
    const log = this.#o.logger;
    this.#changes = loggedEmitter(log, 'queue depth');
    this.onDepthChanged = this.#changes.event;
  }

  /** The retry hint for `model`. */
  retryAfterMs(model: string): number {
    return Math.round(this.#o.retryAfterMs(model));
  }

  /** Jobs waiting for `model`, or for every model. */
  depth(model?: string): number {
    if (model !== undefined) return this.#queues.get(model)?.length ?? 0;
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  /** True if another job for `model` may wait. */
  hasRoom(model: string): boolean {
    return this.depth(model) < this.#o.maxQueuePerModel;
  }

  /** Queues `waiter`; throws NJ_NO_CAPACITY (with a retry hint) if the model's queue is full. */
  enqueue(waiter: QueueWaiter): void {
    if (!this.hasRoom(waiter.model)) {
      throw new NightjarError('NJ_NO_CAPACITY', `every agent for ${waiter.model} is busy and its queue is full`, {
        retryAfterMs: this.retryAfterMs(waiter.model),
      });
    }
    const timeout = this.#o.queueTimeoutMs;
    const timer = this.#o.clock.setTimeout(() => {
      if (!this.remove(waiter)) return;
      waiter.expire(
        new NightjarError('NJ_NO_CAPACITY', `no agent for ${waiter.model} freed a slot within ${timeout} ms`, {
          retryAfterMs: this.retryAfterMs(waiter.model),
        }),
      );
    }, timeout);
    const q = this.#queues.get(waiter.model) ?? [];
    q.push({ waiter, timer });
    this.#queues.set(waiter.model, q);
    this.#changes.fire({ model: waiter.model, depth: q.length });
  }

  /** Takes `waiter` out of its queue (a client that went away); false if it was not queued. */
  remove(waiter: QueueWaiter): boolean {
    const q = this.#queues.get(waiter.model);
    const i = q?.findIndex((e) => e.waiter === waiter) ?? -1;
    if (!q || i < 0) return false;
    this.#o.clock.clearTimeout(q[i]!.timer);
    q.splice(i, 1);
    if (q.length === 0) this.#queues.delete(waiter.model);
    this.#changes.fire({ model: waiter.model, depth: q.length });
    return true;
  }

  /** Dispatches every waiting job that can go now, oldest first. */
  pump(): void {
    // go() dispatches, which may change capacity and call pump() again: run once more instead.
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#again = false;
        for (const q of [...this.#queues.values()]) {
          for (const e of [...q]) {
            if (e.waiter.viable && !e.waiter.viable()) {
              if (this.remove(e.waiter)) {
                e.waiter.expire(
                  new NightjarError('NJ_NO_CAPACITY', 'the agents this request was sealed for went away; ask for new candidates', {
                    retryAfterMs: this.retryAfterMs(e.waiter.model),
                  }),
                );
              }
              continue;
            }
            if (!e.waiter.ready()) continue;
            if (this.remove(e.waiter)) e.waiter.go();
          }
        }
      } while (this.#again);
    } finally {
      this.#pumping = false;
    }
  }

  /** Ends every wait with `error` (shutdown). */
  clear(error: NightjarError): void {
    for (const q of [...this.#queues.values()]) {
      for (const e of [...q]) if (this.remove(e.waiter)) e.waiter.expire(error);
    }
  }

  /** Drops every listener of {@link Router.onDepthChanged}. */
  dispose(): void {
    this.#changes.dispose();
  }
}
