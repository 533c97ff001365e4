/**
 * The proxy when things go wrong, with the official SDKs as clients and FakeEngine agents (the
 * moment text arrives matters here, not the text): failover before the first chunk, a clear
 * error after it (no finish reason, no [DONE] / message_stop), "no capacity" in each API's shape,
 * and a caller closing its connection stopping generation at the agent.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient } from '../../src/client/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import type { GatewayOptions } from '../../src/gateway/index.js';
import { ObservedEngine } from './support/engines.js';
import { onceTrue } from '../helpers/events.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
let proxy: CompatProxy | undefined;
afterEach(async () => {
  await proxy?.dispose();
  await net?.close();
  net = undefined;
  proxy = undefined;
});
// Registered after the cleanup above, so these pools close first (hooks run in reverse).
const http = perTestFetch();
// The proxy's connections to the gateway: node:http, as `nightjar proxy` makes them.
const upstream = perTestFetch('node');

async function setUp(gateway: GatewayOptions = {}): Promise<{ net: TestNet; proxy: CompatProxy }> {
  net = await startNet(gateway);
  const client = new NightjarClient({ gatewayUrl: net.gateway.url, trust: { allowSynthetic: true }, fetch: upstream.fetch, retry: false });
  proxy = await CompatProxy.start({ client, port: 0, listSynthetic: true });
  return { net, proxy };
}

const openai = (p: CompatProxy): OpenAI => new OpenAI({ apiKey: 'x', baseURL: `${p.url}/v1`, fetch: http.fetch, maxRetries: 0 });
const anthropic = (p: CompatProxy): Anthropic => new Anthropic({ apiKey: 'x', baseURL: p.url, fetch: http.fetch, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'Go on.' }];

describe('failover through the proxy', () => {
  it('the first candidate fails before its first chunk: the stream comes from the second', async () => {
    const { net, proxy } = await setUp();
    await net.addAgent(new FakeEngine({ slots: 4, failAfter: 0 }));
    const second = await net.addAgent(new FakeEngine({ slots: 1, words: ['Second', ' agent'] }));
    const { data: stream, response } = await openai(proxy)
      .chat.completions.create({ model: FAKE_MODEL.id, messages, stream: true })
      .withResponse();
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('Second agent');
    expect(response.headers.get('x-nightjar-agent')).toBe(second.agentId);
  });

  it('after the first chunk an OpenAI stream ends in an error, without a finish_reason or [DONE]', async () => {
    const { net, proxy } = await setUp();
    await net.addAgent(new FakeEngine({ failAfter: 2, words: ['Half', ' of', ' it'] }));
    const stream = await openai(proxy).chat.completions.create({ model: FAKE_MODEL.id, messages, stream: true });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const error = await (async () => {
      for await (const chunk of stream) chunks.push(chunk);
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toMatchObject({ code: 'NJ_AGENT_FAILED', type: 'server_error' });
    expect((error as Error).message).toMatch(/NJ_AGENT_FAILED: the reply broke off after 7 characters: the agent failed mid-reply/);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Half of');
    expect(chunks.some((c) => c.choices[0]?.finish_reason)).toBe(false);
  });

  it('after the first chunk an Anthropic stream ends in an error event, without message_stop', async () => {
    const { net, proxy } = await setUp();
    await net.addAgent(new FakeEngine({ failAfter: 1, words: ['Cut', ' short'] }));
    const stream = await anthropic(proxy).messages.create({ model: FAKE_MODEL.id, messages, max_tokens: 32, stream: true });
    const types: string[] = [];
    const error = await (async () => {
      for await (const event of stream) types.push(event.type);
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: 'error',
      error: { type: 'api_error', message: expect.stringMatching(/^NJ_AGENT_FAILED: /) },
    });
    expect(types).toEqual(['message_start', 'content_block_start', 'content_block_delta']);
  });

  it('a non-streaming request whose reply breaks off gets an error, not the partial text', async () => {
    const { net, proxy } = await setUp();
    await net.addAgent(new FakeEngine({ failAfter: 1, words: ['Partial'] }));
    const error = await openai(proxy)
      .chat.completions.create({ model: FAKE_MODEL.id, messages })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.InternalServerError);
    expect(error).toMatchObject({ status: 502, code: 'NJ_AGENT_FAILED' });
  });

  it('"no capacity" is 503 for OpenAI clients and 529 overloaded_error for Anthropic ones, with the wait', async () => {
    // No queue: a busy network answers "no capacity" at once, with the gateway's hint.
    const { net, proxy } = await setUp({ maxQueuePerModel: 0 });
    const engine = new FakeEngine({ slots: 1, tokenDelayMs: 2, words: ['busy '] });
    await net.addAgent(engine);
    const hog = openai(proxy).chat.completions.create({ model: FAKE_MODEL.id, messages, max_tokens: 4000, stream: true });
    const hogStream = await hog;
    const o = await openai(proxy)
      .chat.completions.create({ model: FAKE_MODEL.id, messages })
      .withResponse()
      .catch((e: unknown) => e);
    expect(o).toBeInstanceOf(OpenAI.InternalServerError);
    expect(o).toMatchObject({ status: 503, code: 'NJ_NO_CAPACITY' });
    expect((o as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after-ms')).toMatch(/^[1-9]\d*$/);
    expect((o as InstanceType<typeof OpenAI.APIError>).headers?.get('x-should-retry')).toBe('true');
    const a = await anthropic(proxy)
      .messages.create({ model: FAKE_MODEL.id, messages, max_tokens: 8 })
      .catch((e: unknown) => e);
    expect(a).toMatchObject({ status: 529, error: { error: { type: 'overloaded_error' } } });
    hogStream.controller.abort();
  });
});

describe('cancellation through the proxy', () => {
  it('an OpenAI client aborting its stream closes the connection, and the agent stops generating', async () => {
    const { net, proxy } = await setUp();
    const engine = new FakeEngine({ tokenDelayMs: 2, words: ['tick '] });
    const a = await net.addAgent(engine);
    const stream = await openai(proxy).chat.completions.create({ model: FAKE_MODEL.id, messages, max_tokens: 4000, stream: true });
    let n = 0;
    for await (const _ of stream) if (++n === 3) stream.controller.abort();
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(a.receipts[0]!.receipt.completionTokens).toBeLessThan(4000);
    expect(engine.busy).toBe(0);
    await onceTrue(proxy.onRequestFinished, () => proxy.activeRequests === 0, 'the proxy to let go of the request');
  });

  it('an Anthropic client breaking out of its stream does the same', async () => {
    const { net, proxy } = await setUp();
    const engine = new FakeEngine({ tokenDelayMs: 2, words: ['tock '] });
    const a = await net.addAgent(engine);
    const stream = await anthropic(proxy).messages.create({ model: FAKE_MODEL.id, messages, max_tokens: 4000, stream: true });
    for await (const event of stream) if (event.type === 'content_block_delta') break;
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(engine.busy).toBe(0);
  });

  it('a caller hanging up on a non-streaming request stops it too', async () => {
    const { net, proxy } = await setUp();
    const engine = new ObservedEngine({ tokenDelayMs: 2, words: ['hum '] });
    const a = await net.addAgent(engine);
    const controller = new AbortController();
    const pending = openai(proxy)
      .chat.completions.create({ model: FAKE_MODEL.id, messages, max_tokens: 4000 }, { signal: controller.signal })
      .catch((e: unknown) => e);
    await onceTrue(engine.onToken, () => engine.generated >= 3, 'generation to start');
    controller.abort();
    expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(engine.busy).toBe(0);
  });
});
