/**
 * POST /v1/responses (OpenAI's Responses API) through the proxy, with the official `openai`
 * package as the client (`responses.create`, `responses.stream` and `stream: true` iteration),
 * against a real gateway and the real engine on the synthetic tiny model: text whole and streamed
 * (the same text), a forced function call and a json_schema reply that validate against their
 * schema (only the agent's grammar makes them: the weights are random), a later turn with the
 * call's output, a length stop, refusals naming their param, and a stream that breaks off
 * (a FakeEngine agent) ending in an `error` event.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient } from '../../src/client/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';
import { TIME_PARAMS, WEATHER_PARAMS, toolsProxy, validWeather } from './support/tools-proxy.js';

const net = toolsProxy();
const http = perTestFetch();
const openai = (url = net.proxy.url): OpenAI => new OpenAI({ apiKey: 'unused', baseURL: `${url}/v1`, fetch: http.fetch, maxRetries: 0 });

const tools: OpenAI.Responses.FunctionTool[] = [
  { type: 'function', name: 'get_weather', description: 'The weather in a city', parameters: WEATHER_PARAMS, strict: true },
  { type: 'function', name: 'get_time', parameters: TIME_PARAMS, strict: false },
];
const question = 'What is the weather in Oslo?';

describe('the Responses API through the proxy (official openai package)', () => {
  it('a text reply, whole: a response object with a message item, output_text and usage', async () => {
    const r = await openai().responses.create({
      model: net.model.id,
      input: question,
      instructions: 'Answer briefly.',
      max_output_tokens: 200,
      temperature: 0,
    });
    expect(r).toMatchObject({ object: 'response', model: net.model.id, instructions: 'Answer briefly.', store: false, error: null });
    expect(r.id).toMatch(/^resp_/);
    expect(r.created_at).toBeGreaterThan(1_700_000_000);
    expect(['completed', 'incomplete']).toContain(r.status);
    const item = r.output[0]!;
    expect(item.type).toBe('message');
    if (item.type !== 'message') throw new Error('not a message');
    expect(item.role).toBe('assistant');
    expect(item.content[0]).toMatchObject({ type: 'output_text', annotations: [] });
    expect(r.output_text.length).toBeGreaterThan(0);
    expect(r.usage!.total_tokens).toBe(r.usage!.input_tokens + r.usage!.output_tokens);
    expect(r.usage!.output_tokens).toBeGreaterThan(0);
  });

  it('a streamed text reply (responses.stream, finalResponse) has the same text as the whole one', async () => {
    const params = { model: net.model.id, input: question, max_output_tokens: 24, temperature: 0 } as const;
    const whole = await openai().responses.create(params);
    const stream = openai().responses.stream(params);
    let deltas = '';
    stream.on('response.output_text.delta', (e) => (deltas += e.delta));
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(whole.output_text);
    expect(deltas).toBe(whole.output_text);
    expect(final.usage).toEqual(whole.usage);
    expect(final.status).toBe(whole.status);
  });

  it('stream: true iteration gives the typed events in order, numbered from 0', async () => {
    const stream = await openai().responses.create({
      model: net.model.id,
      input: question,
      max_output_tokens: 8,
      temperature: 0,
      stream: true,
    });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === 'response.output_text.delta').length;
    expect(deltas).toBeGreaterThan(0);
    // Eight tokens: a length stop, so the last event is response.incomplete.
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array<string>(deltas).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.incomplete',
    ]);
    const last = events.at(-1)!;
    if (last.type !== 'response.incomplete') throw new Error('not incomplete');
    expect(last.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect(last.response.usage!.output_tokens).toBe(8);
    const done = events.find((e) => e.type === 'response.output_text.done');
    if (done?.type !== 'response.output_text.done') throw new Error('no output_text.done');
    expect(done.text).toBe(events.map((e) => (e.type === 'response.output_text.delta' ? e.delta : '')).join(''));
  });

  it('a length stop whole: status incomplete with incomplete_details', async () => {
    const r = await openai().responses.create({ model: net.model.id, input: question, max_output_tokens: 3, temperature: 0 });
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(r.usage!.output_tokens).toBe(3);
  });

  it('a forced function call (tool_choice names it) is a function_call item whose arguments validate', async () => {
    const r = await openai().responses.create({
      model: net.model.id,
      input: question,
      tools,
      tool_choice: { type: 'function', name: 'get_weather' },
      max_output_tokens: 200,
      temperature: 0,
    });
    expect(r.status).toBe('completed');
    expect(r.output).toHaveLength(1);
    const call = r.output[0]!;
    if (call.type !== 'function_call') throw new Error(`not a function call: ${call.type}`);
    expect(call).toMatchObject({ name: 'get_weather', status: 'completed' });
    expect(call.call_id).toMatch(/^call_/);
    validWeather(JSON.parse(call.arguments));
    expect(r.tools.map((t) => (t.type === 'function' ? t.name : t.type))).toEqual(['get_weather', 'get_time']);
  });

  it('a streamed forced call reassembles (finalResponse) into the whole reply, with its argument events', async () => {
    const params = {
      model: net.model.id,
      input: question,
      tools,
      tool_choice: { type: 'function', name: 'get_weather' },
      max_output_tokens: 200,
      temperature: 0,
    } as const;
    const whole = await openai().responses.create(params);
    const stream = openai().responses.stream(params);
    const types: string[] = [];
    stream.on('event', (e) => types.push(e.type));
    const final = await stream.finalResponse();
    const call = final.output[0]!;
    if (call.type !== 'function_call') throw new Error(`not a function call: ${call.type}`);
    const wholeCall = whole.output[0]!;
    if (wholeCall.type !== 'function_call') throw new Error('not a function call');
    expect(call.arguments).toBe(wholeCall.arguments);
    // strict: true on the tool makes the SDK parse the arguments itself.
    validWeather((call as { parsed_arguments?: unknown }).parsed_arguments);
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
  });

  it('text.format json_schema: the reply validates against the schema', async () => {
    const r = await openai().responses.create({
      model: net.model.id,
      input: question,
      text: { format: { type: 'json_schema', name: 'weather', schema: WEATHER_PARAMS, strict: true } },
      max_output_tokens: 200,
      temperature: 0,
    });
    expect(r.status).toBe('completed');
    validWeather(JSON.parse(r.output_text));
    expect(r.text?.format).toMatchObject({ type: 'json_schema', name: 'weather' });
  });

  it('a later turn with the function_call and its function_call_output is accepted, and reaches the prompt', async () => {
    // tool_choice none on both: the tools' definitions stay out of both prompts.
    const base = { model: net.model.id, tools, tool_choice: 'none', max_output_tokens: 4, temperature: 0 } as const;
    const plain = await openai().responses.create({ ...base, input: [{ role: 'user', content: question }] });
    const r = await openai().responses.create({
      ...base,
      input: [
        { role: 'user', content: [{ type: 'input_text', text: question }] },
        { type: 'function_call', call_id: 'call_abc123', name: 'get_weather', arguments: '{"city":"Oslo","days":1,"unit":"celsius"}' },
        { type: 'function_call_output', call_id: 'call_abc123', output: '{"temperature": 3}' },
      ],
    });
    expect(['completed', 'incomplete']).toContain(r.status);
    expect(r.output[0]!.type).toBe('message');
    // The call and its result are rendered into the prompt, not dropped.
    expect(r.usage!.input_tokens).toBeGreaterThan(plain.usage!.input_tokens + 10);
  });

  it.each([
    ['previous_response_id', { previous_response_id: 'resp_earlier' }, /keeps no responses/],
    ['store', { store: true }, /keeps no responses/],
    ['background', { background: true }, /background/],
    ['reasoning', { reasoning: { effort: 'high' } }, /reasoning/],
    ['tools[0].type', { tools: [{ type: 'web_search' }] }, /"web_search".*no built-in tools/],
    ['tools[0].type', { tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }, /"file_search"/],
    [
      'input[0].content[1].type',
      {
        input: [
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'Look:' },
              { type: 'input_image', image_url: 'https://example.com/a.png', detail: 'auto' },
            ],
          },
        ],
      },
      /"input_image"/,
    ],
    ['input[0].type', { input: [{ type: 'item_reference', id: 'msg_1' }] }, /keeps no responses/],
    ['include', { include: ['message.output_text.logprobs'] }, /include/],
    ['tool_choice', { tools, tool_choice: { type: 'function', name: 'nope' } }, /no tool is named nope/],
    ['text.format.type', { text: { format: { type: 'grammar' } } }, /text.format/],
  ])('refuses %s with a 400 whose param names it', async (param, extra, message) => {
    const err = await openai()
      .responses.create({
        model: net.model.id,
        input: question,
        max_output_tokens: 4,
        ...(extra as object),
      } as OpenAI.Responses.ResponseCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.param).toBe(param);
    expect(e.message).toMatch(message);
  });

  it('store: false is accepted (the proxy keeps nothing either way)', async () => {
    const r = await openai().responses.create({ model: net.model.id, input: question, max_output_tokens: 2, store: false });
    expect((r as unknown as Record<string, unknown>)['store']).toBe(false);
  });
});

describe('a Responses stream that breaks off', () => {
  let cut: { net: TestNet; proxy: CompatProxy } | undefined;
  const upstream = perTestFetch('node');
  afterEach(async () => {
    await cut?.proxy.dispose();
    await cut?.net.close();
    cut = undefined;
  });

  it('ends with an error event (no response.completed), which finalResponse raises', async () => {
    const n = await startNet();
    await n.addAgent(new FakeEngine({ failAfter: 2, words: ['Half', ' of', ' it'] }));
    const client = new NightjarClient({ gatewayUrl: n.gateway.url, trust: { allowSynthetic: true }, fetch: upstream.fetch, retry: false });
    cut = { net: n, proxy: await CompatProxy.start({ client, port: 0, listSynthetic: true }) };
    const stream = await openai(cut.proxy.url).responses.create({ model: FAKE_MODEL.id, input: 'Go on.', stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ type: 'error', code: 'NJ_AGENT_FAILED', param: null, sequence_number: events.length - 1 });
    if (last.type !== 'error') throw new Error('not an error event');
    expect(last.message).toMatch(/^NJ_AGENT_FAILED: the reply broke off/);
    expect(events.some((e) => e.type === 'response.completed' || e.type === 'response.output_text.done')).toBe(false);
    expect(events.map((e) => (e.type === 'response.output_text.delta' ? e.delta : '')).join('')).toBe('Half of');

    const again = openai(cut.proxy.url).responses.stream({ model: FAKE_MODEL.id, input: 'Go on.' });
    await expect(again.finalResponse()).rejects.toMatchObject({ type: 'error', code: 'NJ_AGENT_FAILED' });
  });
});
