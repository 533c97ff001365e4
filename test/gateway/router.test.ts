/**
 * The router on real sockets with fake engines: failover before the first chunk (fresh attempt,
 * failed agent excluded and ranked lower), no failover after it (a clear error), a bounded queue
 * that answers NJ_NO_CAPACITY with a retry hint, queued jobs that run when a slot frees or leave
 * when their client does, and a client disconnect that reaches the agent as cancel and is billed
 * for what was delivered only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  NightjarError,
  PROTOCOL_VERSION,
  ReplySealer,
  deriveReplyKeys,
  generateIdentity,
  openRequest,
  randomBytes,
  sealRequest,
  signReceipt,
  toBase64Url,
  type IdentityKeyPair,
  type ReplyFinal,
} from '../../src/shared/index.js';
import type { Agent, GenerateRequest, GenerateResult } from '../../src/main/agent/index.js';
import type { Gateway, GatewayOptions } from '../../src/gateway/index.js';
import { FakeEngine, type FakeEngineOptions } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, agentServing, startTestGateway } from '../helpers/network.js';
import { REAL_MODEL, billed, clientOf, startAgent, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';
import { onceTrue } from '../helpers/events.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
const agents: Agent[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.dispose()));
  await gateway?.dispose();
  gateway = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A billed network of the test's own with one scripted agent serving REAL_MODEL; cleaned up after the test. */
async function billedWithRawAgent(options: GatewayOptions = {}): Promise<{ net: BilledNetwork; raw: RawAgent }> {
  const tmp = await tempDir();
  cleanups.push(() => tmp.remove());
  const net = await startBilledNetwork(tmp.dir, options);
  cleanups.push(() => net.close());
  const raw = await RawAgent.connect({ url: net.gateway.agentUrl, model: REAL_MODEL, enrollToken: await net.enrollToken() });
  cleanups.push(() => raw.close());
  await agentServing(net.gateway, raw.agentId, 2000);
  return { net, raw };
}

/** A FakeEngine that counts the jobs it was given. */
class CountingEngine extends FakeEngine {
  calls = 0;
  aborted = 0;
  constructor(options: FakeEngineOptions = {}) {
    super(options);
  }
  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    this.calls++;
    request.signal?.addEventListener('abort', () => this.aborted++);
    return super.generate(request);
  }
}

/** Two identities, in the order the router breaks ties (by agent id). */
async function orderedIdentities(): Promise<[IdentityKeyPair, IdentityKeyPair]> {
  const a = await generateIdentity();
  const b = await generateIdentity();
  return a.agentId < b.agentId ? [a, b] : [b, a];
}

async function errorOf(p: Promise<unknown>): Promise<NightjarError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NightjarError);
  return err as NightjarError;
}

const ask = (maxTokens = 16) => ({ model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens });

describe('failover', () => {
  it('retries the next candidate before the first chunk, with a fresh attempt, and ranks the failed agent lower', async () => {
    gateway = await startTestGateway();
    const [first, second] = await orderedIdentities();
    const failing = new CountingEngine({ failAfter: 0 });
    const healthy = new CountingEngine();
    agents.push(await startAgent(gateway, { engine: failing, model: FAKE_MODEL, identity: first }));
    agents.push(await startAgent(gateway, { engine: healthy, model: FAKE_MODEL, identity: second }));
    const before = await (await http.fetch(`${gateway.url}/v1/candidates?model=${FAKE_MODEL.id}&k=2`)).json();
    expect(before.candidates.map((c: { bundle: { bundle: { agentId: string } } }) => c.bundle.bundle.agentId)).toEqual([
      first.agentId,
      second.agentId,
    ]);

    const result = await clientOf(gateway, http.fetch, undefined, { candidates: 2 }).complete(ask());
    expect(result.text).toBe('Hello from a fake engine.');
    expect({ agentId: result.agentId, attempt: result.receipt.attempt }).toEqual({ agentId: second.agentId, attempt: 1 });
    expect([failing.calls, healthy.calls]).toEqual([1, 1]);
    expect(gateway.directory.get(first.agentId)!.health.jobsFailed).toBe(1);
    const attested = await http.fetch(`${gateway.url}/v1/candidates?model=${FAKE_MODEL.id}&minTrust=attested`);
    expect({ status: attested.status, code: (await attested.json()).error.code }).toEqual({ status: 503, code: 'NJ_TRUST_POLICY' });
    const after = await (await http.fetch(`${gateway.url}/v1/candidates?model=${FAKE_MODEL.id}&k=2`)).json();
    expect(after.candidates.map((c: { bundle: { bundle: { agentId: string } } }) => c.bundle.bundle.agentId)).toEqual([
      second.agentId,
      first.agentId,
    ]);
  });

  it('never tries a failed agent twice for one job: when every candidate fails, the client gets the last error', async () => {
    gateway = await startTestGateway();
    const engines = [new CountingEngine({ failAfter: 0 }), new CountingEngine({ failAfter: 0 })];
    for (const engine of engines) agents.push(await startAgent(gateway, { engine, model: FAKE_MODEL }));
    const err = await errorOf(clientOf(gateway, http.fetch, undefined, { candidates: 2 }).complete(ask()));
    expect({ code: err.code, message: err.message }).toEqual({ code: 'NJ_ENGINE_FAILED', message: 'fake failure' });
    expect(engines.map((e) => e.calls)).toEqual([1, 1]);
  });

  it('does not fail over after the first chunk: the client gets a clear error and keeps what it read', async () => {
    gateway = await startTestGateway();
    const [first, second] = await orderedIdentities();
    const midway = new CountingEngine({ failAfter: 2, tokenDelayMs: 5, words: ['one', ' two', ' three', ' four'] });
    const spare = new CountingEngine();
    agents.push(await startAgent(gateway, { engine: midway, model: FAKE_MODEL, identity: first }));
    agents.push(await startAgent(gateway, { engine: spare, model: FAKE_MODEL, identity: second }));
    const stream = clientOf(gateway, http.fetch, undefined, { candidates: 2 }).chat(ask());
    const deltas: string[] = [];
    const err = await errorOf(
      (async () => {
        for await (const d of stream) deltas.push(d);
      })(),
    );
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_AGENT_FAILED',
      // The SDK reports a failure after text arrived as an incomplete reply, naming how much came.
      message: expect.stringMatching(
        /^the reply broke off after \d+ characters: the agent failed mid-reply \(NJ_ENGINE_FAILED\); retry the request$/,
      ),
    });
    expect(deltas).toEqual(['one', ' two']);
    expect(spare.calls).toBe(0);
  });
});

describe('the queue', () => {
  const holdsWhileBusy =
    'holds jobs while every agent is busy, answers NJ_NO_CAPACITY with a retry hint when full, ' +
    'and runs the waiting job when a slot frees';
  it(holdsWhileBusy, async () => {
    gateway = await startTestGateway({ maxQueuePerModel: 1 });
    const engine = new CountingEngine({ slots: 1, tokenDelayMs: 15, words: Array.from({ length: 12 }, (_, i) => `w${i} `) });
    agents.push(await startAgent(gateway, { engine, model: FAKE_MODEL }));
    const gw = gateway;
    const first = clientOf(gw, http.fetch).chat(ask(12));
    await first.jobId; // its reply started: the agent's one slot is taken
    expect(engine.busy).toBe(1);
    // This client's POST is held back until the second job has taken the queue's one place.
    const heldBack: typeof fetch = async (input, init) => {
      if (String(input).endsWith('/v1/jobs')) {
        await onceTrue(gw.router.onDepthChanged, () => gw.router.depth(FAKE_MODEL.id) === 1, 'the second job to queue');
      }
      return http.fetch(input, init);
    };
    const third = clientOf(gw, heldBack).complete(ask(12));
    const second = clientOf(gw, http.fetch).complete(ask(12));
    const full = await errorOf(third);
    expect(full.code).toBe('NJ_NO_CAPACITY');
    expect(full.message).toBe(`every agent for ${FAKE_MODEL.id} is busy and its queue is full`);
    expect(full.retryAfterMs).toBeGreaterThanOrEqual(250);
    // The candidates endpoint says the same while the queue is full, as an HTTP 503 with Retry-After.
    const res = await http.fetch(`${gw.url}/v1/candidates?model=${FAKE_MODEL.id}`);
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await res.json()).error.code).toBe('NJ_NO_CAPACITY');

    expect((await first.result).text).toBe(Array.from({ length: 12 }, (_, i) => `w${i} `).join(''));
    expect((await second).text.length).toBeGreaterThan(0);
    expect(engine.calls).toBe(2);
    expect(gw.router.depth()).toBe(0);
  });

  it('drops a queued job whose client goes away, without it ever reaching the agent', async () => {
    gateway = await startTestGateway();
    const engine = new CountingEngine({ slots: 1, tokenDelayMs: 15, words: Array.from({ length: 10 }, (_, i) => `w${i} `) });
    agents.push(await startAgent(gateway, { engine, model: FAKE_MODEL }));
    const gw = gateway;
    const first = clientOf(gw, http.fetch).chat(ask(10));
    await first.jobId; // its reply started: the agent's one slot is taken
    expect(engine.busy).toBe(1);
    const abort = new AbortController();
    // The SDK names a job once its reply starts; this one never starts, so take its id at sealing.
    let jobId = '';
    const seal: typeof sealRequest = async (o) => {
      const sealed = await sealRequest(o);
      jobId = sealed.jobId;
      return sealed;
    };
    const queued = clientOf(gw, http.fetch, undefined, { seal }).chat({ ...ask(10), signal: abort.signal });
    await onceTrue(gw.router.onDepthChanged, () => gw.router.depth() === 1, 'the second job to queue', 2000);
    const isBilled = billed(gw);
    abort.abort();
    expect((await errorOf(queued.result)).code).toBe('NJ_CANCELLED');
    await onceTrue(gw.router.onDepthChanged, () => gw.router.depth() === 0, 'the queue to empty', 2000);
    await isBilled(jobId);
    expect((await gw.store.ledger.job(jobId))?.status).toBe('released');
    await first.result;
    expect(engine.calls).toBe(1);
  });
});

describe('cancel', () => {
  it('carries a client disconnect to the agent, which stops generating', async () => {
    gateway = await startTestGateway();
    const engine = new CountingEngine({ tokenDelayMs: 10, words: Array.from({ length: 200 }, (_, i) => `w${i} `) });
    agents.push(await startAgent(gateway, { engine, model: FAKE_MODEL }));
    const gw = gateway;
    const isBilled = billed(gw);
    const abort = new AbortController();
    const stream = clientOf(gw, http.fetch).chat({ ...ask(200), signal: abort.signal });
    let n = 0;
    await errorOf(
      (async () => {
        for await (const _ of stream) if (++n === 3) abort.abort();
      })(),
    );
    const jobId = await stream.jobId;
    // The agent stops, then signs for what it generated: once that is billed, it has stopped.
    await isBilled(jobId);
    expect({ aborted: engine.aborted, busy: engine.busy }).toEqual({ aborted: 1, busy: 0 });
    const stoppedAt = engine.generated;
    expect(stoppedAt).toBeLessThan(200);
    const job = (await gw.store.ledger.job(jobId))!;
    expect({ status: job.status, outcome: job.outcome, finish: job.finishReason }).toEqual({
      status: 'settled',
      outcome: 'cancelled',
      finish: 'cancelled',
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.generated).toBe(stoppedAt);
  });

  it('releases the hold of a cancelled job whose agent sends no receipt within cancelReceiptMs', async () => {
    const { net, raw } = await billedWithRawAgent({ jobTimeouts: { cancelReceiptMs: 200 } });
    const isBilled = billed(net.gateway);
    const abort = new AbortController();
    const stream = clientOf(net.gateway, http.fetch, net.key.key).chat({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      maxTokens: 8,
      signal: abort.signal,
    });
    const job = await raw.next('job');
    abort.abort();
    await errorOf(stream.result);
    await raw.next('cancel');
    await isBilled(job.jobId);
    expect(await net.store.ledger.job(job.jobId)).toMatchObject({ status: 'released', outcome: 'cancelled' });
    expect(await net.store.ledger.clientBalance(net.key.id)).toEqual({ balance: 10_000_000n, held: 0n });
    // The agent's slot counts as free again.
    expect(net.gateway.directory.get(raw.agentId)?.inFlight).toBe(0);
  });

  // Fails if a cancelled job were billed on the receipt's own count (drop the min() with
  // `delivered` in ClientJob's #receipt): the client would pay for the 5 tokens generated after it left.
  it('bills a cancelled job for the prompt and the chunks the client received, not for tokens generated after', async () => {
    const { net, raw } = await billedWithRawAgent();
    const isBilled = billed(net.gateway);
    const abort = new AbortController();
    const stream = clientOf(net.gateway, http.fetch, net.key.key).chat({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      maxTokens: 64,
      signal: abort.signal,
    });
    const job = await raw.next('job');
    // The agent streams three words; the client reads them and leaves.
    const opened = await openRequest(job.envelope, { agentId: raw.agentId, boxKeys: [raw.boxKey], now: Date.now() });
    const salt = randomBytes(16);
    const sealer = new ReplySealer(deriveReplyKeys(opened.contentKey, salt, raw.agentId));
    const chunk = (text: string, final?: ReplyFinal): void => {
      const { seq, data } = sealer.seal(text, final);
      raw.send({ v: PROTOCOL_VERSION, type: 'chunk', jobId: job.jobId, attempt: job.attempt, seq, data: toBase64Url(data) });
    };
    raw.send({ v: PROTOCOL_VERSION, type: 'accepted', jobId: job.jobId, attempt: job.attempt, replySalt: toBase64Url(salt) });
    for (const w of ['a', 'b', 'c']) chunk(w);
    let read = 0;
    await errorOf(
      (async () => {
        for await (const _ of stream) if (++read === 3) abort.abort();
      })(),
    );
    const cancel = await raw.next('cancel');
    expect(cancel).toMatchObject({ jobId: job.jobId, attempt: job.attempt, reason: 'the client disconnected' });
    // It generates five more before it stops, and signs for all eight.
    for (const w of ['d', 'e', 'f', 'g', 'h']) chunk(w);
    chunk('', { finishReason: 'cancelled', usage: { promptTokens: 10, completionTokens: 8 } });
    const now = Date.now();
    const receipt = await signReceipt(
      {
        v: PROTOCOL_VERSION,
        jobId: job.jobId,
        attempt: job.attempt,
        agentId: raw.agentId,
        model: REAL_MODEL.id,
        modelSha256: REAL_MODEL.sha256,
        promptTokens: 10,
        completionTokens: 8,
        requestDigest: toBase64Url(opened.requestDigest),
        replyDigest: toBase64Url(sealer.digest()),
        startedAt: now,
        endedAt: now,
        finishReason: 'cancelled',
      },
      raw.identity,
    );
    raw.send({ v: PROTOCOL_VERSION, type: 'done', jobId: job.jobId, attempt: job.attempt, receipt });
    await isBilled(job.jobId);
    const rec = (await net.store.ledger.job(job.jobId))!;
    // 10 prompt tokens × 1 + 3 delivered completion tokens × 2 = 16 micro-credits.
    expect({
      status: rec.status,
      outcome: rec.outcome,
      prompt: rec.promptTokens,
      completion: rec.completionTokens,
      charged: rec.charged,
    }).toEqual({
      status: 'settled',
      outcome: 'cancelled',
      prompt: 10,
      completion: 3,
      charged: 16n,
    });
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  });
});
