/**
 * Tools, response formats and penalties on the real engine (node-llama-cpp) with the synthetic
 * tiny model. Its weights are random: only the grammar makes a call's arguments parse and a
 * json_schema reply follow its schema, which is what these tests pin.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine, writeSyntheticModel, type InferenceEngine } from '../../../../src/main/agent/index.js';
import { type ChatMessage, type Tool } from '../../../../src/shared/index.js';

let dir: string;
let engine: InferenceEngine;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-constraints-'));
  const modelPath = (await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 })).path;
  engine = await loadEngine({ modelPath, threads: 1, slots: 2 });
}, 60_000);

afterAll(async () => {
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const messages: ChatMessage[] = [{ role: 'user', content: 'What is the weather in Oslo?' }];
/** Bounded fields only: a random model under an unbounded string rule rarely closes it. */
export const WEATHER: Tool = {
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: {
    type: 'object',
    properties: {
      city: { type: 'string', maxLength: 6 },
      days: { type: 'integer' },
      unit: { enum: ['celsius', 'fahrenheit'] },
    },
    required: ['city', 'days', 'unit'],
  },
};
const TIME: Tool = { name: 'get_time', parameters: { type: 'object', properties: { utc: { type: 'boolean' } } } };

function checkWeather(args: unknown): void {
  const a = args as Record<string, unknown>;
  expect(Object.keys(a).sort()).toEqual(['city', 'days', 'unit']);
  expect(typeof a['city']).toBe('string');
  expect((a['city'] as string).length).toBeLessThanOrEqual(6);
  expect(Number.isInteger(a['days'])).toBe(true);
  expect(['celsius', 'fahrenheit']).toContain(a['unit']);
}

describe('tool calls', () => {
  it('a named tool choice gives a call whose arguments parse and fit the schema, for many seeds', async () => {
    for (let seed = 1; seed <= 5; seed++) {
      const result = await engine.generate({
        messages,
        sampling: { maxTokens: 200, temperature: 1, seed },
        tools: [WEATHER, TIME],
        toolChoice: { name: 'get_weather' },
      });
      expect(result.finishReason).toBe('tool_calls');
      expect(result.text).toBe('');
      expect(result.toolCalls).toHaveLength(1);
      const call = result.toolCalls![0]!;
      expect(call.name).toBe('get_weather');
      expect(call.id).toMatch(/^call_[A-Za-z0-9_-]{24}$/);
      checkWeather(JSON.parse(call.arguments));
    }
  });

  it("'required' gives a call of one of the tools", async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const result = await engine.generate({
        messages,
        sampling: { maxTokens: 200, temperature: 1, seed },
        tools: [WEATHER, TIME],
        toolChoice: 'required',
      });
      expect(result.finishReason).toBe('tool_calls');
      const call = result.toolCalls![0]!;
      expect(['get_weather', 'get_time']).toContain(call.name);
      const args = JSON.parse(call.arguments) as Record<string, unknown>;
      if (call.name === 'get_weather') checkWeather(args);
      else expect(typeof args['utc']).toBe('boolean');
    }
  });

  it("'none' and 'auto' answer in text on this model, and the tools are rendered into the prompt", async () => {
    const plain = await engine.countPromptTokens(messages);
    expect(await engine.countPromptTokens(messages, { tools: [WEATHER] })).toBeGreaterThan(plain);
    expect(await engine.countPromptTokens(messages, { tools: [WEATHER], toolChoice: 'none' })).toBe(plain);
    const none = await engine.generate({ messages, sampling: { maxTokens: 8, temperature: 0 }, tools: [WEATHER], toolChoice: 'none' });
    const bare = await engine.generate({ messages, sampling: { maxTokens: 8, temperature: 0 } });
    expect(none.text).toBe(bare.text);
    expect(none.toolCalls).toBeUndefined();
  });

  it('a later turn with the call and its result renders and generates', async () => {
    const later: ChatMessage[] = [
      ...messages,
      {
        role: 'assistant',
        content: '',
        toolCalls: [{ id: 'call_1', name: 'get_weather', arguments: '{"city":"Oslo","days":1,"unit":"celsius"}' }],
      },
      { role: 'tool', content: '{"temp": 3}', toolCallId: 'call_1' },
    ];
    const result = await engine.generate({ messages: later, sampling: { maxTokens: 4, temperature: 0 }, tools: [WEATHER] });
    expect(result.usage.promptTokens).toBeGreaterThan(await engine.countPromptTokens(messages, { tools: [WEATHER] }));
    expect(['stop', 'length', 'tool_calls']).toContain(result.finishReason);
  });

  it('a call cut short by maxTokens arrives as text, every token delivered', async () => {
    const deltas: string[] = [];
    const result = await engine.generate({
      messages,
      sampling: { maxTokens: 3, temperature: 0 },
      tools: [WEATHER],
      toolChoice: { name: 'get_weather' },
      onDelta: (d) => deltas.push(d),
    });
    expect(result.finishReason).toBe('length');
    expect(result.toolCalls).toBeUndefined();
    expect(result.text.startsWith('{')).toBe(true);
    expect(deltas.join('')).toBe(result.text);
  });
});

describe('response formats', () => {
  it('json_schema: the reply parses and follows the schema', async () => {
    for (let seed = 1; seed <= 3; seed++) {
      const deltas: string[] = [];
      const result = await engine.generate({
        messages,
        sampling: { maxTokens: 200, temperature: 1, seed },
        responseFormat: { type: 'json_schema', name: 'weather', schema: WEATHER.parameters, strict: true },
        onDelta: (d) => deltas.push(d),
      });
      expect(result.finishReason).toBe('stop');
      expect(result.stopSequence).toBeUndefined();
      expect(deltas.join('')).toBe(result.text);
      checkWeather(JSON.parse(result.text));
    }
  });

  it('json_object: the reply is under the JSON grammar (it opens an object)', async () => {
    const result = await engine.generate({
      messages,
      sampling: { maxTokens: 16, temperature: 0 },
      responseFormat: { type: 'json_object' },
    });
    expect(result.text.trimStart().startsWith('{')).toBe(true);
  });
});

describe('penalties', () => {
  it('frequency and presence penalties change a greedy reply', async () => {
    const base = await engine.generate({ messages, sampling: { maxTokens: 48, temperature: 0 } });
    const penalised = await engine.generate({
      messages,
      sampling: { maxTokens: 48, temperature: 0, frequencyPenalty: 2, presencePenalty: 2 },
    });
    expect(penalised.text).not.toBe(base.text);
  });
});
