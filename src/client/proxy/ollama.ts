/**
 * Ollama's REST API on top of the SDK: /api/chat and /api/generate bodies mapped to Nightjar
 * sampling, replies as the objects (and NDJSON lines) the `ollama` package parses, and the rows
 * of /api/tags, /api/show and /api/ps. Field names in every error are Ollama's own.
 */
import { z } from 'zod';
import {
  LIMITS,
  NightjarError,
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
import type { ParsedChat, ReplyTiming } from './chat-route.js';
import { nightjarFields, paramPath, reduceSeed } from './openai.js';

/**
 * The Ollama version /api/version reports: the level of Ollama's API this proxy follows
 * (JSON-schema `format`, tools whole and streamed, `think` understood), so clients that check it
 * enable those features. It is not Nightjar's own version.
 */
export const OLLAMA_API_VERSION = '0.9.0';

/** Go's zero time, which Ollama clients read as "not known" (a model's modified_at, a run's expires_at). */
export const UNKNOWN_TIME = '0001-01-01T00:00:00Z';

/** The `options` Nightjar honours; every other option is ignored, as Ollama ignores options it does not know. */
export const HONOURED_OPTIONS: ReadonlySet<string> = new Set([
  'temperature',
  'top_p',
  'top_k',
  'seed',
  'num_predict',
  'stop',
  'frequency_penalty',
  'presence_penalty',
]);

/** A parsed /api/chat or /api/generate request. */
export interface OllamaRequest extends ParsedChat {
  /** Which endpoint asked: its reply objects differ (`message` or `response`). */
  kind: 'chat' | 'generate';
}

function invalid(where: string, what: string): NightjarError {
  return new NightjarError('NJ_BAD_REQUEST', `${where} ${what}`);
}

function unsupported(field: string, what: string): NightjarError {
  return new NightjarError('NJ_UNSUPPORTED_FEATURE', `${field}: ${what} is not supported`);
}

/** Checks `value` with a protocol schema, naming `where` (an Ollama field path) in the error. */
function checked<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw invalid(issue === undefined ? where : paramPath([where, ...issue.path]), `is invalid: ${issue?.message ?? 'invalid'}`);
}

const toolCallIn = z.looseObject({
  id: z.string().nullish(),
  function: z.looseObject({
    name: z.string(),
    arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).nullish(),
  }),
});
const messageIn = z.looseObject({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string().nullish(),
  images: z.array(z.unknown()).nullish(),
  tool_calls: z.array(toolCallIn).nullish(),
  tool_name: z.string().nullish(),
  tool_call_id: z.string().nullish(),
  thinking: z.string().nullish(),
});
const toolIn = z.looseObject({
  type: z.string(),
  function: z.looseObject({
    name: z.string(),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
  }),
});
const common = {
  model: z.string().min(1),
  stream: z.boolean().nullish(),
  format: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  options: z.record(z.string(), z.unknown()).nullish(),
  keep_alive: z.union([z.string(), z.number()]).nullish(),
  think: z.union([z.boolean(), z.string()]).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.int().nullish(),
};
const chatBody = z.looseObject({
  ...common,
  messages: z.array(messageIn).nullish(),
  tools: z.array(toolIn).nullish(),
  /** Not Ollama's (tools there are always 'auto'): Nightjar's extension, OpenAI's values. */
  tool_choice: z
    .union([z.string(), z.looseObject({ type: z.string(), function: z.looseObject({ name: z.string() }).optional() })])
    .nullish(),
});
const generateBody = z.looseObject({
  ...common,
  prompt: z.string().nullish(),
  system: z.string().nullish(),
  suffix: z.string().nullish(),
  template: z.string().nullish(),
  raw: z.boolean().nullish(),
  images: z.array(z.unknown()).nullish(),
  context: z.array(z.unknown()).nullish(),
});
type CommonBody = z.infer<z.ZodObject<typeof common>>;

function parsedBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `the request is invalid at ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** A number option, or undefined when absent; `int` also requires an integer. */
function numberOption(o: Record<string, unknown>, key: string, int = false): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (int && !Number.isInteger(v)))
    throw invalid(`options.${key}`, int ? 'must be an integer' : 'must be a number');
  return v;
}

function inRange(v: number | undefined, key: string, min: number, max: number): number | undefined {
  if (v !== undefined && (v < min || v > max)) throw invalid(`options.${key}`, `must be from ${min} to ${max}`);
  return v;
}

function stopOption(o: Record<string, unknown>): string[] | undefined {
  const v = o['stop'];
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) throw invalid('options.stop', 'must be a list of strings');
  const stop = (list as string[]).filter((s) => s !== '');
  if (stop.length > LIMITS.maxStopSequences) throw invalid('options.stop', `may hold at most ${LIMITS.maxStopSequences} sequences`);
  if (stop.some((s) => s.length > LIMITS.maxStopLength))
    throw invalid('options.stop', `sequences may be at most ${LIMITS.maxStopLength} characters`);
  return stop.length ? stop : undefined;
}

/** The sampling of `options` (see HONOURED_OPTIONS and docs/client.md for how each maps). */
function optionsOf(options: Record<string, unknown> | null | undefined): Omit<ParsedChat, 'model' | 'messages' | 'stream'> {
  const o = options ?? {};
  const topK = numberOption(o, 'top_k', true);
  const seed = numberOption(o, 'seed', true);
  const numPredict = numberOption(o, 'num_predict', true);
  const penalty = (key: string): number | undefined => {
    const v = inRange(numberOption(o, key), key, -2, 2);
    return v === 0 ? undefined : v;
  };
  const topP = numberOption(o, 'top_p');
  if (topP !== undefined && (topP <= 0 || topP > 1)) throw invalid('options.top_p', 'must be above 0 and at most 1');
  return {
    temperature: inRange(numberOption(o, 'temperature'), 'temperature', 0, 2),
    topP,
    // Ollama (llama.cpp) reads top_k 0 or less as "no top-k".
    topK: topK === undefined || topK <= 0 ? undefined : inRange(topK, 'top_k', 1, 1000),
    // Ollama's seed -1 is "random": no seed.
    seed: seed === undefined || seed < 0 ? undefined : reduceSeed(seed),
    // num_predict -1 (no limit) and -2 (fill the context) get the proxy's default max tokens.
    maxTokens: numPredict === undefined || numPredict <= 0 ? undefined : inRange(numPredict, 'num_predict', 1, LIMITS.maxTokens),
    stop: stopOption(o),
    frequencyPenalty: penalty('frequency_penalty'),
    presencePenalty: penalty('presence_penalty'),
  };
}

/** `format`: "json" is any JSON object, a JSON schema is that schema (both by grammar at the agent). */
function formatOf(format: CommonBody['format']): ResponseFormat | undefined {
  if (format === undefined || format === null || format === '') return undefined;
  if (format === 'json') return { type: 'json_object' };
  if (typeof format === 'string') throw invalid('format', `must be "json" or a JSON schema object, not "${format.slice(0, 40)}"`);
  const parsed = responseFormatSchema.safeParse({ type: 'json_schema', name: 'response', schema: format, strict: true });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw invalid(paramPath(['format', ...(issue?.path.slice(1) ?? [])]), `is invalid: ${issue?.message ?? 'invalid'}`);
}

/** What both endpoints refuse or accept the same way. */
function commonChecks(b: CommonBody): void {
  if (b.think !== undefined && b.think !== null && b.think !== false)
    throw new NightjarError('NJ_BAD_REQUEST', `"${b.model.slice(0, 100)}" does not support thinking (think)`);
  if (b.logprobs) throw unsupported('logprobs', 'logprobs');
  if (b.top_logprobs) throw unsupported('top_logprobs', 'top_logprobs');
  // keep_alive is accepted and changes nothing: each agent's owner decides how long a model stays loaded.
}

function toolCallOf(c: z.infer<typeof toolCallIn>, i: number, j: number): ToolCall {
  const args = c.function.arguments ?? {};
  const id = c.id && /^[A-Za-z0-9_-]{1,64}$/.test(c.id) ? c.id : `call_${i}_${j}`;
  return checked(
    toolCallSchema,
    { id, name: c.function.name, arguments: typeof args === 'string' ? args : JSON.stringify(args) },
    `messages[${i}].tool_calls[${j}]`,
  );
}

/**
 * Ollama's messages as Nightjar's. Ollama's tool calls carry no id and its tool results name the
 * function (`tool_name`), so calls without an id get one (`call_<message>_<call>`) and a result
 * answers the earliest open call of its `tool_name` (or with `tool_call_id`, that call; with
 * neither, the earliest open call).
 */
function messagesOf(list: z.infer<typeof messageIn>[]): ChatMessage[] {
  let open: ToolCall[] = [];
  return list.map((m, i): ChatMessage => {
    if (m.images?.length) throw unsupported(`messages[${i}].images`, 'images (agents serve text models)');
    const content = m.content ?? '';
    if (m.role === 'assistant' && m.tool_calls?.length) {
      const toolCalls = m.tool_calls.map((c, j) => toolCallOf(c, i, j));
      open = [...toolCalls];
      return checked(chatMessageSchema, { role: 'assistant', content, toolCalls }, `messages[${i}]`);
    }
    if (m.role === 'tool') {
      const at = m.tool_call_id
        ? open.findIndex((c) => c.id === m.tool_call_id)
        : m.tool_name
          ? open.findIndex((c) => c.name === m.tool_name)
          : open.length > 0
            ? 0
            : -1;
      const toolCallId = m.tool_call_id ?? open[at]?.id;
      if (toolCallId === undefined)
        throw invalid(
          `messages[${i}]`,
          'is a tool result that answers no tool call of an earlier assistant message (name it with tool_name)',
        );
      if (at >= 0) open.splice(at, 1);
      return checked(chatMessageSchema, { role: 'tool', content, toolCallId }, `messages[${i}]`);
    }
    return { role: m.role, content };
  });
}

function toolsOf(tools: z.infer<typeof toolIn>[] | null | undefined): Tool[] | undefined {
  if (!tools?.length) return undefined;
  const out = tools.map((t, i): Tool => {
    if (t.type !== 'function') throw unsupported(`tools[${i}].type`, `tools of type "${t.type.slice(0, 40)}" (only function)`);
    const f = t.function;
    return checked(
      toolSchema,
      {
        name: f.name,
        ...(f.description ? { description: f.description } : {}),
        parameters: f.parameters ?? { type: 'object', properties: {} },
      },
      `tools[${i}].function`,
    );
  });
  if (new Set(out.map((t) => t.name)).size !== out.length) throw invalid('tools', 'has two tools of the same name');
  return out;
}

function toolChoiceOf(c: z.infer<typeof chatBody>['tool_choice'], tools: Tool[] | undefined): ToolChoice | undefined {
  if (c === undefined || c === null) return undefined;
  let choice: ToolChoice;
  if (typeof c === 'string') {
    if (c !== 'auto' && c !== 'none' && c !== 'required') throw invalid('tool_choice', 'must be auto, none, required or a named function');
    choice = c;
  } else {
    if (c.type !== 'function' || c.function === undefined) throw invalid('tool_choice', 'must be auto, none, required or a named function');
    choice = { name: c.function.name };
  }
  if (choice === 'none') return choice;
  if (tools === undefined) throw invalid('tool_choice', 'other than none needs tools');
  if (typeof choice === 'object' && !tools.some((t) => t.name === choice.name))
    throw invalid('tool_choice', `names no tool (${choice.name})`);
  return choice;
}

/** Parses and checks an /api/chat body (`stream` defaults to true, as in Ollama). */
export function parseOllamaChat(body: unknown): OllamaRequest {
  const b = parsedBody(chatBody, body);
  commonChecks(b);
  const messages = messagesOf(b.messages ?? []);
  if (messages.length === 0) throw invalid('messages', 'must hold at least one message');
  const tools = toolsOf(b.tools);
  const toolChoice = toolChoiceOf(b.tool_choice, tools);
  const off = toolChoice === 'none';
  return {
    kind: 'chat',
    model: b.model,
    messages,
    stream: b.stream ?? true,
    ...optionsOf(b.options),
    tools: off ? undefined : tools,
    toolChoice: off ? undefined : toolChoice,
    responseFormat: formatOf(b.format),
  };
}

/** Parses and checks an /api/generate body: a one-turn chat (`system`, then `prompt`). */
export function parseOllamaGenerate(body: unknown): OllamaRequest {
  const b = parsedBody(generateBody, body);
  commonChecks(b);
  if (b.raw) throw unsupported('raw', 'a raw prompt (the agent always applies the model’s own chat template)');
  if (b.template) throw unsupported('template', 'a prompt template (the agent applies the model’s own chat template)');
  if (b.suffix) throw unsupported('suffix', 'fill-in-the-middle');
  if (b.images?.length) throw unsupported('images', 'images (agents serve text models)');
  if (b.context?.length)
    throw unsupported('context', 'context (the proxy never sees token ids; send the conversation to /api/chat instead)');
  if (!b.prompt) throw invalid('prompt', 'is empty');
  const messages: ChatMessage[] = [
    ...(b.system ? [{ role: 'system' as const, content: b.system }] : []),
    { role: 'user', content: b.prompt },
  ];
  return {
    kind: 'generate',
    model: b.model,
    messages,
    stream: b.stream ?? true,
    ...optionsOf(b.options),
    responseFormat: formatOf(b.format),
  };
}

/** Ollama's done_reason for a Nightjar finish (a tool call ends as "stop", as in Ollama); null for a reply the agent cut short. */
export function ollamaDoneReason(reason: FinishReason): 'stop' | 'length' | null {
  return reason === 'stop' || reason === 'tool_calls' ? 'stop' : reason === 'length' ? 'length' : null;
}

/** Ollama's tool_calls: the arguments as an object, not JSON text. */
export function ollamaToolCalls(calls: readonly ToolCall[]): Record<string, unknown>[] {
  return calls.map((c, index) => {
    let args: unknown;
    try {
      args = JSON.parse(c.arguments);
    } catch {
      args = undefined;
    }
    if (typeof args !== 'object' || args === null || Array.isArray(args))
      throw new NightjarError('NJ_AGENT_FAILED', `the agent's call of ${c.name} has arguments that are not a JSON object; retry`);
    return { id: c.id, function: { index, name: c.name, arguments: args } };
  });
}

/**
 * The figures of a final object, durations in nanoseconds as Ollama gives them, measured at the
 * proxy: prompt_eval_duration is the wait for the first chunk (routing, sealing and the network
 * included), eval_duration the rest. load_duration is 0: agents keep their model loaded, and how
 * long one took to load is not sent.
 */
export function ollamaFigures(result: ChatResult, t: ReplyTiming): Record<string, number> {
  const ns = (ms: number): number => Math.max(0, Math.round(ms * 1e6));
  const first = t.firstChunkMs ?? t.endedMs;
  return {
    total_duration: ns(t.endedMs - t.startedMs),
    load_duration: 0,
    prompt_eval_count: result.usage.promptTokens,
    prompt_eval_duration: ns(first - t.startedMs),
    eval_count: result.usage.completionTokens,
    eval_duration: ns(t.endedMs - first),
  };
}

/** The assistant message of a whole reply, or of the line that carries its tool calls. */
export function ollamaMessage(content: string, calls: readonly ToolCall[] | undefined): Record<string, unknown> {
  return { role: 'assistant', content, ...(calls?.length ? { tool_calls: ollamaToolCalls(calls) } : {}) };
}

/** The reply object of a whole /api/chat or /api/generate answer. */
export function ollamaBody(
  kind: OllamaRequest['kind'],
  result: ChatResult,
  createdAt: string,
  timing: ReplyTiming,
): Record<string, unknown> {
  const reason = ollamaDoneReason(result.finishReason);
  const reply = kind === 'chat' ? { message: ollamaMessage(result.text, result.toolCalls) } : { response: result.text };
  return {
    model: result.model,
    created_at: createdAt,
    ...reply,
    done: true,
    done_reason: reason,
    ...ollamaFigures(result, timing),
    nightjar: nightjarFields(result),
  };
}

/**
 * What Nightjar knows of an offered model for /api/tags, /api/show and /api/ps: its id, and from
 * the gateway's signed catalog what all its files agree on (size and digest when it lists one file).
 */
export interface OllamaModelFacts {
  id: string;
  synthetic: boolean;
  bytes?: number | undefined;
  sha256?: string | undefined;
  quantization?: string | undefined;
  contextLength?: number | undefined;
}

/** Ollama's `details` of a model: what is known, '' where it is not (family, parameter size). */
export function ollamaDetails(f: OllamaModelFacts): Record<string, unknown> {
  return { parent_model: '', format: 'gguf', family: '', families: null, parameter_size: '', quantization_level: f.quantization ?? '' };
}

/** One row of /api/tags: size and digest are 0 and '' unless the catalog lists the model's one file; modified_at is not known. */
export function ollamaTagRow(f: OllamaModelFacts): Record<string, unknown> {
  return { name: f.id, model: f.id, modified_at: UNKNOWN_TIME, size: f.bytes ?? 0, digest: f.sha256 ?? '', details: ollamaDetails(f) };
}

/** The /api/show answer: details and what model_info can say; no Modelfile, template or license (the agents hold the files). */
export function ollamaShow(f: OllamaModelFacts): Record<string, unknown> {
  // The architecture is not known here; context_length sits under it, where clients look for it.
  const modelInfo: Record<string, unknown> = { 'general.architecture': 'unknown', 'general.basename': f.id };
  if (f.contextLength !== undefined) modelInfo['unknown.context_length'] = f.contextLength;
  return {
    license: '',
    modelfile: '',
    parameters: '',
    template: '',
    system: '',
    details: ollamaDetails(f),
    model_info: modelInfo,
    capabilities: ['completion', 'tools'],
    modified_at: UNKNOWN_TIME,
    nightjar: { synthetic: f.synthetic, digest: f.sha256 ?? null },
  };
}
