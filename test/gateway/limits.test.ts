/**
 * Every limit answers with its code while other streams carry on: an oversized agent frame
 * (1009), a flood of agent connections (429 NJ_RATE_LIMITED, then 4408 for handshakes that never
 * finish), a client that does not read (its job is cancelled), per-key request rates and stream
 * counts (429 with Retry-After), and oversized request bodies (413).
 */
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_CODES, NightjarError, PROTOCOL_VERSION, sealRequest } from '../../src/shared/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import type { Gateway, GatewayOptions, JobOutcome } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startTestGateway } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { billed, clientOf, startAgent, startBilledNetwork, tempDir } from './support/net.js';
import { onceTrue } from '../helpers/events.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
const agents: Agent[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await Promise.all(agents.splice(0).map((a) => a.dispose()));
  await gateway?.dispose();
  gateway = undefined;
});

const WORDS = Array.from({ length: 30 }, (_, i) => `w${i} `);

/** A gateway with one slow agent (30 tokens, 40 ms apart) for the stream that must carry on. */
async function withSlowAgent(options: GatewayOptions = {}): Promise<Gateway> {
  gateway = await startTestGateway(options);
  agents.push(await startAgent(gateway, { engine: new FakeEngine({ slots: 4, tokenDelayMs: 40, words: WORDS }), model: FAKE_MODEL }));
  return gateway;
}

/**
 * Starts the stream that must finish whole and resolves once its first text arrived; `done`
 * then checks it ended whole, and that it was still running when the limit was hit.
 */
async function carryOn(gw: Gateway, apiKey?: string): Promise<{ done(): Promise<void> }> {
  const stream = clientOf(gw, http.fetch, apiKey).chat({
    model: FAKE_MODEL.id,
    messages: [{ role: 'user', content: 'hi' }],
    maxTokens: 30,
  });
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  let ended = false;
  const rest = (async () => {
    let text = first.value as string;
    for (let n = await it.next(); !n.done; n = await it.next()) text += n.value;
    ended = true;
    expect(text).toBe(WORDS.join(''));
    expect((await stream.result).finishReason).toBe('length');
  })();
  rest.catch(() => undefined);
  return {
    async done() {
      expect(ended, 'the other stream was still running when the limit was hit').toBe(false);
      await rest;
    },
  };
}

async function errorOf(p: Promise<unknown>): Promise<NightjarError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NightjarError);
  return err as NightjarError;
}

describe('agent connections', () => {
  it('closes an agent that sends an oversized frame with 1009', async () => {
    const gw = await withSlowAgent({ maxAgentFrameBytes: 64 * 1024 });
    const other = await carryOn(gw);
    const raw = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL });
    raw.send('x'.repeat(64 * 1024 + 1));
    expect((await raw.closed).code).toBe(1009);
    await other.done();
  });

  it('refuses a flood of connections with 429 NJ_RATE_LIMITED, and times out handshakes that never finish (4408)', async () => {
    const gw = await withSlowAgent({ maxPendingHandshakesPerIp: 4, handshakeTimeoutMs: 400 });
    const other = await carryOn(gw);
    const sockets = Array.from({ length: 10 }, () => new WebSocket(gw.agentUrl));
    cleanups.push(async () => sockets.forEach((s) => s.terminate()));
    const results = await Promise.all(
      sockets.map(
        (s) =>
          new Promise<{ open: true; closed: Promise<number> } | { open: false; status: number; retryAfter: string | null; body: string }>(
            (resolve) => {
              s.on('error', () => undefined);
              s.on('open', () => resolve({ open: true, closed: new Promise((r) => s.on('close', (code) => r(code))) }));
              s.on('unexpected-response', (_req, res) => {
                let body = '';
                res.on('data', (d: Buffer) => (body += d.toString()));
                res.on('end', () =>
                  resolve({ open: false, status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] ?? null, body }),
                );
              });
            },
          ),
      ),
    );
    const opened = results.filter((r) => r.open);
    const refused = results.filter((r) => !r.open);
    expect(opened).toHaveLength(4);
    expect(refused).toHaveLength(6);
    for (const r of refused) {
      // Retry when the oldest handshake times out (400 ms after it began, on the real clock here).
      expect({ status: r.status, retryAfter: r.retryAfter, body: JSON.parse(r.body) }).toEqual({
        status: 429,
        retryAfter: '1',
        body: {
          error: { code: 'NJ_RATE_LIMITED', message: 'this address already has 4 unfinished handshakes', retryAfterMs: expect.any(Number) },
        },
      });
      expect(JSON.parse(r.body).error.retryAfterMs).toBeLessThanOrEqual(400);
    }
    for (const r of opened) expect(await r.closed).toBe(CLOSE_CODES.authTimeout);
    await other.done();
    // The handshakes are over: an agent gets in again.
    const raw = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL });
    await raw.close();
    expect(await gw.metrics.value(gw.metrics.rejected, { limit: 'agent-connections' })).toBe(6);
  });
});

/** Opens a WebSocket that sends nothing; resolves with how the upgrade went. */
function bareSocket(url: string): Promise<{ socket: WebSocket; status: number; body: string }> {
  const socket = new WebSocket(url);
  socket.on('error', () => undefined);
  cleanups.push(async () => socket.terminate());
  return new Promise((resolve) => {
    socket.on('open', () => resolve({ socket, status: 101, body: '' }));
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ socket, status: res.statusCode ?? 0, body }));
    });
  });
}

describe('agent connection caps', () => {
  it('caps agent connections per address, and unfinished handshakes in all', async () => {
    const gw = await withSlowAgent({ maxAgentConnectionsPerIp: 4, maxPendingHandshakes: 1 });
    const other = await carryOn(gw);
    // The slow agent holds one of the address's four connections.
    const first = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL });
    const pending = await bareSocket(gw.agentUrl);
    expect(pending.status).toBe(101);
    const overPending = await bareSocket(gw.agentUrl);
    expect({ status: overPending.status, body: JSON.parse(overPending.body).error }).toEqual({
      status: 429,
      body: { code: 'NJ_RATE_LIMITED', message: 'the gateway already has 1 unfinished handshake', retryAfterMs: expect.any(Number) },
    });
    pending.socket.terminate();
    await onceTrue(gw.onAgentConnected, () => gw.directory.size === 2, 'the second agent', 1000);
    await new Promise((r) => setTimeout(r, 50));
    const third = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL });
    const fourth = await bareSocket(gw.agentUrl);
    expect(fourth.status).toBe(101);
    const overAddress = await bareSocket(gw.agentUrl);
    expect({ status: overAddress.status, message: JSON.parse(overAddress.body).error.message }).toEqual({
      status: 429,
      message: 'this address already has 4 agent connections',
    });
    expect(await gw.metrics.value(gw.metrics.rejected, { limit: 'agent-connections' })).toBe(2);
    await first.close();
    await third.close();
    await other.done();
  });
});

describe('clients', () => {
  it('cancels the job of a client that stops reading, and the agent hears of it', async () => {
    gateway = await startTestGateway({ maxBufferedBytesPerClient: 256 * 1024 });
    const gw = gateway;
    const big = Array.from({ length: 1000 }, (_, i) => `${i}`.padEnd(16 * 1024, '.'));
    const hog = new FakeEngine({ slots: 1, tokenDelayMs: 1, words: big });
    agents.push(await startAgent(gw, { engine: hog, model: { ...FAKE_MODEL, id: 'synthetic-big' } }));
    // The other stream runs 4.5 s (150 ms a token): it must outlast the cut-off even on a loaded
    // machine, where filling the client's buffer took CI's run past the 1.2 s of 40 ms a token.
    agents.push(await startAgent(gw, { engine: new FakeEngine({ slots: 2, tokenDelayMs: 150, words: WORDS }), model: FAKE_MODEL }));
    const outcomes = new Map<string, JobOutcome>();
    gw.onJobFinished(({ jobId, outcome }) => outcomes.set(jobId, outcome));
    const isBilled = billed(gw);
    const other = await carryOn(gw);

    const [candidate] = await clientOf(gw, http.fetch).candidates('synthetic-big');
    const sealed = await sealRequest({
      model: 'synthetic-big',
      messages: [{ role: 'user', content: 'everything' }],
      sampling: { maxTokens: 1000 },
      recipients: [candidate!.verified],
      now: Date.now(),
    });
    const res = await http.fetch(`${gw.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ v: PROTOCOL_VERSION, envelope: sealed.envelope }),
    });
    expect(res.status).toBe(200);
    // Never read the body.
    await onceTrue(gw.onJobFinished, () => outcomes.has(sealed.jobId), 'the slow client to be cut off', 20_000);
    expect(outcomes.get(sealed.jobId)).toMatchObject({ status: 'cancelled', reason: 'the client is not reading its reply' });
    expect(await gw.metrics.value(gw.metrics.rejected, { limit: 'slow-client' })).toBe(1);
    // The agent stops, then signs for what it generated: once that is billed, it has stopped.
    await isBilled(sealed.jobId);
    expect(hog.busy).toBe(0);
    expect(hog.generated).toBeLessThan(1000);
    await res.body?.cancel().catch(() => undefined);
    await other.done();
  });

  it('limits requests per key (429 with Retry-After) without touching other keys', async () => {
    const clock = new FakeClock();
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const net = await startBilledNetwork(tmp.dir, { clock, rateLimit: { perSecond: 1, burst: 3 } });
    cleanups.push(() => net.close());
    agents.push(await startAgent(net.gateway, { engine: new FakeEngine({ slots: 4, tokenDelayMs: 40, words: WORDS }), model: FAKE_MODEL }));
    const other = await net.store.accounts.createApiKey({ name: 'other', now: Date.now() });
    const streaming = await carryOn(net.gateway, other.key);
    const get = (key: string) => http.fetch(`${net.gateway.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    for (let i = 0; i < 3; i++) expect((await get(net.key.key)).status).toBe(200);
    const limited = await get(net.key.key);
    expect({ status: limited.status, retryAfter: limited.headers.get('retry-after'), body: await limited.json() }).toEqual({
      status: 429,
      retryAfter: '1',
      body: { error: { code: 'NJ_RATE_LIMITED', message: 'too many requests for this key', retryAfterMs: 1000 } },
    });
    const third = await net.store.accounts.createApiKey({ name: 'third', now: Date.now() });
    expect((await get(third.key)).status).toBe(200);
    clock.advance(1000);
    expect((await get(net.key.key)).status).toBe(200);
    await streaming.done();
  });

  it('limits the streams one key holds open at once', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const net = await startBilledNetwork(tmp.dir, { maxStreamsPerKey: 1 });
    cleanups.push(() => net.close());
    agents.push(await startAgent(net.gateway, { engine: new FakeEngine({ slots: 4, tokenDelayMs: 40, words: WORDS }), model: FAKE_MODEL }));
    const first = await carryOn(net.gateway, net.key.key);
    const err = await errorOf(
      clientOf(net.gateway, http.fetch, net.key.key).complete({
        model: FAKE_MODEL.id,
        messages: [{ role: 'user', content: 'hi' }],
        maxTokens: 2,
      }),
    );
    expect({ code: err.code, message: err.message, retry: err.retryAfterMs }).toEqual({
      code: 'NJ_RATE_LIMITED',
      message: 'this key already has 1 reply streaming, its limit',
      retry: 1000,
    });
    const other = await net.store.accounts.createApiKey({ name: 'other', now: Date.now() });
    expect(
      (
        await clientOf(net.gateway, http.fetch, other.key).complete({
          model: FAKE_MODEL.id,
          messages: [{ role: 'user', content: 'hi' }],
          maxTokens: 2,
        })
      ).text,
    ).toBe('w0 w1 ');
    await first.done();
  });

  it('answers an oversized request with 413 NJ_PAYLOAD_TOO_LARGE', async () => {
    const gw = await withSlowAgent({ maxRequestBodyBytes: 2048 + 16 });
    const other = await carryOn(gw);
    const err = await errorOf(
      clientOf(gw, http.fetch).complete({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'x'.repeat(3000) }], maxTokens: 2 }),
    );
    expect({ code: err.code, message: err.message }).toEqual({ code: 'NJ_PAYLOAD_TOO_LARGE', message: 'the body exceeds 2064 bytes' });
    const res = await http.fetch(`${gw.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pad: 'y'.repeat(200_000) }),
    });
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 413,
      body: { error: { code: 'NJ_PAYLOAD_TOO_LARGE', message: 'the request body exceeds the limit' } },
    });
    await other.done();
  });
});
