/**
 * The proxy's mapping between the OpenAI / Anthropic request and error shapes and Nightjar's,
 * as pure functions: what the end-to-end tests cannot reach (a stop sequence the agent names,
 * every refusal, every status).
 */
import { describe, expect, it } from 'vitest';
import { anthropicEvents, anthropicStopReason, messageBody, parseAnthropicRequest } from '../../src/client/proxy/anthropic.js';
import { ParamError, errorAnswer, statusFor } from '../../src/client/proxy/api-errors.js';
import { openAiFinishReason, parseOpenAiRequest, reduceSeed } from '../../src/client/proxy/openai.js';
import type { ChatResult } from '../../src/client/index.js';
import { ERROR_CODES, NightjarError, type ErrorCode } from '../../src/shared/index.js';

const user = { role: 'user', content: 'hi' };

describe('OpenAI requests', () => {
  it('maps roles, text parts and sampling', () => {
    expect(
      parseOpenAiRequest({
        model: 'm',
        messages: [
          { role: 'developer', content: 'rules' },
          {
            role: 'system',
            content: [
              { type: 'text', text: 'a' },
              { type: 'text', text: 'b' },
            ],
          },
          { role: 'user', content: 'q', name: 'ann' },
          { role: 'assistant', content: 'r', refusal: null },
        ],
        max_tokens: 10,
        max_completion_tokens: 20,
        stop: ['', 'END'],
        temperature: 0.5,
        top_p: 0.9,
        seed: -1,
        n: 1,
        presence_penalty: 0,
        user: 'ignored',
        stream: true,
        stream_options: { include_usage: true },
      }),
    ).toEqual({
      model: 'm',
      messages: [
        { role: 'system', content: 'rules' },
        { role: 'system', content: 'ab' },
        { role: 'user', content: 'q' },
        { role: 'assistant', content: 'r' },
      ],
      stream: true,
      includeUsage: true,
      maxTokens: 20,
      temperature: 0.5,
      topP: 0.9,
      seed: 2 ** 32 - 1,
      stop: ['END'],
    });
    expect(parseOpenAiRequest({ model: 'm', messages: [user], stop: 'x' }).stop).toEqual(['x']);
    expect(reduceSeed(2 ** 40 + 5)).toBe(5);
  });

  it.each([
    [{ n: 2 }, 'n', 'n other than 1 is not supported (parameter n)'],
    [
      { tools: [{ type: 'web_search' }] },
      'tools[0].type',
      'tools of type "web_search" (only function) is not supported (parameter tools[0].type)',
    ],
    [{ functions: [{ name: 'f' }] }, 'functions', 'the legacy functions API (use tools) is not supported (parameter functions)'],
    [
      { response_format: { type: 'grammar' } },
      'response_format.type',
      'response_format "grammar" is not supported (parameter response_format.type)',
    ],
    [{ logprobs: true }, 'logprobs', 'logprobs is not supported (parameter logprobs)'],
    [{ top_logprobs: 2 }, 'top_logprobs', 'top_logprobs is not supported (parameter top_logprobs)'],
    [{ logit_bias: { '1': 2 } }, 'logit_bias', 'logit_bias is not supported (parameter logit_bias)'],
    [
      { messages: [{ role: 'function', content: 'x', name: 'f' }] },
      'messages[0].role',
      'messages with role "function" (use tools and role "tool") is not supported (parameter messages[0].role)',
    ],
    [
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
      'messages[0].content[0]',
      'content of type "image_url" (only text) is not supported (parameter messages[0].content[0])',
    ],
  ])('refuses %j, naming its param', (extra, param, message) => {
    const error = (() => {
      try {
        parseOpenAiRequest({ model: 'm', messages: [user], ...extra });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ParamError);
    expect(error).toMatchObject({ code: 'NJ_UNSUPPORTED_FEATURE', message, param });
  });

  it('maps tools, tool_choice, tool messages, response_format and penalties into the request', () => {
    const parameters = { type: 'object', properties: { q: { type: 'string' } } };
    const parsed = parseOpenAiRequest({
      model: 'm',
      messages: [
        user,
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"q":"a"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'found' },
      ],
      tools: [{ type: 'function', function: { name: 'f', description: 'find', parameters } }],
      tool_choice: { type: 'function', function: { name: 'f' } },
      response_format: { type: 'json_schema', json_schema: { name: 'out', schema: parameters, strict: true } },
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      user: 'ignored',
    });
    expect(parsed.tools).toEqual([{ name: 'f', description: 'find', parameters }]);
    expect(parsed.toolChoice).toEqual({ name: 'f' });
    expect(parsed.messages.slice(1)).toEqual([
      { role: 'assistant', content: '', toolCalls: [{ id: 'call_1', name: 'f', arguments: '{"q":"a"}' }] },
      { role: 'tool', content: 'found', toolCallId: 'call_1' },
    ]);
    expect(parsed.responseFormat).toEqual({ type: 'json_schema', name: 'out', schema: parameters, strict: true });
    expect([parsed.frequencyPenalty, parsed.presencePenalty]).toEqual([0.5, -0.5]);
    // tool_choice none: the tools are not sent at all.
    expect(
      parseOpenAiRequest({ model: 'm', messages: [user], tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'none' })
        .tools,
    ).toBeUndefined();
  });

  it.each([
    [{ frequency_penalty: 3 }, 'frequency_penalty'],
    [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ tools: [{ type: 'function', function: { name: 'bad name' } }] }, 'tools[0].function.name'],
  ])('refuses %j as a bad request naming its param', (extra, param) => {
    expect(() => parseOpenAiRequest({ model: 'm', messages: [user], ...extra })).toThrow(
      expect.objectContaining({ code: 'NJ_BAD_REQUEST', param }),
    );
  });

  it('says which field is malformed', () => {
    expect(() => parseOpenAiRequest({ model: 'm', messages: [] })).toThrow(
      expect.objectContaining({ code: 'NJ_BAD_REQUEST', message: expect.stringContaining('messages') }),
    );
    expect(() => parseOpenAiRequest({ messages: [user] })).toThrow(
      expect.objectContaining({ code: 'NJ_BAD_REQUEST', message: expect.stringContaining('model') }),
    );
  });

  it('maps finish reasons; a reply the agent cut short has none', () => {
    expect([openAiFinishReason('stop'), openAiFinishReason('length'), openAiFinishReason('cancelled')]).toEqual(['stop', 'length', null]);
  });
});

describe('Anthropic requests', () => {
  it('maps system, message blocks and sampling', () => {
    expect(
      parseAnthropicRequest({
        model: 'm',
        max_tokens: 5,
        system: [{ type: 'text', text: 'sys' }],
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'q' }] },
          { role: 'assistant', content: 'r' },
        ],
        stop_sequences: ['S'],
        temperature: 0.2,
        top_k: 5,
        thinking: { type: 'disabled' },
        metadata: { user_id: 'x' },
      }),
    ).toEqual({
      model: 'm',
      messages: [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'q' },
        { role: 'assistant', content: 'r' },
      ],
      stream: false,
      maxTokens: 5,
      temperature: 0.2,
      topP: undefined,
      topK: 5,
      stop: ['S'],
    });
  });

  it('refuses tools, thinking and non-text blocks, and a missing max_tokens', () => {
    const base = { model: 'm', max_tokens: 5, messages: [user] };
    expect(() => parseAnthropicRequest({ ...base, tools: [{ name: 't' }] })).toThrow('tools is not supported');
    expect(() => parseAnthropicRequest({ ...base, thinking: { type: 'enabled', budget_tokens: 10 } })).toThrow(
      'extended thinking is not supported',
    );
    expect(() => parseAnthropicRequest({ ...base, messages: [{ role: 'user', content: [{ type: 'document' }] }] })).toThrow(
      'messages[0] content of type "document" (only text) is not supported',
    );
    expect(() => parseAnthropicRequest({ model: 'm', messages: [user] })).toThrow(
      expect.objectContaining({ code: 'NJ_BAD_REQUEST', message: expect.stringContaining('max_tokens') }),
    );
  });

  it('reports stop_sequence when the agent names the stop sequence that fired', () => {
    expect(anthropicStopReason('stop', undefined)).toBe('end_turn');
    expect(anthropicStopReason('stop', 'END')).toBe('stop_sequence');
    expect(anthropicStopReason('length', undefined)).toBe('max_tokens');
    expect(anthropicStopReason('cancelled', undefined)).toBeNull();
    const result = {
      jobId: 'J',
      agentId: 'a'.repeat(32),
      trust: 'signed',
      attempt: 0,
      sends: 1,
      model: 'm',
      text: 'done',
      finishReason: 'stop',
      stopSequence: 'END',
      usage: { promptTokens: 3, completionTokens: 1 },
    } as ChatResult;
    expect(messageBody(result)).toMatchObject({
      id: 'msg_J',
      stop_reason: 'stop_sequence',
      stop_sequence: 'END',
      usage: { input_tokens: 3, output_tokens: 1 },
    });
    expect(anthropicEvents.end(result, 'stop_sequence')[1]!.data).toMatchObject({
      delta: { stop_reason: 'stop_sequence', stop_sequence: 'END' },
    });
  });
});

describe('errors', () => {
  const all = Object.keys(ERROR_CODES) as ErrorCode[];

  it.each(all)('%s has a status each SDK classifies, and a body in each shape', (code) => {
    const error = new NightjarError(code, 'particulars', { retryAfterMs: 1500 });
    for (const flavor of ['openai', 'anthropic'] as const) {
      const status = statusFor(error, flavor);
      expect(status).toBeGreaterThanOrEqual(400);
      const answer = errorAnswer(error, flavor, 'req_1');
      expect(answer.headers).toMatchObject({ 'retry-after-ms': '1500', 'retry-after': '2', 'request-id': 'req_1' });
      expect(answer.headers['x-should-retry']).toMatch(/^(true|false)$/);
      const object =
        flavor === 'openai'
          ? (answer.body as { error: Record<string, unknown> }).error
          : (answer.body as { error: Record<string, unknown> }).error;
      expect(object.message).toBe(`${code}: particulars. ${ERROR_CODES[code].hint}`);
      expect(typeof object.type).toBe('string');
    }
  });

  it('uses the statuses the APIs use where they differ from the registry', () => {
    const overloaded = new NightjarError('NJ_NO_CAPACITY', 'busy');
    expect([statusFor(overloaded, 'openai'), statusFor(overloaded, 'anthropic')]).toEqual([503, 529]);
    expect(errorAnswer(overloaded, 'anthropic', 'r').body).toMatchObject({
      type: 'error',
      error: { type: 'overloaded_error' },
      request_id: 'r',
    });
    expect(statusFor(new NightjarError('NJ_CONTEXT_OVERFLOW', 'x'), 'anthropic')).toBe(400);
    expect(statusFor(new NightjarError('NJ_PROTOCOL_VERSION', 'x'), 'openai')).toBe(502);
    expect(errorAnswer(new NightjarError('NJ_TRUST_POLICY', 'x'), 'openai', 'r').headers['x-should-retry']).toBe('false');
  });
});
