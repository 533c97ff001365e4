/**
 * The OpenAI Chat Completions API on top of the SDK: request bodies mapped to Nightjar sampling,
 * results and stream events in the shapes the `openai` package parses.
 */
import { z } from 'zod';
import { NightjarError, describeIssues, type ChatMessage, type FinishReason } from '../../shared/index.js';
import type { ChatResult } from '../sdk/index.js';

/** A parsed Chat Completions request. */
export interface OpenAiRequest {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | undefined;
  temperature: number | undefined;
  topP: number | undefined;
  seed: number | undefined;
  stop: string[] | undefined;
}

const textPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const messageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(textPart), z.null()]).optional(),
  tool_calls: z.array(z.unknown()).nullish(),
  function_call: z.unknown().optional(),
});
const bodySchema = z.looseObject({
  model: z.string().min(1),
  messages: z.array(messageSchema).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  max_tokens: z.int().min(1).nullish(),
  max_completion_tokens: z.int().min(1).nullish(),
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  seed: z.int().nullish(),
  n: z.int().nullish(),
  tools: z.array(z.unknown()).nullish(),
  functions: z.array(z.unknown()).nullish(),
  response_format: z.looseObject({ type: z.string() }).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.int().nullish(),
  presence_penalty: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  audio: z.unknown().optional(),
  modalities: z.array(z.string()).nullish(),
});

function unsupported(what: string): NightjarError {
  return new NightjarError('NJ_UNSUPPORTED_FEATURE', `${what} is not supported`);
}

function text(content: z.infer<typeof messageSchema>['content'], index: number): string {
  if (content === undefined || content === null) throw new NightjarError('NJ_BAD_REQUEST', `messages[${index}].content is missing`);
  if (typeof content === 'string') return content;
  return content
    .map((part) => {
      if (part.type !== 'text' || part.text === undefined)
        throw unsupported(`messages[${index}] content of type "${part.type}" (only text)`);
      return part.text;
    })
    .join('');
}

/**
 * Seeds: OpenAI takes any 64-bit integer, agents a 32-bit unsigned one. Reducing modulo 2^32 keeps
 * what a seed is for — the same seed gives the same sampling.
 */
export function reduceSeed(seed: number): number {
  const m = 2 ** 32;
  return ((seed % m) + m) % m;
}

/** Parses and checks a Chat Completions request body. */
export function parseOpenAiRequest(body: unknown): OpenAiRequest {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `the request is invalid at ${describeIssues(parsed.error)}`);
  const b = parsed.data;
  if (b.n !== undefined && b.n !== null && b.n !== 1) throw unsupported('n other than 1');
  if (b.tools?.length || b.functions?.length) throw unsupported('tools and function calling');
  if (b.response_format && b.response_format.type !== 'text') throw unsupported(`response_format "${b.response_format.type}"`);
  if (b.logprobs || b.top_logprobs) throw unsupported('logprobs');
  if (b.presence_penalty || b.frequency_penalty) throw unsupported('presence_penalty and frequency_penalty');
  if (b.logit_bias && Object.keys(b.logit_bias).length > 0) throw unsupported('logit_bias');
  if (b.audio || b.modalities?.some((m) => m !== 'text')) throw unsupported('audio output');
  const messages = b.messages.map((m, i): ChatMessage => {
    if (m.role === 'tool' || m.role === 'function') throw unsupported(`messages[${i}] with role "${m.role}"`);
    if (m.tool_calls?.length || m.function_call) throw unsupported(`messages[${i}] with tool calls`);
    const role = m.role === 'developer' ? 'system' : m.role;
    return { role, content: text(m.content, i) };
  });
  const stop =
    b.stop === undefined || b.stop === null ? undefined : (typeof b.stop === 'string' ? [b.stop] : b.stop).filter((s) => s !== '');
  return {
    model: b.model,
    messages,
    stream: b.stream ?? false,
    includeUsage: b.stream_options?.include_usage ?? false,
    maxTokens: b.max_completion_tokens ?? b.max_tokens ?? undefined,
    temperature: b.temperature ?? undefined,
    topP: b.top_p ?? undefined,
    seed: b.seed === undefined || b.seed === null ? undefined : reduceSeed(b.seed),
    stop: stop?.length ? stop : undefined,
  };
}

/** OpenAI's finish_reason for a Nightjar finish; null for a reply the agent cut short. */
export function openAiFinishReason(reason: FinishReason): 'stop' | 'length' | null {
  return reason === 'stop' ? 'stop' : reason === 'length' ? 'length' : null;
}

/** The completion id of a job. */
export function completionId(jobId: string): string {
  return `chatcmpl-${jobId}`;
}

function usage(result: ChatResult): Record<string, number> {
  const { promptTokens, completionTokens } = result.usage;
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** What the proxy adds to a response so a caller can see who served it. */
export function nightjarFields(result: Pick<ChatResult, 'agentId' | 'trust' | 'jobId'>): Record<string, unknown> {
  return { agent_id: result.agentId, trust: result.trust, job_id: result.jobId, receipt_verified: true };
}

/** A `chat.completion` object. */
export function completionBody(result: ChatResult, created: number): Record<string, unknown> {
  return {
    id: completionId(result.jobId),
    object: 'chat.completion',
    created,
    model: result.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: result.text, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: openAiFinishReason(result.finishReason),
      },
    ],
    usage: usage(result),
    system_fingerprint: null,
    nightjar: nightjarFields(result),
  };
}

/** Builds the `chat.completion.chunk` objects of one streamed completion. */
export class OpenAiChunks {
  readonly #base: { id: string; object: string; created: number; model: string; system_fingerprint: null };
  readonly #includeUsage: boolean;

  constructor(jobId: string, model: string, created: number, includeUsage: boolean) {
    this.#base = { id: completionId(jobId), object: 'chat.completion.chunk', created, model, system_fingerprint: null };
    this.#includeUsage = includeUsage;
  }

  #chunk(delta: Record<string, unknown>, finishReason: string | null): Record<string, unknown> {
    return {
      ...this.#base,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(this.#includeUsage ? { usage: null } : {}),
    };
  }

  /** The first chunk: the assistant role. */
  role(): Record<string, unknown> {
    return this.#chunk({ role: 'assistant', content: '', refusal: null }, null);
  }

  /** A piece of text. */
  content(text: string): Record<string, unknown> {
    return this.#chunk({ content: text }, null);
  }

  /** The chunk that carries the finish reason. */
  finish(reason: 'stop' | 'length'): Record<string, unknown> {
    return this.#chunk({}, reason);
  }

  /** The usage chunk (choices empty), sent last when include_usage was asked for. */
  usage(result: ChatResult): Record<string, unknown> {
    return { ...this.#base, choices: [], usage: usage(result), nightjar: nightjarFields(result) };
  }
}
