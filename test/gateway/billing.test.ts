/**
 * The ledger in the job path, on a real SQLite file: a paid job holds its worst case, settles on
 * the verified receipt at the model's price with the operator's share, and releases the rest;
 * what cannot be billed is refused with its code; forged, altered, misdirected and duplicate
 * receipts credit nobody.
 */
import { describe, expect, it } from 'vitest';
import { NightjarError, PROTOCOL_VERSION, toBase64Url, randomBytes } from '../../src/shared/index.js';
import { ACCOUNTS } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { REAL_MODEL, billed, billedNetworkPerTest, clientOf, startAgent } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
const fx = billedNetworkPerTest();

async function errorOf(p: Promise<unknown>): Promise<NightjarError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NightjarError);
  return err as NightjarError;
}

const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 16 };

describe('billing a paid job', () => {
  it('holds the worst case, settles at the price, pays the operator 95 % and releases the rest', async () => {
    const engine = new FakeEngine();
    const agent = await startAgent(fx.net.gateway, { engine, enrollToken: await fx.net.enrollToken() });
    fx.agents.push(agent);
    expect(fx.net.gateway.directory.get(agent.agentId)?.operatorId).toBe(fx.net.operator.id);
    const isBilled = billed(fx.net.gateway);
    const stream = clientOf(fx.net.gateway, http.fetch, fx.net.key.key).chat(ask);
    // While it streams, the worst case is held: every byte of the padded body as a prompt
    // token (1 credit per million) plus 16 completion tokens (2 per million).
    const jobId = await stream.jobId;
    const result = await stream.result;
    await isBilled(jobId);
    expect(result.receipt.promptTokens).toBe(6);
    expect(result.receipt.completionTokens).toBe(6);
    const job = (await fx.net.store.ledger.job(jobId))!;
    expect(job.holdAmount).toBe(BigInt(job.bodyLength) + 32n);
    // 6 × 1 + 6 × 2 = 18 micro-credits; 95 % = 17.1 → 17 to the operator, 1 to the platform.
    expect({
      status: job.status,
      charged: job.charged,
      operator: job.operatorAmount,
      platform: job.platformAmount,
      agentId: job.agentId,
      operatorId: job.operatorId,
      outcome: job.outcome,
    }).toEqual({
      status: 'settled',
      charged: 18n,
      operator: 17n,
      platform: 1n,
      agentId: agent.agentId,
      operatorId: fx.net.operator.id,
      outcome: 'done',
    });
    expect(JSON.parse(job.receipt!)).toEqual(
      JSON.parse(JSON.stringify({ receipt: result.receipt, signature: JSON.parse(job.receipt!).signature })),
    );
    expect(await fx.net.store.ledger.clientBalance(fx.net.key.id)).toEqual({ balance: 10_000_000n - 18n, held: 0n });
    expect(await fx.net.store.ledger.balance(ACCOUNTS.operator(fx.net.operator.id))).toBe(17n);
    expect(await fx.net.store.ledger.checkInvariants()).toEqual([]);
    const account = await (
      await http.fetch(`${fx.net.gateway.url}/v1/account`, { headers: { authorization: `Bearer ${fx.net.key.key}` } })
    ).json();
    expect(account).toEqual({ v: 1, keyId: fx.net.key.id, name: 'client', balance: '9999982', held: '0' });
  });

  // Fails if a failed job kept its hold, or settled on anything but a verified receipt.
  it('an agent failing after the first chunk charges nothing: the hold is released and nobody is paid', async () => {
    const engine = new FakeEngine({ failAfter: 2, tokenDelayMs: 5, words: ['one', ' two', ' three', ' four'] });
    fx.agents.push(await startAgent(fx.net.gateway, { engine, enrollToken: await fx.net.enrollToken() }));
    const isBilled = billed(fx.net.gateway);
    const stream = clientOf(fx.net.gateway, http.fetch, fx.net.key.key).chat(ask);
    const jobId = await stream.jobId;
    const err = await errorOf(stream.result);
    expect(err.code).toBe('NJ_AGENT_FAILED');
    await isBilled(jobId);
    const job = (await fx.net.store.ledger.job(jobId))!;
    expect({ status: job.status, charged: job.charged, operator: job.operatorAmount }).toEqual({
      status: 'released',
      charged: null,
      operator: null,
    });
    expect(await fx.net.store.ledger.clientBalance(fx.net.key.id)).toEqual({ balance: 10_000_000n, held: 0n });
    expect(await fx.net.store.ledger.balance(ACCOUNTS.operator(fx.net.operator.id))).toBe(0n);
    expect(await fx.net.store.ledger.checkInvariants()).toEqual([]);
  });

  it('refuses with its code what it cannot bill: no key, an unknown key, an unpriced model, a short balance', async () => {
    fx.agents.push(await startAgent(fx.net.gateway, { engine: new FakeEngine(), enrollToken: await fx.net.enrollToken() }));
    expect((await errorOf(clientOf(fx.net.gateway, http.fetch).complete(ask))).code).toBe('NJ_UNAUTHORIZED');
    const bogus = `njk_${'0'.repeat(12)}_${'A'.repeat(43)}`;
    expect((await errorOf(clientOf(fx.net.gateway, http.fetch, bogus).complete(ask))).code).toBe('NJ_UNAUTHORIZED');

    const res = await http.fetch(`${fx.net.gateway.url}/v1/models`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: { code: 'NJ_UNAUTHORIZED', message: 'send an API key as Authorization: Bearer njk_…' } });

    const poor = await fx.net.store.accounts.createApiKey({ name: 'poor', now: Date.now() });
    const short = await errorOf(clientOf(fx.net.gateway, http.fetch, poor.key).complete(ask));
    expect(short.code).toBe('NJ_INSUFFICIENT_FUNDS');
    expect(short.message).toMatch(/^this request may cost up to \d+ micro-credits, more than the key's balance$/);

    await fx.net.store.accounts.removePrice(REAL_MODEL.id);
    const unpriced = await errorOf(clientOf(fx.net.gateway, http.fetch, fx.net.key.key).complete(ask));
    expect({ code: unpriced.code, message: unpriced.message }).toEqual({
      code: 'NJ_MODEL_UNPRICED',
      message: `the gateway has no price for ${REAL_MODEL.id}`,
    });
    const models = await (
      await http.fetch(`${fx.net.gateway.url}/v1/models`, { headers: { authorization: `Bearer ${fx.net.key.key}` } })
    ).json();
    expect(models.models).toEqual([]);
    expect(await fx.net.store.ledger.checkInvariants()).toEqual([]);
  });

  it('routes paid jobs only to agents bound to an operator; an unbound agent serves free models', async () => {
    fx.agents.push(await startAgent(fx.net.gateway, { engine: new FakeEngine() }));
    const err = await errorOf(clientOf(fx.net.gateway, http.fetch, fx.net.key.key).complete(ask));
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_NO_CAPACITY',
      message: `no agent serving ${REAL_MODEL.id} at trust signed can take jobs now`,
    });
    const free = { id: 'synthetic-free', sha256: 'ef'.repeat(32), synthetic: true, contextLength: 4096 };
    fx.agents.push(await startAgent(fx.net.gateway, { engine: new FakeEngine(), model: free }));
    const isBilled = billed(fx.net.gateway);
    const result = await clientOf(fx.net.gateway, http.fetch, fx.net.key.key).complete({ ...ask, model: free.id });
    expect(result.text).toBe('Hello from a fake engine.');
    await isBilled(result.jobId);
    const job = await fx.net.store.ledger.job(result.jobId);
    expect(job && { status: job.status, charged: job.charged, hold: job.holdAmount, operatorId: job.operatorId }).toEqual({
      status: 'settled',
      charged: 0n,
      hold: 0n,
      operatorId: null,
    });
  });
});

describe('receipts that must credit nobody', () => {
  async function rawEnrolled(): Promise<RawAgent> {
    const raw = await RawAgent.connect({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, enrollToken: await fx.net.enrollToken() });
    fx.raws.push(raw);
    await agentServing(fx.net.gateway, raw.agentId, 2000);
    return raw;
  }

  async function expectNobodyCredited(jobId: string): Promise<void> {
    const job = (await fx.net.store.ledger.job(jobId))!;
    expect({ status: job.status, charged: job.charged }).toEqual({ status: 'released', charged: null });
    expect(await fx.net.store.ledger.balance(ACCOUNTS.operator(fx.net.operator.id))).toBe(0n);
    expect(await fx.net.store.ledger.balance(ACCOUNTS.platform)).toBe(0n);
    expect(await fx.net.store.ledger.clientBalance(fx.net.key.id)).toEqual({ balance: 10_000_000n, held: 0n });
    expect(await fx.net.store.ledger.checkInvariants()).toEqual([]);
  }

  // Fails if the gateway settled without verifying the receipt's signature (drop the
  // verifyReceipt call in ClientJob's #receipt): the inflated count would pay the operator.
  it('an altered receipt (tokens inflated after signing) credits nobody and the client is told', async () => {
    const raw = await rawEnrolled();
    const isBilled = billed(fx.net.gateway);
    const stream = clientOf(fx.net.gateway, http.fetch, fx.net.key.key).chat(ask);
    const served = await raw.serve(await raw.next('job'), ['Hello', ' there']);
    served.finish({ ...served.signed, receipt: { ...served.receipt, completionTokens: 16 } });
    const err = await errorOf(stream.result);
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_RECEIPT_INVALID',
      // The SDK reports a failure after text arrived as an incomplete reply, naming how much came.
      message: expect.stringMatching(/^the reply broke off after \d+ characters: receipt signature does not verify$/),
    });
    await isBilled(await stream.jobId);
    await expectNobodyCredited(await stream.jobId);
  });

  // Fails if the gateway stopped checking the receipt's reply digest against the bytes it
  // relayed (drop `replyDigest` from the expectations in #receipt): the agent could sign for a
  // longer reply than it sent.
  it('a properly signed receipt for other reply bytes than were relayed credits nobody', async () => {
    const raw = await rawEnrolled();
    const isBilled = billed(fx.net.gateway);
    const stream = clientOf(fx.net.gateway, http.fetch, fx.net.key.key).chat(ask);
    const served = await raw.serve(await raw.next('job'), ['Hello']);
    const forged = await raw.sign({ ...served.receipt, completionTokens: 16, replyDigest: toBase64Url(randomBytes(32)) });
    served.finish(forged);
    const err = await errorOf(stream.result);
    expect({ code: err.code, message: err.message }).toEqual({
      code: 'NJ_RECEIPT_INVALID',
      // The SDK reports a failure after text arrived as an incomplete reply, naming how much came.
      message: expect.stringMatching(/^the reply broke off after \d+ characters: receipt replyDigest does not match the job$/),
    });
    await isBilled(await stream.jobId);
    await expectNobodyCredited(await stream.jobId);
  });

  // Fails if done frames were matched to jobs by jobId alone, across agents, and the receipt
  // then checked against its sender's key (instead of AgentSession's per-agent listeners and the
  // key of the agent the attempt was dispatched to): agent B would be paid for A's job.
  it('a receipt for a job the agent never got credits nobody; duplicate receipts credit once', async () => {
    const a = await rawEnrolled();
    const other = await fx.net.store.accounts.createOperator({ name: 'Mallory', now: Date.now() });
    const token = await fx.net.store.accounts.createEnrollmentToken({ operatorId: other.id, now: Date.now(), ttlMs: 3600_000 });
    const isBilled = billed(fx.net.gateway);
    const stream = clientOf(fx.net.gateway, http.fetch, fx.net.key.key, { candidates: 1 }).chat(ask);
    const job = await a.next('job');
    // B connects after the job went to A, and claims it with a receipt it signs itself.
    const b = await RawAgent.connect({ url: fx.net.gateway.agentUrl, model: REAL_MODEL, enrollToken: token.token });
    fx.raws.push(b);
    const claim = await b.sign({
      v: PROTOCOL_VERSION,
      jobId: job.jobId,
      attempt: job.attempt,
      agentId: b.agentId,
      model: REAL_MODEL.id,
      modelSha256: REAL_MODEL.sha256,
      promptTokens: 1000,
      completionTokens: 16,
      requestDigest: toBase64Url(randomBytes(32)),
      replyDigest: toBase64Url(randomBytes(32)),
      startedAt: Date.now(),
      endedAt: Date.now(),
      finishReason: 'stop',
    });
    b.send({ v: PROTOCOL_VERSION, type: 'done', jobId: job.jobId, attempt: job.attempt, receipt: claim });
    // And a receipt for a job nobody ever sent.
    const ghost = toBase64Url(randomBytes(16));
    b.send({
      v: PROTOCOL_VERSION,
      type: 'done',
      jobId: ghost,
      attempt: 0,
      receipt: { ...claim, receipt: { ...claim.receipt, jobId: ghost } },
    });
    const served = await a.serve(job, ['Hi']);
    served.finish();
    served.finish(); // the same receipt twice
    const result = await stream.result;
    expect(result.agentId).toBe(a.agentId);
    await isBilled(await stream.jobId);
    // A's honest receipt: 12 × 1 + 1 × 2 = 14 micro-credits, 13 to A's operator, once.
    expect(await fx.net.store.ledger.balance(ACCOUNTS.operator(fx.net.operator.id))).toBe(13n);
    expect(await fx.net.store.ledger.balance(ACCOUNTS.operator(other.id))).toBe(0n);
    expect(await fx.net.store.ledger.job(ghost)).toBeNull();
    expect(await fx.net.store.ledger.clientBalance(fx.net.key.id)).toEqual({ balance: 10_000_000n - 14n, held: 0n });
    expect(await fx.net.store.ledger.checkInvariants()).toEqual([]);
  });
});
