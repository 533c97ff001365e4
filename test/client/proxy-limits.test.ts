/**
 * The proxy's limits and edges, each next to its option: the body limit (413 in each API's
 * shape), unreadable bodies, unknown paths, the concurrency limit ("no capacity" at once), the
 * shutdown grace on the injected clock and the cancel after it (a cut stream ends with an error
 * event), CORS for the allowed origins only, the health check, security headers, and the event a
 * finished request fires.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient, PROXY_DEFAULTS, type CompatProxyOptions, type ProxyRequestFinished } from '../../src/client/index.js';
import { connect } from 'node:net';
import { LIMITS, nextEvent } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { StallingEngine } from './support/engines.js';
import { onceTrue } from '../helpers/events.js';
import { FAKE_MODEL, ManualClock, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
let proxy: CompatProxy | undefined;
afterEach(async () => {
  await proxy?.dispose();
  await net?.close();
  net = undefined;
  proxy = undefined;
});
const http = perTestFetch();
const upstream = perTestFetch('node');

/** A proxy whose SDK client points at `gatewayUrl` (by default nowhere: the request never gets that far). */
async function start(options: Partial<CompatProxyOptions> = {}, gatewayUrl = 'http://127.0.0.1:9'): Promise<CompatProxy> {
  const client = new NightjarClient({ gatewayUrl, trust: { allowSynthetic: true }, fetch: upstream.fetch, retry: false });
  proxy = await CompatProxy.start({ client, port: 0, listSynthetic: true, ...options });
  return proxy;
}

const json = { 'content-type': 'application/json' };

/** Sends only a request head (no body, whatever its Content-Length says); resolves with the status line's code and what follows. */
function headOnly(url: string, head: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('utf8');
      const end = data.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(data)?.[1];
      if (end < 0 || length === undefined || data.length < end + 4 + Number(length)) return;
      socket.destroy();
      resolve({ status: Number(data.split(' ')[1]), body: data.slice(end + 4) });
    });
    socket.write(head.replace(/\n/g, '\r\n') + '\r\n\r\n');
  });
}
const chatBody = (content = 'x') => JSON.stringify({ model: FAKE_MODEL.id, messages: [{ role: 'user', content }], max_tokens: 8 });
const messagesBody = (content = 'x') => JSON.stringify({ model: FAKE_MODEL.id, messages: [{ role: 'user', content }], max_tokens: 8 });

describe('the body limit and unreadable requests', () => {
  it('answers a body over maxBodyBytes 413 in the API shape of the caller', async () => {
    const p = await start({ maxBodyBytes: 1024 });
    const big = 'y'.repeat(2048);
    const openai = await http.fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers: json, body: chatBody(big) });
    expect(openai.status).toBe(413);
    expect(await openai.json()).toEqual({
      error: {
        type: 'invalid_request_error',
        code: 'NJ_PAYLOAD_TOO_LARGE',
        param: null,
        message: expect.stringMatching(/^NJ_PAYLOAD_TOO_LARGE: the request body exceeds 1024 bytes\. /),
      },
    });
    const anthropic = await http.fetch(`${p.url}/v1/messages`, { method: 'POST', headers: json, body: messagesBody(big) });
    expect(anthropic.status).toBe(413);
    expect(await anthropic.json()).toMatchObject({
      type: 'error',
      error: { type: 'request_too_large', message: expect.stringContaining('the request body exceeds 1024 bytes') },
      request_id: anthropic.headers.get('request-id'),
    });
    expect(PROXY_DEFAULTS.maxBodyBytes).toBe(8 * 1024 * 1024);
  });

  it('answers a body that is not JSON, and an unknown path, in the API shape of the caller', async () => {
    const p = await start();
    const broken = await http.fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers: json, body: '{"model":' });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({
      error: { code: 'NJ_BAD_REQUEST', message: expect.stringContaining('the request body is not JSON') },
    });
    const empty = await http.fetch(`${p.url}/v1/messages`, { method: 'POST', headers: json, body: '' });
    expect(empty.status).toBe(400);
    expect(await empty.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });

    const unknown = await http.fetch(`${p.url}/v1/audio/speech`, { method: 'POST', headers: json, body: '{}' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({
      error: { code: 'NJ_BAD_REQUEST', message: expect.stringContaining('no such endpoint: POST /v1/audio/speech') },
    });
    const anthropicUnknown = await http.fetch(`${p.url}/v1/complete`, { headers: { 'anthropic-version': '2023-06-01' } });
    expect(anthropicUnknown.status).toBe(404);
    expect(await anthropicUnknown.json()).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('no such endpoint: GET /v1/complete') },
    });
  });

  it('refuses a body nested deeper than maxJsonDepth before parsing it, in the API shape of the caller', async () => {
    // Fails without cheapRefusals on the proxy (src/client/proxy/proxy.ts): JSON.parse reads the
    // body and the chat schema refuses it with another message.
    const p = await start();
    const deep = `{"model":"m","messages":${'['.repeat(LIMITS.maxJsonDepth)}${']'.repeat(LIMITS.maxJsonDepth)}}`;
    const res = await http.fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers: json, body: deep });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: {
        code: 'NJ_BAD_REQUEST',
        message: expect.stringContaining(`the request body nests deeper than ${LIMITS.maxJsonDepth} levels`),
      },
    });
  });

  it('answers an unknown path before reading its body, and compares the local token exactly', async () => {
    // Fails without cheapRefusals' onRequest 404: the proxy waits for the body that never comes.
    const p = await start({ token: 'local-token-0123456789' });
    const answer = await headOnly(
      p.url,
      'POST /v1/audio/speech HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer local-token-0123456789\n' +
        'Content-Type: application/json\nContent-Length: 1000000',
    );
    expect(answer.status).toBe(404);
    expect(answer.body).toContain('no such endpoint: POST /v1/audio/speech');
    // Fails with the gate's old trim of the token: "Bearer  <token>" (two spaces) was accepted.
    const spaced = await http.fetch(`${p.url}/v1/nope`, { headers: { authorization: 'Bearer  local-token-0123456789' } });
    expect(spaced.status).toBe(401);
    expect((await http.fetch(`${p.url}/v1/nope`, { headers: { authorization: 'Bearer local-token-0123456789' } })).status).toBe(404);
  });

  it('answers the health check, with the security headers that do not disturb API clients', async () => {
    const p = await start();
    const res = await http.fetch(`${p.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('cache-control')).toBe('no-store');
  });
});

describe('CORS', () => {
  const ALLOWED = 'https://app.example';

  it('answers the preflight of an allowed origin and lets its page read the answers', async () => {
    const p = await start({ allowOrigins: [ALLOWED] });
    const preflight = await http.fetch(`${p.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: {
        origin: ALLOWED,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(preflight.headers.get('access-control-allow-methods')).toBe('GET, POST, OPTIONS');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    expect(preflight.headers.get('access-control-max-age')).toBe('600');
    const health = await http.fetch(`${p.url}/healthz`, { headers: { origin: ALLOWED } });
    expect(health.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    // An error answer too, so the page can show why.
    const refused = await http.fetch(`${p.url}/v1/chat/completions`, { method: 'POST', headers: { origin: ALLOWED }, body: 'x' });
    expect(refused.status).toBe(403);
    expect(refused.headers.get('access-control-allow-origin')).toBe(ALLOWED);
  });

  // Security: fails if CORS reflects origins beyond the exact list (try `origin: true` in
  // proxy.ts) or the gate's Origin check is removed. "*" in the list is an origin that never
  // matches, not a wildcard; an OPTIONS without an Origin is refused.
  it('allows nothing but the exact origins listed', async () => {
    const p = await start({ allowOrigins: ['*', ALLOWED] });
    for (const origin of ['https://evil.example', 'https://app.example.evil', 'null']) {
      const res = await http.fetch(`${p.url}/healthz`, { headers: { origin } });
      expect(res.status).toBe(403);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await http.fetch(`${p.url}/v1/messages`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      });
      expect(preflight.status).toBe(403);
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    }
    const bare = await http.fetch(`${p.url}/v1/messages`, { method: 'OPTIONS' });
    expect(bare.status).toBe(403);
  });
});

describe('the concurrency limit and the finished event', () => {
  it('answers "no capacity" at once past maxConcurrent, and tells when a request ends', async () => {
    net = await startNet();
    const engine = new StallingEngine(['Hold'], { slots: 4 });
    const agent = await net.addAgent(engine);
    const p = await start({ maxConcurrent: 1 }, net.gateway.url);
    const openai = new OpenAI({ apiKey: 'x', baseURL: `${p.url}/v1`, fetch: http.fetch, maxRetries: 0 });
    const finished: ProxyRequestFinished[] = [];
    p.onRequestFinished((e) => finished.push(e));

    const hog = await openai.chat.completions.create({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'x' }], stream: true });
    expect(p.activeRequests).toBe(1);
    const refused = await openai.chat.completions
      .create({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.InternalServerError);
    expect(refused).toMatchObject({ status: 503, code: 'NJ_NO_CAPACITY' });
    expect((refused as Error).message).toContain('the proxy is serving 1 requests already');
    expect((refused as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after-ms')).toBe('1000');
    // A refusal never took a slot: nothing finished.
    expect(finished).toEqual([]);

    const ended = nextEvent(p.onRequestFinished);
    hog.controller.abort();
    expect(await ended).toEqual({ api: 'openai', code: 'NJ_CANCELLED', activeRequests: 0 });
    expect(p.activeRequests).toBe(0);
    await agent.receiptsSigned(1);
  });
});

describe('shutdown', () => {
  it('lets running replies finish within the grace, on the injected clock', async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine({ tokenDelayMs: 5, words: ['one ', 'two ', 'three'] }));
    const clock = new ManualClock();
    const p = await start({ clock, shutdownGraceMs: 60_000 }, net.gateway.url);
    const openai = new OpenAI({ apiKey: 'x', baseURL: `${p.url}/v1`, fetch: http.fetch, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: FAKE_MODEL.id,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 3,
      stream: true,
    });
    const disposed = p.dispose();
    expect(await clock.nextTimer()).toBe(60_000);
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('one two three');
    await disposed;
    // The grace timer was cleared, never fired.
    expect(clock.timers).toEqual([]);
    await expect(http.fetch(`${p.url}/healthz`)).rejects.toThrow();
  });

  it('after the grace cancels what still runs: a stream ends with an error event, a whole answer is 503', async () => {
    net = await startNet();
    const engine = new StallingEngine(['Half'], { slots: 4 });
    const agent = await net.addAgent(engine);
    const clock = new ManualClock();
    const p = await start({ clock, shutdownGraceMs: 2000 }, net.gateway.url);
    const openai = new OpenAI({ apiKey: 'x', baseURL: `${p.url}/v1`, fetch: http.fetch, maxRetries: 0 });
    const stream = await openai.chat.completions.create({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'x' }], stream: true });
    const whole = openai.chat.completions
      .create({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'y' }] })
      .catch((e: unknown) => e);
    await onceTrue(engine.onStalled, () => engine.started === 2, 'both jobs to reach the agent');

    const disposed = p.dispose();
    expect(await clock.nextTimer()).toBe(2000);
    clock.fire();
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    const error = await (async () => {
      for await (const chunk of stream) chunks.push(chunk);
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error).toMatchObject({ code: 'NJ_SHUTTING_DOWN', type: 'server_error' });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Half');
    expect(chunks.some((c) => c.choices[0]?.finish_reason)).toBe(false);
    expect(await whole).toMatchObject({ status: 503, code: 'NJ_SHUTTING_DOWN' });
    await disposed;
    // Both jobs were cancelled at the agent.
    await agent.receiptsSigned(2);
    expect(agent.receipts.map((r) => r.receipt.finishReason)).toEqual(['cancelled', 'cancelled']);
    expect(engine.aborted).toBe(2);
  });
});
