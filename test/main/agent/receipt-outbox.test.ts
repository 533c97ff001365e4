/**
 * The agent's outbox of receipts the gateway has not acknowledged: sent after each welcome, kept
 * until the gateway's receipt-ack says what it did (retry keeps it), given up when too old, and
 * no longer sent to a gateway that does not know the frame. Receipts sent in `done` frames wait
 * for their acknowledgement too, and become undelivered when the link drops first.
 */
import { describe, expect, it } from 'vitest';
import { MemoryDeliveryLog, ReceiptOutbox } from '../../../src/main/agent/index.js';
import {
  PROTOCOL_VERSION,
  generateIdentity,
  randomBytes,
  signReceipt,
  silentLogger,
  toBase64Url,
  type AgentFrame,
  type ReceiptOutcome,
  type SignedReceipt,
} from '../../../src/shared/index.js';
import { ManualClock } from '../support/manual-clock.js';

async function receipt(endedAt: number): Promise<SignedReceipt> {
  const me = await generateIdentity();
  return signReceipt(
    {
      v: 1,
      jobId: toBase64Url(randomBytes(16)),
      attempt: 0,
      agentId: me.agentId,
      model: 'm',
      modelSha256: 'ab'.repeat(32),
      promptTokens: 3,
      completionTokens: 4,
      requestDigest: toBase64Url(randomBytes(32)),
      replyDigest: toBase64Url(randomBytes(32)),
      startedAt: endedAt - 10,
      endedAt,
      finishReason: 'cancelled',
    },
    me,
  );
}

function harness(now: number, maxAgeMs = 60_000) {
  const sent: AgentFrame[] = [];
  let up = false;
  const log = new MemoryDeliveryLog();
  const clock = new ManualClock(now);
  const outbox = new ReceiptOutbox({ send: (f) => (up ? (sent.push(f), true) : false), log, maxAgeMs, clock, logger: silentLogger });
  return {
    sent,
    log,
    clock,
    outbox,
    link(state: boolean) {
      up = state;
      if (state) outbox.connected();
      else outbox.disconnected();
    },
    ack(r: SignedReceipt, outcome: ReceiptOutcome) {
      outbox.acknowledged({ v: PROTOCOL_VERSION, type: 'receipt-ack', jobId: r.receipt.jobId, attempt: 0, outcome });
    },
  };
}

describe('the receipt outbox', () => {
  it('delivers after each welcome until acknowledged; retry and a dropped link keep the receipt', async () => {
    const h = harness(10_000);
    const r = await receipt(9_000);
    await h.outbox.add(r);
    expect(h.sent).toEqual([]);
    h.link(true);
    expect(h.sent).toEqual([{ v: PROTOCOL_VERSION, type: 'receipt', jobId: r.receipt.jobId, attempt: 0, receipt: r }]);
    h.ack(r, 'retry');
    h.link(false);
    h.link(true);
    expect(h.sent).toHaveLength(2);
    // Dropped before the answer: sent again on the next connection.
    h.link(false);
    h.link(true);
    expect(h.sent).toHaveLength(3);
    h.ack(r, 'settled');
    expect(h.outbox.size).toBe(0);
    expect(h.log.undelivered()).toEqual([]);
    h.link(false);
    h.link(true);
    expect(h.sent).toHaveLength(3);
  });

  // Fails without the retry timer: a receipt answered `retry` waits for the next connection, which
  // for an agent that stays connected may be days (a cluster node that waited for another node's
  // hold to go answers retry when that takes too long).
  it('sends a receipt answered retry again after retryMs on the same connection, once per answer', async () => {
    const h = harness(10_000, 3600_000);
    const [r, q] = [await receipt(9_000), await receipt(9_500)];
    h.link(true);
    await h.outbox.add(r);
    await h.outbox.add(q);
    expect(h.sent).toHaveLength(2);
    h.ack(r, 'retry');
    h.clock.advance(30_000);
    h.ack(q, 'retry');
    h.clock.advance(29_999);
    expect(h.sent).toHaveLength(2);
    h.clock.advance(1);
    // One timer for both: each is sent again once.
    expect(h.sent.map((f) => (f.type === 'receipt' ? f.jobId : null))).toEqual([r, q, r, q].map((x) => x.receipt.jobId));
    h.clock.advance(120_000);
    expect(h.sent).toHaveLength(4);
    h.ack(r, 'settled');
    h.ack(q, 'retry');
    // The link drops before the timer: sent on the welcome, not twice.
    h.link(false);
    h.clock.advance(60_000);
    expect(h.sent).toHaveLength(4);
    h.link(true);
    expect(h.sent).toHaveLength(5);
    h.clock.advance(60_000);
    expect(h.sent).toHaveLength(5);
    h.outbox.dispose();
  });

  it('sends at once when the link is already back, and gives up a receipt older than maxAgeMs', async () => {
    const h = harness(100_000, 60_000);
    h.link(true);
    const fresh = await receipt(99_000);
    const stale = await receipt(10_000);
    await h.outbox.add(fresh);
    expect(h.sent).toHaveLength(1);
    h.link(false);
    await h.outbox.add(stale);
    h.link(true);
    // The stale one is dropped unsent; the fresh one goes again.
    expect(h.sent.map((f) => (f.type === 'receipt' ? f.jobId : null))).toEqual([fresh.receipt.jobId, fresh.receipt.jobId]);
    expect(h.outbox.size).toBe(1);
  });

  it('stops delivering to a gateway that refuses the frame as unknown (an older version)', async () => {
    const h = harness(10_000);
    const r = await receipt(9_000);
    await h.outbox.add(r);
    h.link(true);
    h.outbox.rejected('NJ_FRAME_INVALID');
    h.link(false);
    h.link(true);
    expect(h.sent).toHaveLength(1);
    expect(h.outbox.size).toBe(1);
  });

  // Fails without disconnected's move of unanswered done receipts to the undelivered ones (shown
  // once: the log then holds only the retried receipt, and the next welcome sends only it).
  it('keeps a done receipt until acknowledged; one unanswered at a drop goes as a late receipt, retry on the next link', async () => {
    const h = harness(10_000);
    h.link(true);
    const answered = await receipt(9_000);
    const unanswered = await receipt(9_500);
    const retried = await receipt(9_600);
    for (const r of [answered, unanswered, retried]) h.outbox.sent(r);
    expect(h.outbox.awaitingAck).toBe(3);
    h.ack(answered, 'settled');
    h.ack(retried, 'retry');
    // Acknowledged: let go, with no write. Retry: kept for the next connection, not this one.
    expect(h.outbox.awaitingAck).toBe(1);
    expect(h.sent).toEqual([]);
    await Promise.resolve();
    expect(h.log.undelivered().map((r) => r.receipt.jobId)).toEqual([retried.receipt.jobId]);
    h.link(false);
    expect(h.outbox.awaitingAck).toBe(0);
    await Promise.resolve();
    expect(h.log.undelivered().map((r) => r.receipt.jobId)).toEqual([retried.receipt.jobId, unanswered.receipt.jobId]);
    h.link(true);
    expect(h.sent.map((f) => (f as { jobId: string }).jobId)).toEqual([retried.receipt.jobId, unanswered.receipt.jobId]);
    h.ack(unanswered, 'duplicate');
    h.ack(retried, 'settled');
    expect(h.outbox.size).toBe(0);
  });

  it('lets a done receipt wait no longer than maxAgeMs for a gateway that never answers', async () => {
    const h = harness(10_000, 60_000);
    h.link(true);
    h.outbox.sent(await receipt(9_000));
    h.clock.advance(61_000);
    const fresh = await receipt(h.clock.now());
    h.outbox.sent(fresh);
    expect(h.outbox.awaitingAck).toBe(1);
    h.link(false);
    await Promise.resolve();
    expect(h.log.undelivered()).toEqual([fresh]);
  });
});
