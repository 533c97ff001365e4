/**
 * The chat requests a proxy is serving: a bounded set of slots, each with the AbortController
 * that cancels its SDK request, and an event when one ends — so shutdown (and tests) await the
 * last one instead of polling a count.
 */
import { Emitter, NightjarError, nextEvent, type Disposable, type ErrorCode, type Event } from '../../shared/index.js';
import type { ApiFlavor } from './api-errors.js';

/** What {@link ActiveRequests.onFinished} tells about a chat request that ended. */
export interface ProxyRequestFinished {
  /** The API it spoke. */
  readonly api: ApiFlavor;
  /** Null when the reply was delivered whole; else the code of the error that ended it. */
  readonly code: ErrorCode | null;
  /** Chat requests still being served. */
  readonly activeRequests: number;
}

/** The chat requests being served, at most `max` at once. */
export class ActiveRequests implements Disposable {
  readonly #max: number;
  readonly #active = new Set<AbortController>();
  readonly #finished: Emitter<ProxyRequestFinished>;
  /** Fires after a chat request ended and gave up its slot. */
  readonly onFinished: Event<ProxyRequestFinished>;

  constructor(max: number, onListenerError: (err: unknown) => void) {
    this.#max = max;
    this.#finished = new Emitter({ onListenerError });
    this.onFinished = this.#finished.event;
  }

  /** Requests being served now. */
  get size(): number {
    return this.#active.size;
  }

  /** Takes a slot; throws NJ_NO_CAPACITY when every slot is taken. */
  begin(): AbortController {
    if (this.#active.size >= this.#max) {
      throw new NightjarError('NJ_NO_CAPACITY', `the proxy is serving ${this.#max} requests already`, { retryAfterMs: 1000 });
    }
    const controller = new AbortController();
    this.#active.add(controller);
    return controller;
  }

  /** Gives the slot of `controller` back and tells the listeners. */
  end(controller: AbortController, api: ApiFlavor, code: ErrorCode | null): void {
    if (!this.#active.delete(controller)) return;
    this.#finished.fire({ api, code, activeRequests: this.#active.size });
  }

  /** Resolves once no request is being served (at once if none is). */
  async idle(): Promise<void> {
    if (this.#active.size === 0) return;
    await nextEvent(this.onFinished, (e) => e.activeRequests === 0);
  }

  /** Cancels every request being served, with `reason` as the abort reason. */
  abortAll(reason: NightjarError): void {
    for (const controller of this.#active) controller.abort(reason);
  }

  /** Drops the listeners. */
  dispose(): void {
    this.#finished.dispose();
  }
}
