/**
 * The Anthropic Messages API on top of the SDK: request bodies mapped to Nightjar sampling,
 * results and stream events in the shapes the `@anthropic-ai/sdk` package parses.
 */
import { z } from 'zod';
import { NightjarError, describeIssues, type ChatMessage, type FinishReason } from '../../shared/index.js';
import type { ChatResult } from '../sdk/index.js';

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
}

const block = z.looseObject({ type: z.string(), text: z.string().optional() });
const content = z.union([z.string(), z.array(block)]);
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
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
  thinking: z.looseObject({ type: z.string() }).nullish(),
});

function unsupported(what: string): NightjarError {
  return new NightjarError('NJ_UNSUPPORTED_FEATURE', `${what} is not supported`);
}

function text(value: z.infer<typeof content>, where: string): string {
  if (typeof value === 'string') return value;
  return value
    .map((b) => {
      if (b.type !== 'text' || b.text === undefined) throw unsupported(`${where} content of type "${b.type}" (only text)`);
      return b.text;
    })
    .join('');
}

/** Parses and checks a Messages request body. */
export function parseAnthropicRequest(body: unknown): AnthropicRequest {
  const parsed = bodySchema.safeParse(body);
  if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `the request is invalid at ${describeIssues(parsed.error)}`);
  const b = parsed.data;
  if (b.tools?.length || (b.tool_choice !== undefined && b.tool_choice !== null)) throw unsupported('tools');
  if (b.thinking && b.thinking.type !== 'disabled') throw unsupported('extended thinking');
  const messages: ChatMessage[] = [];
  if (b.system !== undefined && b.system !== null) {
    const system = text(b.system, 'system');
    if (system !== '') messages.push({ role: 'system', content: system });
  }
  b.messages.forEach((m, i) => messages.push({ role: m.role, content: text(m.content, `messages[${i}]`) }));
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
  };
}

/** Anthropic's stop_reason for a Nightjar finish; null for a reply the agent cut short. */
export function anthropicStopReason(
  reason: FinishReason,
  stopSequence: string | undefined,
): 'end_turn' | 'max_tokens' | 'stop_sequence' | null {
  if (reason === 'length') return 'max_tokens';
  if (reason === 'stop') return stopSequence === undefined ? 'end_turn' : 'stop_sequence';
  return null;
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

/** A `message` object. */
export function messageBody(result: ChatResult): Record<string, unknown> {
  return {
    id: messageId(result.jobId),
    type: 'message',
    role: 'assistant',
    model: result.model,
    content: [{ type: 'text', text: result.text, citations: null }],
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

/** The events of one streamed message, in the order the Messages API sends them. */
export const anthropicEvents = {
  /** message_start: the message shell (input tokens are not known before the reply ends). */
  start(served: Pick<ChatResult, 'agentId' | 'trust' | 'jobId'>, model: string): AnthropicEvent[] {
    return [
      {
        event: 'message_start',
        data: {
          type: 'message_start',
          message: {
            id: messageId(served.jobId),
            type: 'message',
            role: 'assistant',
            model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            stop_details: null,
            container: null,
            usage: usage(0, 0),
            nightjar: nightjar(served, false),
          },
        },
      },
      {
        event: 'content_block_start',
        data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '', citations: null } },
      },
      { event: 'ping', data: { type: 'ping' } },
    ];
  },
  /** content_block_delta with a piece of text. */
  delta(text: string): AnthropicEvent {
    return { event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } } };
  },
  /** content_block_stop, message_delta (stop reason, usage), message_stop. */
  end(result: ChatResult, stopReason: 'end_turn' | 'max_tokens' | 'stop_sequence'): AnthropicEvent[] {
    return [
      { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
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
    ];
  },
};
