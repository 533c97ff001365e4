/**
 * Anthropic tools through `nightjar proxy`, with the official `@anthropic-ai/sdk` package as the
 * client, against a real gateway and the real engine on the synthetic tiny model: a forced tool
 * and `any` give a tool_use block whose input follows its schema (only the grammar at the agent
 * makes it), a streamed tool_use reassembles into the whole reply, a later turn with the call and
 * its tool_result is accepted, what stays refused comes back in Anthropic's error shape naming
 * the field, and count_tokens is refused (501) saying why.
 */
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { perTestFetch } from '../helpers/http-client.js';
import { TIME_PARAMS, WEATHER_PARAMS, toolsProxy, validCall, validWeather } from './support/tools-proxy.js';

const net = toolsProxy();
const http = perTestFetch();
const anthropic = (): Anthropic => new Anthropic({ apiKey: 'unused', baseURL: net.proxy.url, fetch: http.fetch, maxRetries: 0 });

const tools: Anthropic.Tool[] = [
  {
    name: 'get_weather',
    description: 'The weather in a city',
    input_schema: { ...WEATHER_PARAMS, required: [...WEATHER_PARAMS.required] },
  },
  { name: 'get_time', input_schema: { ...TIME_PARAMS, required: [...TIME_PARAMS.required] } },
];
const question: Anthropic.MessageParam[] = [{ role: 'user', content: 'What is the weather in Oslo?' }];

/** Greedy decoding: the Messages API takes `temperature`, and so does the proxy. */
const base = { max_tokens: 200, temperature: 0, tools } as const;

function toolUse(message: Anthropic.Message): Anthropic.ToolUseBlock {
  const blocks = message.content.filter((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
  expect(blocks).toHaveLength(1);
  return blocks[0]!;
}

describe('Anthropic tools through the proxy (official @anthropic-ai/sdk package)', () => {
  it('a forced tool (tool_choice tool) gives a tool_use whose input validates against its schema', async () => {
    const message = await anthropic().messages.create({
      ...base,
      model: net.model.id,
      messages: question,
      tool_choice: { type: 'tool', name: 'get_weather' },
    });
    expect(message.stop_reason).toBe('tool_use');
    const call = toolUse(message);
    expect(call).toMatchObject({ type: 'tool_use', name: 'get_weather', caller: { type: 'direct' } });
    expect(call.id).toMatch(/^toolu_[A-Za-z0-9_-]+$/);
    // The input is an object (not JSON text), and it follows the schema.
    validWeather(call.input);
    expect(message.usage.output_tokens).toBeGreaterThan(0);
  });

  it("tool_choice 'any' gives a tool_use of one of the tools (disable_parallel_tool_use accepted)", async () => {
    const message = await anthropic().messages.create({
      ...base,
      model: net.model.id,
      messages: question,
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
    });
    expect(message.stop_reason).toBe('tool_use');
    const call = toolUse(message);
    validCall(call.name, call.input);
  });

  it('a streamed tool_use reassembles (the stream helper, finalMessage) and equals the whole reply', async () => {
    const params = { ...base, model: net.model.id, messages: question, tool_choice: { type: 'tool', name: 'get_weather' } } as const;
    const whole = await anthropic().messages.create(params);
    const stream = anthropic().messages.stream(params);
    const types: string[] = [];
    stream.on('streamEvent', (e) => types.push(e.type === 'content_block_delta' ? `${e.type}:${e.delta.type}` : e.type));
    const final = await stream.finalMessage();
    // (The helper passes no ping on.)
    expect(types).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta:input_json_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(final.stop_reason).toBe('tool_use');
    const call = toolUse(final);
    validWeather(call.input);
    expect(call.input).toEqual(toolUse(whole).input);
    expect(final.content.map((b) => b.type)).toEqual(whole.content.map((b) => b.type));
  });

  it('a later turn with the assistant tool_use and the tool_result (string, text blocks, is_error) is accepted', async () => {
    const message = await anthropic().messages.create({
      ...base,
      max_tokens: 4,
      model: net.model.id,
      messages: [
        ...question,
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Let me look.' },
            {
              type: 'tool_use',
              id: 'toolu_01A09q90qw90lq917835lq9',
              name: 'get_weather',
              input: { city: 'Oslo', days: 1, unit: 'celsius' },
            },
            { type: 'tool_use', id: 'toolu_02', name: 'get_time', input: { utc: true } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_01A09q90qw90lq917835lq9', content: [{ type: 'text', text: '{"temperature": 3}' }] },
            { type: 'tool_result', tool_use_id: 'toolu_02', content: 'clock unavailable', is_error: true },
            { type: 'text', text: 'So?' },
          ],
        },
      ],
      tool_choice: { type: 'none' },
    });
    expect(['end_turn', 'max_tokens']).toContain(message.stop_reason);
    expect(message.content[0]!.type).toBe('text');
    // The history reached the agent: the rendered prompt holds the calls and their results.
    expect(message.usage.input_tokens).toBeGreaterThan(60);
  });

  it.each([
    [
      'an image block',
      { messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] },
      'messages.0.content.0.type: content of type "image"',
    ],
    [
      'a document in a tool_result',
      {
        messages: [
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                tool_use_id: 'toolu_1',
                content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' } }],
              },
            ],
          },
        ],
      },
      'messages.0.content.0.content.0.type: content of type "document" (only text)',
    ],
    ['extended thinking', { thinking: { type: 'enabled', budget_tokens: 1024 } }, 'thinking: extended thinking is not supported'],
    [
      'a server tool',
      { tools: [{ type: 'web_search_20250305', name: 'web_search' }] },
      'tools.0.type: tools of type "web_search_20250305"',
    ],
    ['a tool choice naming no tool', { tools, tool_choice: { type: 'tool', name: 'nope' } }, 'tool_choice.name: no tool is named nope'],
  ])('refuses %s with a 400 in the Anthropic error shape naming the field', async (_what, extra, message) => {
    const err = await anthropic()
      .messages.create({
        model: net.model.id,
        max_tokens: 4,
        messages: question,
        ...(extra as object),
      } as Anthropic.MessageCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining(message) },
    });
  });

  it('count_tokens is refused with a 501 in the Anthropic error shape that says why and what to do instead', async () => {
    const err = await anthropic()
      .messages.countTokens({ model: net.model.id, messages: question, tools })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect(err).toMatchObject({ status: 501 });
    const e = err as InstanceType<typeof Anthropic.APIError>;
    expect(e.headers?.get('x-should-retry')).toBe('false');
    expect(e.error).toMatchObject({
      type: 'error',
      error: {
        message: expect.stringMatching(
          /^NJ_UNSUPPORTED_FEATURE: POST \/v1\/messages\/count_tokens is not served: an honest count .*input_tokens/,
        ),
      },
    });
  });
});
