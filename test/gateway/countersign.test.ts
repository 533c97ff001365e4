/**
 * The client's countersignature in the job path, on a real SQLite file with a scripted agent
 * (RawAgent) and the real SDK: a receipt that claims more completion tokens than the client
 * counts is disputed (the client charged its own count, the operator not paid the inflated part);
 * an honest job's earnings stay pending for the window and then become payable (fake clock); a
 * forged, altered, replayed or misdirected countersignature moves nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, countersign, countersignKeyOf, type CountersignStatement } from '../../src/shared/index.js';
import { NightjarClient } from '../../src/client/index.js';
import { ACCOUNTS, GATEWAY_DEFAULTS, resolveGatewayOptions } from '../../src/gateway/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { REAL_MODEL, billed, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
const DAY = 86_400_000;
const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 16 };

let tmp: Awaited<ReturnType<typeof tempDir>>;
let net: BilledNetwork;
let clock: FakeClock;
const raws: RawAgent[] = [];

beforeEach(async () => {
  tmp = await tempDir();
  clock = new FakeClock();
  net = await startBilledNetwork(tmp.dir, { clock });
});
afterEach(async () => {
  await Promise.all(raws.splice(0).map((r) => r.close()));
  await net.close();
  await tmp.remove();
});

async function rawEnrolled(): Promise<RawAgent> {
  const raw = await RawAgent.connect({ url: net.gateway.agentUrl, model: REAL_MODEL, enrollToken: await net.enrollToken() });
  raws.push(raw);
  await agentServing(net.gateway, raw.agentId, 2000);
  return raw;
}

async function post(jobId: string, body: unknown, apiKey = net.key.key): Promise<{ status: number; body: unknown }> {
  const res = await http.fetch(`${net.gateway.url}/v1/jobs/${jobId}/countersign`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const errorOf = (r: { status: number; body: unknown }): { status: number; code: unknown } => ({
  status: r.status,
  code: (r.body as { error?: { code?: unknown } }).error?.code,
});

/** The real SDK with the test's key, countersigning or not. */
function clientWith(countersignOn: boolean): NightjarClient {
  return new NightjarClient({
    gatewayUrl: net.gateway.url,
    trust: { allowSynthetic: true },
    fetch: http.fetch,
    apiKey: net.key.key,
    countersign: countersignOn,
  });
}

/** Runs one job on a raw agent that claims `claimed` completion tokens for 'Hello there' (11 bytes), countersigned by the SDK. */
async function inflatedJob(claimed: number, countersignOn = true): Promise<{ jobId: string; replyDigest: string }> {
  // One agent per test: with two serving, the router could give the job to the one not listening.
  const raw = raws[0] ?? (await rawEnrolled());
  const isBilled = billed(net.gateway);
  const client = clientWith(countersignOn);
  const stream = client.chat(ask);
  const served = await raw.serve(await raw.next('job'), ['Hello', ' there'], { promptTokens: 12, completionTokens: claimed });
  served.finish();
  const result = await stream.result;
  expect(result.receipt.completionTokens).toBe(claimed);
  await isBilled(result.jobId);
  await client.countersigned();
  return { jobId: result.jobId, replyDigest: served.receipt.replyDigest };
}

describe('a receipt that claims more than the client counts', () => {
  // Fails without the dispute (LedgerStore.countersign not calling #dispute): the job stays
  // charged at the agent's 16 tokens and the operator keeps 41.
  it('is disputed: the client is charged its own count and the operator is not paid the inflated part', async () => {
    // 'Hello there' is 11 bytes, no stop sequences: the client counts at most 11 + 1 = 12 tokens.
    const { jobId } = await inflatedJob(16);
    const job = (await net.store.ledger.job(jobId))!;
    // Claimed: 12 × 1 + 16 × 2 = 44 (41 operator, 3 platform). Counted: 12 + 12 × 2 = 36 (34, 2).
    expect({
      charged: job.charged,
      operator: job.operatorAmount,
      platform: job.platformAmount,
      completion: job.completionTokens,
      disputed: job.disputedAt !== null,
      dispute: job.dispute,
    }).toEqual({
      charged: 36n,
      operator: 34n,
      platform: 2n,
      completion: 12,
      disputed: true,
      dispute: {
        claimedCompletionTokens: 16,
        countedCompletionTokens: 12,
        digestDiffers: false,
        broken: false,
        chargedBefore: '44',
        refunded: '8',
      },
    });
    expect(await net.store.ledger.clientBalance(net.key.id)).toEqual({ balance: 10_000_000n - 36n, held: 0n });
    // A disputed job's share is not payable, not even after the window.
    clock.advance(DAY + 1);
    expect(await net.store.ledger.operatorBalance(net.operator.id, clock.now())).toEqual({ balance: 34n, pending: 34n, payable: 0n });
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  });

  // Fails without the check at settlement (settle not calling #dispute): a countersignature that
  // arrives before the receipt would be stored and never applied.
  it('is disputed as it settles when the countersignature arrived first', async () => {
    const raw = await rawEnrolled();
    const isBilled = billed(net.gateway);
    const client = clientWith(false);
    const stream = client.chat(ask);
    const served = await raw.serve(await raw.next('job'), ['Hello', ' there'], { promptTokens: 12, completionTokens: 16 });
    const jobId = served.receipt.jobId;
    const statement: CountersignStatement = {
      v: PROTOCOL_VERSION,
      jobId,
      replyDigest: served.receipt.replyDigest,
      completionTokens: 12,
      chunks: 3,
      received: 'done',
    };
    expect(await post(jobId, countersign(statement, countersignKeyOf(net.key.key)))).toEqual({
      status: 200,
      body: { v: 1, jobId, status: 'stored', disputed: false },
    });
    served.finish();
    await stream.result;
    await isBilled(jobId);
    const job = (await net.store.ledger.job(jobId))!;
    expect({ charged: job.charged, operator: job.operatorAmount, disputed: job.disputedAt !== null }).toEqual({
      charged: 36n,
      operator: 34n,
      disputed: true,
    });
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  });
});

describe('an honest job', () => {
  // Fails without the payable check in LedgerStore.payout: the pending share could be paid out
  // before a countersignature had its window to dispute it.
  it('settles as claimed; its share is pending for the window, then payable', async () => {
    const { jobId } = await inflatedJob(2);
    const job = (await net.store.ledger.job(jobId))!;
    // 12 × 1 + 2 × 2 = 16: 15 to the operator, 1 to the platform.
    expect({ charged: job.charged, operator: job.operatorAmount, disputed: job.disputedAt, payableAt: job.payableAt }).toEqual({
      charged: 16n,
      operator: 15n,
      disputed: null,
      payableAt: clock.now() + DAY,
    });
    expect(await net.store.ledger.operatorBalance(net.operator.id, clock.now())).toEqual({ balance: 15n, pending: 15n, payable: 0n });
    await expect(net.store.ledger.payout(net.operator.id, 1n, clock.now())).rejects.toMatchObject({
      code: 'NJ_INSUFFICIENT_FUNDS',
      message: "only 0 micro-credits of the operator's balance are payable; 15 are pending or disputed",
    });
    clock.advance(DAY);
    expect(await net.store.ledger.operatorBalance(net.operator.id, clock.now())).toEqual({ balance: 15n, pending: 0n, payable: 15n });
    expect(await net.store.ledger.payout(net.operator.id, 15n, clock.now())).toBe(0n);
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  });

  it('a countersignature after the window is kept but moves nothing', async () => {
    const { jobId, replyDigest } = await inflatedJob(16, false);
    clock.advance(DAY);
    const statement: CountersignStatement = { v: PROTOCOL_VERSION, jobId, replyDigest, completionTokens: 12, chunks: 3, received: 'done' };
    expect(await post(jobId, countersign(statement, countersignKeyOf(net.key.key)))).toEqual({
      status: 200,
      body: { v: 1, jobId, status: 'late', disputed: false },
    });
    expect((await net.store.ledger.job(jobId))!.charged).toBe(44n);
  });
});

describe('countersignatures that must move nothing', () => {
  async function settledJob(): Promise<{ jobId: string; statement: CountersignStatement }> {
    const { jobId, replyDigest } = await inflatedJob(16, false);
    return { jobId, statement: { v: PROTOCOL_VERSION, jobId, replyDigest, completionTokens: 12, chunks: 3, received: 'done' } };
  }
  async function expectUndisputed(jobId: string, operatorTotal = 41n): Promise<void> {
    const job = (await net.store.ledger.job(jobId))!;
    expect({ charged: job.charged, disputed: job.disputedAt }).toEqual({ charged: 44n, disputed: null });
    expect(await net.store.ledger.balance(ACCOUNTS.operator(net.operator.id))).toBe(operatorTotal);
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  }

  // Fails without the MAC check (verifyCountersignature not comparing the HMAC): anyone who can
  // change a statement in flight (or post one under another key) could dispute the job.
  it('a forged or altered one is refused with NJ_BAD_SIGNATURE', async () => {
    const { jobId, statement } = await settledJob();
    const forged = countersign(statement, countersignKeyOf(`${net.key.key}x`));
    expect(errorOf(await post(jobId, forged))).toEqual({ status: 400, code: 'NJ_BAD_SIGNATURE' });
    const signed = countersign({ ...statement, completionTokens: 13 }, countersignKeyOf(net.key.key));
    const altered = { ...signed, statement: { ...signed.statement, completionTokens: 12 } };
    expect(errorOf(await post(jobId, altered))).toEqual({ status: 400, code: 'NJ_BAD_SIGNATURE' });
    await expectUndisputed(jobId);
  });

  // Fails without the job check (verifyCountersignature ignoring the statement's jobId) or the
  // once-per-job row (ON CONFLICT DO NOTHING counted as stored): a replay would dispute again.
  it('a replayed one is refused: again for its job (NJ_COUNTERSIGN_DUPLICATE), or for another job', async () => {
    const { jobId, statement } = await settledJob();
    const honest = countersign({ ...statement, completionTokens: 16 }, countersignKeyOf(net.key.key));
    expect((await post(jobId, honest)).body).toEqual({ v: 1, jobId, status: 'stored', disputed: false });
    const lower = countersign(statement, countersignKeyOf(net.key.key));
    expect(errorOf(await post(jobId, lower))).toEqual({ status: 409, code: 'NJ_COUNTERSIGN_DUPLICATE' });
    expect(errorOf(await post(jobId, honest))).toEqual({ status: 409, code: 'NJ_COUNTERSIGN_DUPLICATE' });
    const other = (await inflatedJob(16, false)).jobId;
    expect(errorOf(await post(other, lower))).toEqual({ status: 400, code: 'NJ_BAD_SIGNATURE' });
    await expectUndisputed(jobId, 82n);
    expect((await net.store.ledger.job(other))!.disputedAt).toBeNull();
  });

  // Fails without the owner check in LedgerStore.countersign (the job's key against the poster's):
  // any client could dispute, and so refund itself from, another client's jobs.
  it("one for another key's job is answered NJ_NOT_FOUND", async () => {
    const { jobId, statement } = await settledJob();
    const other = await net.store.accounts.createApiKey({ name: 'other', now: clock.now() });
    const theirs = countersign(statement, countersignKeyOf(other.key));
    expect(errorOf(await post(jobId, theirs, other.key))).toEqual({ status: 404, code: 'NJ_NOT_FOUND' });
    await expectUndisputed(jobId);
  });
});

describe('the rate limit', () => {
  // Fails with the rate limit taken in the route's auth hook as well (clientAuth(ctx, true)): the
  // honest countersignature spends a token and each refusal two, so the forgeries get 429 at once.
  it('an honest countersignature costs no request token; each refused one costs one', async () => {
    await net.close();
    net = await startBilledNetwork(tmp.dir, { clock, rateLimit: { perSecond: 1, burst: 4 } }, `${tmp.dir}/limited.db`);
    // The job takes two tokens (candidates, the job); the SDK's countersignature none.
    const { jobId, replyDigest } = await inflatedJob(2);
    expect((await net.store.ledger.job(jobId))!.disputedAt).toBeNull();
    const statement: CountersignStatement = { v: PROTOCOL_VERSION, jobId, replyDigest, completionTokens: 1, chunks: 3, received: 'done' };
    const forged = countersign(statement, countersignKeyOf(`${net.key.key}x`));
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await post(jobId, forged)).status);
    expect(statuses).toEqual([400, 400, 429]);
  });
});

describe('pendingEarningsMs', () => {
  it('defaults to 24 hours and must be whole milliseconds, at least 0, shorter than jobRetentionDays', () => {
    expect(GATEWAY_DEFAULTS.pendingEarningsMs).toBe(DAY);
    expect(resolveGatewayOptions({ pendingEarningsMs: 0 }).pendingEarningsMs).toBe(0);
    for (const bad of [-1, 1.5, Number.NaN, 3 * DAY]) {
      expect(() => resolveGatewayOptions({ pendingEarningsMs: bad, jobRetentionDays: 3 })).toThrow(
        expect.objectContaining({ code: 'NJ_CONFIG_INVALID' }),
      );
    }
  });
});
