/**
 * The SDK against a real gateway and real agents (FakeEngine: here the moment text arrives
 * matters, not the text): streaming, failover before the first chunk (an agent that fails and
 * one whose connection dies), a clear error after it, retries on "no capacity", on stale
 * candidates and on a model not known yet (for a few seconds only), cancellation reaching the
 * agent, and pinning.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { IncompleteReplyError, MemoryPinStore, NightjarClient, type NightjarClientOptions } from '../../src/client/index.js';
import { NightjarError, generateIdentity, sealRequest } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { StallingEngine } from './support/engines.js';
import { FAKE_MODEL, ManualClock, agentGone, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});
// Registered after the network's afterEach, so (hooks run in reverse) the client's sockets close
// first: undici may hold a pre-connected socket that the gateway's close would wait a minute for.
const http = perTestFetch();

function client(n: TestNet, options: Partial<NightjarClientOptions> = {}): NightjarClient {
  return new NightjarClient({ gatewayUrl: n.gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch, ...options });
}

const ask = { model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'Say hello.' }], maxTokens: 32 };

describe('NightjarClient', () => {
  it('streams a verified reply and says who served it', async () => {
    net = await startNet();
    const a = await net.addAgent(new FakeEngine({ words: ['Hello', ' there', '.'] }));
    const stream = client(net).chat(ask);
    const deltas: string[] = [];
    for await (const d of stream) deltas.push(d);
    const result = await stream.result;
    expect(deltas).toEqual(['Hello', ' there', '.']);
    expect(result).toMatchObject({ text: 'Hello there.', finishReason: 'stop', agentId: a.agentId, trust: 'signed', attempt: 0, sends: 1 });
    expect(await stream.served).toMatchObject({ agentId: a.agentId, jobId: result.jobId });
    expect(result.receipt.completionTokens).toBe(3);
    expect(a.receipts.map((r) => r.receipt.jobId)).toEqual([result.jobId]);
  });

  it('refuses a malformed request before it reaches the gateway', async () => {
    net = await startNet();
    const c = client(net);
    await expect(c.complete({ ...ask, messages: [] })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringMatching(/messages/),
    });
    await expect(c.complete({ ...ask, temperature: 5 })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringMatching(/temperature/),
    });
  });
});

describe('candidates', () => {
  it('reuses recent verified candidates for the same model, asks afresh after the TTL, and never caches with a TTL of 0', async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine({ words: ['ok'] }));
    const asked: string[] = [];
    const counting: typeof fetch = (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.includes('/v1/candidates')) asked.push(url);
      return http.fetch(input, init);
    };
    const clock = new ManualClock();
    const cached = client(net, { fetch: counting, clock, candidatesTtlMs: 5000 });
    await cached.complete(ask);
    await cached.complete(ask);
    expect(asked).toHaveLength(1);
    clock.advance(5000);
    await cached.complete(ask);
    expect(asked).toHaveLength(2);

    const uncached = client(net, { fetch: counting, candidatesTtlMs: 0 });
    await uncached.complete(ask);
    await uncached.complete(ask);
    expect(asked).toHaveLength(4);
  });
});

describe('ephemeral keys', () => {
  it("agrees the next request's key after each reply, seals the next turn with it, and never uses one twice", async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine({ words: ['ok'] }));
    const seen: { prepared: string; ephemeralKey: string }[] = [];
    const prepared = new Set<unknown>();
    const seal: typeof sealRequest = async (o) => {
      const p = o.prepared;
      const fits = p?.fits(o.recipients.map((r) => r.boxKey));
      const sealed = await sealRequest(o);
      if (p) prepared.add(p);
      // 'spent': the seal took the prepared key (before the SDK discards whatever it was handed).
      seen.push({ prepared: !p ? 'none' : fits && !p.usable ? 'spent' : 'unused', ephemeralKey: sealed.envelope.header.ephemeralKey });
      return sealed;
    };
    const c = client(net, { seal });
    for (let i = 0; i < 3; i++) await c.complete(ask);
    // The first request has nothing prepared; each later one is sealed with the key agreed after the last reply.
    expect(seen.map((s) => s.prepared)).toEqual(['none', 'spent', 'spent']);
    expect(prepared.size).toBe(2);
    expect(new Set(seen.map((s) => s.ephemeralKey)).size).toBe(3);
  });
});

describe('failover', () => {
  it('the first candidate fails before its first chunk: the reply arrives from the second', async () => {
    net = await startNet();
    // More free slots make the failing agent the gateway's first choice.
    const first = await net.addAgent(new FakeEngine({ slots: 4, failAfter: 0 }));
    const second = await net.addAgent(new FakeEngine({ slots: 1, words: ['From', ' the', ' second', '.'] }));
    const result = await client(net).complete(ask);
    expect(result.text).toBe('From the second.');
    expect(result.agentId).toBe(second.agentId);
    expect(result.attempt).toBe(1);
    expect(result.sends).toBe(1);
    expect(first.receipts).toEqual([]);
    expect(net.outcomes.get(result.jobId)).toMatchObject({ status: 'done', agentId: second.agentId, attempt: 1 });
  });

  it('the first candidate dies (its connection drops) before its first chunk: the second answers', async () => {
    net = await startNet();
    const dying = new StallingEngine([], { slots: 4 });
    const first = await net.addAgent(dying, { relay: true });
    const second = await net.addAgent(new FakeEngine({ slots: 1, words: ['Still', ' here', '.'] }));
    dying.onStalled(() => void first.relay!.close());
    const result = await client(net).complete(ask);
    expect(dying.started).toBe(1);
    expect(result).toMatchObject({ text: 'Still here.', agentId: second.agentId, attempt: 1 });
  });

  it('after the first chunk a failure is a clear error: partial text flagged, no receipt, nothing spliced in', async () => {
    net = await startNet();
    const first = await net.addAgent(new FakeEngine({ slots: 4, failAfter: 2, words: ['Half', ' an', ' answer', '.'] }));
    const second = await net.addAgent(new FakeEngine({ slots: 1, words: ['Other', ' text'] }));
    const stream = client(net).chat(ask);
    const seen: string[] = [];
    const error = await (async () => {
      for await (const d of stream) seen.push(d);
    })().then(
      () => null,
      (e: unknown) => e,
    );
    expect(seen).toEqual(['Half', ' an']);
    expect(error).toBeInstanceOf(IncompleteReplyError);
    const e = error as IncompleteReplyError;
    expect(e.code).toBe('NJ_AGENT_FAILED');
    expect(e.message).toMatch(/^the reply broke off after 7 characters: the agent failed mid-reply \(NJ_ENGINE_FAILED\)/);
    expect(e.partialText).toBe('Half an');
    expect(e.servedBy.agentId).toBe(first.agentId);
    await expect(stream.result).rejects.toBe(error);
    // No receipt reached anyone, no other agent was asked, and the gateway knows text was delivered.
    expect(first.receipts).toEqual([]);
    expect(second.receipts).toEqual([]);
    expect(net.outcomes.get(e.servedBy.jobId)).toEqual({
      status: 'failed',
      code: 'NJ_AGENT_FAILED',
      agentId: first.agentId,
      delivered: true,
    });
  });

  it('after the first chunk the agent dying is the same clear error, and the SDK does not resend', async () => {
    net = await startNet();
    const dying = new StallingEngine(['Only', ' this'], { slots: 4 });
    const first = await net.addAgent(dying, { relay: true });
    await net.addAgent(new FakeEngine({ slots: 1 }));
    const stream = client(net).chat(ask);
    let text = '';
    stream.served.then(
      () => undefined,
      () => undefined,
    );
    const error = await (async () => {
      for await (const d of stream) {
        text += d;
        // Cut the agent off once its two chunks reached the client (the engine has stalled by then).
        if (text === 'Only this') void first.relay!.close();
      }
    })().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(IncompleteReplyError);
    expect(error).toMatchObject({ code: 'NJ_AGENT_FAILED', partialText: 'Only this' });
    expect((error as IncompleteReplyError).servedBy.sends).toBe(1);
    expect(dying.started).toBe(1);
  });
});

describe('retries', () => {
  it('retries "no capacity" after the gateway\'s hinted delay, with fresh candidates', async () => {
    // No queue: a busy network answers "no capacity" at once, with the gateway's hint.
    net = await startNet({ maxQueuePerModel: 0 });
    const engine = new FakeEngine({ slots: 1, tokenDelayMs: 5, words: ['busy '] });
    const a = await net.addAgent(engine);
    // A long job takes the only slot.
    const hog = new AbortController();
    const long = client(net).chat({ ...ask, maxTokens: 4000, signal: hog.signal });
    await long.served;

    const clock = new ManualClock();
    const retries: { code: string; sent: number; delayMs: number }[] = [];
    // The hog asked for 4000 tokens, so the gateway hints a long wait (up to 30 s): allow it.
    const pending = client(net, { clock, retry: { maxDelayMs: 60_000 } }).complete({
      ...ask,
      onRetry: (r) => retries.push({ code: r.error.code, sent: r.sent, delayMs: r.delayMs }),
    });
    const waited = await clock.nextTimer();
    expect(retries).toEqual([{ code: 'NJ_NO_CAPACITY', sent: 1, delayMs: waited }]);
    expect(waited).toBeGreaterThanOrEqual(250);

    hog.abort();
    await expect(long.result).rejects.toMatchObject({ code: 'NJ_CANCELLED' });
    await a.receiptsSigned(1);
    expect(engine.busy).toBe(0);
    clock.fire();
    const result = await pending;
    expect(result).toMatchObject({ sends: 2, agentId: a.agentId });
  });

  it('re-fetches candidates when the agents it sealed for have gone', async () => {
    net = await startNet();
    const gone = await net.addAgent(new FakeEngine({ slots: 4 }));
    const clock = new ManualClock();
    let seals = 0;
    let other: Awaited<ReturnType<TestNet['addAgent']>> | undefined;
    // Between fetching candidates and posting the job, the only candidate leaves and another comes.
    const seal: typeof sealRequest = async (o) => {
      if (seals++ === 0) {
        other = await net!.addAgent(new FakeEngine({ slots: 1, words: ['New', ' agent'] }));
        await gone.agent.dispose();
        await agentGone(net!.gateway, gone.agentId);
      }
      return sealRequest(o);
    };
    const pending = client(net, { clock, seal }).complete(ask);
    expect(await clock.nextTimer()).toBeGreaterThanOrEqual(250);
    clock.fire();
    const result = await pending;
    expect(seals).toBe(2);
    expect(result).toMatchObject({ text: 'New agent', agentId: other!.agentId, sends: 2 });
  });

  // The gateway restarted a moment ago and its agents are still reconnecting: a request for their
  // model is answered NJ_MODEL_UNKNOWN until one is back. Fails if the SDK does not retry it.
  it('retries a model the gateway does not know yet, and is served once its agent arrives', async () => {
    net = await startNet();
    const retries: string[] = [];
    let arrived: ReturnType<TestNet['addAgent']> | null = null;
    const result = await client(net).complete({
      ...ask,
      onRetry: (r) => {
        retries.push(r.error.code);
        // The agent comes only after the first refusal, so the request surely met an unknown model.
        arrived ??= net!.addAgent(new FakeEngine({ words: ['Back', ' again'] }));
      },
    });
    const agent = await arrived!;
    expect(retries[0]).toBe('NJ_MODEL_UNKNOWN');
    // Once the agent is connected but before its first heartbeat, the gateway says "no capacity".
    expect(retries.every((code) => code === 'NJ_MODEL_UNKNOWN' || code === 'NJ_NO_CAPACITY')).toBe(true);
    expect(result).toMatchObject({ text: 'Back again', agentId: agent.agentId, sends: retries.length + 1 });
  });

  // Fails if NJ_MODEL_UNKNOWN is retried without the time bound (the request would never end),
  // or by maxAttempts alone (it would give up after 2 retries, within a second).
  it('while the gateway expects its agents back, retries a model nobody serves until modelUnknownMs has passed', async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine());
    const clock = new ManualClock();
    const waits: number[] = [];
    const pending = client(net, { clock })
      .complete({ ...ask, model: 'nobody-serves-this', onRetry: (r) => waits.push(r.delayMs) })
      .catch((e: unknown) => e);
    // The gateway's hint, 500 ms, eleven times: the twelfth wait would end past the 6 s.
    for (let i = 0; i < 11; i++) {
      const ms = await clock.nextTimer();
      clock.advance(ms);
      clock.fire();
    }
    expect(await pending).toMatchObject({
      code: 'NJ_MODEL_UNKNOWN',
      message: 'no connected agent serves nobody-serves-this yet; the gateway has just started',
    });
    expect(waits).toEqual(Array.from({ length: 11 }, () => 500));
    expect(clock.timers).toEqual([]);
  });

  // Fails if the SDK retries an unhinted NJ_MODEL_UNKNOWN, or the gateway hints past agentReturnMs:
  // a misspelt model would take modelUnknownMs (6 s) to fail.
  it('fails at once on a model nobody serves once the gateway is past its agents’ return', async () => {
    net = await startNet({ agentReturnMs: 0 });
    await net.addAgent(new FakeEngine());
    const retries: string[] = [];
    const error = await client(net)
      .complete({ ...ask, model: 'nobody-serves-this', onRetry: (r) => retries.push(r.error.code) })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NJ_MODEL_UNKNOWN', message: 'no connected agent serves nobody-serves-this' });
    expect(retries).toEqual([]);
  });

  it('does not wait longer than maxDelayMs, and retry: false never resends', async () => {
    net = await startNet({ maxQueuePerModel: 0 });
    const engine = new FakeEngine({ slots: 1, tokenDelayMs: 5 });
    await net.addAgent(engine);
    const hog = new AbortController();
    const long = client(net).chat({ ...ask, maxTokens: 4000, signal: hog.signal });
    await long.served;
    const clock = new ManualClock();
    // The gateway never hints less than 250 ms.
    const impatient = client(net, { clock, retry: { maxDelayMs: 100 } }).complete(ask);
    const refused = await impatient.then(
      () => null,
      (e: unknown) => e as NightjarError,
    );
    expect(refused).toMatchObject({ code: 'NJ_NO_CAPACITY' });
    expect(refused!.retryAfterMs).toBeGreaterThan(100);
    await expect(client(net, { clock, retry: false }).complete(ask)).rejects.toMatchObject({ code: 'NJ_NO_CAPACITY' });
    expect(clock.timers).toEqual([]);
    hog.abort();
    await long.result.catch(() => undefined);
  });
});

describe('cancellation', () => {
  it('aborting the signal stops generation at the agent', async () => {
    net = await startNet();
    const engine = new FakeEngine({ tokenDelayMs: 2, words: ['tick '] });
    const a = await net.addAgent(engine);
    const controller = new AbortController();
    const stream = client(net).chat({ ...ask, maxTokens: 4000, signal: controller.signal });
    let n = 0;
    const error = await (async () => {
      for await (const _ of stream) if (++n === 3) controller.abort();
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NightjarError);
    expect(error).toMatchObject({ code: 'NJ_CANCELLED' });
    expect(error).not.toBeInstanceOf(IncompleteReplyError);
    // The agent ends the job as cancelled, far short of maxTokens, and the engine is idle.
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(a.receipts[0]!.receipt.completionTokens).toBeLessThan(4000);
    expect(engine.busy).toBe(0);
    const stopped = engine.generated;
    expect(a.receipts[0]!.receipt.completionTokens).toBe(stopped);
  });

  it('breaking out of the stream cancels the job too', async () => {
    net = await startNet();
    const engine = new FakeEngine({ tokenDelayMs: 2, words: ['tock '] });
    const a = await net.addAgent(engine);
    const stream = client(net).chat({ ...ask, maxTokens: 4000 });
    for await (const _ of stream) break;
    await expect(stream.result).rejects.toMatchObject({ code: 'NJ_CANCELLED' });
    await a.receiptsSigned(1);
    expect(a.receipts[0]!.receipt.finishReason).toBe('cancelled');
    expect(engine.busy).toBe(0);
  });
});

describe('pinning', () => {
  it('pins agents on first use and keeps using them', async () => {
    net = await startNet();
    const a = await net.addAgent(new FakeEngine());
    const pins = new MemoryPinStore();
    await client(net, { trust: { allowSynthetic: true, pins } }).complete(ask);
    expect(Object.keys(pins.entries())).toEqual([a.agentId]);
    const result = await client(net, { trust: { allowSynthetic: true, pins, onlyPinned: true } }).complete(ask);
    expect(result.agentId).toBe(a.agentId);
  });

  // Security: fails if the pin comparison in verifyBundle (or the SDK passing the pin to it) is removed.
  it('a pinned agent presenting another identity key is a hard error', async () => {
    net = await startNet();
    const a = await net.addAgent(new FakeEngine());
    const other = await generateIdentity();
    const pins = new MemoryPinStore();
    pins.set(a.agentId, other.publicKey);
    const error = await client(net, { trust: { allowSynthetic: true, pins } })
      .complete(ask)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'NJ_PINNED_KEY_CHANGED',
      message: `agent ${a.agentId} presented an identity key other than the pinned one`,
    });
    expect(a.receipts).toEqual([]);
  });

  // Security: fails if the onlyPinned check in NightjarClient.candidates is removed — the gateway
  // could then steer the client to an agent it has never seen.
  it('only-pinned refuses agents never seen before', async () => {
    net = await startNet();
    const known = await net.addAgent(new FakeEngine({ slots: 1 }));
    const pins = new MemoryPinStore();
    await client(net, { trust: { allowSynthetic: true, pins } }).complete(ask);
    await known.agent.dispose();
    await agentGone(net!.gateway, known.agentId);
    const stranger = await net.addAgent(new FakeEngine());
    const error = await client(net, { trust: { allowSynthetic: true, pins, onlyPinned: true } })
      .complete(ask)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'NJ_TRUST_POLICY',
      message: expect.stringMatching(/is not pinned and only pinned agents are allowed/),
    });
    expect(stranger.receipts).toEqual([]);
  });
});
