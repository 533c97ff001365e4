/**
 * The proxy's mapping between the OpenAI / Anthropic request and error shapes and Nightjar's,
 * as pure functions: what the end-to-end tests cannot reach (a stop sequence the agent names,
 * every refusal, every status).
 */
import { describe, expect, it } from 'vitest';
import { AnthropicEvents, anthropicStopReason, messageBody, parseAnthropicRequest } from '../../src/client/proxy/anthropic.js';
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
      tools: undefined,
      toolChoice: undefined,
    });
  });

  const parameters = { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] };
  const search = { name: 'search', description: 'find', input_schema: parameters };

  it('maps tools, each tool_choice, and tool_use / tool_result blocks into the request', () => {
    const parsed = parseAnthropicRequest({
      model: 'm',
      max_tokens: 5,
      tools: [search, { type: 'custom', name: 'now', input_schema: { type: 'object' } }],
      tool_choice: { type: 'tool', name: 'search', disable_parallel_tool_use: true },
      messages: [
        user,
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Looking.' },
            { type: 'tool_use', id: 'toolu_01', name: 'search', input: { q: 'owls' } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_01', content: [{ type: 'text', text: 'found' }] },
            { type: 'tool_result', tool_use_id: 'toolu_01', content: 'timeout', is_error: true },
            { type: 'text', text: 'And?' },
          ],
        },
      ],
    });
    expect(parsed.tools).toEqual([
      { name: 'search', description: 'find', parameters },
      { name: 'now', parameters: { type: 'object' } },
    ]);
    expect(parsed.toolChoice).toEqual({ name: 'search' });
    expect(parsed.messages).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'Looking.', toolCalls: [{ id: 'toolu_01', name: 'search', arguments: '{"q":"owls"}' }] },
      { role: 'tool', content: 'found', toolCallId: 'toolu_01' },
      { role: 'tool', content: 'Error: timeout', toolCallId: 'toolu_01' },
      { role: 'user', content: 'And?' },
    ]);
    const choice = (c: unknown) => parseAnthropicRequest({ model: 'm', max_tokens: 5, messages: [user], tools: [search], tool_choice: c });
    expect([choice({ type: 'auto' }).toolChoice, choice({ type: 'any' }).toolChoice, choice(undefined).toolChoice]).toEqual([
      'auto',
      'required',
      undefined,
    ]);
    // tool_choice none: the tools are not sent at all.
    expect(choice({ type: 'none' })).toMatchObject({ tools: undefined, toolChoice: undefined });
  });

  it.each([
    [{ tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools.0.type: tools of type "web_search_20250305" (only custom'],
    [{ tools: [{ name: 'search' }] }, 'tools.0.input_schema: a tool needs an input_schema'],
    [{ tools: [{ name: 'bad name', input_schema: parameters }] }, 'tools.0.name: tool names are 1 to 64'],
    [{ tools: [search, search] }, 'tools: two tools have the same name'],
    [{ tools: [search], tool_choice: { type: 'tool', name: 'other' } }, 'tool_choice.name: no tool is named other'],
    [{ tools: [search], tool_choice: { type: 'tool' } }, 'tool_choice.name: a tool choice of type "tool" names the tool'],
    [{ tools: [search], tool_choice: { type: 'sometimes' } }, 'tool_choice.type: must be auto, any, tool or none'],
    [{ tool_choice: { type: 'any' } }, 'tool_choice: a tool choice of type "any" needs tools'],
    [
      { messages: [{ role: 'user', content: [{ type: 'tool_result', content: 'x' }] }] },
      'messages.0.content.0.tool_use_id: a tool_result names the tool_use it answers',
    ],
    [
      { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'image' }] }] }] },
      'messages.0.content.0.content.0.type: content of type "image" (only text) is not supported',
    ],
    [
      { messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'search', input: 'q' }] }] },
      'messages.0.content.0.input: must be an object',
    ],
    [
      { messages: [{ role: 'user', content: [{ type: 'tool_use', id: 'toolu_1', name: 'search', input: {} }] }] },
      'messages.0.content.0.type: content of type "tool_use" (only text, tool_use and tool_result) is not supported',
    ],
    [
      { messages: [{ role: 'assistant', content: [{ type: 'thinking', thinking: 'hm', signature: 's' }] }] },
      'messages.0.content.0.type: extended thinking (a "thinking" block) is not supported',
    ],
    [
      { messages: [{ role: 'user', content: [{ type: 'document' }] }] },
      'messages.0.content.0.type: content of type "document" (only text, tool_use and tool_result) is not supported',
    ],
    [{ thinking: { type: 'enabled', budget_tokens: 10 } }, 'thinking: extended thinking is not supported'],
  ])('refuses %j naming the field', (extra, message) => {
    expect(() => parseAnthropicRequest({ model: 'm', max_tokens: 5, messages: [user], ...extra })).toThrow(
      expect.objectContaining({ message: expect.stringContaining(message) }),
    );
  });

  it('refuses a missing max_tokens', () => {
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
    const events = new AnthropicEvents(result, 'm', false);
    events.start();
    expect(events.end(result, 'stop_sequence')[1]!.data).toMatchObject({
      delta: { stop_reason: 'stop_sequence', stop_sequence: 'END' },
    });
  });

  it("a reply that ends in a tool call is a tool_use block (toolu_ id, input an object), stop_reason 'tool_use'", () => {
    const result = {
      jobId: 'J',
      agentId: 'a'.repeat(32),
      trust: 'signed',
      attempt: 0,
      sends: 1,
      model: 'm',
      text: '',
      finishReason: 'tool_calls',
      toolCalls: [{ id: 'call_abc', name: 'search', arguments: '{"q": "owls"}' }],
      usage: { promptTokens: 3, completionTokens: 5 },
    } as ChatResult;
    expect(anthropicStopReason('tool_calls', undefined)).toBe('tool_use');
    const tool = { type: 'tool_use', id: 'toolu_abc', name: 'search', input: { q: 'owls' }, caller: { type: 'direct' } };
    expect(messageBody(result)).toMatchObject({ stop_reason: 'tool_use', content: [tool] });
    // Streamed: no text block (none came), the tool_use block opened empty, its input as JSON text.
    const events = new AnthropicEvents(result, 'm', true);
    const all = [...events.start(), ...events.end(result, 'tool_use')];
    expect(all.map((e) => e.event)).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(all[2]!.data).toMatchObject({ index: 0, content_block: { ...tool, input: {} } });
    expect(all[3]!.data).toMatchObject({ index: 0, delta: { type: 'input_json_delta', partial_json: '{"q": "owls"}' } });
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
