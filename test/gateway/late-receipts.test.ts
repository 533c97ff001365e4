/**
 * No unpaid work, no wasted work (issue 17). A gateway killed (SIGKILL) mid-stream and restarted
 * on its port and ledger: the agent stops generating within a token of losing the link, keeps its
 * signed receipt, delivers it after the reconnect, and the restarted gateway settles it exactly
 * once; the client's stream ends at once with NJ_STREAM_BROKEN. A late receipt delivered again, by
 * another agent, for another attempt or altered moves no money. A receipt claiming more tokens
 * than the bytes relayed could hold is billed at the bound.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prepareBilledLedger, startCrashableGateway } from './support/crashable.js';
import { IncompleteReplyError, NightjarClient } from '../../src/client/index.js';
import { ACCOUNTS, Gateway, openSqliteStore, promptTokenBound, completionTokenBound, chunkTextCapacity } from '../../src/gateway/index.js';
import { Agent, SignedReceiptLog, readSignedReceiptLog } from '../../src/main/agent/index.js';
import {
  LIMITS,
  PROTOCOL_VERSION,
  ReplySealer,
  deriveReplyKeys,
  generateIdentity,
  nextEvent,
  openRequest,
  randomBytes,
  signReceipt,
  systemClock,
  toBase64Url,
  utf8,
  type Receipt,
  type SignedReceipt,
} from '../../src/shared/index.js';
import { onceTrue } from '../helpers/events.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { REAL_MODEL, billed, billedNetworkPerTest, clientOf, tempDir } from './support/net.js';
import { RawAgent } from './support/raw-agent.js';

const http = perTestFetch();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe('a gateway killed mid-stream and restarted', () => {
  // Fails without the agent's stop on a dropped link (JobRunner.linkLost): the fake engine goes on
  // to maxTokens and the receipt claims hundreds of tokens. Fails without the outbox (nothing is
  // delivered: no late receipt event) and without LedgerStore.settleLate (the job stays released).
  it('the agent stops within a token, the receipt is settled once after the reconnect, the client hears at once', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const file = path.join(tmp.dir, 'gateway.db');
    const { operatorId, key, keyId, enroll } = await prepareBilledLedger(file, 10_000_000n);

    const first = await startCrashableGateway(file);
    cleanups.push(async () => first.child.kill('SIGKILL'));
    const port = Number(new URL(first.url).port);
    const engine = new FakeEngine({ tokenDelayMs: 10, slots: 1 });
    const identity = await generateIdentity();
    // The agent's own receipt log, as `nightjar serve` keeps it: the receipt and its delivery marks.
    const receiptFile = path.join(tmp.dir, 'receipts.jsonl');
    const log = await SignedReceiptLog.open({ file: receiptFile, identityKey: identity.publicKey });
    cleanups.push(() => log.dispose());
    const agent = await Agent.create({
      gatewayUrl: first.agentUrl,
      identity,
      engine,
      model: REAL_MODEL,
      backoff: { initialMs: 50, maxMs: 200 },
      stopGraceMs: 100,
      enrollToken: enroll,
      recordReceipt: (r) => log.append(r),
      receiptDelivery: log,
    });
    cleanups.push(() => agent.dispose());
    const receipts: SignedReceipt[] = [];
    agent.onReceipt((r) => receipts.push(r));
    // Tokens generated when the link dropped: the job must stop within one more.
    let atDrop: number | null = null;
    agent.onLink((state) => {
      if (state !== 'connected' && atDrop === null && receipts.length === 0 && engine.busy > 0) atDrop = engine.generated;
    });
    agent.start();
    await onceTrue(agent.onLink, () => agent.linkState === 'connected', 'the agent to connect');

    // A long reply (up to 2000 tokens); the SDK's idle timeout is out of the way (60 s), so the
    // error below can only come from the connection's end, which the kernel signals at the kill.
    const client = new NightjarClient({
      gatewayUrl: first.url,
      apiKey: key,
      trust: { allowSynthetic: true },
      fetch: http.fetch,
      streamIdleMs: 60_000,
    });
    const stream = client.chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'tell me a long story' }], maxTokens: 2000 });
    const jobId = await stream.jobId;
    let deltas = 0;
    let error: unknown = null;
    try {
      for await (const _ of stream) {
        if (++deltas === 5) first.child.kill('SIGKILL');
      }
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(IncompleteReplyError);
    expect((error as IncompleteReplyError).code).toBe('NJ_STREAM_BROKEN');

    // The agent stopped within a token and kept the receipt for the tokens it produced.
    await onceTrue(agent.onJobs, () => agent.undeliveredReceipts === 1 && agent.stats.activeJobs === 0, 'the job to stop');
    expect(atDrop).not.toBeNull();
    expect(engine.generated - atDrop!).toBeLessThanOrEqual(1);
    const receipt = receipts[0]!.receipt;
    expect(receipt).toMatchObject({ jobId, finishReason: 'cancelled' });
    expect(log.undelivered()).toEqual([receipts[0]]);
    expect(receipt.completionTokens).toBeGreaterThanOrEqual(5);
    expect(receipt.completionTokens).toBeLessThanOrEqual(atDrop! + 1);

    // The same port and ledger again: the held job is released at start, then settled late.
    const store = await openSqliteStore({ path: file });
    const gateway = await Gateway.start({ port, store, allowSynthetic: true });
    cleanups.push(async () => {
      await agent.dispose();
      await gateway.dispose();
      await store.dispose();
    });
    const late = await nextEvent(gateway.onLateReceipt, undefined, { clock: systemClock, timeoutMs: 10_000, what: 'the late receipt' });
    expect(late).toEqual({ jobId, agentId: agent.agentId, outcome: 'settled' });
    await onceTrue(agent.onReceiptAck, () => agent.undeliveredReceipts === 0, 'the agent to hear the ack');
    // Marked settled in the log (the mark is written after the ack): a restarted agent would not send it again.
    await log.dispose();
    const onDisk = await readSignedReceiptLog(receiptFile, { identityKey: identity.publicKey });
    expect(onDisk.marks?.map((m) => [m.jobId, m.state])).toEqual([
      [jobId, 'undelivered'],
      [jobId, 'settled'],
    ]);
    expect(onDisk.rejectedLines).toBe(0);

    const charged = BigInt(receipt.promptTokens) * 1n + BigInt(receipt.completionTokens) * 2n;
    const job = (await store.ledger.job(jobId))!;
    expect(job).toMatchObject({
      status: 'settled',
      outcome: 'settled-late',
      agentId: agent.agentId,
      promptTokens: receipt.promptTokens,
      completionTokens: receipt.completionTokens,
      charged,
    });
    expect(job.settledLateAt).not.toBeNull();
    const operatorShare = (charged * 9500n) / 10_000n;
    expect(await store.ledger.balance(ACCOUNTS.operator(operatorId))).toBe(operatorShare);
    expect(await store.ledger.clientBalance(keyId)).toEqual({ balance: 10_000_000n - charged, held: 0n });

    // Delivered again: acknowledged as a duplicate, nothing moves.
    const again = nextEvent(gateway.onLateReceipt, undefined, { clock: systemClock, timeoutMs: 5000, what: 'the replayed receipt' });
    expect(agent.link.send({ v: PROTOCOL_VERSION, type: 'receipt', jobId, attempt: receipt.attempt, receipt: receipts[0]! })).toBe(true);
    expect((await again).outcome).toBe('duplicate');
    expect(await store.ledger.clientBalance(keyId)).toEqual({ balance: 10_000_000n - charged, held: 0n });
    expect(await store.ledger.balance(ACCOUNTS.operator(operatorId))).toBe(operatorShare);
    expect(await store.ledger.checkInvariants()).toEqual([]);
  }, 30_000);
});

type JobFrame = Awaited<ReturnType<RawAgent['next']>> & { type: 'job' };

/** Serves `words` of a job as a raw agent, without the final chunk: the reply is cut off here. */
async function beginServing(
  raw: RawAgent,
  job: JobFrame,
  words: string[],
): Promise<(usage: Receipt['promptTokens'][]) => Promise<SignedReceipt>> {
  const opened = await openRequest(job.envelope, { agentId: raw.agentId, boxKeys: [raw.boxKey], now: Date.now() });
  const replySalt = randomBytes(16);
  const sealer = new ReplySealer(deriveReplyKeys(opened.contentKey, replySalt, raw.agentId));
  const startedAt = Date.now();
  raw.send({ v: PROTOCOL_VERSION, type: 'accepted', jobId: job.jobId, attempt: job.attempt, replySalt: toBase64Url(replySalt) });
  for (const w of words) {
    const { seq, data } = sealer.seal(w);
    raw.send({ v: PROTOCOL_VERSION, type: 'chunk', jobId: job.jobId, attempt: job.attempt, seq, data: toBase64Url(data) });
  }
  return ([promptTokens, completionTokens]) => {
    sealer.seal('', { finishReason: 'cancelled', usage: { promptTokens: promptTokens!, completionTokens: completionTokens! } });
    return signReceipt(
      {
        v: PROTOCOL_VERSION,
        jobId: job.jobId,
        attempt: job.attempt,
        agentId: raw.agentId,
        model: REAL_MODEL.id,
        modelSha256: REAL_MODEL.sha256,
        promptTokens: promptTokens!,
        completionTokens: completionTokens!,
        requestDigest: toBase64Url(opened.requestDigest),
        replyDigest: toBase64Url(sealer.digest()),
        startedAt,
        endedAt: Date.now(),
        finishReason: 'cancelled',
      },
      raw.identity,
    );
  };
}

describe('late receipts at a gateway that stayed up', () => {
  const fx = billedNetworkPerTest();

  // Fails without LedgerStore.settleLate's status check (the second delivery is answered 'retry'
  // after the job "changed under its settlement"), without the signature check of
  // Billing.settleLate (the altered receipt then settles 5000 prompt tokens), and without its
  // catalog check (the receipt for an unlisted file settles).
  it('settles a receipt delivered after a dropped link once; a replay, another agent or an altered receipt moves nothing', async () => {
    const { gateway, store } = fx.net;
    const token = await fx.net.enrollToken();
    const identity = await generateIdentity();
    const raw = await RawAgent.connect({ url: gateway.agentUrl, model: REAL_MODEL, identity, enrollToken: token });
    fx.raws.push(raw);
    await agentServing(gateway, raw.agentId);
    const isBilled = billed(gateway);
    const stream = clientOf(gateway, http.fetch, fx.net.key.key).chat({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      maxTokens: 50,
    });
    const job = (await raw.next('job')) as JobFrame;
    const finish = await beginServing(raw, job, ['Once', ' upon']);
    await stream.served;
    // The agent's link drops mid-reply: the client hears it, the hold goes back.
    raw.socket.terminate();
    const error = await stream.result.then(
      () => null,
      (e: unknown) => e,
    );
    expect((error as IncompleteReplyError).code).toBe('NJ_AGENT_FAILED');
    await isBilled(job.jobId);
    expect(await store.ledger.job(job.jobId)).toMatchObject({ status: 'released', agentId: raw.agentId, attempt: job.attempt });
    const before = await store.ledger.clientBalance(fx.net.key.id);
    expect(before.held).toBe(0n);

    const signed = await finish([12, 2]);
    const back = await RawAgent.connect({ url: gateway.agentUrl, model: REAL_MODEL, identity });
    fx.raws.push(back);
    const deliver = async (agent: RawAgent, receipt: SignedReceipt) => {
      agent.send({ v: PROTOCOL_VERSION, type: 'receipt', jobId: receipt.receipt.jobId, attempt: receipt.receipt.attempt, receipt });
      return agent.next('receipt-ack');
    };
    // Altered after signing: refused.
    const altered = { ...signed, receipt: { ...signed.receipt, promptTokens: 5000 } };
    expect(await deliver(back, altered)).toMatchObject({ outcome: 'refused', code: 'NJ_RECEIPT_INVALID' });
    // Another agent, with a receipt of its own for this job: refused (not the agent it was given to).
    const other = await RawAgent.connect({ url: gateway.agentUrl, model: REAL_MODEL, enrollToken: await fx.net.enrollToken() });
    fx.raws.push(other);
    const forged = await other.sign({ ...signed.receipt, agentId: other.agentId });
    expect(await deliver(other, forged)).toMatchObject({ outcome: 'refused', code: 'NJ_RECEIPT_INVALID' });
    // Another attempt than the one the job was given: refused.
    const wrongAttempt = await back.sign({ ...signed.receipt, attempt: job.attempt + 1 });
    expect(await deliver(back, wrongAttempt)).toMatchObject({ outcome: 'refused' });
    // A model file the catalog does not list for the model: refused, late as on time.
    const otherFile = await back.sign({ ...signed.receipt, modelSha256: 'ef'.repeat(32) });
    expect(await deliver(back, otherFile)).toMatchObject({ outcome: 'refused', message: expect.stringMatching(/catalog does not list/) });
    expect(await store.ledger.clientBalance(fx.net.key.id)).toEqual(before);

    // The real one: 12 × 1 + 2 × 2 = 16 micro-credits, 15 to the operator; then a replay moves nothing.
    expect(await deliver(back, signed)).toMatchObject({ outcome: 'settled' });
    expect(await deliver(back, signed)).toMatchObject({ outcome: 'duplicate' });
    expect(await store.ledger.clientBalance(fx.net.key.id)).toEqual({ balance: before.balance - 16n, held: 0n });
    expect(await store.ledger.balance(ACCOUNTS.operator(fx.net.operator.id))).toBe(15n);
    expect(await store.ledger.job(job.jobId)).toMatchObject({ status: 'settled', outcome: 'settled-late', charged: 16n });
    expect(await gateway.metrics.value(gateway.metrics.lateReceipts, { outcome: 'settled' })).toBe(1);
    expect(await gateway.metrics.value(gateway.metrics.lateReceipts, { outcome: 'duplicate' })).toBe(1);
    expect(await gateway.metrics.value(gateway.metrics.lateReceipts, { outcome: 'refused' })).toBe(4);
    expect(await store.ledger.checkInvariants()).toEqual([]);
  });

  // Fails without the bounds in ClientJob's receipt check (boundClaims, claims.ts): the job then
  // settles the ledger's looser prompt cap (the whole body length) and all 3000 completion tokens.
  it('bills a receipt claiming 2^32 prompt tokens and maxTokens for a one-chunk reply at the bounds, and counts it', async () => {
    const { gateway, store } = fx.net;
    const raw = await RawAgent.connect({ url: gateway.agentUrl, model: REAL_MODEL, enrollToken: await fx.net.enrollToken() });
    fx.raws.push(raw);
    await agentServing(gateway, raw.agentId);
    const isBilled = billed(gateway);
    const maxTokens = 3000;
    const stream = clientOf(gateway, http.fetch, fx.net.key.key).chat({
      model: REAL_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      maxTokens,
    });
    const job = (await raw.next('job')) as JobFrame;
    const usage = { promptTokens: 2 ** 32, completionTokens: maxTokens };
    const served = await raw.serve(job, ['Hi'], usage);
    served.finish();
    // The SDK has no bound of its own: it checks the receipt against the final chunk, which the
    // agent wrote to match.
    await stream.result;
    await isBilled(job.jobId);
    // The chunks relayed: "Hi" (80 bytes sealed) and the final chunk carrying the usage.
    const finalJson = JSON.stringify({ seq: 1, delta: '', final: { finishReason: 'stop', usage } });
    const sealedSize = (json: string) => Math.ceil((utf8(json).length + 4) / LIMITS.chunkPadBytes) * LIMITS.chunkPadBytes + 16;
    const capacity = chunkTextCapacity(sealedSize(JSON.stringify({ seq: 0, delta: 'Hi' }))) + chunkTextCapacity(sealedSize(finalJson));
    const record = (await store.ledger.job(job.jobId))!;
    expect(record.promptTokens).toBe(promptTokenBound(record.bodyLength));
    expect(record.completionTokens).toBe(completionTokenBound(capacity, maxTokens));
    expect(record.completionTokens).toBeLessThan(maxTokens / 5);
    expect(record.charged).toBe(BigInt(record.promptTokens!) + 2n * BigInt(record.completionTokens!));
    expect(record.charged! < record.holdAmount).toBe(true);
    expect(await gateway.metrics.value(gateway.metrics.claimsCapped, { field: 'prompt' })).toBe(1);
    expect(await gateway.metrics.value(gateway.metrics.claimsCapped, { field: 'completion' })).toBe(1);
    expect(await store.ledger.checkInvariants()).toEqual([]);
  });
});
