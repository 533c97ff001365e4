/**
 * Tools and structured output through `nightjar proxy`, with the official `openai` package as the
 * client (proxy-anthropic-tools.test.ts drives the Anthropic side), against a real gateway and the real engine on the
 * synthetic tiny model. Its weights are random, so only the grammar at the agent makes a call's
 * arguments parse and a json_schema reply follow its schema: that is what is pinned here.
 */
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { perTestFetch } from '../helpers/http-client.js';
import { TIME_PARAMS, WEATHER_PARAMS, toolsProxy, validCall, validWeather } from './support/tools-proxy.js';

const net = toolsProxy();
const http = perTestFetch();
const openai = (): OpenAI => new OpenAI({ apiKey: 'unused', baseURL: `${net.proxy.url}/v1`, fetch: http.fetch, maxRetries: 0 });

const openAiTools: OpenAI.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: WEATHER_PARAMS } },
  { type: 'function', function: { name: 'get_time', parameters: TIME_PARAMS } },
];

const question: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Oslo?' }];

describe('OpenAI tools through the proxy (official openai package)', () => {
  it('a forced tool call (tool_choice names a function) parses and validates against its schema', async () => {
    const c = await openai().chat.completions.create({
      model: net.model.id,
      messages: question,
      tools: openAiTools,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      max_tokens: 200,
      seed: 7,
    });
    const choice = c.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls![0]!;
    expect(call.type).toBe('function');
    if (call.type !== 'function') throw new Error('not a function call');
    expect(call.function.name).toBe('get_weather');
    expect(call.id).toMatch(/^call_/);
    validWeather(JSON.parse(call.function.arguments));
  });

  it("tool_choice 'required' gives a call of one of the tools", async () => {
    const c = await openai().chat.completions.create({
      model: net.model.id,
      messages: question,
      tools: openAiTools,
      tool_choice: 'required',
      max_tokens: 200,
      seed: 3,
    });
    expect(c.choices[0]!.finish_reason).toBe('tool_calls');
    const call = c.choices[0]!.message.tool_calls![0]!;
    if (call.type !== 'function') throw new Error('not a function call');
    validCall(call.function.name, JSON.parse(call.function.arguments));
  });

  it('a streamed tool call reassembles (the SDK stream helper) and matches the whole reply', async () => {
    const params = {
      model: net.model.id,
      messages: question,
      tools: openAiTools,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      max_tokens: 200,
      temperature: 0,
    } as const;
    const whole = await openai().chat.completions.create(params);
    const stream = openai().chat.completions.stream({ ...params, stream: true });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0]!.finish_reason).toBe('tool_calls');
    const call = final.choices[0]!.message.tool_calls![0]!;
    if (call.type !== 'function') throw new Error('not a function call');
    expect(call.function.name).toBe('get_weather');
    validWeather(JSON.parse(call.function.arguments));
    const wholeCall = whole.choices[0]!.message.tool_calls![0]!;
    if (wholeCall.type !== 'function') throw new Error('not a function call');
    expect(call.function.arguments).toBe(wholeCall.function.arguments);
  });

  it('a later turn with the assistant tool_calls and the tool result is accepted', async () => {
    const c = await openai().chat.completions.create({
      model: net.model.id,
      messages: [
        ...question,
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_abc123',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Oslo","days":1,"unit":"celsius"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_abc123', content: '{"temperature": 3}' },
      ],
      tools: openAiTools,
      tool_choice: 'none',
      max_tokens: 4,
      temperature: 0,
    });
    expect(['stop', 'length']).toContain(c.choices[0]!.finish_reason);
    expect(typeof c.choices[0]!.message.content).toBe('string');
    expect(c.usage!.prompt_tokens).toBeGreaterThan(20);
  });

  it('response_format json_schema (strict): the reply validates against the schema', async () => {
    const c = await openai().chat.completions.create({
      model: net.model.id,
      messages: question,
      response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: WEATHER_PARAMS, strict: true } },
      max_tokens: 200,
      seed: 11,
    });
    expect(c.choices[0]!.finish_reason).toBe('stop');
    validWeather(JSON.parse(c.choices[0]!.message.content!));
  });

  it('frequency and presence penalties are honoured (a greedy reply changes), seed and user accepted', async () => {
    const base = { model: net.model.id, messages: question, max_tokens: 48, temperature: 0, seed: 1, user: 'someone' };
    const plain = await openai().chat.completions.create(base);
    const penalised = await openai().chat.completions.create({ ...base, frequency_penalty: 2, presence_penalty: 2 });
    expect(penalised.choices[0]!.message.content).not.toBe(plain.choices[0]!.message.content);
  });

  it.each([
    ['n', { n: 2 }],
    ['logprobs', { logprobs: true }],
    ['top_logprobs', { top_logprobs: 2 }],
    ['logit_bias', { logit_bias: { '50256': -100 } }],
    ['audio', { audio: { voice: 'alloy', format: 'mp3' } }],
    ['frequency_penalty', { frequency_penalty: 3 }],
    ['tool_choice', { tool_choice: { type: 'function', function: { name: 'nope' } }, tools: openAiTools }],
  ])('refuses %s with a 400 whose param names it', async (param, extra) => {
    const err = await openai()
      .chat.completions.create({
        model: net.model.id,
        messages: question,
        max_tokens: 4,
        ...(extra as object),
      } as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
  });
});
