/**
 * Ollama's API on `nightjar proxy`, with the official `ollama` package and plain fetch as clients,
 * against a real gateway and the real engine on the synthetic tiny model (and, for a reply that
 * breaks off, a FakeEngine agent). The tiny model's weights are random: only the grammar at the
 * agent makes a `format` reply follow its schema and a call's arguments parse.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Ollama, type Message, type Tool } from 'ollama';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient } from '../../src/client/index.js';
import { loadEngine, sha256File, writeSyntheticModel, type InferenceEngine, type ServedModel } from '../../src/main/agent/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';

let dir: string;
let engine: InferenceEngine;
let model: ServedModel;
let net: TestNet;
let proxy: CompatProxy;
let guarded: CompatProxy;
const TOKEN = 'ollama-test-token';

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-proxy-ollama-'));
  const file = await writeSyntheticModel({ path: path.join(dir, 'synthetic-tiny.gguf'), shape: 'tiny' });
  engine = await loadEngine({ modelPath: file.path, threads: 1, slots: 2 });
  model = { id: file.modelId, sha256: await sha256File(file.path), synthetic: true, contextLength: engine.model.contextLength };
  net = await startNet();
  await net.addAgent(engine, { model });
  const client = new NightjarClient({
    gatewayUrl: net.gateway.url,
    trust: { allowSynthetic: true },
    fetch: upstream.fetch,
    retry: { modelUnknownMs: 0 },
  });
  proxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
  guarded = await CompatProxy.start({ client, port: 0, listSynthetic: true, token: TOKEN });
}, 60_000);

afterAll(async () => {
  await guarded?.dispose();
  await proxy?.dispose();
  await net?.close();
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const http = perTestFetch();
const upstream = perTestFetch('node');
const ollama = (p: CompatProxy = proxy, headers?: Record<string, string>): Ollama =>
  new Ollama({ host: p.url, fetch: http.fetch, ...(headers ? { headers } : {}) });

/** POSTs `body` as JSON to `route` of the proxy with plain fetch. */
const post = (route: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  http.fetch(`${proxy.url}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

/** Bounded fields only: a random model under an unbounded string rule rarely closes the string. */
const WEATHER = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 6 },
    days: { type: 'integer' },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'days', 'unit'],
  additionalProperties: false,
} as const;

/** Checks `value` against WEATHER by hand (no JSON-schema validator in the tree): keys, types, bounds. */
function validWeather(value: unknown): void {
  expect(typeof value).toBe('object');
  const a = value as Record<string, unknown>;
  expect(Object.keys(a).sort()).toEqual(['city', 'days', 'unit']);
  expect(typeof a['city']).toBe('string');
  expect((a['city'] as string).length).toBeLessThanOrEqual(6);
  expect(Number.isInteger(a['days'])).toBe(true);
  expect(['celsius', 'fahrenheit']).toContain(a['unit']);
}

const tools: Tool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'The weather in a city',
      parameters: WEATHER as unknown as Tool['function']['parameters'],
    },
  },
  {
    type: 'function',
    function: { name: 'get_time', parameters: { type: 'object', properties: { utc: { type: 'boolean' } }, required: ['utc'] } },
  },
];
const question: Message[] = [{ role: 'user', content: 'What is the weather in Oslo?' }];
/** Nightjar's extension to Ollama's chat (which has no tool_choice): force a call of get_weather. */
const forced = { tool_choice: { type: 'function', function: { name: 'get_weather' } } };

/** The NDJSON lines of a streamed answer, parsed. */
async function lines(res: Response): Promise<Record<string, unknown>[]> {
  const text = await res.text();
  expect(text.endsWith('\n')).toBe(true);
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('Ollama model endpoints (official ollama package)', () => {
  it('GET /api/tags lists the offered model in Ollama’s shape (placeholders where nothing is known)', async () => {
    const { models } = await ollama().list();
    const row = models.find((m) => m.name === model.id);
    expect(row).toBeDefined();
    expect(row).toMatchObject({ model: model.id, size: 0, digest: '', details: { format: 'gguf', family: '', quantization_level: '' } });
    // Go's zero time: not known.
    expect(new Date(row!.modified_at).getUTCFullYear()).toBe(1);
  });

  it('HEAD / and GET / answer 200, the check Ollama’s CLI makes before anything else', async () => {
    expect((await http.fetch(`${proxy.url}/`, { method: 'HEAD' })).status).toBe(200);
    const res = await http.fetch(`${proxy.url}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('Nightjar proxy is running');
  });

  it('GET /api/version, POST /api/show and GET /api/ps answer', async () => {
    expect((await ollama().version()).version).toMatch(/^\d+\.\d+\.\d+$/);
    const show = await ollama().show({ model: model.id });
    expect(show.capabilities).toEqual(['completion', 'tools']);
    expect(show.details).toMatchObject({ format: 'gguf' });
    const ps = await ollama().ps();
    expect(ps.models.map((m) => m.name)).toContain(model.id);
  });

  it('show of a model nobody serves is a 404 in Ollama’s error shape', async () => {
    const err = await ollama()
      .show({ model: 'no-such-model' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 404 });
    expect((err as Error).message).toMatch(/^NJ_MODEL_UNKNOWN: model "no-such-model" not found/);
  });
});

describe('POST /api/chat and /api/generate', () => {
  it('a whole chat reply: message, done_reason and honest counts', async () => {
    const r = await ollama().chat({ model: model.id, messages: question, stream: false, options: { num_predict: 8, temperature: 0 } });
    expect(r.done).toBe(true);
    expect(['stop', 'length']).toContain(r.done_reason);
    expect(r.message.role).toBe('assistant');
    expect(typeof r.message.content).toBe('string');
    expect(r.eval_count).toBeGreaterThan(0);
    expect(r.eval_count).toBeLessThanOrEqual(8);
    expect(r.prompt_eval_count).toBeGreaterThan(5);
    expect(r.load_duration).toBe(0);
    expect(r.total_duration).toBeGreaterThanOrEqual(r.prompt_eval_duration + r.eval_duration - 1);
    expect(r.total_duration).toBeGreaterThan(0);
  });

  it('a streamed chat: parts with done false, then the final object; the text is the whole reply’s', async () => {
    const params = { model: model.id, messages: question, options: { num_predict: 12, temperature: 0, seed: 1 } };
    const whole = await ollama().chat({ ...params, stream: false });
    const parts: string[] = [];
    let final: Awaited<ReturnType<Ollama['chat']>> | undefined;
    for await (const part of await ollama().chat({ ...params, stream: true })) {
      if (part.done) final = part;
      else parts.push(part.message.content);
    }
    expect(parts.length).toBeGreaterThan(0);
    expect(parts.join('')).toBe(whole.message.content);
    expect(final).toMatchObject({ done: true, done_reason: whole.done_reason, eval_count: whole.eval_count, message: { content: '' } });
  });

  it('streams by default, as Ollama does: NDJSON lines, application/x-ndjson', async () => {
    const res = await post('/api/chat', { model: model.id, messages: question, options: { num_predict: 4 } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const all = await lines(res);
    expect(all.at(-1)).toMatchObject({ model: model.id, done: true, eval_count: expect.any(Number) as number });
    expect(all.slice(0, -1).every((l) => l['done'] === false)).toBe(true);
    expect(typeof all[0]!['created_at']).toBe('string');
  });

  it('generate: a one-turn chat with system and prompt, whole and streamed', async () => {
    const params = { model: model.id, system: 'Be brief.', prompt: 'Say hi', options: { num_predict: 6, temperature: 0 } };
    const whole = await ollama().generate({ ...params, stream: false });
    expect(whole.done).toBe(true);
    expect(typeof whole.response).toBe('string');
    expect(whole.prompt_eval_count).toBeGreaterThan(5);
    let text = '';
    for await (const part of await ollama().generate({ ...params, stream: true })) text += part.response;
    expect(text).toBe(whole.response);
  });

  it('format with a JSON schema: the reply validates against it (chat and generate)', async () => {
    const chat = await ollama().chat({ model: model.id, messages: question, format: WEATHER, stream: false, options: { seed: 11 } });
    validWeather(JSON.parse(chat.message.content));
    const gen = await ollama().generate({ model: model.id, prompt: 'Weather?', format: WEATHER, stream: false, options: { seed: 5 } });
    validWeather(JSON.parse(gen.response ?? ''));
  });

  it('format "json": the reply is a JSON object', async () => {
    const r = await ollama().chat({
      model: model.id,
      messages: question,
      format: 'json',
      stream: false,
      options: { num_predict: 200, seed: 2 },
    });
    const value: unknown = JSON.parse(r.message.content);
    expect(typeof value).toBe('object');
  });

  it('a tool call comes back as Ollama returns it: message.tool_calls with arguments as an object', async () => {
    const r = await ollama().chat({ model: model.id, messages: question, tools, stream: false, options: { seed: 7 }, ...forced });
    expect(r.done_reason).toBe('stop');
    expect(r.message.content).toBe('');
    const call = r.message.tool_calls![0]!;
    expect(call.function.name).toBe('get_weather');
    validWeather(call.function.arguments);
  });

  it('a streamed tool call arrives in a line of its own before the final one', async () => {
    const stream = await ollama().chat({
      model: model.id,
      messages: question,
      tools,
      stream: true,
      options: { temperature: 0 },
      ...forced,
    });
    const calls = [];
    for await (const part of stream) if (part.message.tool_calls) calls.push(...part.message.tool_calls);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.function.name).toBe('get_weather');
    validWeather(calls[0]!.function.arguments);
  });

  it('a later turn with the assistant tool_calls and the tool result (tool_name) is accepted', async () => {
    const r = await ollama().chat({
      model: model.id,
      messages: [
        ...question,
        {
          role: 'assistant',
          content: '',
          tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo', days: 1, unit: 'celsius' } } }],
        },
        { role: 'tool', content: '{"temperature": 3}', tool_name: 'get_weather' },
      ],
      tools,
      stream: false,
      options: { num_predict: 4, temperature: 0 },
    });
    expect(r.done).toBe(true);
    expect(r.prompt_eval_count).toBeGreaterThan(20);
  });

  it('options: honoured ones change the reply, unknown ones are ignored and named in a header', async () => {
    const base = { model: model.id, messages: question, options: { num_predict: 48, temperature: 0 } };
    const plain = await post('/api/chat', { ...base, stream: false });
    const penalised = await post('/api/chat', {
      ...base,
      stream: false,
      options: { ...base.options, frequency_penalty: 2, presence_penalty: 2, repeat_penalty: 1.1, num_ctx: 2048 },
    });
    expect(plain.headers.get('x-nightjar-ignored-options')).toBeNull();
    expect(penalised.headers.get('x-nightjar-ignored-options')).toBe('repeat_penalty,num_ctx');
    const a = (await plain.json()) as { message: { content: string } };
    const b = (await penalised.json()) as { message: { content: string }; eval_count: number };
    expect(b.eval_count).toBeLessThanOrEqual(48);
    expect(b.message.content).not.toBe(a.message.content);
  });

  it('a chat with no messages is Ollama’s "load" request: answered at once', async () => {
    const res = await post('/api/chat', { model: model.id, messages: [] });
    expect(await res.json()).toMatchObject({ model: model.id, done: true, done_reason: 'load', message: { content: '' } });
  });
});

describe('refusals in Ollama’s error shape', () => {
  it.each([
    ['raw', { raw: true }],
    ['suffix', { suffix: 'return x' }],
    ['images', { images: ['aGVsbG8='] }],
    ['context', { context: [1, 2, 3] }],
    ['template', { template: '{{ .Prompt }}' }],
  ])('generate refuses %s with a 400 {"error"} naming it', async (field, extra) => {
    const res = await post('/api/generate', { model: model.id, prompt: 'hi', stream: false, ...extra });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['error']);
    expect(body['error']).toMatch(new RegExp(`^NJ_UNSUPPORTED_FEATURE: ${field}: `));
  });

  it.each([
    ['options.temperature', { options: { temperature: 'hot' } }, /options\.temperature must be a number/],
    ['options.top_p', { options: { top_p: 0 } }, /options\.top_p must be above 0/],
    ['options.num_predict', { options: { num_predict: 10 ** 9 } }, /options\.num_predict must be from 1 to/],
    ['format', { format: 'yaml' }, /format must be "json" or a JSON schema/],
    ['think', { think: true }, /does not support thinking/],
    ['images in a message', { messages: [{ role: 'user', content: 'see', images: ['aGk='] }] }, /messages\[0\]\.images/],
  ])('chat refuses %s with a 400 that names it in Ollama’s words', async (_what, extra, message) => {
    const err = await ollama()
      .chat({ model: model.id, messages: question, stream: false, ...(extra as object) })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 400 });
    expect((err as Error).message).toMatch(message);
  });

  it('model management (pull) is refused with 501, saying why', async () => {
    const err = await ollama()
      .pull({ model: 'llama3.2' })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 501 });
    expect((err as Error).message).toMatch(/each agent's owner chooses what it serves/);
  });

  it('an unknown /api/* route is a 404 {"error"}', async () => {
    const res = await http.fetch(`${proxy.url}/api/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: expect.stringMatching(/no such endpoint: GET \/api\/nope/) as string });
  });

  it('a model nobody serves is a 404 from chat', async () => {
    const err = await ollama()
      .chat({ model: 'no-such-model', messages: question, stream: false })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 404 });
  });
});

describe('the same gate as the other APIs', () => {
  // Pins the gate on the Ollama routes: without proxyGate in front of them, these get 200s.
  it('with a token: refused without it (401 {"error"}), served with it', async () => {
    const err = await ollama(guarded)
      .list()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ResponseError', status_code: 401 });
    expect((err as Error).message).toMatch(/^NJ_PROXY_UNAUTHORIZED/);
    const { models } = await ollama(guarded, { authorization: `Bearer ${TOKEN}` }).list();
    expect(models.map((m) => m.name)).toContain(model.id);
  });

  it('a page of another origin and a form post are refused (403 {"error"})', async () => {
    const page = await post('/api/chat', { model: model.id, messages: question }, { origin: 'https://evil.example' });
    expect(page.status).toBe(403);
    expect(await page.json()).toEqual({ error: expect.stringMatching(/^NJ_PROXY_FORBIDDEN/) as string });
    const form = await http.fetch(`${proxy.url}/api/chat`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    expect(form.status).toBe(403);
    expect(await form.json()).toEqual({ error: expect.stringMatching(/application\/json/) as string });
  });
});

describe('a stream that breaks after its start (FakeEngine agent)', () => {
  it('ends with an {"error"} line and no done:true, which the ollama client raises', async () => {
    const fakeNet = await startNet();
    const client = new NightjarClient({
      gatewayUrl: fakeNet.gateway.url,
      trust: { allowSynthetic: true },
      fetch: upstream.fetch,
      retry: false,
    });
    const fakeProxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
    try {
      await fakeNet.addAgent(new FakeEngine({ failAfter: 2, words: ['Half', ' of', ' it'] }));
      const res = await http.fetch(`${fakeProxy.url}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: FAKE_MODEL.id, messages: question }),
      });
      const all = await lines(res);
      expect(all.slice(0, -1).map((l) => (l['message'] as { content: string }).content)).toEqual(['Half', ' of']);
      expect(all.at(-1)).toEqual({ error: expect.stringMatching(/^NJ_AGENT_FAILED: /) as string });
      expect(all.some((l) => l['done'] === true)).toBe(false);

      await fakeNet.addAgent(new FakeEngine({ failAfter: 1, words: ['Cut', ' short'] }));
      const parts: string[] = [];
      const err = await (async () => {
        for await (const part of await new Ollama({ host: fakeProxy.url, fetch: http.fetch }).chat({
          model: FAKE_MODEL.id,
          messages: question,
          stream: true,
        }))
          parts.push(part.message.content);
      })().catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/^NJ_AGENT_FAILED: /);
      expect(parts.length).toBeGreaterThan(0);
    } finally {
      await fakeProxy.dispose();
      await fakeNet.close();
    }
  });
});

describe('what the gateway’s signed catalog knows, in the model rows', () => {
  it('a catalogued model with one file: size, digest, quantization and context length in tags and show', async () => {
    const catNet = await startNet();
    const client = new NightjarClient({
      gatewayUrl: catNet.gateway.url,
      trust: { allowSynthetic: true },
      fetch: upstream.fetch,
      retry: false,
    });
    const catProxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
    try {
      const file = {
        sha256: FAKE_MODEL.sha256,
        bytes: 123_456,
        name: 'synthetic-fake-q4_0.gguf',
        quantization: 'Q4_0',
        contextLength: 4096,
      };
      await catNet.gateway.store.catalog.addFile(FAKE_MODEL.id, file, Date.now());
      // A catalogued model is on offer only with a price.
      await catNet.gateway.store.accounts.setPrice(FAKE_MODEL.id, { promptPerMTok: 0n, completionPerMTok: 0n }, Date.now());
      await catNet.gateway.catalog.reload();
      await catNet.addAgent(new FakeEngine({ words: ['x'] }));
      const o = new Ollama({ host: catProxy.url, fetch: http.fetch });
      const row = (await o.list()).models.find((m) => m.name === FAKE_MODEL.id);
      expect(row).toMatchObject({ size: 123_456, digest: FAKE_MODEL.sha256, details: { format: 'gguf', quantization_level: 'Q4_0' } });
      const show = await o.show({ model: FAKE_MODEL.id });
      expect(show.model_info).toMatchObject({ 'general.architecture': 'unknown', 'unknown.context_length': 4096 });
    } finally {
      await catProxy.dispose();
      await catNet.close();
    }
  });
});

const CURL = '/usr/bin/curl';
const run = promisify(execFile);

describe.skipIf(!existsSync(CURL))('curl, as the docs show it', () => {
  it('with the JSON content type: the default NDJSON stream; with -d alone: refused (a form post), in Ollama’s shape', async () => {
    const body = JSON.stringify({ model: model.id, prompt: 'Hi', options: { num_predict: 3 } });
    const ok = await run(CURL, ['-sS', '-H', 'content-type: application/json', `${proxy.url}/api/generate`, '-d', body]);
    const all = ok.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(all.at(-1)).toMatchObject({ done: true, model: model.id });
    const form = await run(CURL, ['-sS', '-w', '\n%{http_code}', `${proxy.url}/api/generate`, '-d', body]);
    const [answer, status] = form.stdout.trim().split('\n');
    expect(status).toBe('403');
    expect(JSON.parse(answer!)).toEqual({ error: expect.stringMatching(/application\/json/) as string });
  });
});
