/**
 * How Ollama's /api/chat and /api/generate bodies map to Nightjar requests, and the figures of a
 * final object: pure functions, no network (the wire is in proxy-ollama.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { NightjarError } from '../../src/shared/index.js';
import { errorAnswer } from '../../src/client/proxy/api-errors.js';
import { ollamaDoneReason, ollamaFigures, ollamaToolCalls, parseOllamaChat, parseOllamaGenerate } from '../../src/client/proxy/ollama.js';
import type { ChatResult } from '../../src/client/sdk/index.js';

const user = [{ role: 'user', content: 'hi' }];

describe('options', () => {
  it('maps the honoured options and reads Ollama’s "off" values as unset', () => {
    const p = parseOllamaChat({
      model: 'm',
      messages: user,
      options: {
        temperature: 0.5,
        top_p: 0.9,
        top_k: 40,
        seed: 2 ** 32 + 3,
        num_predict: 64,
        stop: 'END',
        frequency_penalty: 1,
        presence_penalty: 0,
      },
    });
    expect(p).toMatchObject({ temperature: 0.5, topP: 0.9, topK: 40, seed: 3, maxTokens: 64, stop: ['END'], frequencyPenalty: 1 });
    expect(p.presencePenalty).toBeUndefined();
    const off = parseOllamaChat({ model: 'm', messages: user, options: { top_k: 0, seed: -1, num_predict: -1 } });
    expect([off.topK, off.seed, off.maxTokens]).toEqual([undefined, undefined, undefined]);
  });

  it('ignores options it does not honour, as Ollama ignores unknown ones', () => {
    const p = parseOllamaChat({ model: 'm', messages: user, options: { num_ctx: 99, repeat_penalty: 1.1, mirostat: 2 } });
    expect(p).toMatchObject({ temperature: undefined, maxTokens: undefined });
  });

  it('streams unless told not to (Ollama’s default)', () => {
    expect(parseOllamaChat({ model: 'm', messages: user }).stream).toBe(true);
    expect(parseOllamaChat({ model: 'm', messages: user, stream: false }).stream).toBe(false);
    expect(parseOllamaGenerate({ model: 'm', prompt: 'x' }).stream).toBe(true);
  });

  it.each([
    [{ stop: Array.from({ length: 9 }, (_, i) => `s${i}`) }, /options\.stop may hold at most 8/],
    [{ presence_penalty: 3 }, /options\.presence_penalty must be from -2 to 2/],
    [{ top_k: 1.5 }, /options\.top_k must be an integer/],
    [{ temperature: 3 }, /options\.temperature must be from 0 to 2/],
  ])('refuses %o in Ollama’s field names', (options, message) => {
    expect(() => parseOllamaChat({ model: 'm', messages: user, options })).toThrow(message);
  });
});

describe('messages, tools and format', () => {
  it('gives id-less calls ids and matches tool results by tool_name, then in order', () => {
    const p = parseOllamaChat({
      model: 'm',
      messages: [
        ...user,
        {
          role: 'assistant',
          content: '',
          tool_calls: [{ function: { name: 'a', arguments: { x: 1 } } }, { function: { name: 'b', arguments: {} } }],
        },
        { role: 'tool', content: 'B', tool_name: 'b' },
        { role: 'tool', content: 'A' },
      ],
    });
    expect(p.messages[1]).toMatchObject({
      toolCalls: [
        { id: 'call_1_0', name: 'a', arguments: '{"x":1}' },
        { id: 'call_1_1', name: 'b' },
      ],
    });
    expect(p.messages[2]).toMatchObject({ role: 'tool', content: 'B', toolCallId: 'call_1_1' });
    expect(p.messages[3]).toMatchObject({ role: 'tool', content: 'A', toolCallId: 'call_1_0' });
  });

  it('refuses a tool result that answers no call', () => {
    expect(() => parseOllamaChat({ model: 'm', messages: [...user, { role: 'tool', content: 'x', tool_name: 'a' }] })).toThrow(
      /messages\[1\] is a tool result that answers no tool call/,
    );
  });

  it('format "json" is a JSON object, a schema is json_schema; tools are offered with tool_choice unset (auto)', () => {
    expect(parseOllamaChat({ model: 'm', messages: user, format: 'json' }).responseFormat).toEqual({ type: 'json_object' });
    const schema = { type: 'object', properties: { a: { type: 'integer' } } };
    expect(parseOllamaChat({ model: 'm', messages: user, format: schema }).responseFormat).toMatchObject({ type: 'json_schema', schema });
    const t = parseOllamaChat({
      model: 'm',
      messages: user,
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }],
    });
    expect(t.tools).toHaveLength(1);
    expect(t.toolChoice).toBeUndefined();
    const none = parseOllamaChat({
      ...{ model: 'm', messages: user },
      tools: [{ type: 'function', function: { name: 'f' } }],
      tool_choice: 'none',
    });
    expect(none.tools).toBeUndefined();
  });

  it('generate is a one-turn chat: system first, then the prompt', () => {
    expect(parseOllamaGenerate({ model: 'm', prompt: 'p', system: 's' }).messages).toEqual([
      { role: 'system', content: 's' },
      { role: 'user', content: 'p' },
    ]);
  });
});

describe('replies', () => {
  it('done_reason: tool calls end as "stop", as in Ollama; a reply cut short has none', () => {
    expect(ollamaDoneReason('tool_calls')).toBe('stop');
    expect(ollamaDoneReason('length')).toBe('length');
    expect(ollamaDoneReason('cancelled')).toBeNull();
  });

  it('tool call arguments are objects; anything else is the agent’s failure', () => {
    expect(ollamaToolCalls([{ id: 'c', name: 'f', arguments: '{"a":1}' }])).toEqual([
      { id: 'c', function: { index: 0, name: 'f', arguments: { a: 1 } } },
    ]);
    expect(() => ollamaToolCalls([{ id: 'c', name: 'f', arguments: '[1]' }])).toThrow(NightjarError);
  });

  it('figures: counts from usage, durations in ns measured at the proxy, load 0', () => {
    const result = { usage: { promptTokens: 12, completionTokens: 5 } } as ChatResult;
    expect(ollamaFigures(result, { startedMs: 1000, firstChunkMs: 1250, endedMs: 2000 })).toEqual({
      total_duration: 1e9,
      load_duration: 0,
      prompt_eval_count: 12,
      prompt_eval_duration: 250e6,
      eval_count: 5,
      eval_duration: 750e6,
    });
  });

  it('errors are {"error": message}, status by code', () => {
    const a = errorAnswer(new NightjarError('NJ_MODEL_UNKNOWN', 'model "x" not found'), 'ollama', 'req_1');
    expect(a.status).toBe(404);
    expect(a.body).toEqual({ error: expect.stringMatching(/^NJ_MODEL_UNKNOWN: model "x" not found\. /) as string });
  });
});
