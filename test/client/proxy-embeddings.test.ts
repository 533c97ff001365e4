/**
 * Embeddings end to end: the SDK, the proxy's POST /v1/embeddings with the official `openai`
 * package and Ollama's /api/embed and /api/embeddings with the official `ollama` package, against
 * a real gateway and the real engine (node-llama-cpp's embedding context) on the synthetic tiny
 * model, whose width is 64. The weights are random, so the tests pin shape and determinism, not
 * meaning.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient } from '../../src/client/index.js';
import { loadEngine, sha256File, writeSyntheticModel, type InferenceEngine, type ServedModel } from '../../src/main/agent/index.js';
import { LIMITS, NightjarError } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { startNet, type TestNet } from './support/net.js';

const WIDTH = 64;
let dir: string;
let engine: InferenceEngine;
let model: ServedModel;
let net: TestNet;
let client: NightjarClient;
let proxy: CompatProxy;
const http = perTestFetch();
const upstream = perTestFetch('node');

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-proxy-embed-'));
  const file = await writeSyntheticModel({ path: path.join(dir, 'synthetic-tiny.gguf'), shape: 'tiny' });
  engine = await loadEngine({ modelPath: file.path, threads: 1, slots: 2 });
  model = { id: file.modelId, sha256: await sha256File(file.path), synthetic: true, contextLength: engine.model.contextLength };
  net = await startNet();
  await net.addAgent(engine, { model });
  client = new NightjarClient({
    gatewayUrl: net.gateway.url,
    trust: { allowSynthetic: true },
    fetch: upstream.fetch,
    retry: { modelUnknownMs: 0 },
  });
  proxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
}, 60_000);

afterAll(async () => {
  await proxy?.dispose();
  await net?.close();
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const openai = (): OpenAI => new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'unused', fetch: http.fetch, maxRetries: 0 });
const ollama = (): Ollama => new Ollama({ host: proxy.url, fetch: http.fetch });
const norm = (v: ArrayLike<number>): number => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));

describe('the SDK', () => {
  it('gets one vector per text, in order, of the model width, the same for the same text; receipts count prompt tokens', async () => {
    const one = await client.embeddings({ model: model.id, input: ['hello world'] });
    const again = await client.embeddings({ model: model.id, input: ['hello world'] });
    const other = await client.embeddings({ model: model.id, input: ['something else'] });
    expect(one.embeddings).toHaveLength(1);
    expect(one.embeddings[0]).toHaveLength(WIDTH);
    expect(one.embeddings[0]!.every(Number.isFinite)).toBe(true);
    expect(again.embeddings[0]).toEqual(one.embeddings[0]);
    expect(other.embeddings[0]).not.toEqual(one.embeddings[0]);

    const both = await client.embeddings({ model: model.id, input: ['something else', 'hello world'] });
    expect(both.embeddings).toEqual([other.embeddings[0], one.embeddings[0]]);
    expect(both.usage.completionTokens).toBe(0);
    expect(both.usage.promptTokens).toBe(one.usage.promptTokens + other.usage.promptTokens);
    // The receipt the SDK verified (and the gateway billed) counts the same prompt tokens and no completion.
    expect(both.receipt).toMatchObject({
      promptTokens: both.usage.promptTokens,
      completionTokens: 0,
      finishReason: 'stop',
      model: model.id,
    });
  });

  it('has a width mismatch refused by the agent before it computes, and bad input refused before anything is sent', async () => {
    // Fails without checkEmbedJob's dimensions check in the job runner: the vectors come back 64 wide.
    const err = await client.embeddings({ model: model.id, input: ['x'], dimensions: 32 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NightjarError);
    expect(err).toMatchObject({ code: 'NJ_BAD_REQUEST', message: expect.stringContaining(`have ${WIDTH} dimensions, not 32`) });
    const ok = await client.embeddings({ model: model.id, input: ['x'], dimensions: WIDTH });
    expect(ok.embeddings[0]).toHaveLength(WIDTH);

    // Fails without the SDK's input schema (LIMITS.maxEmbedInputs): the request is sealed and sent.
    const many = await client.embeddings({ model: model.id, input: Array(LIMITS.maxEmbedInputs + 1).fill('x') }).catch((e: unknown) => e);
    expect(many).toMatchObject({ code: 'NJ_BAD_REQUEST', message: expect.stringContaining('input') });
    const empty = await client.embeddings({ model: model.id, input: [''] }).catch((e: unknown) => e);
    expect(empty).toMatchObject({ code: 'NJ_BAD_REQUEST' });
  });
});

describe('POST /v1/embeddings with the openai package', () => {
  it('answers a string and an array with vectors of the model width, deterministic and in order, in base64 or floats', async () => {
    const sdk = await client.embeddings({ model: model.id, input: ['hello world', 'something else'] });
    // The openai package asks for base64 unless told otherwise, and decodes it itself.
    const single = await openai().embeddings.create({ model: model.id, input: 'hello world' });
    expect(single.object).toBe('list');
    expect(single.data).toHaveLength(1);
    expect(single.data[0]!.embedding).toHaveLength(WIDTH);
    expect(single.data[0]!.embedding).toEqual(Array.from(sdk.embeddings[0]!));
    expect(single.usage.prompt_tokens).toBeGreaterThan(0);
    expect(single.usage.total_tokens).toBe(single.usage.prompt_tokens);

    const list = await openai().embeddings.create({ model: model.id, input: ['hello world', 'something else'], encoding_format: 'float' });
    expect(list.data.map((d) => d.index)).toEqual([0, 1]);
    expect(list.data.map((d) => d.embedding)).toEqual(sdk.embeddings.map((v) => Array.from(v)));
    expect(list.data[0]!.embedding).not.toEqual(list.data[1]!.embedding);
  });

  it('refuses dimensions other than the width and too many inputs with a 400 naming the parameter', async () => {
    const wrong = await openai()
      .embeddings.create({ model: model.id, input: 'x', dimensions: 32 })
      .catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(OpenAI.BadRequestError);
    expect(wrong).toMatchObject({ status: 400, param: 'dimensions', message: expect.stringContaining(`have ${WIDTH} dimensions`) });
    const right = await openai().embeddings.create({ model: model.id, input: 'x', dimensions: WIDTH });
    expect(right.data[0]!.embedding).toHaveLength(WIDTH);

    // Fails without textsOf's bound in embeddings-routes.ts (the SDK would refuse it without a param).
    const many = await openai()
      .embeddings.create({ model: model.id, input: Array<string>(LIMITS.maxEmbedInputs + 1).fill('x') })
      .catch((e: unknown) => e);
    expect(many).toBeInstanceOf(OpenAI.BadRequestError);
    expect(many).toMatchObject({ status: 400, param: 'input', message: expect.stringContaining(`at most ${LIMITS.maxEmbedInputs}`) });
    const tokens = await openai()
      .embeddings.create({ model: model.id, input: [[1, 2, 3]] })
      .catch((e: unknown) => e);
    expect(tokens).toMatchObject({ status: 400, param: 'input[0]', message: expect.stringContaining('not token arrays') });
  });
});

describe("Ollama's /api/embed and /api/embeddings with the ollama package", () => {
  it('embed answers a string and an array with unit vectors of the model width, deterministic and in order', async () => {
    const sdk = await client.embeddings({ model: model.id, input: ['hello world', 'something else'] });
    const one = await ollama().embed({ model: model.id, input: 'hello world' });
    expect(one.model).toBe(model.id);
    expect(one.embeddings).toHaveLength(1);
    expect(one.embeddings[0]).toHaveLength(WIDTH);
    expect(norm(one.embeddings[0]!)).toBeCloseTo(1, 5);
    const again = await ollama().embed({ model: model.id, input: 'hello world' });
    expect(again.embeddings).toEqual(one.embeddings);
    // Ollama's embed normalises: the same direction as the model's vector.
    const raw = sdk.embeddings[0]!;
    one.embeddings[0]!.forEach((v, i) => expect(v).toBeCloseTo(raw[i]! / norm(raw), 5));

    const both = await ollama().embed({ model: model.id, input: ['hello world', 'something else'] });
    expect(both.embeddings).toHaveLength(2);
    expect(both.embeddings[0]).toEqual(one.embeddings[0]);
    expect(both.embeddings[1]).not.toEqual(both.embeddings[0]);
    expect(both.prompt_eval_count).toBe(sdk.usage.promptTokens);
  });

  it('the legacy embeddings call answers the model vector for a prompt', async () => {
    const sdk = await client.embeddings({ model: model.id, input: ['hello world'] });
    const legacy = await ollama().embeddings({ model: model.id, prompt: 'hello world' });
    expect(legacy.embedding).toEqual(Array.from(sdk.embeddings[0]!));
  });

  it("refuses too many inputs and a width mismatch with a 400 in Ollama's error shape", async () => {
    const many = await ollama()
      .embed({ model: model.id, input: Array<string>(LIMITS.maxEmbedInputs + 1).fill('x') })
      .catch((e: unknown) => e);
    expect(many).toMatchObject({ name: 'ResponseError', status_code: 400 });
    expect((many as Error).message).toMatch(`at most ${LIMITS.maxEmbedInputs}`);
    const wrong = await ollama()
      .embed({ model: model.id, input: 'x', dimensions: 32 })
      .catch((e: unknown) => e);
    expect(wrong).toMatchObject({ name: 'ResponseError', status_code: 400 });
    expect((wrong as Error).message).toMatch(`have ${WIDTH} dimensions, not 32`);
  });
});
