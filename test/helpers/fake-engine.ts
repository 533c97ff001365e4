/**
 * A small stand-in for the node-llama-cpp engine, for tests about routing and crypto where
 * the text does not matter: it "generates" a fixed reply word by word, honours maxTokens, stop
 * sequences and abort, and can be told to fail or stall.
 */
import { NightjarError, type ChatMessage } from '../../src/shared/index.js';
import type { GenerateRequest, GenerateResult, InferenceEngine } from '../../src/main/agent/index.js';

export interface FakeEngineOptions {
  slots?: number;
  /** Words produced, in order, one per token. Defaults to a short sentence. */
  words?: string[];
  /** Delay between tokens. Defaults to 0. */
  tokenDelayMs?: number;
  /** Throw this after emitting `failAfter` tokens. */
  failAfter?: number;
  contextLength?: number;
}

export class FakeEngine implements InferenceEngine {
  readonly totalSlots: number;
  readonly model;
  busy = 0;
  generated = 0;
  disposed = false;
  readonly #o: FakeEngineOptions;

  constructor(options: FakeEngineOptions = {}) {
    this.#o = options;
    this.totalSlots = options.slots ?? 2;
    this.model = {
      path: '/fake.gguf',
      trainContextLength: 4096,
      contextLength: options.contextLength ?? 4096,
      synthetic: true,
      name: 'fake',
    };
  }

  get freeSlots(): number {
    return this.totalSlots - this.busy;
  }

  async countPromptTokens(messages: readonly ChatMessage[]): Promise<number> {
    return messages.reduce((n, m) => n + m.content.length + 4, 0);
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    if (this.freeSlots <= 0) throw new NightjarError('NJ_ENGINE_BUSY', 'no free slot');
    this.busy++;
    const started = Date.now();
    try {
      const words = this.#o.words ?? ['Hello', ' from', ' a', ' fake', ' engine', '.'];
      let text = '';
      let n = 0;
      let finishReason: GenerateResult['finishReason'] = 'stop';
      for (let i = 0; ; i++) {
        if (request.signal?.aborted) {
          finishReason = 'cancelled';
          break;
        }
        if (n >= request.sampling.maxTokens) {
          finishReason = 'length';
          break;
        }
        if (this.#o.failAfter !== undefined && n >= this.#o.failAfter) throw new NightjarError('NJ_ENGINE_FAILED', 'fake failure');
        const word = words[i % words.length]!;
        if (i >= words.length && !this.#o.tokenDelayMs) break;
        if (request.sampling.stop?.some((s) => (text + word).includes(s))) break;
        if (this.#o.tokenDelayMs) await new Promise((r) => setTimeout(r, this.#o.tokenDelayMs));
        if (request.signal?.aborted) {
          finishReason = 'cancelled';
          break;
        }
        text += word;
        n++;
        this.generated++;
        request.onDelta?.(word);
      }
      return {
        text,
        finishReason,
        usage: { promptTokens: await this.countPromptTokens(request.messages), completionTokens: n },
        timeToFirstTokenMs: 1,
        tokensPerSecond: n / Math.max(0.001, (Date.now() - started) / 1000),
      };
    } finally {
      this.busy--;
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
