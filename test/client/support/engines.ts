/**
 * Engines for client tests where the text does not matter but the moment does: one that records
 * what it was asked, and one that waits (or emits a little and waits) until told or aborted.
 */
import type { ChatMessage } from '../../../src/shared/index.js';
import type { GenerateRequest, GenerateResult } from '../../../src/main/agent/index.js';
import { FakeEngine, type FakeEngineOptions } from '../../helpers/fake-engine.js';

/** A FakeEngine that keeps the conversations it was asked to continue. */
export class RecordingEngine extends FakeEngine {
  readonly conversations: ChatMessage[][] = [];

  override generate(request: GenerateRequest): Promise<GenerateResult> {
    this.conversations.push(request.messages.map((m) => ({ ...m })));
    return super.generate(request);
  }
}

/**
 * Emits `before` (possibly nothing), calls `onStalled`, then waits until aborted: a generation
 * that never finishes by itself. Counts the tokens it emitted and whether it saw the abort.
 */
export class StallingEngine extends FakeEngine {
  readonly before: string[];
  onStalled: () => void = () => undefined;
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
    this.onStalled();
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
