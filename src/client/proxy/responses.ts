/**
 * OpenAI's Responses API on top of the chat path: a `responses.create` body mapped to the same
 * Nightjar chat request Chat Completions makes (no protocol change), and the `response` object
 * and typed stream events, each with its `sequence_number`, in the shapes the `openai` package
 * parses. The proxy keeps nothing, so everything that needs a stored response is refused.
 */
import { z } from 'zod';
import {
  LIMITS,
  chatMessageSchema,
  describeIssues,
  responseFormatSchema,
  toolCallSchema,
  toolSchema,
  type ChatMessage,
  type NightjarError,
  type ResponseFormat,
  type Tool,
  type ToolCall,
  type ToolChoice,
} from '../../shared/index.js';
import type { ChatResult, ServedBy } from '../sdk/index.js';
import { ParamError, errorObject } from './api-errors.js';
import type { ParsedChat } from './chat-route.js';
import { checked, invalid, nightjarFields, paramPath, unsupported } from './openai.js';

/** A parsed Responses request: the chat request, and what the `response` object echoes back. */
export interface ResponsesRequest extends ParsedChat {
  stop: undefined;
  /** The request's `instructions`, echoed in the response. */
  instructions: string | null;
  /** The request's `max_output_tokens`, echoed. */
  maxOutputTokens: number | null;
  /** The request's function tools in the Responses shape, echoed. */
  toolsEcho: Record<string, unknown>[];
  /** The request's `tool_choice` as given (`auto` when absent), echoed. */
  toolChoiceEcho: unknown;
  /** The request's `text.format` (`{type: 'text'}` when absent), echoed. */
  formatEcho: Record<string, unknown>;
  /** The request's `parallel_tool_calls` (true when absent), echoed. */
  parallelToolCalls: boolean;
  /** The request's `metadata` (an empty object when absent), echoed. */
  metadata: Record<string, string>;
}

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const inputItem = z.looseObject({
  type: z.string().optional(),
  role: z.string().optional(),
  content: z.union([z.string(), z.array(contentPart)]).optional(),
  call_id: z.string().optional(),
  name: z.string().optional(),
  arguments: z.string().optional(),
  output: z.union([z.string(), z.array(contentPart)]).optional(),
});
const toolDefinition = z.looseObject({
  type: z.string(),
  name: z.string().optional(),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});
const bodySchema = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(inputItem).min(1).max(LIMITS.maxMessages)]),
  instructions: z.string().nullish(),
  stream: z.boolean().nullish(),
  max_output_tokens: z.int().min(1).nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  tools: z.array(toolDefinition).max(LIMITS.maxTools).nullish(),
  tool_choice: z.union([z.string(), z.looseObject({ type: z.string(), name: z.string().optional() })]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z
    .looseObject({
      format: z
        .looseObject({
          type: z.string(),
          name: z.string().optional(),
          schema: z.record(z.string(), z.unknown()).nullish(),
          strict: z.boolean().nullish(),
        })
        .nullish(),
    })
    .nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  previous_response_id: z.string().nullish(),
  conversation: z.unknown().optional(),
  store: z.boolean().nullish(),
  background: z.boolean().nullish(),
  reasoning: z.record(z.string(), z.unknown()).nullish(),
  prompt: z.unknown().optional(),
  include: z.array(z.string()).nullish(),
  top_logprobs: z.int().nullish(),
  truncation: z.string().nullish(),
});
type Body = z.infer<typeof bodySchema>;
type InputItem = z.infer<typeof inputItem>;

const NOTHING_KEPT = 'the proxy keeps no responses or conversations: send the whole conversation in input';

/** The text of a message's content: a string, or input_text (output_text for assistant history) parts. */
function textOf(content: InputItem['content'], param: string): string {
  if (content === undefined) throw invalid(param, 'the content is missing');
  if (typeof content === 'string') return content;
  return content
    .map((part, j) => {
      if ((part.type !== 'input_text' && part.type !== 'output_text') || part.text === undefined)
        throw unsupported(`${param}[${j}].type`, `content of type "${part.type}" (only input_text and output_text)`);
      return part.text;
    })
    .join('');
}

/** The conversation of `input` after `instructions` (a system message). */
function messagesOf(b: Body): ChatMessage[] {
  const messages: ChatMessage[] = b.instructions ? [{ role: 'system', content: b.instructions }] : [];
  if (typeof b.input === 'string') return [...messages, { role: 'user', content: b.input }];
  b.input.forEach((item, i) => {
    const at = `input[${i}]`;
    const type = item.type ?? (item.role === undefined ? undefined : 'message');
    if (type === 'message') {
      const role = item.role;
      if (role !== 'user' && role !== 'assistant' && role !== 'system' && role !== 'developer')
        throw invalid(`${at}.role`, 'must be user, assistant, system or developer');
      messages.push({ role: role === 'developer' ? 'system' : role, content: textOf(item.content, `${at}.content`) });
    } else if (type === 'function_call') {
      if (item.call_id === undefined || item.name === undefined || item.arguments === undefined)
        throw invalid(at, 'a function_call item has call_id, name and arguments');
      const call = checked(toolCallSchema, { id: item.call_id, name: item.name, arguments: item.arguments }, at);
      // Calls after the assistant's text (or after other calls) belong to that same assistant turn.
      const last = messages.at(-1);
      if (last?.role === 'assistant') messages[messages.length - 1] = { ...last, toolCalls: [...(last.toolCalls ?? []), call] };
      else messages.push({ role: 'assistant', content: '', toolCalls: [call] });
    } else if (type === 'function_call_output') {
      if (item.call_id === undefined) throw invalid(`${at}.call_id`, 'a function_call_output item names the call it answers');
      if (item.output === undefined) throw invalid(`${at}.output`, 'the output is missing');
      const content = typeof item.output === 'string' ? item.output : textOf(item.output, `${at}.output`);
      messages.push({ role: 'tool', content, toolCallId: item.call_id });
    } else if (type === 'item_reference') {
      throw unsupported(`${at}.type`, `item_reference (${NOTHING_KEPT})`);
    } else {
      throw unsupported(`${at}.type`, `input items of type "${String(type)}" (only message, function_call and function_call_output)`);
    }
  });
  return messages.map((m, i) => checked(chatMessageSchema, m, `input[${i}]`));
}

function toolsOf(b: Body): Tool[] | undefined {
  if (!b.tools?.length) return undefined;
  const tools = b.tools.map((t, i): Tool => {
    if (t.type !== 'function')
      throw unsupported(`tools[${i}].type`, `tools of type "${t.type}" (only function: the proxy and the agent run no built-in tools)`);
    if (t.name === undefined) throw invalid(`tools[${i}].name`, 'a function tool has a name');
    const tool = {
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      parameters: t.parameters ?? { type: 'object', properties: {} },
    };
    return checked(toolSchema, tool, `tools[${i}]`);
  });
  if (new Set(tools.map((t) => t.name)).size !== tools.length) throw invalid('tools', 'two tools have the same name');
  return tools;
}

function toolChoiceOf(b: Body, tools: Tool[] | undefined): ToolChoice | undefined {
  const c = b.tool_choice;
  if (c === undefined || c === null) return undefined;
  let choice: ToolChoice;
  if (typeof c === 'string') {
    if (c !== 'auto' && c !== 'none' && c !== 'required') throw invalid('tool_choice', 'must be auto, none, required or a named function');
    choice = c;
  } else {
    if (c.type !== 'function') throw unsupported('tool_choice', `tool_choice of type "${c.type}" (only function)`);
    if (c.name === undefined) throw invalid('tool_choice.name', 'a function tool_choice names the function');
    choice = { name: c.name };
  }
  if (choice === 'none') return tools === undefined ? undefined : choice;
  if (tools === undefined) throw invalid('tool_choice', 'a tool choice other than none needs tools');
  if (typeof choice === 'object' && !tools.some((t) => t.name === choice.name))
    throw invalid('tool_choice', `no tool is named ${choice.name}`);
  return choice;
}

function formatOf(b: Body): ResponseFormat | undefined {
  const f = b.text?.format;
  if (f === undefined || f === null || f.type === 'text') return undefined;
  if (f.type === 'json_object') return { type: 'json_object' };
  if (f.type !== 'json_schema') throw unsupported('text.format.type', `text.format "${f.type}"`);
  if (f.name === undefined) throw invalid('text.format.name', 'a json_schema format has a name');
  if (f.schema === undefined || f.schema === null) throw invalid('text.format.schema', 'a json_schema format has a schema');
  const format = { type: 'json_schema', name: f.name, schema: f.schema, ...(typeof f.strict === 'boolean' ? { strict: f.strict } : {}) };
  const parsed = responseFormatSchema.safeParse(format);
  if (parsed.success) return parsed.data;
  throw invalid(paramPath(['text', 'format', ...(parsed.error.issues[0]?.path ?? [])]), parsed.error.issues[0]?.message ?? 'invalid');
}

/** What the Responses API can ask for that the proxy does not serve, each refused naming its parameter. */
function refuseUnserved(b: Body): void {
  if (b.previous_response_id) throw unsupported('previous_response_id', `previous_response_id (${NOTHING_KEPT})`);
  if (b.conversation !== undefined && b.conversation !== null) throw unsupported('conversation', `conversation (${NOTHING_KEPT})`);
  if (b.store === true) throw unsupported('store', `store: true (${NOTHING_KEPT}; send store: false or leave it out)`);
  if (b.background === true) throw unsupported('background', 'background responses (the proxy keeps nothing to poll)');
  if (b.reasoning && Object.values(b.reasoning).some((v) => v !== null && v !== undefined))
    throw unsupported('reasoning', 'reasoning options');
  if (b.prompt !== undefined && b.prompt !== null) throw unsupported('prompt', 'stored prompt templates');
  if (b.include?.length) throw unsupported('include', 'include');
  if (b.top_logprobs) throw unsupported('top_logprobs', 'top_logprobs');
  if (b.truncation === 'auto') throw unsupported('truncation', 'truncation "auto" (a conversation that does not fit is refused)');
}

/** Parses and checks a Responses request body. */
export function parseResponsesRequest(body: unknown): ResponsesRequest {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) {
    const param = paramPath(parsed.error.issues[0]?.path ?? []);
    throw new ParamError('NJ_BAD_REQUEST', param, `the request is invalid at ${describeIssues(parsed.error)}`);
  }
  const b = parsed.data;
  refuseUnserved(b);
  const tools = toolsOf(b);
  const toolChoice = toolChoiceOf(b, tools);
  const responseFormat = formatOf(b);
  return {
    model: b.model,
    messages: messagesOf(b),
    stream: b.stream ?? false,
    maxTokens: b.max_output_tokens ?? undefined,
    temperature: b.temperature ?? undefined,
    topP: b.top_p ?? undefined,
    stop: undefined,
    tools: toolChoice === 'none' ? undefined : tools,
    toolChoice: toolChoice === 'none' ? undefined : toolChoice,
    responseFormat,
    instructions: b.instructions ?? null,
    maxOutputTokens: b.max_output_tokens ?? null,
    toolsEcho: (b.tools ?? []).map((t) => ({
      type: 'function',
      name: t.name,
      description: t.description ?? null,
      parameters: t.parameters ?? null,
      strict: t.strict ?? true,
    })),
    toolChoiceEcho: b.tool_choice ?? 'auto',
    formatEcho: b.text?.format ?? { type: 'text' },
    parallelToolCalls: b.parallel_tool_calls ?? true,
    metadata: b.metadata ?? {},
  };
}

/** The response id of a job. */
export function responseId(jobId: string): string {
  return `resp_${jobId}`;
}

function messageItemId(jobId: string): string {
  return `msg_${jobId}`;
}

function callItemId(jobId: string, index: number): string {
  return `fc_${jobId}_${index}`;
}

type ItemStatus = 'in_progress' | 'completed' | 'incomplete';

function textPart(text: string): Record<string, unknown> {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

function messageItem(jobId: string, status: ItemStatus, content: Record<string, unknown>[]): Record<string, unknown> {
  return { id: messageItemId(jobId), type: 'message', status, role: 'assistant', content };
}

function callItem(jobId: string, index: number, call: ToolCall, status: ItemStatus, args = call.arguments): Record<string, unknown> {
  return { id: callItemId(jobId, index), type: 'function_call', status, call_id: call.id, name: call.name, arguments: args };
}

/** The output items of a finished reply: its calls, else one message with its text. */
function outputOf(result: ChatResult): Record<string, unknown>[] {
  if (result.toolCalls) return result.toolCalls.map((c, i) => callItem(result.jobId, i, c, 'completed'));
  const status = result.finishReason === 'length' ? 'incomplete' : 'completed';
  return [messageItem(result.jobId, status, [textPart(result.text)])];
}

/** A `response` object: the shell of one in progress (no result yet), or a finished one. */
function responseObject(
  served: Pick<ServedBy, 'jobId' | 'agentId' | 'trust'>,
  parsed: ResponsesRequest,
  created: number,
  result: ChatResult | null,
): Record<string, unknown> {
  const incomplete = result?.finishReason === 'length';
  return {
    id: responseId(served.jobId),
    object: 'response',
    created_at: created,
    status: result === null ? 'in_progress' : incomplete ? 'incomplete' : 'completed',
    background: false,
    error: null,
    incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
    instructions: parsed.instructions,
    max_output_tokens: parsed.maxOutputTokens,
    metadata: parsed.metadata,
    model: result?.model ?? parsed.model,
    output: result === null ? [] : outputOf(result),
    parallel_tool_calls: parsed.parallelToolCalls,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: parsed.temperature ?? null,
    text: { format: parsed.formatEcho },
    tool_choice: parsed.toolChoiceEcho,
    tools: parsed.toolsEcho,
    top_p: parsed.topP ?? null,
    truncation: 'disabled',
    usage:
      result === null
        ? null
        : {
            input_tokens: result.usage.promptTokens,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: result.usage.completionTokens,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: result.usage.promptTokens + result.usage.completionTokens,
          },
    user: null,
    nightjar: result === null ? { ...nightjarFields(served), receipt_verified: false } : nightjarFields(result),
  };
}

/** The `response` object of a finished reply (the answer to a request that did not stream). */
export function responseBody(result: ChatResult, created: number, parsed: ResponsesRequest): Record<string, unknown> {
  return responseObject(result, parsed, created, result);
}

/** One typed Responses stream event (its `type` is also the SSE `event:` name). */
export interface ResponsesEvent {
  type: string;
  sequence_number: number;
  [field: string]: unknown;
}

/**
 * Builds the typed events of one streamed response, numbering them in order: response.created and
 * response.in_progress, the message item and its output_text part (opened at once, or on the
 * first text for a request with tools), text deltas, then the done events, each call's
 * function_call item with its arguments (whole: a call reaches the proxy on the agent's final
 * chunk), and response.completed (response.incomplete for a length stop).
 */
export class ResponsesEvents {
  readonly #served: ServedBy;
  readonly #parsed: ResponsesRequest;
  readonly #created: number;
  readonly #lazyText: boolean;
  #sequence = 0;
  #messageOpen = false;
  #items = 0;
  #text = '';

  constructor(served: ServedBy, parsed: ResponsesRequest, created: number) {
    this.#served = served;
    this.#parsed = parsed;
    this.#created = created;
    this.#lazyText = parsed.tools !== undefined;
  }

  #event(type: string, fields: Record<string, unknown>): ResponsesEvent {
    return { type, sequence_number: this.#sequence++, ...fields };
  }

  #openMessage(): ResponsesEvent[] {
    this.#messageOpen = true;
    const output_index = this.#items++;
    const item_id = messageItemId(this.#served.jobId);
    return [
      this.#event('response.output_item.added', { output_index, item: messageItem(this.#served.jobId, 'in_progress', []) }),
      this.#event('response.content_part.added', { item_id, output_index, content_index: 0, part: textPart('') }),
    ];
  }

  /** response.created and response.in_progress, then the message's opening unless text waits. */
  start(): ResponsesEvent[] {
    const shell = responseObject(this.#served, this.#parsed, this.#created, null);
    return [
      this.#event('response.created', { response: shell }),
      this.#event('response.in_progress', { response: shell }),
      ...(this.#lazyText ? [] : this.#openMessage()),
    ];
  }

  /** A piece of text, opening the message first if it is not open. */
  delta(text: string): ResponsesEvent[] {
    const open = this.#messageOpen ? [] : this.#openMessage();
    this.#text += text;
    const delta = this.#event('response.output_text.delta', {
      item_id: messageItemId(this.#served.jobId),
      output_index: 0,
      content_index: 0,
      delta: text,
      logprobs: [],
    });
    return [...open, delta];
  }

  /** The message's done events, each call's item, and the final response event. */
  end(result: ChatResult): ResponsesEvent[] {
    const events: ResponsesEvent[] = [];
    const jobId = this.#served.jobId;
    const calls = result.toolCalls ?? [];
    // A reply with neither text nor calls still has its (empty) message.
    if (!this.#messageOpen && calls.length === 0) events.push(...this.#openMessage());
    if (this.#messageOpen) {
      const item_id = messageItemId(jobId);
      const status = result.finishReason === 'length' ? 'incomplete' : 'completed';
      events.push(
        this.#event('response.output_text.done', { item_id, output_index: 0, content_index: 0, text: this.#text, logprobs: [] }),
        this.#event('response.content_part.done', { item_id, output_index: 0, content_index: 0, part: textPart(this.#text) }),
        this.#event('response.output_item.done', { output_index: 0, item: messageItem(jobId, status, [textPart(this.#text)]) }),
      );
    }
    calls.forEach((call, i) => {
      const output_index = this.#items++;
      const item_id = callItemId(jobId, i);
      events.push(
        this.#event('response.output_item.added', { output_index, item: callItem(jobId, i, call, 'in_progress', '') }),
        this.#event('response.function_call_arguments.delta', { item_id, output_index, delta: call.arguments }),
        this.#event('response.function_call_arguments.done', { item_id, output_index, name: call.name, arguments: call.arguments }),
        this.#event('response.output_item.done', { output_index, item: callItem(jobId, i, call, 'completed') }),
      );
    });
    const response = responseObject(result, this.#parsed, this.#created, result);
    // A message opened for text before a call stays in the output, as it was streamed.
    if (this.#messageOpen && calls.length > 0) {
      response['output'] = [messageItem(jobId, 'completed', [textPart(this.#text)]), ...(response['output'] as unknown[])];
    }
    const type = result.finishReason === 'length' ? 'response.incomplete' : 'response.completed';
    events.push(this.#event(type, { response }));
    return events;
  }

  /** The `error` event that ends a stream which broke off (no response.completed follows). */
  error(error: NightjarError): ResponsesEvent {
    const o = errorObject(error, 'openai');
    return this.#event('error', { code: o['code'] ?? null, message: o['message'], param: o['param'] ?? null });
  }
}
