/**
 * node-llama-cpp driven directly, with nothing of Nightjar in between: the baseline the engine is
 * held against. Same binding options as the engine (CPU on Linux, no pool limit on threads), the
 * same chat template rendering, the same sampling options; then a tight `for await` over
 * `sequence.evaluate`, counting tokens and noting when each arrives.
 */
import {
  getLlama,
  LlamaLogLevel,
  resolveChatWrapper,
  type ChatHistoryItem,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import { DEFAULT_SAMPLING, defaultGpu } from '../src/main/agent/index.js';
import type { ChatMessage } from '../src/shared/index.js';
import { median, now } from './stats.js';

/**
 * 1000 / the median per-token interval, from arrival times and how many tokens each arrival
 * carried (1 for a token; a text delta may carry several).
 */
export function steadyRate(times: readonly number[], tokensPerArrival?: readonly number[]): number {
  const intervals: number[] = [];
  for (let i = 1; i < times.length; i++) {
    const n = Math.max(1, tokensPerArrival?.[i] ?? 1);
    for (let k = 0; k < n; k++) intervals.push((times[i]! - times[i - 1]!) / n);
  }
  const m = median(intervals);
  return m > 0 ? 1000 / m : 0;
}

let llama: Promise<Llama> | undefined;

/** This process's llama.cpp binding for the baseline (the engine keeps its own). */
export function directLlama(): Promise<Llama> {
  llama ??= getLlama({ gpu: defaultGpu(), build: 'never', maxThreads: 0, logLevel: LlamaLogLevel.error, progressLogs: false });
  return llama;
}

/** What one generation measured, the same way for the engine and the baseline. */
export interface RunFigures {
  /** Call to return. */
  wallMs: number;
  /** Call to first generated token. */
  ttftMs: number;
  /** (tokens − 1) / (last token time − first token time): the generation phase only. */
  decodeTokensPerSecond: number;
  /**
   * 1 / the median time between consecutive tokens: the generation rate of a typical token,
   * which a burst of interference from another process (a few slow tokens) does not move.
   */
  steadyTokensPerSecond: number;
  completionTokens: number;
  text: string;
}

/** Options of {@link openDirect}. */
export interface DirectOptions {
  modelPath: string;
  /** A model already loaded from `modelPath`, to share (it is then not disposed). Defaults to loading one. */
  model?: LlamaModel;
  threads: number;
  contextLength: number;
  batchSize: number;
  /** Sequences in the context. Defaults to 1. */
  sequences?: number;
}

/** A model and context loaded straight from node-llama-cpp. */
export interface Direct extends AsyncDisposable {
  readonly model: LlamaModel;
  readonly context: LlamaContext;
  readonly sequence: LlamaContextSequence;
  /** Renders `messages` with the model's chat template, as the engine does, and tokenises. */
  prompt(messages: readonly ChatMessage[]): Token[];
  /** Greedy generation of `maxTokens` tokens after `prompt`, in a tight loop. */
  generate(prompt: readonly Token[], maxTokens: number): Promise<RunFigures>;
  dispose(): Promise<void>;
}

/** Loads `modelPath` in a context shaped like the engine's. */
export async function openDirect(options: DirectOptions): Promise<Direct> {
  const shared = options.model;
  const model = shared ?? (await (await directLlama()).loadModel({ modelPath: options.modelPath }));
  const context = await model.createContext({
    sequences: options.sequences ?? 1,
    contextSize: options.contextLength,
    threads: options.threads,
    batchSize: options.batchSize,
  });
  const sequence = context.getSequence();
  const wrapper = resolveChatWrapper(model, { warningLogs: false });
  const dispose = async (): Promise<void> => {
    await context.dispose();
    if (!shared) await model.dispose();
  };
  return {
    model,
    context,
    sequence,
    prompt(messages) {
      const history: ChatHistoryItem[] = messages.map((m): ChatHistoryItem =>
        m.role === 'system'
          ? { type: 'system', text: m.content }
          : m.role === 'user'
            ? { type: 'user', text: m.content }
            : { type: 'model', response: [m.content] },
      );
      history.push({ type: 'model', response: [] });
      return wrapper.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer);
    },
    async generate(prompt, maxTokens) {
      const out: Token[] = [];
      const times: number[] = [];
      const started = now();
      let first = 0;
      let last = 0;
      // The options the engine passes for a temperature-0 request: greedy, whatever the rest say.
      const tokens = sequence.evaluate([...prompt], {
        temperature: 0,
        topK: DEFAULT_SAMPLING.topK,
        topP: DEFAULT_SAMPLING.topP,
        minP: DEFAULT_SAMPLING.minP,
        seed: 1,
        yieldEogToken: true,
      });
      for await (const token of tokens) {
        const t = now();
        if (first === 0) first = t;
        last = t;
        times.push(t);
        out.push(token);
        if (out.length >= maxTokens) break;
      }
      // Cleared before the next run, as the engine clears a sequence before its slot is free.
      await sequence.clearHistory();
      const wallMs = now() - started;
      return {
        wallMs,
        ttftMs: first - started,
        decodeTokensPerSecond: out.length >= 2 && last > first ? ((out.length - 1) * 1000) / (last - first) : 0,
        steadyTokensPerSecond: steadyRate(times),
        completionTokens: out.length,
        text: model.detokenize(out),
      };
    },
    dispose,
    [Symbol.asyncDispose]: dispose,
  };
}
