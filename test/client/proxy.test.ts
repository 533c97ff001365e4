/**
 * `nightjar proxy` against a real gateway and an agent running node-llama-cpp on the synthetic
 * tiny model, with the official `openai` and `@anthropic-ai/sdk` packages, unmodified, as its
 * clients: streaming and not, usage, stop reasons, sampling parameters and errors. At
 * temperature 0 (or a fixed seed) a client must receive exactly what the engine produces when
 * called directly.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient } from '../../src/client/index.js';
import { loadEngine, sha256File, writeSyntheticModel, type InferenceEngine, type ServedModel } from '../../src/main/agent/index.js';
import type { ChatMessage, Sampling } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { startNet, type TestAgent, type TestNet } from './support/net.js';

let dir: string;
let engine: InferenceEngine;
let model: ServedModel;
let net: TestNet;
let agent: TestAgent;
let proxy: CompatProxy;
let guarded: CompatProxy;
const TOKEN = 'local-proxy-token-0123456789';

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-proxy-'));
  const file = await writeSyntheticModel({ path: path.join(dir, 'synthetic-tiny.gguf'), shape: 'tiny' });
  engine = await loadEngine({ modelPath: file.path, threads: 1, slots: 4 });
  model = { id: file.modelId, sha256: await sha256File(file.path), synthetic: true, contextLength: engine.model.contextLength };
  net = await startNet();
  agent = await net.addAgent(engine, { model });
  // An unknown model fails at once here: the SDK's few seconds of waiting for a restarted
  // gateway's agents (sdk.test.ts) would only slow the error-shape tests down.
  const client = new NightjarClient({
    gatewayUrl: net.gateway.url,
    trust: { allowSynthetic: true },
    fetch: upstream.fetch,
    retry: { modelUnknownMs: 0 },
  });
  proxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
  guarded = await CompatProxy.start({ client, port: 0, token: TOKEN, listSynthetic: true });
}, 60_000);

afterAll(async () => {
  await proxy?.dispose();
  await guarded?.dispose();
  await net?.close();
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** The test's connections to the proxy. */
const http = perTestFetch();
/** The proxy's connections to the gateway (node:http, as `nightjar proxy` makes them): closed after each test too. */
const upstream = perTestFetch('node');
const openai = (p: CompatProxy = proxy, apiKey = 'unused'): OpenAI =>
  new OpenAI({ apiKey, baseURL: `${p.url}/v1`, fetch: http.fetch, maxRetries: 0 });
const anthropic = (p: CompatProxy = proxy, apiKey = 'unused'): Anthropic =>
  new Anthropic({ apiKey, baseURL: p.url, fetch: http.fetch, maxRetries: 0 });

async function direct(messages: ChatMessage[], sampling: Sampling) {
  return engine.generate({ messages, sampling });
}

const QUESTION = 'Name three birds that fly at night.';

/**
 * Greedy decoding for an Anthropic request. This SDK version's types carry no sampling fields,
 * but the Messages API takes `temperature` (and so does the proxy): it goes out as a body field.
 */
function greedy<T extends object>(params: T): T {
  return { ...params, temperature: 0 };
}

describe('OpenAI Chat Completions through the proxy (official openai package)', () => {
  it("answers without streaming: the engine's exact text, usage and finish_reason, and who served it", async () => {
    const want = await direct(
      [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', content: QUESTION },
      ],
      { maxTokens: 24, temperature: 0 },
    );
    const { data, response } = await openai()
      .chat.completions.create({
        model: model.id,
        messages: [
          { role: 'developer', content: 'Be terse.' },
          { role: 'user', content: [{ type: 'text', text: QUESTION }] },
        ],
        max_completion_tokens: 24,
        temperature: 0,
      })
      .withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.model).toBe(model.id);
    expect(data.choices).toHaveLength(1);
    expect(data.choices[0]!.message).toMatchObject({ role: 'assistant', content: want.text });
    expect(data.choices[0]!.finish_reason).toBe(want.finishReason === 'length' ? 'length' : 'stop');
    expect(data.usage).toEqual({
      prompt_tokens: want.usage.promptTokens,
      completion_tokens: want.usage.completionTokens,
      total_tokens: want.usage.promptTokens + want.usage.completionTokens,
    });
    expect(response.headers.get('x-nightjar-agent')).toBe(agent.agentId);
    expect(response.headers.get('x-nightjar-trust')).toBe('signed');
    expect((data as unknown as { nightjar: unknown }).nightjar).toMatchObject({
      agent_id: agent.agentId,
      trust: 'signed',
      receipt_verified: true,
    });
    expect(data.id).toBe(`chatcmpl-${(data as unknown as { nightjar: { job_id: string } }).nightjar.job_id}`);
  });

  it('streams chunk objects with the role first, finish_reason last, then the usage chunk', async () => {
    const want = await direct([{ role: 'user', content: QUESTION }], { maxTokens: 20, temperature: 0 });
    const stream = await openai().chat.completions.create({
      model: model.id,
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 20,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === model.id)).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(want.text);
    const withReason = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(withReason).toHaveLength(1);
    expect(withReason[0]!.choices[0]!.finish_reason).toBe('length');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({
      prompt_tokens: want.usage.promptTokens,
      completion_tokens: 20,
      total_tokens: want.usage.promptTokens + 20,
    });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('streams without a usage chunk unless asked, and the stream helper assembles the completion', async () => {
    const want = await direct([{ role: 'user', content: 'Hello?' }], { maxTokens: 12, temperature: 0 });
    const plain = await openai().chat.completions.create({
      model: model.id,
      messages: [{ role: 'user', content: 'Hello?' }],
      max_tokens: 12,
      temperature: 0,
      stream: true,
    });
    const chunks = [];
    for await (const chunk of plain) chunks.push(chunk);
    expect(chunks.every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
    const helper = openai().chat.completions.stream({
      model: model.id,
      messages: [{ role: 'user', content: 'Hello?' }],
      max_tokens: 12,
      temperature: 0,
    });
    const final = await helper.finalChatCompletion();
    expect(final.choices[0]!.message.content).toBe(want.text);
    expect(final.choices[0]!.finish_reason).toBe('length');
  });

  it('maps stop (finish_reason "stop", text cut before it), temperature, top_p and seed', async () => {
    const free = await direct([{ role: 'user', content: QUESTION }], { maxTokens: 40, temperature: 0 });
    // A stop sequence taken from the middle of the greedy reply: the reply must end just before it.
    const at = free.text.length >> 1;
    const stop = free.text.slice(at, at + 3);
    const cut = free.text.slice(0, free.text.indexOf(stop));
    const stopped = await openai().chat.completions.create({
      model: model.id,
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 40,
      temperature: 0,
      stop,
    });
    expect(stopped.choices[0]!.message.content).toBe(cut);
    expect(stopped.choices[0]!.finish_reason).toBe('stop');

    const sampled = await direct([{ role: 'user', content: QUESTION }], { maxTokens: 16, temperature: 1.2, topP: 0.9, seed: 7 });
    const viaProxy = await openai().chat.completions.create({
      model: model.id,
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 16,
      temperature: 1.2,
      top_p: 0.9,
      seed: 7 + 2 ** 32, // reduced modulo 2^32, as agents take 32-bit seeds
    });
    expect(viaProxy.choices[0]!.message.content).toBe(sampled.text);
  });

  it('lists the offered models', async () => {
    const list = await openai().models.list();
    expect(list.data.map((m) => m.id)).toEqual([model.id]);
    expect(list.data[0]).toMatchObject({ object: 'model', owned_by: 'nightjar' });
    expect((await openai().models.retrieve(model.id)).id).toBe(model.id);
  });

  it("reports errors in OpenAI's shape, with statuses its SDK maps to the right classes", async () => {
    const unknown = await openai()
      .chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown).toMatchObject({ status: 404, code: 'model_not_found', type: 'invalid_request_error' });
    expect((unknown as Error).message).toMatch(
      // The gateway has just started, so it says the model may yet come; the proxy's client does not wait.
      /^404 NJ_MODEL_UNKNOWN: no connected agent serves no-such-model yet; the gateway has just started\. No agent serves this model/,
    );

    const tools = await openai()
      .chat.completions.create({
        model: model.id,
        messages: [{ role: 'user', content: 'x' }],
        logprobs: true,
      })
      .catch((e: unknown) => e);
    expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tools).toMatchObject({ status: 400, code: 'NJ_UNSUPPORTED_FEATURE', param: 'logprobs' });
    expect((tools as Error).message).toContain('logprobs is not supported (parameter logprobs)');

    const tooHot = await openai()
      .chat.completions.create({ model: model.id, messages: [{ role: 'user', content: 'x' }], temperature: 3 })
      .catch((e: unknown) => e);
    expect(tooHot).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tooHot).toMatchObject({ code: 'NJ_BAD_REQUEST' });
    expect((tooHot as Error).message).toContain('sampling.temperature');

    const overflow = await openai()
      .chat.completions.create({ model: model.id, messages: [{ role: 'user', content: 'x' }], max_tokens: model.contextLength })
      .catch((e: unknown) => e);
    expect(overflow).toBeInstanceOf(OpenAI.BadRequestError);
    expect(overflow).toMatchObject({ status: 400, code: 'context_length_exceeded' });
  });

  // Security: fails if the token check in the proxy's gate is removed.
  it('a proxy started with a token refuses callers without it', async () => {
    const denied = await openai(guarded, 'wrong')
      .models.list()
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(denied).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect((await openai(guarded, TOKEN).models.list()).data).toHaveLength(1);
    expect((await anthropic(guarded, TOKEN).models.list()).data).toHaveLength(1);
    const anthropicDenied = await anthropic(guarded, 'wrong')
      .models.list()
      .catch((e: unknown) => e);
    expect(anthropicDenied).toBeInstanceOf(Anthropic.AuthenticationError);
  });
});

describe('Anthropic Messages through the proxy (official @anthropic-ai/sdk package)', () => {
  it('answers without streaming: text, usage and stop_reason', async () => {
    const want = await direct(
      [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', content: QUESTION },
      ],
      { maxTokens: 24, temperature: 0 },
    );
    const message = await anthropic().messages.create(
      greedy({ model: model.id, system: 'Be terse.', messages: [{ role: 'user', content: QUESTION }], max_tokens: 24 }),
    );
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model: model.id, stop_reason: 'max_tokens', stop_sequence: null });
    expect(message.content).toEqual([{ type: 'text', text: want.text, citations: null }]);
    expect(message.usage).toMatchObject({ input_tokens: want.usage.promptTokens, output_tokens: 24 });
  });

  it('streams events in the Messages API order', async () => {
    const want = await direct([{ role: 'user', content: QUESTION }], { maxTokens: 16, temperature: 0 });
    const stream = await anthropic().messages.create(
      greedy({
        model: model.id,
        messages: [{ role: 'user', content: [{ type: 'text', text: QUESTION }] }],
        max_tokens: 16,
        stream: true as const,
      }),
    );
    const events = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    expect(types.slice(0, 2)).toEqual(['message_start', 'content_block_start']);
    expect(types.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    expect(types.slice(2, -3).every((t) => t === 'content_block_delta')).toBe(true);
    const text = events.map((e) => (e.type === 'content_block_delta' && e.delta.type === 'text_delta' ? e.delta.text : '')).join('');
    expect(text).toBe(want.text);
    const delta = events.find((e) => e.type === 'message_delta');
    expect(delta).toMatchObject({
      delta: { stop_reason: 'max_tokens', stop_sequence: null },
      usage: { output_tokens: 16, input_tokens: want.usage.promptTokens },
    });
  });

  it('the stream helper assembles the final message; a stop sequence ends the turn as stop_sequence', async () => {
    const free = await direct([{ role: 'user', content: QUESTION }], { maxTokens: 40, temperature: 0 });
    const at = free.text.length >> 1;
    const stop = free.text.slice(at, at + 3);
    const final = await anthropic()
      .messages.stream(greedy({ model: model.id, messages: [{ role: 'user', content: QUESTION }], max_tokens: 40, stop_sequences: [stop] }))
      .finalMessage();
    expect(final.content).toEqual([{ type: 'text', text: free.text.slice(0, free.text.indexOf(stop)), citations: null }]);
    // The agent names the stop sequence that fired (the final chunk's stopSequence).
    expect(final.stop_reason).toBe('stop_sequence');
    expect(final.stop_sequence).toBe(stop);
    expect(final.usage.input_tokens).toBe(free.usage.promptTokens);
  });

  it("reports errors in Anthropic's shape", async () => {
    const unknown = await anthropic()
      .messages.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 8 })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect(unknown).toMatchObject({ status: 404, error: { type: 'error', error: { type: 'not_found_error' } } });
    expect((unknown as InstanceType<typeof Anthropic.APIError>).requestID).toMatch(/^req_[0-9a-f]{24}$/);
    const image = await anthropic()
      .messages.create({
        model: model.id,
        max_tokens: 8,
        messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }],
      })
      .catch((e: unknown) => e);
    expect(image).toBeInstanceOf(Anthropic.BadRequestError);
    expect((image as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        message: expect.stringContaining('NJ_UNSUPPORTED_FEATURE: messages.0.content.0.type: content of type "image"'),
      },
    });
  });

  it('lists the offered models', async () => {
    const page = await anthropic().models.list();
    expect(page.data.map((m) => m.id)).toEqual([model.id]);
  });
});

describe('the proxy answers local programs only', () => {
  const post = (p: CompatProxy, headers: Record<string, string>) =>
    http.fetch(`${p.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: model.id, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 }),
    });

  // Security: fails if the Origin check in the proxy's gate is removed — any web page the user
  // visits could then spend their credits through the proxy.
  it('refuses requests from web pages of other origins', async () => {
    const res = await post(proxy, { origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({
      error: { code: 'NJ_PROXY_FORBIDDEN', message: expect.stringContaining('requests from web pages of other origins are refused') },
    });
    const preflight = await http.fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example' },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
  });

  // Security: fails if the Host check is removed — a DNS-rebinding page could reach the proxy.
  it('refuses a Host header that does not name a loopback address', async () => {
    // fetch will not send another Host header; a DNS-rebinding page's browser would.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${proxy.url}/v1/models`, { headers: { host: 'rebind.evil.example:8788', connection: 'close' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({
      error: { code: 'NJ_PROXY_FORBIDDEN', message: expect.stringContaining('the Host header does not name a loopback address') },
    });
  });

  // Security: fails if the content-type check is removed (a form post needs no CORS preflight).
  it('refuses bodies that are not application/json', async () => {
    const res = await http.fetch(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: '{}',
    });
    expect(res.status).toBe(403);
  });

  it('will not listen beyond loopback without a token', async () => {
    const client = new NightjarClient({ gatewayUrl: net.gateway.url });
    await expect(CompatProxy.start({ client, host: '0.0.0.0', port: 0 })).rejects.toMatchObject({
      code: 'NJ_CONFIG_INVALID',
      message: 'listening on 0.0.0.0 (not loopback) needs a token; pass one with --token-file or NIGHTJAR_PROXY_TOKEN',
    });
  });
});
