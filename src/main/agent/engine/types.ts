/**
 * The contract between the agent and its inference engine. The real implementation drives
 * node-llama-cpp (./engine.ts); tests of the agent may hand in a small fake with the same shape.
 */
import type { ChatMessage, FinishReason, ResponseFormat, Sampling, Tool, ToolCall, ToolChoice, Usage } from '../../../shared/index.js';
import type { ReplyInspection } from '../../../shared/index.js';

/**
 * What shapes a reply besides sampling, as the request sealed it: functions the model may call and
 * the format of a text reply. Each is enforced by a grammar at the engine.
 */
export interface ReplyConstraints {
  /** Functions the model may call. Defaults to none. */
  tools?: readonly Tool[];
  /** Whether it calls one. Defaults to 'auto' when there are tools. */
  toolChoice?: ToolChoice;
  /** The shape of a text reply. Defaults to free text. */
  responseFormat?: ResponseFormat;
}

/** What one generation needs. */
export interface GenerateRequest extends ReplyConstraints {
  /** The conversation, rendered with the model's own chat template. */
  messages: readonly ChatMessage[];
  /** Sampling parameters: maxTokens, temperature, topP, topK, seed, stop sequences. */
  sampling: Sampling;
  /** Aborting stops generation within one token; the result then has finishReason 'cancelled'. */
  signal?: AbortSignal;
  /** Receives each piece of text as it is generated, in order. */
  onDelta?: (text: string) => void;
  /**
   * The conversation's cache key, as the client sealed it (secret, random, at least 128 bits).
   * With one, the engine keeps the sequence warm after the job, for the next turn of the same key
   * only, so that turn evaluates just its new tokens. Defaults to none (the sequence is cleared).
   */
  cacheKey?: string;
}

/** What one generation produced. */
export interface GenerateResult {
  /** The full reply text; equals the concatenation of every delta. */
  text: string;
  finishReason: FinishReason;
  /** The stop sequence that ended the reply, when one did (finishReason 'stop'). */
  stopSequence?: string;
  /** The calls of a reply that ended in tool calls (finishReason 'tool_calls'); then `text` is empty. */
  toolCalls?: ToolCall[];
  /** promptTokens counted from the rendered prompt; completionTokens as generated. */
  usage: Usage;
  /** Milliseconds from the call to the first generated token. */
  timeToFirstTokenMs: number;
  /** Completion tokens per second over the generation phase. */
  tokensPerSecond: number;
  /**
   * Prompt tokens that were already in the conversation's warm sequence and so not evaluated
   * again (they are part of usage.promptTokens). Defaults to 0 (absent) without a warm sequence.
   */
  cachedPromptTokens?: number;
}

/** What the engine knows of the loaded model. */
export interface EngineModelInfo {
  /** Absolute path of the GGUF file. */
  path: string;
  /** Context length the model was trained for (from its metadata). */
  trainContextLength: number;
  /** Context length each sequence gets here. */
  contextLength: number;
  /** True if the file says it was written by Nightjar's synthetic generator. */
  synthetic: boolean;
  /** `general.name` from the file, if any. */
  name: string | null;
}

/** A loaded model serving up to `totalSlots` generations at once. */
export interface InferenceEngine extends AsyncDisposable {
  readonly model: EngineModelInfo;
  /** Parallel sequences. */
  readonly totalSlots: number;
  /** Sequences not generating right now. */
  readonly freeSlots: number;
  /**
   * Generates a reply. Throws NightjarError NJ_ENGINE_BUSY when no slot is free,
   * NJ_CONTEXT_OVERFLOW when the prompt plus maxTokens cannot fit the context,
   * NJ_BAD_REQUEST when the messages or sampling parameters are malformed (or the chat template
   * cannot render them), NJ_ENGINE_FAILED for anything else (including after dispose()).
   */
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** Tokens the rendered prompt of `messages` takes (with the tools and format of `constraints`, rendered as generate renders them). */
  countPromptTokens(messages: readonly ChatMessage[], constraints?: ReplyConstraints): Promise<number>;
  /**
   * Clears every warm conversation sequence (the owner came back, the agent stops serving): no
   * conversation stays in memory past a preemption. Optional: an engine without a cache has none.
   */
  forgetConversations?(): Promise<void>;
  /** Stops every generation and frees the model's memory. Idempotent. */
  dispose(): Promise<void>;
}

/** What one teacher-forced inspection of a reply needs (see {@link ReplyInspector.inspect}). */
export interface InspectRequest {
  /** The conversation, rendered exactly as {@link InferenceEngine.generate} renders it. */
  messages: readonly ChatMessage[];
  /** The reply as delivered. */
  reply: { text: string; finishReason: FinishReason; stopSequence?: string };
  /** The request's stop sequences (they bound what a cancelled reply may hold back). Defaults to none. */
  stop?: readonly string[];
  /**
   * How many of the most likely tokens to report at each position: the k that applies (1 when
   * greedy). An integer from 1 to 1000 (the protocol's top-k limit).
   */
  topN: number;
  /**
   * The text of a greedy reference run of the same request, to compare token by token. Defaults
   * to none (no comparison).
   */
  referenceText?: string;
}

/** An engine that can check a reply against its model in one teacher-forced pass. */
export interface ReplyInspector {
  /**
   * Evaluates the rendered prompt and the reply's tokens in one pass on a free slot and reports,
   * per reply position, the rank and log-probability of the reply's token and of the most likely
   * ones; for a reply that finished 'stop', the same for the end. Only numbers come back; nothing
   * is logged. Throws NJ_ENGINE_BUSY when no slot is free, NJ_CONTEXT_OVERFLOW when prompt and reply
   * do not fit a sequence, NJ_BAD_REQUEST for malformed input, NJ_ENGINE_FAILED otherwise.
   */
  inspect(request: InspectRequest): Promise<ReplyInspection>;
}

/** What one embedding run needs. */
export interface EmbedRequest {
  /** The texts to embed, in order; each must fit the engine's context in tokens. */
  input: readonly string[];
  /** Aborting stops between texts; the run then throws NJ_CANCELLED. */
  signal?: AbortSignal;
}

/** What one embedding run produced. */
export interface EmbedResult {
  /** One vector per input text, in order, each {@link Embedder.embeddingLength} wide. */
  vectors: Float32Array[];
  /** Tokens evaluated, over every text. */
  promptTokens: number;
}

/** An engine that can turn texts into embedding vectors with its model. */
export interface Embedder {
  /** The width of every vector: the model's embedding length. */
  readonly embeddingLength: number;
  /**
   * Tokens each text takes as {@link Embedder.embed} evaluates it (creating the embedding context
   * on first use). A text fits when it takes fewer than the context length.
   */
  countEmbedTokens(input: readonly string[]): Promise<number[]>;
  /**
   * Embeds each text in turn (one text at a time on one embedding context, created on first use).
   * Throws NJ_CONTEXT_OVERFLOW when a text does not fit the context, NJ_CANCELLED when aborted,
   * NJ_ENGINE_FAILED otherwise (including after dispose()).
   */
  embed(request: EmbedRequest): Promise<EmbedResult>;
}
