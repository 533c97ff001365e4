/**
 * Engines for client tests where the text does not matter but the moment does: one that says
 * when it starts, emits and ends (so tests await those moments), one that also records what it
 * was asked, and one that waits (or emits a little and waits) until told or aborted.
 */
import { Emitter, type ChatMessage } from '../../../src/shared/index.js';
import type { GenerateRequest, GenerateResult } from '../../../src/main/agent/index.js';
import { FakeEngine, type FakeEngineOptions } from '../../helpers/fake-engine.js';

/** A FakeEngine with events: a generation started, a token emitted, a generation ended. */
export class ObservedEngine extends FakeEngine {
  readonly #started = new Emitter<void>();
  readonly #token = new Emitter<void>();
  readonly #ended = new Emitter<void>();
  /** Fires when a generation starts (after `busy` counts it). */
  readonly onStarted = this.#started.event;
  /** Fires after each token (after `generated` counts it). */
  readonly onToken = this.#token.event;
  /** Fires when a generation ends (after `busy` no longer counts it). */
  readonly onEnded = this.#ended.event;

  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    const onDelta = (text: string): void => {
      request.onDelta?.(text);
      this.#token.fire();
    };
    const generation = super.generate({ ...request, onDelta });
    this.#started.fire();
    try {
      return await generation;
    } finally {
      this.#ended.fire();
    }
  }
}

/** An ObservedEngine that keeps the conversations it was asked to continue (and their cache keys). */
export class RecordingEngine extends ObservedEngine {
  readonly conversations: ChatMessage[][] = [];
  /** Each request's cache key, in the same order. */
  readonly cacheKeys: (string | undefined)[] = [];

  override generate(request: GenerateRequest): Promise<GenerateResult> {
    this.conversations.push(request.messages.map((m) => ({ ...m })));
    this.cacheKeys.push(request.cacheKey);
    return super.generate(request);
  }
}

/**
 * Emits `before` (possibly nothing), fires `onStalled`, then waits until aborted: a generation
 * that never finishes by itself. Counts the tokens it emitted and whether it saw the abort.
 */
export class StallingEngine extends FakeEngine {
  readonly before: string[];
  readonly #stalled = new Emitter<void>();
  /** Fires when a generation has emitted `before` and begins to wait (after `started` counts it). */
  readonly onStalled = this.#stalled.event;
  aborted = 0;
  started = 0;

  constructor(before: string[] = [], options: FakeEngineOptions = {}) {
    super(options);
    this.before = before;
  }

  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.started++;
    for (const word of this.before) {
      this.generated++;
      request.onDelta?.(word);
    }
    this.#stalled.fire();
    await new Promise<void>((resolve) => {
      if (request.signal?.aborted) return resolve();
      request.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    this.aborted++;
    return {
      text: this.before.join(''),
      finishReason: 'cancelled',
      usage: { promptTokens: await this.countPromptTokens(request.messages), completionTokens: this.before.length },
      timeToFirstTokenMs: 1,
      tokensPerSecond: 1,
    };
  }
}
