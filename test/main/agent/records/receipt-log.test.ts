/**
 * The agent's own receipt log: appended and fsync'd, read back with signatures checked, robust to
 * a torn last line; and the earnings summary from it.
 */
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SignedReceiptLog,
  localDate,
  operatorMicroCredits,
  readSignedReceiptLog,
  summarizeEarnings,
} from '../../../../src/main/agent/records/receipt-log.js';
import {
  generateIdentity,
  randomBytes,
  signReceipt,
  toBase64Url,
  type IdentityKeyPair,
  type SignedReceipt,
} from '../../../../src/shared/index.js';

let dir: string;
let me: IdentityKeyPair;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-receipts-'));
  me = await generateIdentity();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function receipt(endedAt: number, model = 'synthetic-tiny', tokens: [number, number] = [10, 20], who = me): Promise<SignedReceipt> {
  return signReceipt(
    {
      v: 1,
      jobId: toBase64Url(randomBytes(16)),
      attempt: 0,
      agentId: who.agentId,
      model,
      modelSha256: 'ab'.repeat(32),
      promptTokens: tokens[0],
      completionTokens: tokens[1],
      requestDigest: toBase64Url(randomBytes(32)),
      replyDigest: toBase64Url(randomBytes(32)),
      startedAt: endedAt - 1000,
      endedAt,
      finishReason: 'stop',
    },
    who,
  );
}

describe('the receipt log', () => {
  it('keeps delivery marks beside the receipts: undelivered ones survive a restart until acknowledged or given up', async () => {
    const file = path.join(dir, `r${++n}`, 'receipts.jsonl');
    const log = await SignedReceiptLog.open({ file, identityKey: me.publicKey });
    const [a, b, c] = [await receipt(1000), await receipt(2000), await receipt(3000)];
    for (const r of [a, b, c]) await log.append(r);
    await log.markUndelivered(b, 2001);
    await log.markUndelivered(c, 3001);
    expect(log.undelivered()).toEqual([b, c]);
    await log.dispose();

    const again = await SignedReceiptLog.open({ file, identityKey: me.publicKey });
    // Marks are neither receipts nor rejected lines: earnings are unchanged by them.
    expect({ receipts: again.receipts.length, rejected: again.rejectedLines }).toEqual({ receipts: 3, rejected: 0 });
    expect(again.undelivered()).toEqual([b, c]);
    await again.markDelivered(b.receipt.jobId, 0, 'settled', 4000);
    await again.markDelivered(c.receipt.jobId, 0, 'expired', 4001);
    expect(again.undelivered()).toEqual([]);
    await again.dispose();
    const read = await readSignedReceiptLog(file, { identityKey: me.publicKey });
    expect(read.marks?.map((m) => m.state)).toEqual(['undelivered', 'undelivered', 'settled', 'expired']);
    expect(read.rejectedLines).toBe(0);
  });

  it('appends one line per receipt (mode 0600) and reads them back after a restart', async () => {
    const file = path.join(dir, `r${++n}`, 'receipts.jsonl');
    const log = await SignedReceiptLog.open({ file, identityKey: me.publicKey });
    const a = await receipt(Date.UTC(2026, 10, 20, 10));
    const b = await receipt(Date.UTC(2026, 10, 20, 11));
    await Promise.all([log.append(a), log.append(b)]);
    await log.dispose();
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await readFile(file, 'utf8')).trim().split('\n')).toHaveLength(2);
    const reopened = await SignedReceiptLog.open({ file, identityKey: me.publicKey });
    expect(reopened.receipts).toEqual([a, b]);
    expect(reopened.rejectedLines).toBe(0);
    await reopened.dispose();
    await expect(reopened.append(a)).rejects.toThrow('closed');
  });

  it('skips a torn last line (a crash mid-append) and keeps the next append on its own line', async () => {
    const file = path.join(dir, `r${++n}.jsonl`);
    const a = await receipt(Date.UTC(2026, 10, 20, 10));
    await writeFile(file, JSON.stringify(a) + '\n' + JSON.stringify(a).slice(0, 40));
    const log = await SignedReceiptLog.open({ file, identityKey: me.publicKey });
    expect(log.receipts).toHaveLength(1);
    expect(log.rejectedLines).toBe(1);
    const b = await receipt(Date.UTC(2026, 10, 20, 12));
    await log.append(b);
    await log.dispose();
    const read = await readSignedReceiptLog(file, { identityKey: me.publicKey });
    expect(read.receipts).toEqual([a, b]);
    expect(read.rejectedLines).toBe(1);
  });

  // Security: fails if readSignedReceiptLog stops verifying signatures (an edited line would be counted).
  it('does not count a receipt whose tokens were edited, nor one another agent signed', async () => {
    const file = path.join(dir, `r${++n}.jsonl`);
    const good = await receipt(Date.UTC(2026, 10, 20, 10));
    const edited = structuredClone(good);
    edited.receipt.completionTokens = 999_999;
    const foreign = await receipt(Date.UTC(2026, 10, 20, 10), 'synthetic-tiny', [1, 1], await generateIdentity());
    await writeFile(file, [good, edited, foreign].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const read = await readSignedReceiptLog(file, { identityKey: me.publicKey });
    expect(read.receipts).toEqual([good]);
    expect(read.rejectedLines).toBe(2);
  });

  it('reads a missing log as empty', async () => {
    expect(await readSignedReceiptLog(path.join(dir, 'none.jsonl'))).toEqual({ receipts: [], rejectedLines: 0 });
  });
});

describe('earnings', () => {
  it('sums tokens per day (in the owner’s time zone) and model, newest day first', async () => {
    // 23:30 New York on 19 Nov is already 20 Nov in UTC.
    const late = Date.UTC(2026, 10, 20, 4, 30);
    const receipts = [
      await receipt(late, 'a-model', [10, 100]),
      await receipt(Date.UTC(2026, 10, 20, 15), 'a-model', [5, 50]),
      await receipt(Date.UTC(2026, 10, 20, 16), 'b-model', [1, 2]),
    ];
    const s = summarizeEarnings({ receipts, rejectedLines: 0, timeZone: 'America/New_York', prices: {}, operatorShare: 0.95 });
    expect(s.rows).toEqual([
      { date: '2026-11-20', model: 'a-model', jobs: 1, promptTokens: 5, completionTokens: 50, microCredits: null },
      { date: '2026-11-20', model: 'b-model', jobs: 1, promptTokens: 1, completionTokens: 2, microCredits: null },
      { date: '2026-11-19', model: 'a-model', jobs: 1, promptTokens: 10, completionTokens: 100, microCredits: null },
    ]);
    expect(s.totals).toEqual({ jobs: 3, promptTokens: 16, completionTokens: 152, microCredits: null });
    expect(s.priceSource).toBe('none');
    const utc = summarizeEarnings({ receipts, rejectedLines: 0, timeZone: 'UTC', prices: {}, operatorShare: 0.95 });
    expect(utc.rows.map((r) => r.date)).toEqual(['2026-11-20', '2026-11-20']);
  });

  it('prices rows from the config, with the operator share, in exact integers', async () => {
    const receipts = [await receipt(Date.UTC(2026, 10, 20, 10), 'a-model', [1_000_000, 2_000_000])];
    const s = summarizeEarnings({
      receipts,
      rejectedLines: 0,
      timeZone: 'UTC',
      prices: { 'a-model': { promptPerMTok: '100', completionPerMTok: '300' } },
      operatorShare: 0.95,
    });
    // (1 × 100 + 2 × 300) × 0.95 = 665 micro-credits.
    expect(s.rows[0]!.microCredits).toBe('665');
    expect(s.totals.microCredits).toBe('665');
    expect(s.priceSource).toBe('config');
    // Beyond 2^53, still exact.
    expect(operatorMicroCredits(2 ** 40, 2 ** 40, { promptPerMTok: '1000000000000', completionPerMTok: '1000000000000' }, 1)).toBe(
      (2n ** 41n * 10n ** 12n) / 10n ** 6n,
    );
  });

  it('limits to the last N days', async () => {
    const now = Date.UTC(2026, 10, 21, 12);
    const receipts = [await receipt(now - 10 * 86_400_000), await receipt(now - 3600_000)];
    expect(summarizeEarnings({ receipts, rejectedLines: 0, timeZone: 'UTC', prices: {}, operatorShare: 1, days: 7, now }).totals.jobs).toBe(
      1,
    );
    expect(localDate(now, 'Asia/Tokyo')).toBe('2026-11-21');
  });

  it('reports rejected lines next to the sums', async () => {
    const file = path.join(dir, `r${++n}.jsonl`);
    await appendFile(file, 'garbage\n');
    const read = await readSignedReceiptLog(file, { identityKey: me.publicKey });
    expect(summarizeEarnings({ ...read, timeZone: 'UTC', prices: {}, operatorShare: 1 }).rejectedLines).toBe(1);
  });
});
