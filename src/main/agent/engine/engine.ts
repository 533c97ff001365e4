/**
 * The inference engine on node-llama-cpp: one model, one context holding one sequence per slot,
 * so concurrent jobs are decoded together in shared batches.
 *
 * Each job:
 * 1. renders its conversation with the model's own chat template (the wrapper node-llama-cpp
 *    resolves from the file's `tokenizer.chat_template`) and tokenises it; usage.promptTokens is
 *    the number of those tokens actually evaluated;
 * 2. is refused up front with NJ_CONTEXT_OVERFLOW if prompt + maxTokens cannot fit its sequence;
 * 3. evaluates the prompt in batch-sized chunks (so a cancel during a long prompt takes effect
 *    between chunks), then pulls generated tokens one at a time: nothing is decoded that was not
 *    asked for, so an abort stops generation within the token in flight;
 * 4. turns tokens into text, holding back incomplete UTF-8 and any tail that could still become a
 *    stop sequence, and hands out deltas whose concatenation is exactly the final text;
 * 5. clears its sequence before the slot is free again, so nothing of one job's conversation is
 *    left in the KV cache for the next.
 *
 * Stop sequences: generation stops at the first occurrence of any stop sequence (the request's and
 * the chat template's end-of-turn text); the text is cut just before it, so the stop text is never
 * part of the reply (as in the OpenAI API). An end-of-generation token (EOS, EOT…) also finishes
 * with 'stop'. Both count as completion tokens.
 *
 * Cancellation: the reply is what was streamed before the abort; tokens generated but still held
 * back (an incomplete character, a possible stop-sequence start) count as completion tokens but
 * are not sent; the token in flight when the abort came is dropped and not counted.
 *
 * Inspection (`inspect`, for the reply checker of audits and disputes): the same rendering as a job
 * (one `render` for both), the reply tokenized, and prompt plus reply evaluated in one
 * teacher-forced pass on a free slot, cleared after as a job's is; only numbers come back.
 *
 * Tools and response formats (./constraints.ts): a tool call is generated under the grammar of its
 * function's parameters (so its arguments always parse) and returned, never run; a response format
 * puts a text reply under the grammar of its JSON schema. Grammars are compiled once per schema
 * (a few kept), each compile bounded in time ({@link GRAMMAR_COMPILE_TIMEOUT_MS}) on top of the
 * protocol's bounds on a schema's size and depth. OpenAI's frequency and presence penalties go to
 * llama.cpp's repeat penalty over the tokens generated so far.
 *
 * Warm conversations: a job whose request carries a cache key leaves its sequence warm (prompt and
 * reply still in the KV cache) for {@link EngineOptions.warmTtlMs}, filed under
 * HMAC-SHA256(engine secret, cache key) — the key itself is never stored, and a lookup is an exact
 * match of that digest, so two keys never share a sequence. The next job with the same key takes
 * that sequence, keeps the longest prefix its new prompt shares with what was evaluated, and
 * evaluates only the rest. At most {@link EngineOptions.warmSequences} are kept, least recently
 * used evicted first; a job without a warm sequence of its own, when no slot is free of one,
 * evicts the least recently used. A cancelled or failed job's sequence is cleared, as is every
 * warm one on {@link LlamaEngine.forgetConversations} (the owner came back) and on dispose (the
 * secret dies with the engine, so nothing survives a model unload).
 *
 * Not handled: reasoning segments; a model that thinks aloud in `<think>` tags streams them as text.
 */
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  getLlama,
  LlamaLogLevel,
  readGgufFileInfo,
  resolveChatWrapper,
  SpecialToken,
  LlamaGrammarEvaluationState,
  SpecialTokensText,
  type ChatWrapper,
  type ContextShiftOptions,
  type ControlledEvaluateInputItem,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGpuType,
  type LlamaGrammar,
  type LlamaModel,
  type LlamaText,
  type Token,
} from 'node-llama-cpp';
import {
  chatMessageSchema,
  LIMITS,
  NightjarError,
  samplingSchema,
  silentLogger,
  systemClock,
  type ChatMessage,
  type Clock,
  type FinishReason,
  type Logger,
  type Sampling,
  type ToolCall,
} from '../../../shared/index.js';
import type { JsonSchemaObject, ReplyInspection, TokenInspection } from '../../../shared/index.js';
import {
  callSchema,
  constraintMode,
  constraintsPrompt,
  GRAMMAR_END_TEXT,
  historyOf,
  readCall,
  type ConstraintMode,
} from './constraints.js';
import type {
  EmbedRequest,
  EmbedResult,
  Embedder,
  EngineModelInfo,
  GenerateRequest,
  GenerateResult,
  InferenceEngine,
  InspectRequest,
  ReplyConstraints,
  ReplyInspector,
} from './types.js';

/** Longest a grammar may take to compile from a JSON schema before the request is refused. */
export const GRAMMAR_COMPILE_TIMEOUT_MS = 5_000;
/** Compiled grammars kept, by schema. */
const GRAMMAR_CACHE_SIZE = 16;

/** Which llama.cpp backend to use: `false` for CPU only, or a GPU type. */
export type EngineGpu = false | 'auto' | Exclude<LlamaGpuType, false>;

/** Options of {@link loadEngine}. */
export interface EngineOptions {
  /** Path of the GGUF model file. Required. */
  modelPath: string;
  /** Parallel sequences, one per concurrent job. Defaults to 4. */
  slots?: number;
  /**
   * Context length of each sequence, in tokens (prompt plus reply). llama.cpp may round it up to
   * a multiple of 256; {@link EngineModelInfo.contextLength} is what each sequence really got.
   * Defaults to min(the model's training context, 4096).
   */
  contextLength?: number;
  /**
   * CPU threads for evaluation. Defaults to {@link defaultThreads}: the cores really available
   * less one for the event loop. node-llama-cpp's own CPU default is at least 4, which on a
   * 2-core machine oversubscribes and runs about 190× slower.
   */
  threads?: number;
  /** Backend. Defaults to false (CPU) on Linux and 'auto' (Metal on a Mac) elsewhere. */
  gpu?: EngineGpu;
  /** Tokens evaluated per batch, across all sequences. Defaults to min(512, contextLength × slots). */
  batchSize?: number;
  /**
   * A prompt is evaluated in pieces of at most this many tokens, and a cancel (the owner coming
   * back) takes effect between pieces. Defaults to 64 on the CPU, where a 1B model evaluates a
   * 512-token batch in seconds, and to the batch size on a GPU.
   */
  promptChunkTokens?: number;
  /** Receives the engine's log lines and llama.cpp's warnings. Defaults to a silent logger. */
  logger?: Logger;
  /**
   * Conversation sequences kept warm after their job for the next turn of the same cache key
   * (each is one of the slots, given back when a job needs it). 0 turns the cache off.
   * Defaults to the number of slots.
   */
  warmSequences?: number;
  /** How long a warm sequence is kept after its job, in milliseconds. Defaults to 120 000 (2 minutes). */
  warmTtlMs?: number;
  /** The clock for warm sequences' expiry. Defaults to the system clock. */
  clock?: Clock;
}

/** Default of {@link EngineOptions.warmTtlMs}. */
export const DEFAULT_WARM_TTL_MS = 120_000;
/** The longest cache key the engine takes, in characters (512 bits of base64url). */
const MAX_CACHE_KEY_CHARS = 86;

/**
 * Sampling used when a request leaves a parameter out: llama.cpp's server defaults. A request
 * with temperature 0 decodes greedily (and deterministically).
 */
export const DEFAULT_SAMPLING = { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05 } as const;

/**
 * The default threads: the cores this process may really use, less one for the event loop
 * (relay, crypto, IPC). llama.cpp's threads wait for each other at every step, so one thread
 * that shares its core stalls them all: on the 2-core development VM, 2 threads generate 20×
 * slower than 1 (bench/RESULTS.md).
 */
export function defaultThreads(): number {
  return Math.max(1, os.availableParallelism() - 1);
}

/** The default backend for this platform. */
export function defaultGpu(): EngineGpu {
  return process.platform === 'linux' ? false : 'auto';
}

// ---------------------------------------------------------------------------------------------
// One llama.cpp binding per process (per backend), created on first use.

const llamas = new Map<string, Promise<Llama>>();
/** Loggers of the live engines (one entry per engine, even when engines share a logger). */
const llamaLogSinks = new Set<{ readonly logger: Logger }>();

function forwardLlamaLog(level: LlamaLogLevel, message: string): void {
  const line = message.trim();
  if (line === '') return;
  for (const { logger } of llamaLogSinks) {
    if (level === LlamaLogLevel.fatal || level === LlamaLogLevel.error) logger.error('llama.cpp', { detail: line });
    else if (level === LlamaLogLevel.warn) logger.warn('llama.cpp', { detail: line });
    else logger.debug('llama.cpp', { detail: line });
  }
}

/**
 * llama.cpp logs from its own threads; node-llama-cpp hands each line to JavaScript on a later
 * turn of the event loop. Waiting one turn lets lines about a failed load reach the engine's
 * logger before it is unregistered.
 */
function logsDelivered(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sharedLlama(gpu: EngineGpu): Promise<Llama> {
  const key = String(gpu);
  let llama = llamas.get(key);
  if (llama === undefined) {
    // build 'never': use the prebuilt binary or fail; never download or compile at run time.
    // maxThreads 0: no pool limit, so each context's `threads` is exactly what it uses.
    llama = getLlama({ gpu, build: 'never', maxThreads: 0, logLevel: LlamaLogLevel.warn, logger: forwardLlamaLog, progressLogs: false });
    llama.catch(() => llamas.delete(key));
    llamas.set(key, llama);
  }
  return llama;
}

/**
 * Loads llama.cpp's prebuilt binding for `gpu` (without a model) and says which backend it runs
 * on: what `nightjar doctor` checks first. Throws NJ_MODEL_LOAD_FAILED if it cannot.
 */
export async function checkLlamaBinding(gpu: EngineGpu = defaultGpu()): Promise<{ gpu: string; cpuCores: number }> {
  try {
    const llama = await sharedLlama(gpu);
    return { gpu: String(llama.gpu), cpuCores: llama.cpuMathCores };
  } catch (error) {
    throw new NightjarError('NJ_MODEL_LOAD_FAILED', `llama.cpp could not start (gpu: ${String(gpu)}): ${messageOf(error)}`, {
      cause: error,
    });
  }
}

// ---------------------------------------------------------------------------------------------

/** Never shift the context: overflow is refused up front, so a shift would be a bug. */
const NO_CONTEXT_SHIFT: ContextShiftOptions = {
  strategy: () => {
    throw new Error('context shift attempted; the overflow check should have refused this job');
  },
};

/** A generated-text tail shorter than this may still be an incomplete UTF-8 character. */
const MAX_TOKENS_PER_CHARACTER = 4;

function positiveInt(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > max) {
    throw new NightjarError('NJ_CONFIG_INVALID', `Engine option ${name} must be an integer from 1 to ${max}; got ${String(value)}.`);
  }
  return v;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Loads a model and returns an engine serving `slots` generations at once. Throws NightjarError
 * NJ_MODEL_FILE_INVALID when the file is missing or not GGUF, NJ_MODEL_LOAD_FAILED when llama.cpp
 * cannot load it (or create its context), NJ_CONFIG_INVALID for bad options.
 */
export async function loadEngine(options: EngineOptions): Promise<InferenceEngine & ReplyInspector & Embedder> {
  const logger = options.logger ?? silentLogger;
  const slots = positiveInt('slots', options.slots, 4, 256);
  const threads = positiveInt('threads', options.threads, defaultThreads(), 1024);
  const gpu = options.gpu ?? defaultGpu();
  const requestedContext = options.contextLength === undefined ? undefined : positiveInt('contextLength', options.contextLength, 4096);
  const batchSize = options.batchSize === undefined ? undefined : positiveInt('batchSize', options.batchSize, 512);
  const promptChunkTokens =
    options.promptChunkTokens === undefined ? undefined : positiveInt('promptChunkTokens', options.promptChunkTokens, 64);
  const warmSequences = options.warmSequences ?? slots;
  if (!Number.isInteger(warmSequences) || warmSequences < 0 || warmSequences > slots) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      `Engine option warmSequences must be an integer from 0 to slots (${slots}); got ${String(options.warmSequences)}.`,
    );
  }
  const warmTtlMs = positiveInt('warmTtlMs', options.warmTtlMs, DEFAULT_WARM_TTL_MS, 24 * 3_600_000);
  const clock = options.clock ?? systemClock;
  const modelPath = path.resolve(options.modelPath);

  const info = await stat(modelPath).catch((error: unknown) => {
    throw new NightjarError('NJ_MODEL_FILE_INVALID', `No model file at ${modelPath} (${messageOf(error)}).`, { cause: error });
  });
  if (!info.isFile()) throw new NightjarError('NJ_MODEL_FILE_INVALID', `${modelPath} is not a file.`);
  await readGgufFileInfo(modelPath, { sourceType: 'filesystem', readTensorInfo: false, logWarnings: false }).catch((error: unknown) => {
    throw new NightjarError('NJ_MODEL_FILE_INVALID', `${modelPath} is not a readable GGUF file: ${messageOf(error)}`, { cause: error });
  });

  const llama = await sharedLlama(gpu).catch((error: unknown) => {
    throw new NightjarError('NJ_MODEL_LOAD_FAILED', `llama.cpp could not start (gpu: ${String(gpu)}): ${messageOf(error)}`, {
      cause: error,
    });
  });
  const started = performance.now();
  const sink = { logger };
  llamaLogSinks.add(sink);
  let model: LlamaModel | undefined;
  try {
    model = await llama.loadModel({ modelPath });
    const train = model.trainContextSize;
    const contextLength = requestedContext ?? Math.min(train > 0 ? train : 4096, 4096);
    if (train > 0 && contextLength > train) {
      logger.warn('context longer than the model was trained for', { contextLength, trainContextLength: train });
    }
    const context = await model
      .createContext({
        sequences: slots,
        contextSize: contextLength,
        threads,
        ...(batchSize === undefined ? {} : { batchSize }),
        failedCreationRemedy: false,
      })
      .catch((error: unknown) => {
        if (error instanceof NightjarError) throw error;
        throw new NightjarError(
          'NJ_MODEL_LOAD_FAILED',
          `Could not create a context of ${slots} × ${contextLength} tokens for ${modelPath}: ${messageOf(error)}`,
          { cause: error },
        );
      });
    const chatWrapper = resolveChatWrapper(model, { warningLogs: false });
    const engine = new LlamaEngine({
      model,
      context,
      chatWrapper,
      slots,
      logger,
      sink,
      modelPath,
      trainContextLength: train,
      threads,
      warmSequences,
      warmTtlMs,
      clock,
      promptChunkTokens: Math.min(context.batchSize, promptChunkTokens ?? (llama.gpu === false ? 64 : context.batchSize)),
    });
    logger.info('model loaded', {
      model: path.basename(modelPath),
      loadMs: Math.round(performance.now() - started),
      slots,
      contextLength: context.contextSize,
      threads,
      gpu: String(llama.gpu),
      chatWrapper: chatWrapper.wrapperName,
    });
    return engine;
  } catch (error) {
    await model?.dispose().catch(() => undefined);
    await logsDelivered();
    llamaLogSinks.delete(sink);
    if (error instanceof NightjarError) throw error;
    throw new NightjarError('NJ_MODEL_LOAD_FAILED', `llama.cpp could not load ${modelPath}: ${messageOf(error)}`, { cause: error });
  }
}

interface EngineParts {
  model: LlamaModel;
  context: LlamaContext;
  chatWrapper: ChatWrapper;
  slots: number;
  logger: Logger;
  sink: { readonly logger: Logger };
  modelPath: string;
  trainContextLength: number;
  threads: number;
  promptChunkTokens: number;
  warmSequences: number;
  warmTtlMs: number;
  clock: Clock;
}

/** A sequence kept after its job for the next turn of its conversation. */
interface WarmSequence {
  readonly sequence: LlamaContextSequence;
  /** Clock time after which it is cleared. */
  readonly expiresAt: number;
}

/** A running job, as far as dispose() needs to know. */
interface Job {
  readonly cancel: AbortController;
  done: Promise<unknown>;
}

/** A rendered prompt: its tokens and what ends the model's turn. */
interface RenderedPrompt {
  /** The constraints it was rendered with (a cache entry is only good for the same ones). */
  readonly constraints: ReplyConstraints | undefined;
  readonly tokens: readonly Token[];
  /** Stop texts from the chat template (e.g. its end-of-turn marker). */
  readonly stopTexts: readonly string[];
  /** Stop token sequences from the chat template that involve control tokens. */
  readonly stopTokens: readonly (readonly Token[])[];
}

class LlamaEngine implements InferenceEngine, ReplyInspector, Embedder {
  readonly model: EngineModelInfo;
  readonly totalSlots: number;
  readonly embeddingLength: number;
  private readonly threads: number;
  /** The embedding context, created on the first embedding job (it is a second llama.cpp context). */
  private embeddingContext: Promise<LlamaEmbeddingContext> | undefined;
  private readonly llamaModel: LlamaModel;
  private readonly context: LlamaContext;
  private readonly chatWrapper: ChatWrapper;
  /**
   * The last renderings, by the messages array they came from: the agent counts a prompt's
   * tokens before it accepts a job and then generates from the same array, so the chat template
   * and the tokenizer run once per job. Messages are treated as immutable.
   */
  private readonly rendered = new WeakMap<readonly ChatMessage[], RenderedPrompt>();
  private readonly logger: Logger;
  private readonly sink: { readonly logger: Logger };
  private readonly free: LlamaContextSequence[] = [];
  private readonly jobs = new Set<Job>();
  private readonly promptChunkTokens: number;
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private disposing: Promise<void> | undefined;
  /** Warm sequences by scope (see {@link scopeOf}), least recently used first. */
  private readonly warm = new Map<string, WarmSequence>();
  private readonly warmMax: number;
  private readonly warmTtlMs: number;
  private readonly clock: Clock;
  /** Keys the scopes; never leaves the engine, so a scope is good only for this load of the model. */
  private readonly scopeSecret = randomBytes(32);
  private sweepTimer: ReturnType<Clock['setTimeout']> | undefined;
  /** Evicted sequences being cleared (each already back in the free list; a job awaits its clear). */
  private readonly clearing = new Map<LlamaContextSequence, Promise<void>>();

  constructor(parts: EngineParts) {
    this.promptChunkTokens = Math.max(1, parts.promptChunkTokens);
    this.threads = parts.threads;
    this.embeddingLength = parts.model.embeddingVectorSize;
    this.llamaModel = parts.model;
    this.context = parts.context;
    this.chatWrapper = parts.chatWrapper;
    this.logger = parts.logger;
    this.sink = parts.sink;
    this.totalSlots = parts.slots;
    this.warmMax = parts.warmSequences;
    this.warmTtlMs = parts.warmTtlMs;
    this.clock = parts.clock;
    for (let i = 0; i < parts.slots; i++) this.free.push(parts.context.getSequence({ contextShift: NO_CONTEXT_SHIFT }));
    const metadata = parts.model.fileInfo.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
    const name = metadata['general']?.['name'];
    this.model = {
      path: parts.modelPath,
      trainContextLength: parts.trainContextLength,
      contextLength: parts.context.contextSize,
      synthetic: metadata['nightjar']?.['synthetic'] === true,
      name: typeof name === 'string' ? name : null,
    };
  }

  get freeSlots(): number {
    // A warm sequence is a free slot: a job without one takes it over.
    return this.disposing === undefined ? this.free.length + this.warm.size : 0;
  }

  /**
   * The scope a cache key files its sequence under: a keyed digest, so the key is not kept and
   * no one without the key can name its scope. Throws NJ_BAD_REQUEST for a malformed key.
   */
  private scopeOf(cacheKey: string): string {
    if (
      typeof cacheKey !== 'string' ||
      cacheKey.length < 22 ||
      cacheKey.length > MAX_CACHE_KEY_CHARS ||
      !/^[A-Za-z0-9_-]+$/.test(cacheKey)
    ) {
      throw new NightjarError(
        'NJ_BAD_REQUEST',
        `A cache key is 22 to ${MAX_CACHE_KEY_CHARS} base64url characters (128 to 512 random bits); draw one with randomBytes(32).`,
      );
    }
    return createHmac('sha256', this.scopeSecret).update(cacheKey).digest('base64url');
  }

  /**
   * Takes a slot for a job, synchronously: the warm sequence of `scope` if there is one, else a
   * clear free one, else the least recently used warm one (cleared by the job before use).
   */
  private acquire(scope: string | undefined): { sequence: LlamaContextSequence; warm: boolean } | undefined {
    this.sweep();
    if (scope !== undefined) {
      const mine = this.warm.get(scope);
      if (mine !== undefined) {
        this.warm.delete(scope);
        return { sequence: mine.sequence, warm: true };
      }
    }
    const sequence = this.free.pop();
    if (sequence !== undefined) return { sequence, warm: false };
    const lru = this.warm.entries().next().value;
    if (lru === undefined) return undefined;
    this.warm.delete(lru[0]);
    return { sequence: lru[1].sequence, warm: false };
  }

  /**
   * Gives a warm sequence back as a free slot at once and clears it (so its conversation leaves
   * memory now, not at its next use); a job that takes it first waits for the clear ({@link ready}).
   */
  private evict(sequence: LlamaContextSequence): void {
    if (this.disposing !== undefined) return;
    this.free.push(sequence);
    const cleared = sequence
      .clearHistory()
      .catch((error: unknown) => {
        const at = this.free.indexOf(sequence);
        if (at >= 0) this.free.splice(at, 1);
        if (this.disposing === undefined) this.logger.error('could not clear a sequence; slot retired', { error: messageOf(error) });
      })
      .finally(() => this.clearing.delete(sequence));
    this.clearing.set(sequence, cleared);
  }

  /** Waits until an evicted `sequence` is clear. */
  private async ready(sequence: LlamaContextSequence): Promise<void> {
    await this.clearing.get(sequence);
  }

  /** Clears the warm sequences whose time is up, and sets the timer for the next one. */
  private sweep(): void {
    const now = this.clock.now();
    for (const [scope, entry] of this.warm) {
      if (entry.expiresAt > now) continue;
      this.warm.delete(scope);
      this.evict(entry.sequence);
    }
    if (this.sweepTimer !== undefined) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    let next = Infinity;
    for (const entry of this.warm.values()) next = Math.min(next, entry.expiresAt);
    if (next !== Infinity && this.disposing === undefined) {
      this.sweepTimer = this.clock.setTimeout(
        () => {
          this.sweepTimer = undefined;
          this.sweep();
        },
        Math.max(0, next - now),
      );
    }
  }

  /** Keeps `sequence` warm under `scope` (a sequence already there is cleared), evicting the least recently used beyond the limit. */
  private keepWarm(scope: string, sequence: LlamaContextSequence): void {
    const previous = this.warm.get(scope);
    if (previous !== undefined) {
      this.warm.delete(scope);
      this.evict(previous.sequence);
    }
    this.warm.set(scope, { sequence, expiresAt: this.clock.now() + this.warmTtlMs });
    while (this.warm.size > this.warmMax) {
      const [oldest, entry] = this.warm.entries().next().value!;
      this.warm.delete(oldest);
      this.evict(entry.sequence);
    }
    this.sweep();
  }

  async forgetConversations(): Promise<void> {
    const entries = [...this.warm.values()];
    this.warm.clear();
    this.sweep();
    for (const entry of entries) this.evict(entry.sequence);
    await Promise.all(entries.map((e) => this.ready(e.sequence)));
  }

  async countPromptTokens(messages: readonly ChatMessage[], constraints?: ReplyConstraints): Promise<number> {
    this.assertUsable();
    validateMessages(messages);
    return this.render(messages, constraints).tokens.length;
  }

  /**
   * The grammar of `schema` ('json' for any JSON object), compiled once and kept. Throws
   * NJ_BAD_REQUEST when the schema cannot be made a grammar or its compile takes too long.
   */
  private grammarFor(schema: JsonSchemaObject | 'json'): Promise<LlamaGrammar> {
    const key = schema === 'json' ? 'json' : JSON.stringify(schema);
    let grammar = this.grammars.get(key);
    if (grammar !== undefined) {
      this.grammars.delete(key);
      this.grammars.set(key, grammar);
      return grammar;
    }
    const llama = this.llamaModel.llama;
    const compile: Promise<LlamaGrammar> =
      schema === 'json'
        ? llama.getGrammarFor('json')
        : llama
            .createGrammarForJsonSchema(schema as Parameters<typeof llama.createGrammarForJsonSchema>[0])
            .then((g) => llama.createGrammar({ grammar: integersOnly(g.grammar) }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`it took longer than ${GRAMMAR_COMPILE_TIMEOUT_MS} ms to compile`)),
        GRAMMAR_COMPILE_TIMEOUT_MS,
      );
    });
    grammar = Promise.race([compile, timeout])
      .catch((error: unknown) => {
        this.grammars.delete(key);
        throw new NightjarError(
          'NJ_BAD_REQUEST',
          `The JSON schema cannot be enforced as a grammar (${messageOf(error)}); ` +
            'simplify it (types, properties, items, enum, const, oneOf).',
          { cause: error },
        );
      })
      .finally(() => clearTimeout(timer));
    this.grammars.set(key, grammar);
    while (this.grammars.size > GRAMMAR_CACHE_SIZE) this.grammars.delete(this.grammars.keys().next().value!);
    return grammar;
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.assertUsable();
    validateMessages(request.messages);
    const parsed = samplingSchema.safeParse(request.sampling);
    if (!parsed.success) {
      throw new NightjarError(
        'NJ_BAD_REQUEST',
        `Invalid sampling parameters: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'sampling'}: ${i.message}`).join('; ')}.`,
      );
    }
    const started = performance.now();
    const constraints = constraintsOf(request);
    const mode = constraintMode(constraints);
    // Compiled before a slot is taken: a schema that cannot be enforced is refused without one.
    // (No await without a grammar: a plain job takes its slot in the same turn as the call.)
    const grammars: ReplyGrammars =
      mode.kind === 'text' && mode.schema === null ? { mode, text: undefined, call: undefined } : await this.grammarsOf(constraints, mode);
    if (request.signal?.aborted) {
      return {
        text: '',
        finishReason: 'cancelled',
        usage: { promptTokens: 0, completionTokens: 0 },
        timeToFirstTokenMs: 0,
        tokensPerSecond: 0,
      };
    }
    const scope = request.cacheKey === undefined || this.warmMax === 0 ? undefined : this.scopeOf(request.cacheKey);
    const slot = this.acquire(scope);
    if (slot === undefined) {
      throw new NightjarError('NJ_ENGINE_BUSY', `All ${this.totalSlots} sequences of this engine are generating; no slot is free.`);
    }
    const { sequence } = slot;
    const job: Job = { cancel: new AbortController(), done: Promise.resolve() };
    const onAbort = (): void => job.cancel.abort();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const run = (async (): Promise<GenerateResult> => {
      let keep = false;
      try {
        const result = await this.run(sequence, request, parsed.data, job.cancel.signal, started, grammars, slot.warm);
        // Only a whole turn is worth keeping; a cancel may be the owner coming back.
        keep = scope !== undefined && result.finishReason !== 'cancelled' && this.disposing === undefined;
        return result;
      } finally {
        request.signal?.removeEventListener('abort', onAbort);
        if (keep) this.keepWarm(scope!, sequence);
        else await this.release(sequence);
      }
    })();
    job.done = run.catch(() => undefined);
    this.jobs.add(job);
    try {
      return await run;
    } finally {
      this.jobs.delete(job);
    }
  }

  async inspect(request: InspectRequest): Promise<ReplyInspection> {
    this.assertUsable();
    validateMessages(request.messages);
    const { reply } = request;
    if (!Number.isInteger(request.topN) || request.topN < 1 || request.topN > 1000) {
      throw new NightjarError('NJ_BAD_REQUEST', `topN must be an integer from 1 to 1000; got ${String(request.topN)}.`);
    }
    for (const text of [reply.text, request.referenceText ?? '']) {
      if (typeof text !== 'string' || text.length > MAX_INSPECT_TEXT_CHARS) {
        throw new NightjarError('NJ_BAD_REQUEST', `A reply to inspect is a string of at most ${MAX_INSPECT_TEXT_CHARS} characters.`);
      }
    }
    const stops = request.stop ?? [];
    if (stops.length > LIMITS.maxStopSequences || stops.some((s) => typeof s !== 'string' || s.length > LIMITS.maxStopLength)) {
      throw new NightjarError(
        'NJ_BAD_REQUEST',
        `At most ${LIMITS.maxStopSequences} stop sequences of at most ${LIMITS.maxStopLength} characters.`,
      );
    }
    const prompt = this.render(request.messages);
    const replyTokens = this.tokenizeText(reply.text);
    const contextLength = this.context.contextSize;
    if (prompt.tokens.length + replyTokens.length > contextLength) {
      throw new NightjarError(
        'NJ_CONTEXT_OVERFLOW',
        `The prompt takes ${prompt.tokens.length} tokens and the reply ${replyTokens.length}: ` +
          `they do not fit the context of ${contextLength} tokens per sequence.`,
      );
    }
    const sequence = this.acquire(undefined)?.sequence;
    if (sequence === undefined) {
      throw new NightjarError('NJ_ENGINE_BUSY', `All ${this.totalSlots} sequences of this engine are busy; no slot is free.`);
    }
    const job: Job = { cancel: new AbortController(), done: Promise.resolve() };
    const run = (async (): Promise<ReplyInspection> => {
      try {
        return await this.inspectOn(sequence, prompt, replyTokens, request, job.cancel.signal);
      } finally {
        await this.release(sequence);
      }
    })();
    job.done = run.catch(() => undefined);
    this.jobs.add(job);
    try {
      return await run;
    } catch (error) {
      if (error instanceof NightjarError) throw error;
      this.logger.error('inspection failed', { error: messageOf(error), replyTokens: replyTokens.length });
      throw new NightjarError('NJ_ENGINE_FAILED', `Inspection failed: ${messageOf(error)}`, { cause: error });
    } finally {
      this.jobs.delete(job);
    }
  }

  /** The tokens of a reply text as the tokenizer spells it (no BOS, no added leading space). */
  private tokenizeText(text: string): Token[] {
    return text === '' ? [] : this.llamaModel.tokenize(text, false, 'trimLeadingSpace');
  }

  private async inspectOn(
    sequence: LlamaContextSequence,
    prompt: RenderedPrompt,
    canonical: readonly Token[],
    request: InspectRequest,
    cancel: AbortSignal,
  ): Promise<ReplyInspection> {
    await this.ready(sequence);
    if (sequence.nextTokenIndex !== 0) await sequence.clearHistory();
    const { reply, topN } = request;
    const n = canonical.length;
    const p = prompt.tokens.length;
    const wantEnd = reply.finishReason === 'stop';
    const tokens = [...canonical];
    const positions: Summary[] = new Array<Summary>(n);
    let end: TokenInspection | null = null;
    const endCandidates = this.endCandidates(prompt, reply.stopSequence);

    /** Evaluates `input`, whose token i is followed by reply position base + i. */
    const pass = async (input: readonly Token[], base: number): Promise<void> => {
      // Tokens whose next-token distribution is not needed go in without logits, in pieces.
      const skip = Math.max(0, Math.min(input.length, -base));
      for (let i = 0; i < skip; i += this.promptChunkTokens) {
        if (cancel.aborted) throw inspectionCancelled();
        await sequence.evaluateWithoutGeneratingNewTokens(input.slice(i, Math.min(skip, i + this.promptChunkTokens)), {
          contextShift: NO_CONTEXT_SHIFT,
        });
      }
      for (let i = skip; i < input.length; i += INSPECT_CHUNK_TOKENS) {
        if (cancel.aborted) throw inspectionCancelled();
        const part = input.slice(i, i + INSPECT_CHUNK_TOKENS).map((token, j): ControlledEvaluateInputItem => {
          const next = base + i + j;
          return next < n || (next === n && wantEnd) ? [token, { generateNext: { probabilities: true } }] : token;
        });
        // Each distribution is reduced to numbers as it arrives: a large vocabulary's maps are not kept.
        await sequence.controlledEvaluate(part, {
          contextShift: NO_CONTEXT_SHIFT,
          onTokenResult: (index, result) => {
            const probabilities = result.next.probabilities;
            if (probabilities === undefined) return;
            const next = base + i + index;
            if (next < n) positions[next] = summarize(probabilities, tokens[next]!, topN);
            else if (next === n) {
              let best: Summary | undefined;
              for (const candidate of endCandidates) {
                const s = summarize(probabilities, candidate, topN);
                if (best === undefined || s.logprob > best.logprob) best = s;
              }
              end = best === undefined ? null : { rank: best.rank, logprob: best.logprob, top: best.top };
            }
          },
        });
      }
    };

    await pass([...prompt.tokens, ...tokens], -(p - 1));
    // A generator may spell a piece of text with another token than the tokenizer does (a byte
    // token for a character that also has its own token): where the model ranks a same-text token
    // higher, that spelling is the one judged, and the rest is evaluated again after it.
    let respelled = 0;
    for (let j = 0; j < n && respelled < MAX_RESPELLINGS; j++) {
      const at = positions[j];
      if (at === undefined) throw new Error(`no distribution for reply position ${j}`);
      const before = j === 0 ? prompt.tokens.at(-1)! : tokens[j - 1]!;
      const alternative = this.betterSpelling(at, tokens[j]!, before);
      if (alternative === undefined) continue;
      tokens[j] = at.ids[alternative]!;
      positions[j] = { ...at, rank: rankOf(at.top, alternative), logprob: at.top[alternative]! };
      respelled += 1;
      await sequence.eraseContextTokenRanges([{ start: p + j, end: sequence.nextTokenIndex }]);
      await pass(tokens.slice(j), j + 1);
    }

    let reference: ReplyInspection['reference'];
    if (request.referenceText !== undefined) {
      const ref = this.tokenizeText(request.referenceText);
      let divergeAt: number | null = null;
      for (let i = 0; i < n; i++) {
        if (i >= ref.length || ref[i] !== canonical[i]) {
          divergeAt = i;
          break;
        }
      }
      reference = { referenceTokens: ref.length, divergeAt };
    }

    let heldBackBytes = 0;
    for (const stop of [...(request.stop ?? []), ...prompt.stopTexts]) heldBackBytes = Math.max(heldBackBytes, utf8Bytes(stop) - 1);
    return {
      promptTokens: p,
      replyTokens: n,
      positions: positions.map((s) => ({ rank: s.rank, logprob: s.logprob, top: s.top })),
      end: wantEnd ? end : null,
      stopSequenceTokens: reply.stopSequence === undefined ? 0 : this.tokenizeText(reply.stopSequence).length,
      // Every token decodes to at least one byte: a held-back stop prefix is at most its bytes in
      // tokens, and an incomplete character at most MAX_TOKENS_PER_CHARACTER - 1 more.
      heldBackTokens: heldBackBytes + MAX_TOKENS_PER_CHARACTER - 1,
      respelled,
      ...(reference === undefined ? {} : { reference }),
    };
  }

  /**
   * The tokens that may end a reply here: end of generation, and the first token of the named stop
   * sequence and of each of the chat template's stops.
   */
  private endCandidates(prompt: RenderedPrompt, stopSequence: string | undefined): Token[] {
    const model = this.llamaModel;
    const out = new Set<Token>();
    for (const t of [model.tokens.eos, model.tokens.eot]) if (t !== null) out.add(t);
    for (const text of [...(stopSequence === undefined ? [] : [stopSequence]), ...prompt.stopTexts]) {
      const first = this.tokenizeText(text)[0];
      if (first !== undefined) out.add(first);
    }
    for (const seq of prompt.stopTokens) if (seq[0] !== undefined) out.add(seq[0]);
    return [...out];
  }

  /** Index in `at.ids` of a token the model ranks above `token` that decodes to the same text, if any. */
  private betterSpelling(at: Summary, token: Token, before: Token): number | undefined {
    const model = this.llamaModel;
    let text: string | undefined;
    for (let i = 0; i < at.ids.length && at.top[i]! > at.logprob; i++) {
      const id = at.ids[i]!;
      if (id === token) continue;
      text ??= model.detokenize([token], false, [before]);
      if (text === '' || text.includes('\uFFFD')) return undefined;
      if (model.detokenize([id], false, [before]) === text) return i;
    }
    return undefined;
  }

  async countEmbedTokens(input: readonly string[]): Promise<number[]> {
    const context = await this.embedding();
    return input.map((text) => context.calculateInputLength(text));
  }

  /** The embedding context, created on first use (at the model's context length, with the engine's threads). */
  private async embedding(): Promise<LlamaEmbeddingContext> {
    this.assertUsable();
    this.embeddingContext ??= this.llamaModel.createEmbeddingContext({ contextSize: this.model.contextLength, threads: this.threads });
    return this.embeddingContext.catch((error: unknown) => {
      this.embeddingContext = undefined;
      throw new NightjarError(
        'NJ_ENGINE_FAILED',
        `Could not create an embedding context for ${path.basename(this.model.path)}: ${messageOf(error)}`,
        { cause: error },
      );
    });
  }

  async embed(request: EmbedRequest): Promise<EmbedResult> {
    const context = await this.embedding();
    const job: Job = { cancel: new AbortController(), done: Promise.resolve() };
    const run = async (): Promise<EmbedResult> => {
      const vectors: Float32Array[] = [];
      let promptTokens = 0;
      for (const text of request.input) {
        if (request.signal?.aborted || job.cancel.signal.aborted)
          throw new NightjarError('NJ_CANCELLED', 'the embedding job was cancelled');
        const tokens = context.calculateInputLength(text);
        if (tokens >= this.model.contextLength) {
          throw new NightjarError(
            'NJ_CONTEXT_OVERFLOW',
            `An input takes ${tokens} tokens; the embedding context holds ${this.model.contextLength - 1}. Split it into shorter texts.`,
          );
        }
        const embedding = await context.getEmbeddingFor(text).catch((error: unknown) => {
          throw new NightjarError('NJ_ENGINE_FAILED', `Embedding failed: ${messageOf(error)}`, { cause: error });
        });
        if (embedding.vector.length !== this.embeddingLength) {
          throw new NightjarError(
            'NJ_ENGINE_FAILED',
            `The model gave a vector of ${embedding.vector.length} values, not ${this.embeddingLength}.`,
          );
        }
        vectors.push(Float32Array.from(embedding.vector));
        promptTokens += tokens;
      }
      return { vectors, promptTokens };
    };
    const done = run();
    job.done = done.catch(() => undefined);
    this.jobs.add(job);
    try {
      return await done;
    } finally {
      this.jobs.delete(job);
    }
  }

  dispose(): Promise<void> {
    this.disposing ??= this.disposeNow();
    return this.disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private async disposeNow(): Promise<void> {
    for (const job of this.jobs) job.cancel.abort();
    await Promise.all([...this.jobs].map((job) => job.done));
    this.free.length = 0;
    this.warm.clear();
    if (this.sweepTimer !== undefined) this.clock.clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    await Promise.all(this.clearing.values());
    try {
      if (this.embeddingContext !== undefined) await (await this.embeddingContext.catch(() => undefined))?.dispose();
      await this.context.dispose();
      await this.llamaModel.dispose();
    } finally {
      await logsDelivered();
      llamaLogSinks.delete(this.sink);
      this.logger.info('model unloaded', { model: path.basename(this.model.path) });
    }
  }

  private assertUsable(): void {
    if (this.disposing !== undefined) {
      throw new NightjarError(
        'NJ_ENGINE_FAILED',
        `The engine for ${path.basename(this.model.path)} was disposed; load the model again to generate.`,
      );
    }
  }

  /** Clears the sequence (KV cache and token history) and returns it to the free list. */
  private async release(sequence: LlamaContextSequence): Promise<void> {
    try {
      await sequence.clearHistory();
    } catch (error) {
      if (this.disposing === undefined) this.logger.error('could not clear a sequence; slot retired', { error: messageOf(error) });
      return;
    }
    if (this.disposing === undefined) this.free.push(sequence);
  }

  /** The grammars a reply of `mode` may need: its text's, and its call's. */
  private async grammarsOf(c: ReplyConstraints, mode: ConstraintMode): Promise<ReplyGrammars> {
    const text = mode.kind === 'text' && mode.schema !== null ? await this.grammarFor(mode.schema) : undefined;
    const call =
      mode.kind === 'call' || mode.kind === 'auto'
        ? await this.grammarFor(callSchema(c.tools!, mode.kind === 'call' ? mode.name : null))
        : undefined;
    return { mode, text, call };
  }

  /** Renders `messages` (with the tools and format of `constraints`) with the model's chat template and tokenises the result. */
  private render(messages: readonly ChatMessage[], constraints?: ReplyConstraints): RenderedPrompt {
    const c = constraints === undefined ? undefined : constraintsOf(constraints);
    const cached = this.rendered.get(messages);
    if (cached && sameConstraints(cached.constraints, c)) return cached;
    const history = historyOf(messages, c === undefined ? null : constraintsPrompt(c, constraintMode(c)));
    // A conversation that ends with an assistant message is continued (a prefill); otherwise the
    // model starts a new assistant turn.
    if (messages.at(-1)?.role !== 'assistant') history.push({ type: 'model', response: [] });
    let state;
    try {
      state = this.chatWrapper.generateContextState({ chatHistory: history });
    } catch (error) {
      throw new NightjarError('NJ_BAD_REQUEST', `The model's chat template cannot render this conversation: ${messageOf(error)}`, {
        cause: error,
      });
    }
    const tokens = state.contextText.tokenize(this.llamaModel.tokenizer);
    if (tokens.length === 0) throw new NightjarError('NJ_BAD_REQUEST', 'The conversation renders to an empty prompt with this model.');
    const stopTexts: string[] = [];
    const stopTokens: Token[][] = [];
    for (const trigger of state.stopGenerationTriggers) this.addStopTrigger(trigger, stopTexts, stopTokens);
    const rendered: RenderedPrompt = { constraints: c, tokens, stopTexts, stopTokens };
    this.rendered.set(messages, rendered);
    return rendered;
  }

  /**
   * Sorts a chat template stop trigger: plain text (including "special" text that this vocabulary
   * spells with ordinary tokens) is matched in the generated text; anything with a control token
   * is matched on tokens. A lone end-of-generation token needs neither: llama.cpp ends on it.
   */
  private addStopTrigger(trigger: LlamaText, texts: string[], tokenSeqs: Token[][]): void {
    const model = this.llamaModel;
    const tokens = trigger.tokenize(model.tokenizer, 'trimLeadingSpace');
    if (tokens.length === 0) return;
    if (tokens.length === 1 && model.isEogToken(tokens[0])) return;
    if (tokens.some((t) => model.getTokenAttributes(t).control)) {
      tokenSeqs.push(tokens);
      return;
    }
    let text = '';
    for (const value of trigger.values) {
      if (typeof value === 'string') text += value;
      else if (value instanceof SpecialTokensText) text += value.value;
      else if (value instanceof SpecialToken) return;
    }
    if (text !== '') texts.push(text);
  }

  private async run(
    sequence: LlamaContextSequence,
    request: GenerateRequest,
    sampling: Sampling,
    cancel: AbortSignal,
    started: number,
    grammars: ReplyGrammars,
    warm: boolean,
  ): Promise<GenerateResult> {
    await this.ready(sequence);
    const prompt = this.render(request.messages, constraintsOf(request));
    const promptLength = prompt.tokens.length;
    // A warm sequence keeps what its prompt shares with the last turn, less at least the last
    // prompt token (evaluated again for the distribution of the first reply token); any other
    // sequence starts empty.
    let cached = 0;
    if (warm) cached = Math.min(sequence.compareContextTokens([...prompt.tokens]).firstDifferentIndex, promptLength - 1);
    if (cached === 0) {
      if (sequence.nextTokenIndex !== 0) await sequence.clearHistory();
    } else if (sequence.nextTokenIndex > cached) {
      await sequence.eraseContextTokenRanges([{ start: cached, end: sequence.nextTokenIndex }]);
    }
    const contextLength = sequence.contextSize;
    if (promptLength + sampling.maxTokens > contextLength) {
      throw new NightjarError(
        'NJ_CONTEXT_OVERFLOW',
        `The prompt takes ${promptLength} tokens and maxTokens is ${sampling.maxTokens}: ` +
          `${promptLength + sampling.maxTokens} tokens do not fit the context of ${contextLength} tokens per sequence ` +
          `(at most ${Math.max(0, contextLength - promptLength)} tokens can be generated for this prompt).`,
      );
    }
    const { mode } = grammars;
    // A call is not streamed (it is delivered whole, in the final chunk) and the request's stop
    // sequences do not cut it; a grammar's reply ends at the grammar's end text.
    let calling = mode.kind === 'call';
    const replyFor = (call: boolean): ReplyText =>
      call
        ? new ReplyText(this.llamaModel, [GRAMMAR_END_TEXT, ...prompt.stopTexts], undefined)
        : new ReplyText(
            this.llamaModel,
            [...(sampling.stop ?? []), ...(grammars.text === undefined ? [] : [GRAMMAR_END_TEXT]), ...prompt.stopTexts],
            request.onDelta,
          );
    let reply = replyFor(calling);
    let promptTokens = cached;
    let completionTokens = 0;
    let firstTokenAt: number | undefined;
    let lastTokenAt = 0;
    let finishReason: FinishReason | undefined;
    const generated: Token[] = [];
    const penalties =
      (sampling.frequencyPenalty ?? 0) !== 0 || (sampling.presencePenalty ?? 0) !== 0
        ? {
            punishTokens: () => generated,
            maxPunishTokens: sampling.maxTokens,
            penalty: 1,
            frequencyPenalty: sampling.frequencyPenalty ?? 0,
            presencePenalty: sampling.presencePenalty ?? 0,
          }
        : undefined;

    try {
      // The prompt minus its last token, in pieces: a cancel lands between pieces.
      const head = prompt.tokens.slice(cached, -1);
      const chunk = this.promptChunkTokens;
      for (let i = 0; i < head.length && !cancel.aborted; i += chunk) {
        const part = head.slice(i, i + chunk);
        await sequence.evaluateWithoutGeneratingNewTokens(part, { contextShift: NO_CONTEXT_SHIFT });
        promptTokens += part.length;
      }
      if (cancel.aborted) finishReason = 'cancelled';
      for (let pass = 0; finishReason === undefined; pass++) {
        const grammar = calling ? grammars.call : grammars.text;
        const temperature = sampling.temperature ?? DEFAULT_SAMPLING.temperature;
        const tokens = sequence.evaluate(prompt.tokens.slice(-1), {
          temperature,
          topK: sampling.topK ?? DEFAULT_SAMPLING.topK,
          topP: sampling.topP ?? DEFAULT_SAMPLING.topP,
          minP: DEFAULT_SAMPLING.minP,
          seed: sampling.seed ?? randomInt(0, 2 ** 32 - 1),
          contextShift: NO_CONTEXT_SHIFT,
          yieldEogToken: true,
          ...(grammar === undefined
            ? {}
            : { grammarEvaluationState: new LlamaGrammarEvaluationState({ model: this.llamaModel, grammar }) }),
          ...(penalties === undefined ? {} : { repeatPenalty: penalties }),
        });
        let switchToCall = false;
        try {
          for (;;) {
            // Pulling the next token is what makes llama.cpp decode it: stop pulling, it stops.
            const next = await tokens.next();
            const now = performance.now();
            if (firstTokenAt === undefined) {
              firstTokenAt = now;
              promptTokens += 1;
            }
            if (cancel.aborted) {
              finishReason = 'cancelled';
              break;
            }
            if (next.done === true) {
              finishReason = reply.finish() ?? 'stop';
              break;
            }
            const token = next.value;
            // 'auto': a reply that opens with a JSON object is a call. That first token is taken
            // back (not counted) and the reply is generated again under the call grammar.
            if (mode.kind === 'auto' && pass === 0 && completionTokens === 0 && this.opensObject(token)) {
              switchToCall = true;
              break;
            }
            completionTokens += 1;
            lastTokenAt = now;
            generated.push(token);
            if (this.llamaModel.isEogToken(token) || endsWithAny(generated, prompt.stopTokens)) {
              reply.finish();
              finishReason = 'stop';
              break;
            }
            if (reply.push(token) === 'stop') {
              finishReason = 'stop';
              break;
            }
            if (cancel.aborted) {
              finishReason = 'cancelled';
              break;
            }
            if (completionTokens >= sampling.maxTokens) {
              finishReason = reply.finish() ?? 'length';
              break;
            }
          }
        } finally {
          await tokens.return();
        }
        if (!switchToCall) break;
        // The last prompt token is evaluated again, for its distribution under the call grammar.
        await sequence.eraseContextTokenRanges([{ start: promptLength - 1, end: sequence.nextTokenIndex }]);
        calling = true;
        reply = replyFor(true);
      }
    } catch (error) {
      if (error instanceof NightjarError) throw error;
      if (this.disposing !== undefined && cancel.aborted) finishReason = 'cancelled';
      else {
        this.logger.error('generation failed', { error: messageOf(error), promptTokens, completionTokens });
        throw new NightjarError('NJ_ENGINE_FAILED', `Generation failed after ${completionTokens} tokens: ${messageOf(error)}`, {
          cause: error,
        });
      }
    }

    const ttft = firstTokenAt === undefined ? performance.now() - started : firstTokenAt - started;
    const decodeMs = firstTokenAt === undefined ? 0 : lastTokenAt - firstTokenAt;
    let text = reply.text;
    let toolCalls: ToolCall[] | undefined;
    let finish = finishReason ?? 'cancelled';
    if (calling) {
      if (finish === 'stop') {
        // A finished call: its grammar made sure it parses.
        const name = mode.kind === 'call' ? mode.name : null;
        toolCalls = [readCall(reply.text, name, `call_${randomBytes(18).toString('base64url')}`)];
        text = '';
        finish = 'tool_calls';
      } else if (text !== '') {
        // A call cut short (maxTokens, a cancel) is delivered as the text it is, so the client sees
        // (and counts) every token it pays for.
        request.onDelta?.(text);
      }
    }
    const stopSequence = finish === 'stop' && reply.matchedStop !== GRAMMAR_END_TEXT ? reply.matchedStop : undefined;
    return {
      text,
      finishReason: finish,
      ...(stopSequence === undefined ? {} : { stopSequence }),
      ...(toolCalls === undefined ? {} : { toolCalls }),
      usage: { promptTokens, completionTokens },
      timeToFirstTokenMs: ttft,
      tokensPerSecond: completionTokens >= 2 && decodeMs > 0 ? ((completionTokens - 1) * 1000) / decodeMs : 0,
      ...(cached === 0 ? {} : { cachedPromptTokens: cached }),
    };
  }

  /** True if `token` alone, leading spaces aside, opens a JSON object. */
  private opensObject(token: Token): boolean {
    return this.llamaModel.detokenize([token], false).trimStart().startsWith('{');
  }
}

/**
 * node-llama-cpp 3.21's integer rule allows an exponent, and so 3e-2: a JSON "integer" that is
 * not one. Its integers here are plain digits (at most 16, as node-llama-cpp bounds them).
 */
function integersOnly(grammar: string): string {
  return grammar.replace(/^integer-number-rule ::= .*$/m, 'integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15})');
}

/** The grammars of one reply (see {@link LlamaEngine.grammarsOf}). */
interface ReplyGrammars {
  readonly mode: ConstraintMode;
  /** The grammar of a text reply under a response format. */
  readonly text: LlamaGrammar | undefined;
  /** The grammar of a call. */
  readonly call: LlamaGrammar | undefined;
}

/** The constraint fields of a request, without the rest (only those that are set). */
function constraintsOf(r: ReplyConstraints): ReplyConstraints {
  return {
    ...(r.tools === undefined ? {} : { tools: r.tools }),
    ...(r.toolChoice === undefined ? {} : { toolChoice: r.toolChoice }),
    ...(r.responseFormat === undefined ? {} : { responseFormat: r.responseFormat }),
  };
}

function sameConstraints(a: ReplyConstraints | undefined, b: ReplyConstraints | undefined): boolean {
  const empty = (c: ReplyConstraints | undefined): boolean =>
    c === undefined || (c.tools === undefined && c.toolChoice === undefined && c.responseFormat === undefined);
  if (empty(a) || empty(b)) return empty(a) && empty(b);
  return (
    a!.tools === b!.tools && JSON.stringify(a!.toolChoice) === JSON.stringify(b!.toolChoice) && a!.responseFormat === b!.responseFormat
  );
}

/** Reply positions whose distributions are evaluated in one controlledEvaluate call (bounds the memory of a large vocabulary's maps). */
const INSPECT_CHUNK_TOKENS = 16;
/** Respellings one inspection makes at most (each evaluates the rest of the reply again). */
const MAX_RESPELLINGS = 64;
/** The longest reply text an inspection takes. */
const MAX_INSPECT_TEXT_CHARS = 1 << 20;

/** One reply position, reduced: rank and log-probability of its token, and the top ones with their ids. */
interface Summary extends TokenInspection {
  readonly top: number[];
  readonly ids: Token[];
}

/** Reduces a sorted next-token distribution to the figures of `token` and the `topN` most likely tokens. */
function summarize(probabilities: Map<Token, number>, token: Token, topN: number): Summary {
  const p = probabilities.get(token) ?? 0;
  let rank = 1;
  const top: number[] = [];
  const ids: Token[] = [];
  for (const [id, q] of probabilities) {
    if (q > p) rank += 1;
    else if (top.length >= topN) break;
    if (top.length < topN) {
      top.push(Math.log(q));
      ids.push(id);
    }
  }
  return { rank, logprob: Math.log(p), top, ids };
}

/** 1 + how many of the (sorted) `top` log-probabilities are strictly above the one at `index`. */
function rankOf(top: readonly number[], index: number): number {
  let rank = 1;
  for (let i = 0; i < index && top[i]! > top[index]!; i++) rank += 1;
  return rank;
}

function inspectionCancelled(): NightjarError {
  return new NightjarError('NJ_ENGINE_FAILED', 'The inspection was stopped: the engine is being disposed.');
}

function utf8Bytes(text: string): number {
  return new TextEncoder().encode(text).length;
}

function validateMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new NightjarError('NJ_BAD_REQUEST', 'A generation needs at least one message.');
  }
  messages.forEach((m, i) => {
    if (!chatMessageSchema.safeParse(m).success) {
      throw new NightjarError('NJ_BAD_REQUEST', `Message ${i} is not {role: 'system' | 'user' | 'assistant', content: string}.`);
    }
  });
}

function endsWithAny(tokens: readonly Token[], sequences: readonly (readonly Token[])[]): boolean {
  outer: for (const s of sequences) {
    if (s.length > tokens.length) continue;
    for (let i = 1; i <= s.length; i++) {
      if (tokens[tokens.length - i] !== s[s.length - i]) continue outer;
    }
    return true;
  }
  return false;
}

/**
 * The reply as text: decodes tokens, finds stop sequences, and emits deltas. `text` is always
 * exactly the concatenation of the deltas handed to `onDelta`.
 */
class ReplyText {
  /** Everything emitted so far: the concatenation of the deltas. */
  text = '';
  /** Decoded text of the committed tokens; `text` is a prefix of it. */
  private decoded = '';
  private pending: Token[] = [];
  private context: Token[] = [];
  private stopped = false;
  /** The stop sequence that ended the reply, if one did. */
  matchedStop: string | undefined;
  private readonly maxStop: number;

  constructor(
    private readonly model: LlamaModel,
    private readonly stops: readonly string[],
    private readonly onDelta: ((text: string) => void) | undefined,
  ) {
    this.maxStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Adds a token; returns 'stop' if a stop sequence is now complete. */
  push(token: Token): 'stop' | undefined {
    this.pending.push(token);
    const piece = this.model.detokenize(this.pending, false, this.context);
    // A token may end inside a multi-byte character; wait for the rest of it.
    if (piece.endsWith('\uFFFD') && this.pending.length < MAX_TOKENS_PER_CHARACTER) return undefined;
    this.commit(piece);
    return this.scan(false);
  }

  /**
   * Ends the reply (at maxTokens or end of generation): decodes what is pending and emits the
   * held-back tail, unless it completes a stop sequence. Returns 'stop' in that case.
   */
  finish(): 'stop' | undefined {
    if (this.stopped) return 'stop';
    if (this.pending.length > 0) this.commit(this.model.detokenize(this.pending, false, this.context));
    return this.scan(true);
  }

  private commit(piece: string): void {
    this.decoded += piece;
    this.context = [...this.context, ...this.pending].slice(-8);
    this.pending = [];
  }

  private scan(final: boolean): 'stop' | undefined {
    const from = this.text.length;
    let cut = -1;
    for (const stop of this.stops) {
      const at = this.decoded.indexOf(stop, from);
      if (at >= 0 && (cut < 0 || at < cut)) {
        cut = at;
        this.matchedStop = stop;
      }
    }
    if (cut >= 0) {
      this.emit(this.decoded.slice(from, cut));
      this.stopped = true;
      return 'stop';
    }
    const end = final ? this.decoded.length : this.decoded.length - this.heldBack(from);
    this.emit(this.decoded.slice(from, end));
    return undefined;
  }

  /** Length of the longest tail (after `from`) that is a proper prefix of a stop sequence. */
  private heldBack(from: number): number {
    const limit = Math.min(this.maxStop - 1, this.decoded.length - from);
    for (let k = limit; k > 0; k--) {
      const tail = this.decoded.slice(this.decoded.length - k);
      if (this.stops.some((s) => s.length > k && s.startsWith(tail))) return k;
    }
    return 0;
  }

  private emit(delta: string): void {
    if (delta === '') return;
    this.text += delta;
    this.onDelta?.(delta);
  }
}
