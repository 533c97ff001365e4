/**
 * The Anthropic Messages API on top of the SDK: request bodies mapped to Nightjar sampling,
 * results and stream events in the shapes the `@anthropic-ai/sdk` package parses.
 */
import { z } from 'zod';
import {
  chatMessageSchema,
  describeIssues,
  toolCallSchema,
  toolSchema,
  type ChatMessage,
  type FinishReason,
  type Tool,
  type ToolCall,
  type ToolChoice,
} from '../../shared/index.js';
import type { ChatResult } from '../sdk/index.js';
import { ParamError } from './api-errors.js';

/** A parsed Messages request. */
export interface AnthropicRequest {
  model: string;
  messages: ChatMessage[];
  stream: boolean;
  maxTokens: number;
  temperature: number | undefined;
  topP: number | undefined;
  topK: number | undefined;
  stop: string[] | undefined;
  tools: Tool[] | undefined;
  toolChoice: ToolChoice | undefined;
}

const block = z.looseObject({
  type: z.string(),
  text: z.string().optional(),
  id: z.string().optional(),
  name: z.string().optional(),
  input: z.unknown().optional(),
  tool_use_id: z.string().optional(),
  content: z.union([z.string(), z.array(z.looseObject({ type: z.string(), text: z.string().optional() }))]).nullish(),
  is_error: z.boolean().nullish(),
});
const content = z.union([z.string(), z.array(block)]);
const toolDefinition = z.looseObject({
  type: z.string().nullish(),
  name: z.string(),
  description: z.string().nullish(),
  input_schema: z.record(z.string(), z.unknown()).optional(),
});
const bodySchema = z.looseObject({
  model: z.string().min(1),
  max_tokens: z.int().min(1),
  messages: z.array(z.looseObject({ role: z.enum(['user', 'assistant', 'system']), content })).min(1),
  system: content.nullish(),
  stop_sequences: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  top_k: z.int().nullish(),
  tools: z.array(toolDefinition).nullish(),
  tool_choice: z.looseObject({ type: z.string(), name: z.string().optional(), disable_parallel_tool_use: z.boolean().nullish() }).nullish(),
  thinking: z.looseObject({ type: z.string() }).nullish(),
});

/** A zod path as the Messages API spells a field in its errors: `messages.1.content.0.type`. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

function unsupported(field: string, what: string): ParamError {
  return new ParamError('NJ_UNSUPPORTED_FEATURE', field, `${field}: ${what} is not supported`);
}

function invalid(field: string, what: string): ParamError {
  return new ParamError('NJ_BAD_REQUEST', field, `${field}: ${what}`);
}

/** Checks `value` with a protocol schema, naming the field (under `field`) in the error. */
function checked<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw invalid(fieldPath([field, ...(issue?.path ?? [])]), issue?.message ?? 'invalid');
}

type Block = z.infer<typeof block>;

/** The text of a system prompt or of a tool result: a string or text blocks only. */
function textOf(value: string | readonly { type: string; text?: string | undefined }[], field: string): string {
  if (typeof value === 'string') return value;
  return value
    .map((b, j) => {
      if (b.type !== 'text' || b.text === undefined) throw unsupported(`${field}.${j}.type`, `content of type "${b.type}" (only text)`);
      return b.text;
    })
    .join('');
}

/** A refusal for a block this proxy does not serve, naming it as the API does. */
function refusedBlock(b: Block, field: string): ParamError {
  if (b.type === 'thinking' || b.type === 'redacted_thinking')
    return unsupported(`${field}.type`, 'extended thinking (a "thinking" block)');
  return unsupported(`${field}.type`, `content of type "${b.type}" (only text, tool_use and tool_result)`);
}

/**
 * One user turn: its text blocks as user messages and each `tool_result` block as a tool message
 * naming the call it answers (in the order the blocks came). An error result says so in its text.
 */
function userMessages(blocks: readonly Block[], i: number): ChatMessage[] {
  const out: ChatMessage[] = [];
  let pending: string[] = [];
  const flush = (): void => {
    if (pending.length > 0) out.push({ role: 'user', content: pending.join('') });
    pending = [];
  };
  blocks.forEach((b, j) => {
    const field = `messages.${i}.content.${j}`;
    if (b.type === 'text' && b.text !== undefined) pending.push(b.text);
    else if (b.type === 'tool_result') {
      if (b.tool_use_id === undefined) throw invalid(`${field}.tool_use_id`, 'a tool_result names the tool_use it answers');
      flush();
      const result = b.content === undefined || b.content === null ? '' : textOf(b.content, `${field}.content`);
      const message = { role: 'tool', content: b.is_error ? `Error: ${result}` : result, toolCallId: b.tool_use_id };
      out.push(checked(chatMessageSchema, message, field));
    } else throw refusedBlock(b, field);
  });
  flush();
  return out.length > 0 ? out : [{ role: 'user', content: '' }];
}

/** One assistant turn: its text, and its `tool_use` blocks as the calls it made (input as JSON text). */
function assistantMessage(blocks: readonly Block[], i: number): ChatMessage {
  let text = '';
  const toolCalls: ToolCall[] = [];
  blocks.forEach((b, j) => {
    const field = `messages.${i}.content.${j}`;
    if (b.type === 'text' && b.text !== undefined) text += b.text;
    else if (b.type === 'tool_use') {
      if (b.input === null || typeof b.input !== 'object' || Array.isArray(b.input)) throw invalid(`${field}.input`, 'must be an object');
      toolCalls.push(checked(toolCallSchema, { id: b.id, name: b.name, arguments: JSON.stringify(b.input) }, field));
    } else throw refusedBlock(b, field);
  });
  const message = toolCalls.length > 0 ? { role: 'assistant', content: text, toolCalls } : { role: 'assistant', content: text };
  return checked(chatMessageSchema, message, `messages.${i}`);
}

function toolsOf(b: z.infer<typeof bodySchema>): Tool[] | undefined {
  if (!b.tools?.length) return undefined;
  const tools = b.tools.map((t, i): Tool => {
    // Anthropic's server tools (web search, code execution, bash, …) carry a type and run at Anthropic.
    if (t.type !== undefined && t.type !== null && t.type !== 'custom')
      throw unsupported(`tools.${i}.type`, `tools of type "${t.type}" (only custom tools: name, description, input_schema)`);
    if (t.input_schema === undefined) throw invalid(`tools.${i}.input_schema`, 'a tool needs an input_schema');
    const tool = { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.input_schema };
    const parsed = toolSchema.safeParse(tool);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    const field = issue?.path[0] === 'parameters' ? ['input_schema', ...issue.path.slice(1)] : (issue?.path ?? []);
    throw invalid(fieldPath(['tools', i, ...field]), issue?.message ?? 'invalid');
  });
  if (new Set(tools.map((t) => t.name)).size !== tools.length) throw invalid('tools', 'two tools have the same name');
  return tools;
}

/** `auto`, `any` (the model must call one: 'required'), `tool` (that one), `none`. */
function toolChoiceOf(b: z.infer<typeof bodySchema>, tools: Tool[] | undefined): ToolChoice | undefined {
  const c = b.tool_choice;
  if (c === undefined || c === null) return undefined;
  let choice: ToolChoice;
  if (c.type === 'auto' || c.type === 'none') choice = c.type;
  else if (c.type === 'any') choice = 'required';
  else if (c.type === 'tool') {
    if (c.name === undefined) throw invalid('tool_choice.name', 'a tool choice of type "tool" names the tool');
    choice = { name: c.name };
  } else throw invalid('tool_choice.type', 'must be auto, any, tool or none');
  // disable_parallel_tool_use is accepted as it is: an agent makes one call a reply today.
  if (choice === 'none') return tools === undefined ? undefined : choice;
  if (tools === undefined) throw invalid('tool_choice', `a tool choice of type "${c.type}" needs tools`);
  if (typeof choice === 'object' && !tools.some((t) => t.name === choice.name))
    throw invalid('tool_choice.name', `no tool is named ${choice.name}`);
  return choice;
}

/** Parses and checks a Messages request body. */
export function parseAnthropicRequest(body: unknown): AnthropicRequest {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) {
    const field = fieldPath(parsed.error.issues[0]?.path ?? []);
    throw new ParamError('NJ_BAD_REQUEST', field, `the request is invalid at ${describeIssues(parsed.error)}`);
  }
  const b = parsed.data;
  if (b.thinking && b.thinking.type !== 'disabled') throw unsupported('thinking', 'extended thinking');
  const tools = toolsOf(b);
  const toolChoice = toolChoiceOf(b, tools);
  const messages: ChatMessage[] = [];
  if (b.system !== undefined && b.system !== null) {
    const system = textOf(b.system, 'system');
    if (system !== '') messages.push({ role: 'system', content: system });
  }
  b.messages.forEach((m, i) => {
    if (typeof m.content === 'string') messages.push({ role: m.role, content: m.content });
    else if (m.role === 'system') messages.push({ role: 'system', content: textOf(m.content, `messages.${i}.content`) });
    else if (m.role === 'user') messages.push(...userMessages(m.content, i));
    else messages.push(assistantMessage(m.content, i));
  });
  const stop = b.stop_sequences?.filter((s) => s !== '');
  return {
    model: b.model,
    messages,
    stream: b.stream ?? false,
    maxTokens: b.max_tokens,
    temperature: b.temperature ?? undefined,
    topP: b.top_p ?? undefined,
    topK: b.top_k ?? undefined,
    stop: stop?.length ? stop : undefined,
    tools: toolChoice === 'none' ? undefined : tools,
    toolChoice: toolChoice === 'none' ? undefined : toolChoice,
  };
}

/** A stop_reason of the Messages API. */
export type AnthropicStopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';

/** Anthropic's stop_reason for a Nightjar finish; null for a reply the agent cut short. */
export function anthropicStopReason(reason: FinishReason, stopSequence: string | undefined): AnthropicStopReason | null {
  if (reason === 'length') return 'max_tokens';
  if (reason === 'tool_calls') return 'tool_use';
  if (reason === 'stop') return stopSequence === undefined ? 'end_turn' : 'stop_sequence';
  return null;
}

/** The id of a tool_use block: the agent's call id (`call_…`) as Anthropic spells them (`toolu_…`). */
export function toolUseId(callId: string): string {
  return `toolu_${callId.startsWith('call_') ? callId.slice('call_'.length) : callId}`;
}

/**
 * A `tool_use` block of a call; `input` empty for the block that opens a streamed call. The SDK
 * has checked that the arguments parse (they were generated under the tool's grammar).
 */
export function toolUseBlock(call: ToolCall, input: unknown = JSON.parse(call.arguments)): Record<string, unknown> {
  return { type: 'tool_use', id: toolUseId(call.id), name: call.name, input, caller: { type: 'direct' } };
}

/** The message id of a job. */
export function messageId(jobId: string): string {
  return `msg_${jobId}`;
}

function usage(input: number, output: number): Record<string, unknown> {
  return {
    input_tokens: input,
    output_tokens: output,
    cache_creation_input_tokens: null,
    cache_read_input_tokens: null,
    cache_creation: null,
    server_tool_use: null,
    service_tier: null,
  };
}

function nightjar(result: Pick<ChatResult, 'agentId' | 'trust' | 'jobId'>, verified: boolean): Record<string, unknown> {
  return { agent_id: result.agentId, trust: result.trust, job_id: result.jobId, receipt_verified: verified };
}

/** A reply's content blocks: its text (left out when empty before tool calls), then one tool_use block per call. */
function contentOf(result: ChatResult): Record<string, unknown>[] {
  const calls = (result.toolCalls ?? []).map((c) => toolUseBlock(c));
  const text = calls.length > 0 && result.text === '' ? [] : [{ type: 'text', text: result.text, citations: null }];
  return [...text, ...calls];
}

/** A `message` object. */
export function messageBody(result: ChatResult): Record<string, unknown> {
  return {
    id: messageId(result.jobId),
    type: 'message',
    role: 'assistant',
    model: result.model,
    content: contentOf(result),
    stop_reason: anthropicStopReason(result.finishReason, result.stopSequence),
    stop_sequence: result.stopSequence ?? null,
    stop_details: null,
    container: null,
    usage: usage(result.usage.promptTokens, result.usage.completionTokens),
    nightjar: nightjar(result, true),
  };
}

/** One server-sent event of the Messages stream. */
export interface AnthropicEvent {
  event: string;
  data: Record<string, unknown>;
}

/**
 * The events of one streamed message, in the order the Messages API sends them: message_start,
 * content blocks (start, deltas, stop), message_delta, message_stop. Text streams as it is
 * generated; a tool call arrives whole on the agent's final chunk, so its tool_use block is sent
 * then, its input as one input_json_delta. A request with tools opens its text block only when
 * text comes (a reply that calls a tool at once has no text block, as at Anthropic).
 */
export class AnthropicEvents {
  readonly #served: Pick<ChatResult, 'agentId' | 'trust' | 'jobId'>;
  readonly #model: string;
  readonly #lazyText: boolean;
  /** The index of the text block while it is open, else null. */
  #textOpen: number | null = null;
  #blocks = 0;

  /** `lazyText`: open the text block on the first text (a request with tools), not at once. */
  constructor(served: Pick<ChatResult, 'agentId' | 'trust' | 'jobId'>, model: string, lazyText: boolean) {
    this.#served = served;
    this.#model = model;
    this.#lazyText = lazyText;
  }

  #openText(): AnthropicEvent {
    this.#textOpen = this.#blocks++;
    return {
      event: 'content_block_start',
      data: { type: 'content_block_start', index: this.#textOpen, content_block: { type: 'text', text: '', citations: null } },
    };
  }

  #stop(index: number): AnthropicEvent {
    return { event: 'content_block_stop', data: { type: 'content_block_stop', index } };
  }

  /** message_start with the message shell (input tokens are not known before the reply ends), then ping. */
  start(): AnthropicEvent[] {
    const message = {
      id: messageId(this.#served.jobId),
      type: 'message',
      role: 'assistant',
      model: this.#model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      stop_details: null,
      container: null,
      usage: usage(0, 0),
      nightjar: nightjar(this.#served, false),
    };
    return [
      { event: 'message_start', data: { type: 'message_start', message } },
      ...(this.#lazyText ? [] : [this.#openText()]),
      { event: 'ping', data: { type: 'ping' } },
    ];
  }

  /** A piece of text (a text_delta), opening the text block first if it is not open. */
  delta(text: string): AnthropicEvent[] {
    const open = this.#textOpen === null ? [this.#openText()] : [];
    const index = this.#textOpen!;
    return [...open, { event: 'content_block_delta', data: { type: 'content_block_delta', index, delta: { type: 'text_delta', text } } }];
  }

  /** The text block's stop, each tool call's block, message_delta (stop reason, usage), message_stop. */
  end(result: ChatResult, stopReason: AnthropicStopReason): AnthropicEvent[] {
    const events: AnthropicEvent[] = [];
    const calls = result.toolCalls ?? [];
    // A reply with neither text nor calls still has its (empty) text block.
    if (this.#textOpen === null && this.#blocks === 0 && calls.length === 0) events.push(this.#openText());
    if (this.#textOpen !== null) events.push(this.#stop(this.#textOpen));
    this.#textOpen = null;
    for (const call of calls) {
      const index = this.#blocks++;
      events.push(
        { event: 'content_block_start', data: { type: 'content_block_start', index, content_block: toolUseBlock(call, {}) } },
        {
          event: 'content_block_delta',
          data: { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: call.arguments } },
        },
        this.#stop(index),
      );
    }
    events.push(
      {
        event: 'message_delta',
        data: {
          type: 'message_delta',
          delta: { stop_reason: stopReason, stop_sequence: result.stopSequence ?? null, stop_details: null, container: null },
          usage: {
            input_tokens: result.usage.promptTokens,
            output_tokens: result.usage.completionTokens,
            cache_creation_input_tokens: null,
            cache_read_input_tokens: null,
            server_tool_use: null,
          },
          nightjar: nightjar(result, true),
        },
      },
      { event: 'message_stop', data: { type: 'message_stop' } },
    );
    return events;
  }
}
