/**
 * The real engine with a note of when each generate call came in, when its first delta left and
 * when it settled, and when it was disposed. Handed to an Agent (or a runtime) in place of the
 * engine, so a benchmark can time what the engine did on the same clock as everything else.
 */
import type { EngineModelInfo, GenerateRequest, GenerateResult, InferenceEngine } from '../src/main/agent/index.js';
import type { ChatMessage } from '../src/shared/index.js';
import { now } from './stats.js';

/** One generate call as the engine saw it. */
export interface EngineCall {
  calledAt: number;
  firstDeltaAt: number | null;
  /** When generate settled; null while it runs. */
  settledAt: number | null;
  result: GenerateResult | null;
}

/** An engine wrapper that records every call (see the module comment). */
export class TimedEngine implements InferenceEngine {
  readonly calls: EngineCall[] = [];
  /** When dispose() was called and when it resolved; null until then. */
  disposeCalledAt: number | null = null;
  disposedAt: number | null = null;

  constructor(private readonly inner: InferenceEngine) {}

  get model(): EngineModelInfo {
    return this.inner.model;
  }
  get totalSlots(): number {
    return this.inner.totalSlots;
  }
  get freeSlots(): number {
    return this.inner.freeSlots;
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const call: EngineCall = { calledAt: now(), firstDeltaAt: null, settledAt: null, result: null };
    this.calls.push(call);
    const onDelta = request.onDelta;
    try {
      call.result = await this.inner.generate({
        ...request,
        onDelta: (text) => {
          call.firstDeltaAt ??= now();
          onDelta?.(text);
        },
      });
      return call.result;
    } finally {
      call.settledAt = now();
    }
  }

  countPromptTokens(messages: readonly ChatMessage[]): Promise<number> {
    return this.inner.countPromptTokens(messages);
  }

  async dispose(): Promise<void> {
    this.disposeCalledAt ??= now();
    await this.inner.dispose();
    this.disposedAt ??= now();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
