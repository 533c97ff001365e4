/**
 * The OpenAI Chat Completions API on top of the SDK: request bodies mapped to Nightjar sampling,
 * results and stream events in the shapes the `openai` package parses.
 */
import { z } from 'zod';
import {
  chatMessageSchema,
  describeIssues,
  responseFormatSchema,
  toolCallSchema,
  toolSchema,
  type ChatMessage,
  type FinishReason,
  type ResponseFormat,
  type Tool,
  type ToolCall,
  type ToolChoice,
} from '../../shared/index.js';
import type { ChatResult } from '../sdk/index.js';
import { ParamError } from './api-errors.js';

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
  frequencyPenalty: number | undefined;
  presencePenalty: number | undefined;
  tools: Tool[] | undefined;
  toolChoice: ToolChoice | undefined;
  responseFormat: ResponseFormat | undefined;
}

const textPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const toolCallPart = z.looseObject({
  id: z.string(),
  type: z.string().optional(),
  function: z.looseObject({ name: z.string(), arguments: z.string() }),
});
const messageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(textPart), z.null()]).optional(),
  tool_calls: z.array(toolCallPart).nullish(),
  tool_call_id: z.string().nullish(),
  function_call: z.unknown().optional(),
});
const toolDefinition = z.looseObject({
  type: z.string(),
  function: z
    .looseObject({
      name: z.string(),
      description: z.string().nullish(),
      parameters: z.record(z.string(), z.unknown()).nullish(),
      strict: z.boolean().nullish(),
    })
    .optional(),
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
  tools: z.array(toolDefinition).nullish(),
  tool_choice: z
    .union([z.string(), z.looseObject({ type: z.string(), function: z.looseObject({ name: z.string() }).optional() })])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  functions: z.array(z.unknown()).nullish(),
  function_call: z.unknown().optional(),
  response_format: z
    .looseObject({
      type: z.string(),
      json_schema: z
        .looseObject({ name: z.string(), schema: z.record(z.string(), z.unknown()).nullish(), strict: z.boolean().nullish() })
        .optional(),
    })
    .nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.int().nullish(),
  presence_penalty: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  user: z.string().nullish(),
  audio: z.unknown().optional(),
  modalities: z.array(z.string()).nullish(),
});

/** NJ_UNSUPPORTED_FEATURE about `param`: "`what` is not supported (parameter `param`)". */
export function unsupported(param: string, what: string): ParamError {
  return new ParamError('NJ_UNSUPPORTED_FEATURE', param, `${what} is not supported (parameter ${param})`);
}

/** NJ_BAD_REQUEST about `param`: "`param`: `what`". */
export function invalid(param: string, what: string): ParamError {
  return new ParamError('NJ_BAD_REQUEST', param, `${param}: ${what}`);
}

/** A zod path as OpenAI spells a parameter: `messages[2].content`. */
export function paramPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** Checks `value` with a protocol schema, naming `param` in the error. */
export function checked<T>(schema: z.ZodType<T>, value: unknown, param: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue === undefined ? param : paramPath([param, ...issue.path]);
  throw invalid(where, issue?.message ?? 'invalid');
}

function text(content: z.infer<typeof messageSchema>['content'], index: number, optional = false): string {
  if (content === undefined || content === null) {
    if (optional) return '';
    throw invalid(`messages[${index}].content`, 'the content is missing');
  }
  if (typeof content === 'string') return content;
  return content
    .map((part, j) => {
      if (part.type !== 'text' || part.text === undefined)
        throw unsupported(`messages[${index}].content[${j}]`, `content of type "${part.type}" (only text)`);
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

function penalty(value: number | null | undefined, param: string): number | undefined {
  if (value === undefined || value === null || value === 0) return undefined;
  if (value < -2 || value > 2) throw invalid(param, 'must be a number from -2 to 2');
  return value;
}

function toolsOf(b: z.infer<typeof bodySchema>): Tool[] | undefined {
  if (!b.tools?.length) return undefined;
  const tools = b.tools.map((t, i): Tool => {
    if (t.type !== 'function' || t.function === undefined)
      throw unsupported(`tools[${i}].type`, `tools of type "${t.type}" (only function)`);
    const f = t.function;
    const tool = {
      name: f.name,
      ...(f.description ? { description: f.description } : {}),
      parameters: f.parameters ?? { type: 'object', properties: {} },
    };
    return checked(toolSchema, tool, `tools[${i}].function`);
  });
  if (new Set(tools.map((t) => t.name)).size !== tools.length) throw invalid('tools', 'two tools have the same name');
  return tools;
}

function toolChoiceOf(b: z.infer<typeof bodySchema>, tools: Tool[] | undefined): ToolChoice | undefined {
  const c = b.tool_choice;
  if (c === undefined || c === null) return undefined;
  let choice: ToolChoice;
  if (typeof c === 'string') {
    if (c !== 'auto' && c !== 'none' && c !== 'required') throw invalid('tool_choice', 'must be auto, none, required or a named function');
    choice = c;
  } else {
    if (c.type !== 'function' || c.function === undefined) throw unsupported('tool_choice', `tool_choice of type "${c.type}"`);
    choice = { name: c.function.name };
  }
  if (choice === 'none') return tools === undefined ? undefined : choice;
  if (tools === undefined) throw invalid('tool_choice', 'a tool choice other than none needs tools');
  if (typeof choice === 'object' && !tools.some((t) => t.name === choice.name))
    throw invalid('tool_choice', `no tool is named ${choice.name}`);
  return choice;
}

function responseFormatOf(b: z.infer<typeof bodySchema>): ResponseFormat | undefined {
  const f = b.response_format;
  if (f === undefined || f === null || f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  if (f.type !== 'json_schema') throw unsupported('response_format.type', `response_format "${f.type}"`);
  if (f.json_schema === undefined) throw invalid('response_format.json_schema', 'is missing');
  const format = {
    type: 'json_schema',
    name: f.json_schema.name,
    schema: f.json_schema.schema ?? { type: 'object' },
    ...(typeof f.json_schema.strict === 'boolean' ? { strict: f.json_schema.strict } : {}),
  };
  const parsed = responseFormatSchema.safeParse(format);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path[0] === 'schema' ? ['schema', ...issue.path.slice(1)] : (issue?.path ?? []);
  throw invalid(paramPath(['response_format', 'json_schema', ...field]), issue?.message ?? 'invalid');
}

function messageOf(m: z.infer<typeof messageSchema>, i: number): ChatMessage {
  if (m.role === 'function') throw unsupported(`messages[${i}].role`, 'messages with role "function" (use tools and role "tool")');
  if (m.function_call) throw unsupported(`messages[${i}].function_call`, 'function_call (use tool_calls)');
  if (m.role === 'tool') {
    if (!m.tool_call_id) throw invalid(`messages[${i}].tool_call_id`, 'a tool message names the call it answers');
    return checked(chatMessageSchema, { role: 'tool', content: text(m.content, i), toolCallId: m.tool_call_id }, `messages[${i}]`);
  }
  if (m.role === 'assistant' && m.tool_calls?.length) {
    const toolCalls = m.tool_calls.map((c, j): ToolCall => {
      if (c.type !== undefined && c.type !== 'function')
        throw unsupported(`messages[${i}].tool_calls[${j}].type`, `tool calls of type "${c.type}"`);
      return checked(
        toolCallSchema,
        { id: c.id, name: c.function.name, arguments: c.function.arguments },
        `messages[${i}].tool_calls[${j}]`,
      );
    });
    return checked(chatMessageSchema, { role: 'assistant', content: text(m.content, i, true), toolCalls }, `messages[${i}]`);
  }
  const role = m.role === 'developer' ? 'system' : m.role;
  return { role, content: text(m.content, i) };
}

/** Parses and checks a Chat Completions request body. */
export function parseOpenAiRequest(body: unknown): OpenAiRequest {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) {
    const param = paramPath(parsed.error.issues[0]?.path ?? []);
    throw new ParamError('NJ_BAD_REQUEST', param, `the request is invalid at ${describeIssues(parsed.error)}`);
  }
  const b = parsed.data;
  if (b.n !== undefined && b.n !== null && b.n !== 1) throw unsupported('n', 'n other than 1');
  if (b.functions?.length || (b.function_call !== undefined && b.function_call !== null))
    throw unsupported(b.functions?.length ? 'functions' : 'function_call', 'the legacy functions API (use tools)');
  if (b.logprobs) throw unsupported('logprobs', 'logprobs');
  if (b.top_logprobs) throw unsupported('top_logprobs', 'top_logprobs');
  if (b.logit_bias && Object.keys(b.logit_bias).length > 0) throw unsupported('logit_bias', 'logit_bias');
  if (b.audio) throw unsupported('audio', 'audio output');
  if (b.modalities?.some((m) => m !== 'text')) throw unsupported('modalities', 'audio output');
  const tools = toolsOf(b);
  const toolChoice = toolChoiceOf(b, tools);
  const messages = b.messages.map(messageOf);
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
    frequencyPenalty: penalty(b.frequency_penalty, 'frequency_penalty'),
    presencePenalty: penalty(b.presence_penalty, 'presence_penalty'),
    // `user` is accepted and goes nowhere: the gateway never sees the conversation, and the agent needs no end-user id.
    tools: toolChoice === 'none' ? undefined : tools,
    toolChoice: toolChoice === 'none' ? undefined : toolChoice,
    responseFormat: responseFormatOf(b),
  };
}

/** OpenAI's finish_reason for a Nightjar finish; null for a reply the agent cut short. */
export function openAiFinishReason(reason: FinishReason): 'stop' | 'length' | 'tool_calls' | null {
  return reason === 'stop' ? 'stop' : reason === 'length' ? 'length' : reason === 'tool_calls' ? 'tool_calls' : null;
}

/** OpenAI's tool_calls of a result (with `index` for a stream's delta). */
export function openAiToolCalls(calls: readonly ToolCall[], indexed = false): Record<string, unknown>[] {
  return calls.map((c, index) => ({
    ...(indexed ? { index } : {}),
    id: c.id,
    type: 'function',
    function: { name: c.name, arguments: c.arguments },
  }));
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
        message: {
          role: 'assistant',
          content: result.toolCalls ? null : result.text,
          refusal: null,
          annotations: [],
          ...(result.toolCalls ? { tool_calls: openAiToolCalls(result.toolCalls) } : {}),
        },
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

  /** The chunk of a reply's tool calls, whole (name and all arguments in one delta). */
  toolCalls(calls: readonly ToolCall[]): Record<string, unknown> {
    return this.#chunk({ tool_calls: openAiToolCalls(calls, true) }, null);
  }

  /** The chunk that carries the finish reason. */
  finish(reason: 'stop' | 'length' | 'tool_calls'): Record<string, unknown> {
    return this.#chunk({}, reason);
  }

  /** The usage chunk (choices empty), sent last when include_usage was asked for. */
  usage(result: ChatResult): Record<string, unknown> {
    return { ...this.#base, choices: [], usage: usage(result), nightjar: nightjarFields(result) };
  }
}
