/**
 * Ledger cases shared by the SQLite suite (ledger.store.test.ts) and the PostgreSQL suite
 * (store.services.test.ts): the same behaviour and the same invariants on both databases.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { NightjarError, randomBytes, toBase64Url } from '../../../src/shared/index.js';
import { ACCOUNTS, costOf, holdAmount, operatorShare, type GatewayStore, type Price } from '../../../src/gateway/index.js';

/** Opens a fresh, empty, migrated store; `reopen` opens the same database again (a restart). */
export interface StoreFactory {
  open(): Promise<{ store: GatewayStore; reopen(): Promise<GatewayStore> }>;
}

const PRICES: Price[] = [
  { promptPerMTok: 0n, completionPerMTok: 0n },
  { promptPerMTok: 1n, completionPerMTok: 3n },
  { promptPerMTok: 250_000n, completionPerMTok: 1_000_000n },
  { promptPerMTok: 1_000_000_000_000n, completionPerMTok: 999_999_999_999n },
];

const jobId = (): string => toBase64Url(randomBytes(16));

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof NightjarError) return err.code;
    throw err;
  }
}

/** Registers the ledger cases against `factory`. */
export function ledgerCases(factory: StoreFactory, options: { runs: number }): void {
  it('holds the worst case, settles at the price, pays the operator share and releases the rest', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'client', now: 1 });
      const op = await accounts.createOperator({ name: 'op', now: 1 });
      await ledger.topUp(key.id, 10_000_000n, 2);
      const price: Price = { promptPerMTok: 500_000n, completionPerMTok: 1_500_000n };
      const id = jobId();
      const { amount } = await ledger.hold({
        jobId: id,
        keyId: key.id,
        model: 'm',
        price,
        operatorShareBps: 9500,
        bodyLength: 2064,
        maxTokens: 100,
        now: 3,
      });
      // 2064 × 0.5 + 100 × 1.5 = 1182 micro-credits, exactly.
      expect(amount).toBe(1182n);
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: 10_000_000n - 1182n, held: 1182n });
      const settled = await ledger.settle({
        jobId: id,
        attempt: 0,
        agentId: 'a'.repeat(32),
        operatorId: op.id,
        promptTokens: 21,
        completionTokens: 40,
        finishReason: 'stop',
        outcome: 'done',
        receipt: '{}',
        now: 4,
      });
      // 21 × 0.5 + 40 × 1.5 = 70.5 → 71 (rounded up); 95 % of 71 = 67.45 → 67 to the operator.
      expect(settled).toEqual({
        status: 'settled',
        duplicate: false,
        charged: 71n,
        operatorAmount: 67n,
        platformAmount: 4n,
        released: 1111n,
      });
      expect(await ledger.balance(ACCOUNTS.client(key.id))).toBe(10_000_000n - 71n);
      expect(await ledger.balance(ACCOUNTS.operator(op.id))).toBe(67n);
      expect(await ledger.balance(ACCOUNTS.platform)).toBe(4n);
      expect(await ledger.balance(ACCOUNTS.holds)).toBe(0n);
      expect(await ledger.checkInvariants()).toEqual([]);
      // The same receipt again, or another attempt's: nothing moves.
      const again = await ledger.settle({
        jobId: id,
        attempt: 1,
        agentId: 'b'.repeat(32),
        operatorId: op.id,
        promptTokens: 999,
        completionTokens: 100,
        finishReason: 'stop',
        outcome: 'done',
        receipt: '{}',
        now: 5,
      });
      expect(again).toMatchObject({ status: 'settled', duplicate: true, charged: 71n });
      expect(await ledger.release(id, 'failed', 6)).toEqual({ status: 'settled', duplicate: true });
      expect(await ledger.balance(ACCOUNTS.operator(op.id))).toBe(67n);
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('refuses a job the balance cannot cover, a reused jobId, and a paid job without a key', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'poor', now: 1 });
      await ledger.topUp(key.id, 100n, 1);
      const price: Price = { promptPerMTok: 1_000_000n, completionPerMTok: 1_000_000n };
      const base = { model: 'm', price, operatorShareBps: 9500, now: 2 };
      const err = await ledger.hold({ ...base, jobId: jobId(), keyId: key.id, bodyLength: 1040, maxTokens: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NightjarError);
      expect((err as NightjarError).code).toBe('NJ_INSUFFICIENT_FUNDS');
      expect((err as NightjarError).message).toBe("this request may cost up to 1041 micro-credits, more than the key's balance");
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: 100n, held: 0n });
      const id = jobId();
      await ledger.hold({ ...base, price: PRICES[0]!, jobId: id, keyId: key.id, bodyLength: 1040, maxTokens: 1 });
      expect(await codeOf(ledger.hold({ ...base, price: PRICES[0]!, jobId: id, keyId: key.id, bodyLength: 1040, maxTokens: 1 }))).toBe(
        'NJ_DUPLICATE_JOB',
      );
      expect(await codeOf(ledger.hold({ ...base, jobId: jobId(), keyId: null, bodyLength: 1040, maxTokens: 1 }))).toBe('NJ_UNAUTHORIZED');
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('credits nobody for a job it never held, and nothing when the agent has no operator', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'c', now: 1 });
      const op = await accounts.createOperator({ name: 'o', now: 1 });
      await ledger.topUp(key.id, 1_000_000n, 1);
      const settle = {
        attempt: 0,
        agentId: 'a'.repeat(32),
        operatorId: op.id,
        promptTokens: 10,
        completionTokens: 10,
        finishReason: 'stop',
        outcome: 'done',
        receipt: '{}',
        now: 3,
      };
      expect(await ledger.settle({ ...settle, jobId: jobId() })).toEqual({ status: 'unknown' });
      const id = jobId();
      await ledger.hold({
        jobId: id,
        keyId: key.id,
        model: 'm',
        price: PRICES[2]!,
        operatorShareBps: 9500,
        bodyLength: 1040,
        maxTokens: 10,
        now: 2,
      });
      expect(await ledger.settle({ ...settle, jobId: id, operatorId: null })).toMatchObject({ status: 'settled', charged: 0n });
      expect(await ledger.balance(ACCOUNTS.operator(op.id))).toBe(0n);
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: 1_000_000n, held: 0n });
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  // Fails without settleLate's checks: a second delivery would charge again (or fail), another
  // agent's or attempt's receipt would bill the job, and a released job's client could go negative.
  it('settles a late receipt exactly once: from the hold, or from the balance after a release, never twice', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'client', now: 1 });
      const op = await accounts.createOperator({ name: 'op', now: 1 });
      await ledger.topUp(key.id, 1_000_000n, 2);
      const price: Price = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };
      const digest = toBase64Url(randomBytes(32));
      const hold = async (id: string, bodyLength = 1040, maxTokens = 100): Promise<void> => {
        await ledger.hold({
          jobId: id,
          keyId: key.id,
          model: 'm',
          price,
          operatorShareBps: 9500,
          bodyLength,
          maxTokens,
          requestDigest: digest,
          now: 3,
        });
        await ledger.assign(id, 'a'.repeat(32), 1);
      };
      const late = (id: string, over: Partial<{ agentId: string; attempt: number; model: string; requestDigest: string }> = {}) =>
        ledger.settleLate({
          jobId: id,
          attempt: 1,
          agentId: 'a'.repeat(32),
          operatorId: op.id,
          model: 'm',
          promptTokens: 10,
          completionTokens: 20,
          requestDigest: digest,
          finishReason: 'cancelled',
          receipt: '{}',
          now: 9,
          ...over,
        });

      // Released (a restart): charged from the client's balance, 10 × 1 + 20 × 2 = 50.
      const released = jobId();
      await hold(released);
      await ledger.release(released, 'gateway restarted', 4);
      expect(await late(released, { agentId: 'b'.repeat(32) })).toEqual({
        status: 'refused',
        reason: 'the job was not given to this agent for this attempt',
      });
      expect((await late(released, { attempt: 0 })).status).toBe('refused');
      expect((await late(released, { model: 'other' })).status).toBe('refused');
      expect((await late(released, { requestDigest: toBase64Url(randomBytes(32)) })).status).toBe('refused');
      expect(await late(released)).toEqual({
        status: 'settled',
        from: 'client',
        charged: 50n,
        operatorAmount: 47n,
        platformAmount: 3n,
        shortfall: 0n,
        capped: [],
      });
      expect(await late(released)).toEqual({ status: 'duplicate' });
      expect(await ledger.job(released)).toMatchObject({ status: 'settled', outcome: 'settled-late', settledLateAt: 9, charged: 50n });
      expect(await ledger.balance(ACCOUNTS.client(key.id))).toBe(1_000_000n - 50n);
      expect(await ledger.balance(ACCOUNTS.operator(op.id))).toBe(47n);
      // The transfers say why the hold had gone back; the job row now says settled-late.
      const memos = await store.driver.all('SELECT kind, memo FROM ledger_transfers WHERE job_id = ? ORDER BY kind', [released]);
      expect(memos.map((m) => [m.kind, m.memo])).toEqual([
        ['hold', null],
        ['release', null],
        ['settle-operator', 'settled late, from the balance; the hold was released: gateway restarted'],
        ['settle-platform', 'settled late, from the balance; the hold was released: gateway restarted'],
      ]);

      // Still held (the agent came back before the job gave up on it): settled from the hold.
      const held = jobId();
      await hold(held);
      expect(await late(held)).toMatchObject({ status: 'settled', from: 'hold', charged: 50n });
      expect(await ledger.release(held, 'failed', 10)).toEqual({ status: 'settled', duplicate: true });

      // Claims beyond the bounds: prompt by the body's capacity (1040 − 20), completion by the
      // bound recorded at the release (30), never above maxTokens.
      const capped = jobId();
      await hold(capped);
      await ledger.release(capped, 'failed', 4, 30);
      expect(await late(capped, {})).toMatchObject({ status: 'settled', capped: [] });
      const bounded = jobId();
      await hold(bounded);
      await ledger.release(bounded, 'failed', 4, 30);
      expect(
        await ledger.settleLate({
          jobId: bounded,
          attempt: 1,
          agentId: 'a'.repeat(32),
          operatorId: op.id,
          model: 'm',
          promptTokens: 2 ** 32,
          completionTokens: 100,
          requestDigest: digest,
          finishReason: 'length',
          receipt: '{}',
          now: 9,
        }),
      ).toMatchObject({ status: 'settled', capped: ['prompt', 'completion'], charged: 1020n + 60n });

      // A client that spent its balance meanwhile is charged what it has, never below zero.
      const poor = await accounts.createApiKey({ name: 'poor', now: 1 });
      await ledger.topUp(poor.id, 1100n, 2);
      const spent = jobId();
      await ledger.hold({
        jobId: spent,
        keyId: poor.id,
        model: 'm',
        price,
        operatorShareBps: 9500,
        bodyLength: 1040,
        maxTokens: 30,
        now: 3,
      });
      await ledger.assign(spent, 'a'.repeat(32), 1);
      await ledger.release(spent, 'gateway restarted', 4);
      const other = jobId();
      await ledger.hold({
        jobId: other,
        keyId: poor.id,
        model: 'm',
        price,
        operatorShareBps: 9500,
        bodyLength: 1040,
        maxTokens: 10,
        now: 5,
      });
      await ledger.settle({
        jobId: other,
        attempt: 0,
        agentId: 'c'.repeat(32),
        operatorId: op.id,
        promptTokens: 1040,
        completionTokens: 10,
        finishReason: 'stop',
        outcome: 'done',
        receipt: '{}',
        now: 6,
      });
      expect(await ledger.balance(ACCOUNTS.client(poor.id))).toBe(40n);
      expect(await late(spent)).toMatchObject({ status: 'settled', from: 'client', charged: 40n, shortfall: 10n });
      expect(await ledger.balance(ACCOUNTS.client(poor.id))).toBe(0n);
      expect(await late(jobId())).toEqual({ status: 'unknown' });
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  // Fails without LedgerStore's #dispute (the countersignature stored, nothing moved) or without the
  // payable check in payout (a pending share paid out before its window closed).
  it('disputes a receipt that claims more than the countersignature, in either order; pending shares are not payable', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'client', now: 1 });
      const op = await accounts.createOperator({ name: 'op', now: 1 });
      await ledger.topUp(key.id, 10_000_000n, 2);
      const price: Price = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };
      const digest = toBase64Url(new Uint8Array(32).fill(7));
      const receipt = JSON.stringify({ receipt: { replyDigest: digest } });
      const run = async (countersignFirst: boolean): Promise<string> => {
        const id = jobId();
        await ledger.hold({
          jobId: id,
          keyId: key.id,
          model: 'm',
          price,
          operatorShareBps: 9500,
          bodyLength: 1024,
          maxTokens: 100,
          now: 3,
        });
        const cs = { jobId: id, keyId: key.id, replyDigest: digest, completionTokens: 12, chunks: 3, received: 'done' as const, mac: 'm' };
        if (countersignFirst)
          expect(await ledger.countersign({ ...cs, now: 4 })).toEqual({ status: 'stored', disputed: false, refunded: 0n });
        const settled = await ledger.settle({
          jobId: id,
          attempt: 0,
          agentId: 'a'.repeat(32),
          operatorId: op.id,
          promptTokens: 12,
          completionTokens: 16,
          finishReason: 'stop',
          outcome: 'done',
          receipt,
          payableAt: 1005,
          now: 5,
        });
        // 12 + 16 × 2 = 44 claimed; the client's 12 completion tokens support 12 + 24 = 36.
        expect(settled).toMatchObject({ status: 'settled', charged: countersignFirst ? 36n : 44n });
        if (!countersignFirst)
          expect(await ledger.countersign({ ...cs, now: 6 })).toEqual({ status: 'stored', disputed: true, refunded: 8n });
        const job = (await ledger.job(id))!;
        expect({ charged: job.charged, operator: job.operatorAmount, platform: job.platformAmount }).toEqual({
          charged: 36n,
          operator: 34n,
          platform: 2n,
        });
        expect(job.dispute).toMatchObject({ claimedCompletionTokens: 16, countedCompletionTokens: 12, refunded: '8' });
        expect(await ledger.countersign({ ...cs, now: 7 })).toEqual({ status: 'duplicate' });
        return id;
      };
      await run(false);
      await run(true);
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: 10_000_000n - 72n, held: 0n });
      // An honest job: pending until its window closes, then payable; disputed shares never are.
      const honest = jobId();
      await ledger.hold({
        jobId: honest,
        keyId: key.id,
        model: 'm',
        price,
        operatorShareBps: 9500,
        bodyLength: 1024,
        maxTokens: 100,
        now: 3,
      });
      const base = { attempt: 0, agentId: 'a'.repeat(32), operatorId: op.id, finishReason: 'stop', outcome: 'done', receipt };
      await ledger.settle({ ...base, jobId: honest, promptTokens: 12, completionTokens: 2, payableAt: 1005, now: 5 });
      expect(await ledger.operatorBalance(op.id, 1004)).toEqual({ balance: 83n, pending: 83n, payable: 0n });
      expect(await codeOf(ledger.payout(op.id, 1n, 1004))).toBe('NJ_INSUFFICIENT_FUNDS');
      expect(await ledger.operatorBalance(op.id, 1005)).toEqual({ balance: 83n, pending: 68n, payable: 15n });
      expect(await ledger.payout(op.id, 15n, 1005)).toBe(68n);
      // After the window a countersignature is kept and moves nothing.
      const late = {
        jobId: honest,
        keyId: key.id,
        replyDigest: digest,
        completionTokens: 1,
        chunks: 1,
        received: 'done' as const,
        mac: 'm',
      };
      expect(await ledger.countersign({ ...late, now: 1006 })).toEqual({ status: 'late' });
      // Another key's job, or no job: unknown, and nothing is stored.
      const other = await accounts.createApiKey({ name: 'other', now: 1 });
      expect(await ledger.countersign({ ...late, jobId: jobId(), now: 7 })).toEqual({ status: 'unknown' });
      expect(await ledger.countersign({ ...late, keyId: other.id, now: 7 })).toEqual({ status: 'unknown' });
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('forfeits a pending job back to its client once (a disputed one too), a payable one not at all', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'client', now: 1 });
      const op = await accounts.createOperator({ name: 'op', now: 1 });
      await ledger.topUp(key.id, 10_000_000n, 2);
      const price: Price = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };
      const digest = toBase64Url(new Uint8Array(32).fill(7));
      const receipt = JSON.stringify({ receipt: { replyDigest: digest } });
      const settled = async (completionTokens: number): Promise<string> => {
        const id = jobId();
        await ledger.hold({
          jobId: id,
          keyId: key.id,
          model: 'm',
          price,
          operatorShareBps: 9500,
          bodyLength: 1024,
          maxTokens: 100,
          now: 3,
        });
        const base = { attempt: 0, agentId: 'a'.repeat(32), operatorId: op.id, finishReason: 'stop', outcome: 'done', receipt };
        await ledger.settle({ ...base, jobId: id, promptTokens: 12, completionTokens, payableAt: 1005, now: 5 });
        return id;
      };
      // 12 + 2 × 2 = 16: 15 to the operator, 1 to the platform, all of it back.
      const pending = await settled(2);
      expect(await ledger.forfeit(pending, 6)).toEqual({ status: 'forfeited', refunded: 16n, fromOperator: 15n, fromPlatform: 1n });
      expect(await ledger.forfeit(pending, 7)).toEqual({ status: 'duplicate' });
      const forfeited = (await ledger.job(pending))!;
      expect({ at: forfeited.forfeitedAt, charged: forfeited.charged, op: forfeited.operatorAmount }).toEqual({
        at: 6,
        charged: 0n,
        op: 0n,
      });
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: 10_000_000n, held: 0n });
      // A countersignature after the forfeit disputes nothing more.
      const cs = {
        jobId: pending,
        keyId: key.id,
        replyDigest: digest,
        completionTokens: 0,
        chunks: 1,
        received: 'done' as const,
        mac: 'm',
      };
      expect(await ledger.countersign({ ...cs, now: 8 })).toEqual({ status: 'stored', disputed: false, refunded: 0n });
      // A disputed job (pending for good) gives back what the dispute left.
      const disputed = await settled(16);
      await ledger.countersign({ ...cs, jobId: disputed, completionTokens: 12, now: 9 });
      expect(await ledger.forfeit(disputed, 2000)).toEqual({ status: 'forfeited', refunded: 36n, fromOperator: 34n, fromPlatform: 2n });
      // Once payable, nothing moves.
      const payable = await settled(2);
      expect(await ledger.forfeit(payable, 1005)).toEqual({ status: 'payable' });
      expect((await ledger.job(payable))!.forfeitedAt).toBeNull();
      expect(await ledger.forfeit(jobId(), 6)).toEqual({ status: 'unknown' });
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: 10_000_000n - 16n, held: 0n });
      expect(await ledger.operatorBalance(op.id, 2000)).toEqual({ balance: 15n, pending: 0n, payable: 15n });
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('detects a broken book: the invariant check is not vacuous', async () => {
    const { store } = await factory.open();
    try {
      const { accounts, ledger, driver } = store;
      const key = await accounts.createApiKey({ name: 'c', now: 1 });
      await ledger.topUp(key.id, 1000n, 1);
      const id = jobId();
      // 1040 × 0.25 + 10 × 1 = 270 micro-credits held.
      await ledger.hold({
        jobId: id,
        keyId: key.id,
        model: 'm',
        price: PRICES[2]!,
        operatorShareBps: 9500,
        bodyLength: 1040,
        maxTokens: 10,
        now: 2,
      });
      expect(await ledger.checkInvariants()).toEqual([]);
      // A balance edited without its transfer, and a hold that leaks.
      await driver.run('UPDATE ledger_accounts SET balance = balance + 5 WHERE id = ?', [ACCOUNTS.client(key.id)]);
      await driver.run("UPDATE jobs SET status = 'released' WHERE job_id = ?", [id]);
      const problems = await ledger.checkInvariants();
      expect(problems).toContain(`account client:${key.id} holds 735 but its transfers sum to 730`);
      expect(problems).toContain('balances sum to 5, not 0');
      expect(problems).toContain(`job ${id} was released with 0 of 270 returned`);
      expect(problems).toContain('the holds account has 270, running jobs reserved 0');
    } finally {
      await store.dispose();
    }
  });

  type Cmd =
    | { t: 'topup'; client: number; amount: number }
    | { t: 'hold'; job: number; client: number | null; price: number; body: number; maxTokens: number }
    | { t: 'settle'; job: number; attempt: number; operator: number | null; prompt: number; completion: number }
    | { t: 'release'; job: number }
    | { t: 'late'; job: number; attempt: number; operator: number | null; prompt: number; completion: number }
    | { t: 'restart' };

  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({ t: fc.constant('topup' as const), client: fc.nat(2), amount: fc.integer({ min: 1, max: 20_000_000 }) }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('hold' as const),
        job: fc.nat(5),
        client: fc.option(fc.nat(2), { freq: 5 }),
        price: fc.nat(PRICES.length - 1),
        body: fc.constantFrom(1040, 2064, 4112, 4 * 1024 * 1024 + 16),
        maxTokens: fc.integer({ min: 1, max: 32768 }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('settle' as const),
        job: fc.nat(7),
        attempt: fc.nat(3),
        operator: fc.option(fc.nat(1), { freq: 6 }),
        prompt: fc.nat(5_000_000),
        completion: fc.nat(40_000),
      }),
    },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), job: fc.nat(7) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('late' as const),
        job: fc.nat(7),
        attempt: fc.nat(3),
        operator: fc.option(fc.nat(1), { freq: 6 }),
        prompt: fc.nat(5_000_000),
        completion: fc.nat(40_000),
      }),
    },
    { weight: 1, arbitrary: fc.constant({ t: 'restart' as const }) },
  );

  it('keeps every invariant over random holds, settlements, failures, retries, duplicate and late receipts and restarts', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 5, maxLength: 60, size: 'max' }), async (cmds) => {
        const opened = await factory.open();
        let store = opened.store;
        try {
          const clients = await Promise.all([0, 1, 2].map((i) => store.accounts.createApiKey({ name: `c${i}`, now: 1 })));
          const operators = await Promise.all([0, 1].map((i) => store.accounts.createOperator({ name: `o${i}`, now: 1 })));
          const jobIds = Array.from({ length: 8 }, jobId);
          // The model: what each balance must be, and what each job did.
          const balance = [0n, 0n, 0n];
          const earned = [0n, 0n];
          let platform = 0n;
          const jobs = new Map<
            number,
            {
              client: number | null;
              hold: bigint;
              price: Price;
              body: number;
              maxTokens: number;
              status: 'held' | 'settled' | 'released';
              /** The attempt the ledger has on record: 0 from the hold, the settling one after a settle. */
              attempt: number;
            }
          >();
          for (const c of cmds) {
            switch (c.t) {
              case 'topup':
                expect(await store.ledger.topUp(clients[c.client]!.id, BigInt(c.amount), 2)).toBe(balance[c.client]! + BigInt(c.amount));
                balance[c.client]! += BigInt(c.amount);
                break;
              case 'hold': {
                const price = PRICES[c.price]!;
                const amount = holdAmount(price, c.body, c.maxTokens);
                // A paid job without a key is refused before the database is asked.
                const expected =
                  c.client === null && amount > 0n
                    ? 'NJ_UNAUTHORIZED'
                    : jobs.has(c.job)
                      ? 'NJ_DUPLICATE_JOB'
                      : c.client !== null && amount > balance[c.client]!
                        ? 'NJ_INSUFFICIENT_FUNDS'
                        : 'ok';
                const got = await codeOf(
                  store.ledger.hold({
                    jobId: jobIds[c.job]!,
                    keyId: c.client === null ? null : clients[c.client]!.id,
                    model: 'm',
                    price,
                    operatorShareBps: 9500,
                    bodyLength: c.body,
                    maxTokens: c.maxTokens,
                    now: 3,
                  }),
                );
                expect(got).toBe(expected);
                if (got === 'ok') {
                  jobs.set(c.job, {
                    client: c.client,
                    hold: amount,
                    price,
                    body: c.body,
                    maxTokens: c.maxTokens,
                    status: 'held',
                    attempt: 0,
                  });
                  if (c.client !== null) balance[c.client]! -= amount;
                  // Accepted by attempt 0: only that attempt's late receipt may settle it.
                  await store.ledger.assign(jobIds[c.job]!, 'a'.repeat(32), 0);
                }
                break;
              }
              case 'settle': {
                const result = await store.ledger.settle({
                  jobId: jobIds[c.job]!,
                  attempt: c.attempt,
                  agentId: 'a'.repeat(32),
                  operatorId: c.operator === null ? null : operators[c.operator]!.id,
                  promptTokens: c.prompt,
                  completionTokens: c.completion,
                  finishReason: 'stop',
                  outcome: 'done',
                  receipt: '{}',
                  now: 4,
                });
                const job = jobs.get(c.job);
                if (!job) {
                  expect(result).toEqual({ status: 'unknown' });
                  break;
                }
                if (job.status !== 'held') {
                  expect(result).toMatchObject({ status: job.status, duplicate: true });
                  break;
                }
                const cost = costOf(job.price, Math.min(c.prompt, job.body), Math.min(c.completion, job.maxTokens));
                const charged = c.operator === null || job.client === null ? 0n : cost < job.hold ? cost : job.hold;
                const op = operatorShare(charged, 9500);
                expect(result).toEqual({
                  status: 'settled',
                  duplicate: false,
                  charged,
                  operatorAmount: op,
                  platformAmount: charged - op,
                  released: job.hold - charged,
                });
                if (job.client !== null) balance[job.client]! += job.hold - charged;
                if (c.operator !== null) earned[c.operator]! += op;
                platform += charged - op;
                job.status = 'settled';
                job.attempt = c.attempt;
                break;
              }
              case 'release': {
                const result = await store.ledger.release(jobIds[c.job]!, 'failed', 5);
                const job = jobs.get(c.job);
                if (!job) expect(result).toEqual({ status: 'unknown' });
                else if (job.status === 'settled') expect(result).toEqual({ status: 'settled', duplicate: true });
                else if (job.status === 'released') expect(result).toMatchObject({ status: 'released', duplicate: true });
                else {
                  expect(result).toEqual({ status: 'released', duplicate: false, amount: job.hold });
                  if (job.client !== null) balance[job.client]! += job.hold;
                  job.status = 'released';
                }
                break;
              }
              case 'late': {
                const result = await store.ledger.settleLate({
                  jobId: jobIds[c.job]!,
                  attempt: c.attempt,
                  agentId: 'a'.repeat(32),
                  operatorId: c.operator === null ? null : operators[c.operator]!.id,
                  model: 'm',
                  promptTokens: c.prompt,
                  completionTokens: c.completion,
                  requestDigest: 'x',
                  finishReason: 'cancelled',
                  receipt: '{}',
                  now: 5,
                });
                const job = jobs.get(c.job);
                if (!job) {
                  expect(result).toEqual({ status: 'unknown' });
                  break;
                }
                if (c.attempt !== job.attempt) {
                  expect(result.status).toBe('refused');
                  break;
                }
                if (job.status === 'settled') {
                  expect(result).toEqual({ status: 'duplicate' });
                  break;
                }
                const cost = costOf(job.price, Math.min(c.prompt, job.body - 20), Math.min(c.completion, job.maxTokens));
                const allowed = c.operator === null || job.client === null ? 0n : cost < job.hold ? cost : job.hold;
                // After a release the charge comes from the balance, and never drives it below zero.
                const from = job.status === 'held' ? 'hold' : 'client';
                const charged = from === 'hold' || job.client === null || allowed <= balance[job.client]! ? allowed : balance[job.client]!;
                const op = operatorShare(charged, 9500);
                expect(result).toMatchObject({ status: 'settled', from, charged, operatorAmount: op, shortfall: allowed - charged });
                if (job.client !== null) balance[job.client]! += from === 'hold' ? job.hold - charged : -charged;
                if (c.operator !== null) earned[c.operator]! += op;
                platform += charged - op;
                job.status = 'settled';
                break;
              }
              case 'restart':
                await store.dispose();
                store = await opened.reopen();
                break;
            }
          }
          expect(await store.ledger.checkInvariants()).toEqual([]);
          for (let i = 0; i < 3; i++) {
            const held = [...jobs.values()].filter((j) => j.client === i && j.status === 'held').reduce((s, j) => s + j.hold, 0n);
            expect(await store.ledger.clientBalance(clients[i]!.id)).toEqual({ balance: balance[i], held });
          }
          for (let i = 0; i < 2; i++) expect(await store.ledger.balance(ACCOUNTS.operator(operators[i]!.id))).toBe(earned[i]);
          expect(await store.ledger.balance(ACCOUNTS.platform)).toBe(platform);
          // After a crash nothing is running: releasing every hold leaves no money stranded.
          await store.ledger.releaseAllHeld('gateway restarted', 6);
          expect(await store.ledger.balance(ACCOUNTS.holds)).toBe(0n);
          expect(await store.ledger.checkInvariants()).toEqual([]);
        } finally {
          await store.dispose();
        }
      }),
      { numRuns: options.runs },
    );
  });

  it('sweeps old settled and released job rows, never a held one, and never a transfer or a balance', async () => {
    // Fails without migration 4 (the transfers' foreign key to jobs dropped): deleting a job row
    // that has transfers is refused by the database. Fails without the transfers check in hold():
    // a swept paid jobId could be held again (the unique transfer kind then fails as NJ_INTERNAL).
    const { store } = await factory.open();
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'client', now: 1 });
      const op = await accounts.createOperator({ name: 'op', now: 1 });
      await ledger.topUp(key.id, 10_000_000n, 1);
      const price: Price = { promptPerMTok: 1_000_000n, completionPerMTok: 1_000_000n };
      const hold = (id: string, keyId: string | null, p: Price, now: number) =>
        ledger.hold({ jobId: id, keyId, model: 'm', price: p, operatorShareBps: 9500, bodyLength: 2064, maxTokens: 10, now });
      const [settledOld, releasedOld, freeOld, releasedNew, settledNew, held] = Array.from({ length: 6 }, jobId);
      const receipt = { attempt: 0, agentId: 'a'.repeat(32), operatorId: op.id, promptTokens: 5, completionTokens: 5 };
      const done = { finishReason: 'stop', outcome: 'done', receipt: '{}' };
      await hold(settledOld!, key.id, price, 10);
      await ledger.settle({ jobId: settledOld!, ...receipt, ...done, now: 20 });
      await hold(releasedOld!, key.id, price, 10);
      await ledger.release(releasedOld!, 'declined', 20);
      await hold(freeOld!, null, { promptPerMTok: 0n, completionPerMTok: 0n }, 10);
      await ledger.release(freeOld!, 'failed', 20);
      await hold(releasedNew!, key.id, price, 10);
      await ledger.release(releasedNew!, 'declined', 200);
      await hold(settledNew!, key.id, price, 10);
      await ledger.settle({ jobId: settledNew!, ...receipt, ...done, now: 200 });
      await hold(held!, key.id, price, 10);
      const before = { accounts: await ledger.accounts(), transfers: await store.driver.all('SELECT * FROM ledger_transfers ORDER BY id') };

      expect(await ledger.sweepJobs({ settledBefore: 100, releasedBefore: 100, batch: 1 })).toEqual({ settled: 1, released: 2 });
      for (const id of [settledOld, releasedOld, freeOld]) expect(await ledger.job(id!)).toBeNull();
      for (const id of [releasedNew, settledNew, held]) expect(await ledger.job(id!)).not.toBeNull();
      expect({
        accounts: await ledger.accounts(),
        transfers: await store.driver.all('SELECT * FROM ledger_transfers ORDER BY id'),
      }).toEqual(before);
      expect(await ledger.checkInvariants()).toEqual([]);
      // Held jobs are never swept, however old.
      expect(await ledger.sweepJobs({ settledBefore: 1e15, releasedBefore: 1e15 })).toEqual({ settled: 1, released: 1 });
      expect(await ledger.job(held!)).not.toBeNull();
      expect(await ledger.checkInvariants()).toEqual([]);
      // A swept paid job's id stays spent.
      expect(await codeOf(hold(settledOld!, key.id, price, 300))).toBe('NJ_DUPLICATE_JOB');
      expect(await codeOf(hold(releasedOld!, key.id, price, 300))).toBe('NJ_DUPLICATE_JOB');
    } finally {
      await store.dispose();
    }
  });
}
