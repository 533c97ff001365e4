/**
 * The ledger: double-entry bookkeeping in integer micro-credits (1 credit = 1 000 000).
 *
 * Every movement is one transfer row (debit account, credit account, positive amount) and the
 * matching change to both accounts' cached balances, in one transaction. Accounts:
 * `client:<keyId>`, `operator:<id>`, `platform:revenue`, `holds` (money reserved for running
 * jobs) and `external` (the outside world: top-ups come from it, payouts go to it; its balance is
 * minus the money inside the system, so all balances always sum to zero).
 *
 * A job moves money at most three times, each a transfer kind unique per job (a database
 * constraint), so it can never be charged twice:
 *   hold            client → holds    the worst case, at admission
 *   settle-operator holds → operator  the operator's share of the charge, on a verified receipt
 *   settle-platform holds → platform  the rest of the charge
 *   release         holds → client    whatever was held and not charged
 * A job is `held` until exactly one of settle (on its verified receipt) or release (no receipt)
 * moves it to `settled` or `released`; both are idempotent.
 *
 * Late settlement ({@link LedgerStore.settleLate}): a receipt the agent could not deliver while the
 * job ran (its link dropped, the gateway restarted) arrives later. A job still held settles from
 * its hold as above. A job already released has no hold left; it is charged from the client's
 * balance instead, in the same two transfer kinds (settle-operator, settle-platform; a released
 * job never had them, so the per-job uniqueness still makes a second charge impossible):
 *   settle-operator client → operator  the operator's share
 *   settle-platform client → platform  the rest
 * for at most what the hold would have allowed (the receipt's claims cut to their bounds, the
 * charge never above the hold) and never more than the client's balance now: the client's balance
 * never goes below zero, and whatever of the charge it cannot cover is not charged (the result
 * says how much). Either way the job becomes `settled`, with outcome `settled-late` and its
 * `settled_late_at` set; a second delivery moves no money.
 * Pending and disputes: a settled job records `payable_at` (the pending window's end, given by the
 * caller). Until then its operator share counts as pending, not payable, and a payout takes only
 * the payable part; the share itself is in the operator's account from the settlement on, so
 * nothing moves when the window closes. A client's countersignature ({@link LedgerStore.countersign},
 * one per job) that counts fewer completion tokens than the receipt claims, or names another reply
 * digest, disputes the job when both are in — at the countersignature if the job is settled and
 * still pending, else at the settlement: the charge is cut to the client's count and the difference
 * goes back to the client in two more transfer kinds, unique per job,
 *   dispute-operator operator → client
 *   dispute-platform platform → client
 * and the job's remaining operator share stays pending (disputed) for good.
 * Forfeits ({@link LedgerStore.forfeit}): a job whose reply the gateway's auditor found dishonest
 * on the client's reveal gives its whole charge back, if its operator share is still pending (the
 * window open, or disputed), in two more transfer kinds, unique per job,
 *   forfeit-operator operator → client
 *   forfeit-platform platform → client
 * and is marked forfeited (its charge and shares recorded as 0). A job already payable moves
 * nothing: the money may have been paid out.
 * Retention ({@link LedgerStore.sweepJobs}) deletes old `settled` and `released` job rows, never a
 * `held` one and never a transfer: the transfers are the money record and stay for ever (the
 * balances are their sums), and their unique (job_id, kind) still refuses a second hold, settle
 * or release under a swept job's id.
 */
import { NightjarError, randomBytes, toHex } from '../../shared/index.js';
import { boundClaims } from '../claims.js';
import { bigOf, intOf, intOrNull, textOrNull, type SqlDriver, type SqlExecutor, type SqlRow } from '../store/sql.js';
import type { Price } from '../accounts/account.store.js';

/** Micro-credits in one credit. */
/** Tokens a price is quoted for. */
const PER_MTOK = 1_000_000n;

/** The outcome of a job released because its receipt did not verify (ClientJob); never settled late. */
export const RECEIPT_REFUSED = 'receipt-invalid';

/** The well-known accounts. */
export const ACCOUNTS = {
  holds: 'holds',
  platform: 'platform:revenue',
  external: 'external',
  client: (keyId: string) => `client:${keyId}`,
  operator: (operatorId: string) => `operator:${operatorId}`,
} as const;

/**
 * The most a job can cost: every byte of the padded request body counted as a prompt token (a
 * token is at least one byte of text, and the body also holds the JSON and padding around it),
 * plus maxTokens of completion. Rounded up to a whole micro-credit.
 */
export function holdAmount(price: Price, bodyLength: number, maxTokens: number): bigint {
  return costOf(price, bodyLength, maxTokens);
}

/** What `promptTokens` and `completionTokens` cost at `price`, rounded up to a micro-credit. */
export function costOf(price: Price, promptTokens: number, completionTokens: number): bigint {
  const total = BigInt(promptTokens) * price.promptPerMTok + BigInt(completionTokens) * price.completionPerMTok;
  return (total + PER_MTOK - 1n) / PER_MTOK;
}

/** The operator's part of `charged` at `shareBps` basis points, rounded down; the platform keeps the rest. */
export function operatorShare(charged: bigint, shareBps: number): bigint {
  return (charged * BigInt(shareBps)) / 10_000n;
}

/** What the gateway knows when it admits a job. */
export interface HoldRequest {
  jobId: string;
  /** The paying API key; null for an anonymous job, which must cost nothing. */
  keyId: string | null;
  model: string;
  price: Price;
  /** Operator share in basis points (9500 = 95 %). */
  operatorShareBps: number;
  /** Padded request ciphertext length: the bound on prompt tokens. */
  bodyLength: number;
  maxTokens: number;
  /** sha256 of the request ciphertext (base64url), checked against a late receipt. Defaults to none. */
  requestDigest?: string;
  /**
   * The gateway node that holds the job's stream (cluster mode): if that node is found dead, another
   * node releases the hold. Defaults to null (the embedded default: one node, every hold its own).
   */
  nodeId?: string | null;
  /**
   * Jobs the key may hold at once, this one included, counted over every node on the database in
   * the hold's own transaction (cluster mode's maxStreamsPerKey): a hold past it throws
   * {@link tooManyStreams}. Not applied to an anonymous job. Defaults to null (not counted here).
   */
  maxHeldPerKey?: number | null;
  now: number;
}

/**
 * NJ_RATE_LIMITED for a key that already has `max` reply streams open (options.maxStreamsPerKey),
 * with a 1 s retry hint: what admission answers whether this node's count or the ledger's found it.
 */
export function tooManyStreams(max: number): NightjarError {
  return new NightjarError('NJ_RATE_LIMITED', `this key already has ${max} ${max === 1 ? 'reply' : 'replies'} streaming, its limit`, {
    retryAfterMs: 1000,
  });
}

/** A receipt delivered after its job ended at the gateway (see the module comment). */
export interface LateSettleRequest {
  jobId: string;
  attempt: number;
  /** The agent that delivered the receipt (it signed it: the caller checked the signature). */
  agentId: string;
  /** The agent's operator; with none, nothing is charged. */
  operatorId: string | null;
  model: string;
  /** The receipt's claims, as signed; the ledger cuts them to the job's bounds. */
  promptTokens: number;
  completionTokens: number;
  /** The receipt's request digest (base64url). */
  requestDigest: string;
  finishReason: string;
  /** The signed receipt, as JSON, kept for the operator's export. */
  receipt: string;
  /** When the operator's share becomes payable (the pending window's end). Defaults to `now`: at once. */
  payableAt?: number;
  now: number;
}

/** How a late settlement ended. */
export type LateSettleResult =
  | {
      status: 'settled';
      /** The job was still held (settled from its hold) or had been released (charged from the client). */
      from: 'hold' | 'client';
      charged: bigint;
      operatorAmount: bigint;
      platformAmount: bigint;
      /** What the bounded claims cost but the client's balance could not cover (not charged). */
      shortfall: bigint;
      /** The claims that exceeded their bounds. */
      capped: ('prompt' | 'completion')[];
      /** The dispute this settlement applied (a countersignature had arrived first); absent when none did. */
      dispute?: JobDispute;
    }
  | { status: 'duplicate' }
  | { status: 'refused'; reason: string }
  | { status: 'unknown' };

/** What a verified receipt says, as the gateway will bill it. */
export interface SettleRequest {
  jobId: string;
  attempt: number;
  agentId: string;
  /** The agent's operator; with none, nothing is charged. */
  operatorId: string | null;
  promptTokens: number;
  /** Completion tokens to bill (for a cancelled job, already capped at what was delivered). */
  completionTokens: number;
  finishReason: string;
  /** 'done' or 'cancelled'. */
  outcome: string;
  /** The signed receipt, as JSON, kept for the operator's export. */
  receipt: string;
  /** When the operator's share becomes payable (the pending window's end). Defaults to `now`: at once. */
  payableAt?: number;
  now: number;
}

/** How a settle call ended. */
export type SettleResult =
  | {
      status: 'settled';
      duplicate: boolean;
      charged: bigint;
      operatorAmount: bigint;
      platformAmount: bigint;
      released: bigint;
      /** The dispute this settlement applied (a countersignature had arrived first); absent when none did. */
      dispute?: JobDispute;
    }
  | { status: 'released'; duplicate: true }
  | { status: 'unknown' };

/** How a release call ended. */
export type ReleaseResult =
  { status: 'released'; duplicate: boolean; amount: bigint } | { status: 'settled'; duplicate: true } | { status: 'unknown' };

/** One job as the ledger records it. */
export interface JobRecord {
  jobId: string;
  keyId: string | null;
  model: string;
  status: 'held' | 'settled' | 'released';
  holdAmount: bigint;
  promptPerMTok: bigint;
  completionPerMTok: bigint;
  operatorShareBps: number;
  bodyLength: number;
  maxTokens: number;
  createdAt: number;
  endedAt: number | null;
  outcome: string | null;
  agentId: string | null;
  operatorId: string | null;
  attempt: number | null;
  promptTokens: number | null;
  completionTokens: number | null;
  charged: bigint | null;
  operatorAmount: bigint | null;
  platformAmount: bigint | null;
  finishReason: string | null;
  receipt: string | null;
  /** sha256 of the request ciphertext, base64url, when recorded at the hold. */
  requestDigest: string | null;
  /** The most completion tokens a late receipt may bill, when the gateway knew it at the release. */
  completionBound: number | null;
  /** When a late receipt settled the job, or null. */
  settledLateAt: number | null;
  /** When the operator's share became (or becomes) payable; null before settlement. */
  payableAt: number | null;
  /** When the client's countersignature disputed the receipt, or null. */
  disputedAt: number | null;
  /** The dispute's numbers, or null. */
  dispute: JobDispute | null;
  /** When an audit of the revealed job forfeited its charge, or null. */
  forfeitedAt: number | null;
  /** The gateway node that held the job's stream (cluster mode), or null. */
  nodeId: string | null;
}

/** What became of a forfeit. */
export type ForfeitResult =
  /** The charge went back to the client (`refunded`: the operator's and the platform's shares). */
  | { status: 'forfeited'; refunded: bigint; fromOperator: bigint; fromPlatform: bigint }
  /** The job's operator share was already payable: nothing moves. */
  | { status: 'payable' }
  /** The job was forfeited before: nothing more moves. */
  | { status: 'duplicate' }
  /** No settled job with that id. */
  | { status: 'unknown' };

/** Why a settled job was disputed, with its numbers (kept as JSON on the job). */
export interface JobDispute {
  /** Completion tokens the receipt claimed (already cut to the gateway's own bounds). */
  claimedCompletionTokens: number;
  /** Completion tokens the client's countersignature supports. */
  countedCompletionTokens: number;
  /** The receipt's reply digest differs from the one the client computed. */
  digestDiffers: boolean;
  /** The stream the client received ended without its final chunk. */
  broken: boolean;
  /** What was charged before the dispute, and what was given back to the client, in micro-credits (decimal strings). */
  chargedBefore: string;
  refunded: string;
}

/** A client's countersignature as the ledger stores it (the gateway checked its MAC). */
export interface CountersignRecord {
  jobId: string;
  /** The API key that posted it: it must be the job's. */
  keyId: string;
  replyDigest: string;
  completionTokens: number;
  chunks: number;
  received: 'done' | 'broken';
  mac: string;
  now: number;
}

/** What became of a countersignature. */
export type CountersignResult =
  /** Stored; `disputed` when it disputed the settled receipt now, `window` when the job is not settled yet or still pending. */
  | { status: 'stored'; disputed: boolean; refunded: bigint }
  /** Stored, but the job's pending window had closed: nothing moves. */
  | { status: 'late' }
  | { status: 'duplicate' }
  | { status: 'unknown' };

/** An operator's balance, split into what is still pending (or disputed) and what may be paid out. */
export interface OperatorBalance {
  balance: bigint;
  /** Shares of jobs whose pending window has not closed, and of disputed jobs. */
  pending: bigint;
  /** balance − pending (never below 0): what a payout may take. */
  payable: bigint;
}

/** One row of an operator's earnings: a UTC day and a model. */
export interface LedgerEarningsRow {
  /** UTC day, as YYYY-MM-DD. */
  day: string;
  model: string;
  jobs: number;
  promptTokens: number;
  completionTokens: number;
  earned: bigint;
}

/** What {@link LedgerStore.sweepJobs} deletes: job rows that ended before each time. */
export interface SweepRequest {
  /** Settled jobs (billed on a receipt) that ended before this time. */
  settledBefore: number;
  /** Released jobs (refused, failed, cancelled without a receipt) that ended before this time. */
  releasedBefore: number;
  /** Rows deleted per statement, so one sweep never holds the database long. Defaults to 1000. */
  batch?: number;
}

/** How many job rows a sweep deleted. */
export interface SweepResult {
  /** Settled job rows deleted. */
  settled: number;
  /** Released job rows deleted. */
  released: number;
}

/** A ledger account and its balance. */
export interface AccountBalance {
  id: string;
  kind: string;
  balance: bigint;
}

/** Storage of money. Implemented on SQL by {@link SqlLedgerStore}. */
export interface LedgerStore {
  /** Credits a client key from outside (an admin top-up); resolves with the new balance. */
  topUp(keyId: string, amount: bigint, now: number, memo?: string): Promise<bigint>;
  /** Records money paid out to an operator; resolves with the operator's new balance. */
  payout(operatorId: string, amount: bigint, now: number, memo?: string): Promise<bigint>;
  /**
   * Admits a job: records it and moves its worst case from the client to holds. Throws
   * NJ_DUPLICATE_JOB for a jobId seen before and NJ_INSUFFICIENT_FUNDS if the balance is short.
   */
  hold(request: HoldRequest): Promise<{ amount: bigint }>;
  /** Bills a held job on its verified receipt; idempotent per jobId. */
  settle(request: SettleRequest): Promise<SettleResult>;
  /**
   * Gives a held job's money back; idempotent per jobId. `completionBound`, when the gateway
   * knows it (the reply chunks it relayed), caps what a late receipt may bill. Defaults to none.
   */
  release(jobId: string, outcome: string, now: number, completionBound?: number | null): Promise<ReleaseResult>;
  /**
   * Records which agent and attempt a held job was given to (on its accepted): only that agent's
   * receipt for that attempt may settle it late. Committed without a flush of its own
   * (SqlDriver.runUnflushed): it survives a crash of the gateway process; a power cut may lose it,
   * and then that job's late receipt is refused.
   */
  assign(jobId: string, agentId: string, attempt: number): Promise<void>;
  /** Settles a receipt that arrived after its job ended here, exactly once (see the module comment). */
  settleLate(request: LateSettleRequest): Promise<LateSettleResult>;
  /** Releases every held job (after a crash, no stream is running); resolves with how many. */
  releaseAllHeld(outcome: string, now: number): Promise<number>;
  /** Releases the held jobs one gateway node owns (it stopped, or was found dead); resolves with how many. */
  releaseHeldOf(nodeId: string, outcome: string, now: number): Promise<number>;
  /** An account's balance (0 for an account never used). */
  balance(accountId: string): Promise<bigint>;
  /** A key's balance and the part of it held by running jobs. */
  clientBalance(keyId: string): Promise<{ balance: bigint; held: bigint }>;
  /** Every ledger account with its balance. */
  accounts(): Promise<AccountBalance[]>;
  /** One job as the ledger recorded it, or null. */
  job(jobId: string): Promise<JobRecord | null>;
  /** Settled jobs on `operatorId`'s agents that ended in [since, until), summed by UTC day and model. */
  earnings(operatorId: string, since: number, until: number): Promise<LedgerEarningsRow[]>;
  /** Settled jobs on `operatorId`'s agents, newest first, optionally before a cursor. */
  receipts(
    operatorId: string,
    options: { limit: number; before?: { endedAt: number; jobId: string }; since?: number },
  ): Promise<JobRecord[]>;
  /** Every violated invariant, described; empty when the books balance. */
  checkInvariants(): Promise<string[]>;
  /** Deletes old settled and released job rows (never a held job, never a transfer); resolves with how many. */
  sweepJobs(request: SweepRequest): Promise<SweepResult>;
  /**
   * Stores a client's countersignature of a job (once per job) and, if the job is settled and its
   * pending window still open, disputes a receipt that claims more than it (see the module comment).
   */
  countersign(record: CountersignRecord): Promise<CountersignResult>;
  /** An operator's balance, pending and payable at `now`. */
  operatorBalance(operatorId: string, now: number): Promise<OperatorBalance>;
  /**
   * Gives a settled job's charge back to its client because an audit found its reply dishonest,
   * if its operator share is still pending at `now` (see the module comment); idempotent per job.
   */
  forfeit(jobId: string, now: number): Promise<ForfeitResult>;
}

const jobOf = (r: SqlRow): JobRecord => ({
  jobId: String(r.job_id),
  keyId: textOrNull(r.client_key_id),
  model: String(r.model),
  status: String(r.status) as JobRecord['status'],
  holdAmount: bigOf(r.hold_amount),
  promptPerMTok: bigOf(r.prompt_price),
  completionPerMTok: bigOf(r.completion_price),
  operatorShareBps: intOf(r.operator_share_bps),
  bodyLength: intOf(r.body_length),
  maxTokens: intOf(r.max_tokens),
  createdAt: intOf(r.created_at),
  endedAt: intOrNull(r.ended_at),
  outcome: textOrNull(r.outcome),
  agentId: textOrNull(r.agent_id),
  operatorId: textOrNull(r.operator_id),
  attempt: intOrNull(r.attempt),
  promptTokens: intOrNull(r.prompt_tokens),
  completionTokens: intOrNull(r.completion_tokens),
  charged: r.charged === null || r.charged === undefined ? null : bigOf(r.charged),
  operatorAmount: r.operator_amount === null || r.operator_amount === undefined ? null : bigOf(r.operator_amount),
  platformAmount: r.platform_amount === null || r.platform_amount === undefined ? null : bigOf(r.platform_amount),
  finishReason: textOrNull(r.finish_reason),
  receipt: textOrNull(r.receipt),
  requestDigest: textOrNull(r.request_digest),
  completionBound: intOrNull(r.completion_bound),
  settledLateAt: intOrNull(r.settled_late_at),
  payableAt: intOrNull(r.payable_at),
  disputedAt: intOrNull(r.disputed_at),
  dispute: r.dispute === null || r.dispute === undefined ? null : (JSON.parse(String(r.dispute)) as JobDispute),
  forfeitedAt: intOrNull(r.forfeited_at),
  nodeId: textOrNull(r.node_id),
});

const KIND_OF = (id: string): string =>
  id === ACCOUNTS.holds
    ? 'holds'
    : id === ACCOUNTS.external
      ? 'external'
      : id.startsWith('client:')
        ? 'client'
        : id.startsWith('operator:')
          ? 'operator'
          : 'platform';

/**
 * Accounts whose balance is not cached in its ledger_accounts row but summed from its transfers
 * when read: the holds and platform accounts take a transfer in every job, and an operator's in
 * every job of its agents, so a cached balance would be one row every job's transaction updates.
 * On PostgreSQL, SERIALIZABLE aborts all but one of the transactions that update a row at once:
 * a few dozen concurrent jobs over a cluster exhausted their retries (the cluster bench, 3–55% of
 * jobs failing). Their rows stay at 0; only a client's balance, which a hold must check and debit
 * atomically, stays cached (contended only by that key's own jobs). Debits from the holds and
 * platform accounts are not checked against the balance (each job takes out only what its own hold
 * or settlement put in, which checkInvariants proves); debits from an operator's are (payouts,
 * disputes and forfeits: rare, so summing there costs little).
 */
const SUMMED_KINDS: ReadonlySet<string> = new Set(['holds', 'platform', 'operator']);
const summed = (id: string): boolean => SUMMED_KINDS.has(KIND_OF(id));

/** An account's balance from its transfers (credits less debits). */
async function summedBalance(q: SqlExecutor, id: string): Promise<bigint> {
  const r = await q.get(
    'SELECT (SELECT COALESCE(SUM(amount), 0) FROM ledger_transfers WHERE credit = ?) - ' +
      '(SELECT COALESCE(SUM(amount), 0) FROM ledger_transfers WHERE debit = ?) AS balance',
    [id, id],
  );
  return bigOf(r?.balance);
}

const DAY_MS = 86_400_000;

function dayString(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

/** The select-list terms that sum an account row `a`'s transfers, as `credits` and `debits`. */
const SUMS =
  '(SELECT COALESCE(SUM(amount), 0) FROM ledger_transfers WHERE credit = a.id) AS credits, ' +
  '(SELECT COALESCE(SUM(amount), 0) FROM ledger_transfers WHERE debit = a.id) AS debits';

/** {@link LedgerStore} on a SQL driver (SQLite or PostgreSQL). */
export class SqlLedgerStore implements LedgerStore {
  readonly #db: SqlDriver;

  constructor(driver: SqlDriver) {
    this.#db = driver;
  }

  async #account(tx: SqlExecutor, id: string, now: number): Promise<void> {
    await tx.run('INSERT INTO ledger_accounts (id, kind, balance, created_at) VALUES (?, ?, 0, ?) ON CONFLICT DO NOTHING', [
      id,
      KIND_OF(id),
      now,
    ]);
  }

  /**
   * Moves `amount` from `debit` to `credit`. With `guard`, the debit only happens if the debited
   * balance covers it (else NJ_INSUFFICIENT_FUNDS): the CHECK constraint would refuse a negative
   * balance anyway, this says why.
   */
  async #transfer(
    tx: SqlExecutor,
    t: { jobId: string | null; kind: string; debit: string; credit: string; amount: bigint; now: number; memo?: string },
  ): Promise<void> {
    if (t.amount <= 0n) return;
    const insufficient = (): NightjarError =>
      new NightjarError('NJ_INSUFFICIENT_FUNDS', `the balance of ${t.debit.split(':')[0]} account cannot cover ${t.amount} micro-credits`);
    if (summed(t.debit)) {
      if (KIND_OF(t.debit) === 'operator' && (await summedBalance(tx, t.debit)) < t.amount) throw insufficient();
    } else {
      const guarded = KIND_OF(t.debit) !== 'external';
      const changed = await tx.run(
        guarded
          ? 'UPDATE ledger_accounts SET balance = balance - ? WHERE id = ? AND balance >= ?'
          : 'UPDATE ledger_accounts SET balance = balance - ? WHERE id = ?',
        guarded ? [t.amount, t.debit, t.amount] : [t.amount, t.debit],
      );
      if (changed !== 1) throw insufficient();
    }
    if (!summed(t.credit)) await tx.run('UPDATE ledger_accounts SET balance = balance + ? WHERE id = ?', [t.amount, t.credit]);
    await tx.run(
      'INSERT INTO ledger_transfers (id, job_id, kind, debit, credit, amount, created_at, memo) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      [toHex(randomBytes(16)), t.jobId, t.kind, t.debit, t.credit, t.amount, t.now, t.memo ?? null],
    );
  }

  async topUp(keyId: string, amount: bigint, now: number, memo?: string): Promise<bigint> {
    if (amount <= 0n) throw new NightjarError('NJ_USAGE', 'a top-up must be a positive amount');
    return this.#db.transaction(async (tx) => {
      if (!(await tx.get('SELECT id FROM api_keys WHERE id = ?', [keyId]))) throw new NightjarError('NJ_NOT_FOUND', `no API key ${keyId}`);
      const account = ACCOUNTS.client(keyId);
      await this.#account(tx, account, now);
      await this.#account(tx, ACCOUNTS.external, now);
      await this.#transfer(tx, {
        jobId: null,
        kind: 'topup',
        debit: ACCOUNTS.external,
        credit: account,
        amount,
        now,
        memo: memo || undefined,
      });
      return bigOf((await tx.get('SELECT balance FROM ledger_accounts WHERE id = ?', [account]))?.balance);
    });
  }

  async payout(operatorId: string, amount: bigint, now: number, memo?: string): Promise<bigint> {
    if (amount <= 0n) throw new NightjarError('NJ_USAGE', 'a payout must be a positive amount');
    return this.#db.transaction(async (tx) => {
      if (!(await tx.get('SELECT id FROM operators WHERE id = ?', [operatorId])))
        throw new NightjarError('NJ_NOT_FOUND', `no operator ${operatorId}`);
      const account = ACCOUNTS.operator(operatorId);
      await this.#account(tx, account, now);
      await this.#account(tx, ACCOUNTS.external, now);
      const { payable, pending } = await this.#operatorBalance(tx, operatorId, now);
      if (amount > payable && pending > 0n)
        throw new NightjarError(
          'NJ_INSUFFICIENT_FUNDS',
          `only ${payable} micro-credits of the operator's balance are payable; ${pending} are pending or disputed`,
        );
      await this.#transfer(tx, {
        jobId: null,
        kind: 'payout',
        debit: account,
        credit: ACCOUNTS.external,
        amount,
        now,
        memo: memo || undefined,
      });
      return summedBalance(tx, account);
    });
  }

  async hold(r: HoldRequest): Promise<{ amount: bigint }> {
    const amount = holdAmount(r.price, r.bodyLength, r.maxTokens);
    if (r.keyId === null && amount > 0n) throw new NightjarError('NJ_UNAUTHORIZED', 'this model is not free: send an API key');
    if (!Number.isInteger(r.operatorShareBps) || r.operatorShareBps < 0 || r.operatorShareBps > 10_000) {
      throw new NightjarError('NJ_CONFIG_INVALID', 'the operator share must be 0–10000 basis points');
    }
    // The embedded default's statement stays as it was (no node column) when no node owns the hold.
    const nodeId = r.nodeId ?? null;
    const owned = nodeId !== null;
    const maxHeld = r.keyId === null ? null : (r.maxHeldPerKey ?? null);
    return this.#db.transaction(async (tx) => {
      if (maxHeld !== null) {
        // Counted in the transaction that inserts: two nodes admitting the key's jobs at once are
        // serialized (SQLite's one writer; PostgreSQL's SERIALIZABLE retries the loser, which then sees the winner's row).
        const held = intOf((await tx.get("SELECT COUNT(*) AS n FROM jobs WHERE client_key_id = ? AND status = 'held'", [r.keyId]))?.n);
        if (held >= maxHeld) throw tooManyStreams(maxHeld);
      }
      const inserted = await tx.run(
        'INSERT INTO jobs (job_id, client_key_id, model, status, hold_amount, prompt_price, completion_price, ' +
          `operator_share_bps, body_length, max_tokens, created_at, request_digest${owned ? ', node_id' : ''})
         VALUES (?, ?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?${owned ? ', ?' : ''}) ON CONFLICT DO NOTHING`,
        [
          r.jobId,
          r.keyId,
          r.model,
          amount,
          r.price.promptPerMTok,
          r.price.completionPerMTok,
          r.operatorShareBps,
          r.bodyLength,
          r.maxTokens,
          r.now,
          r.requestDigest ?? null,
          ...(owned ? [nodeId] : []),
        ],
      );
      if (inserted !== 1) throw new NightjarError('NJ_DUPLICATE_JOB', 'this jobId was already used; send a fresh request');
      // A job row swept by retention leaves its transfers: its id is still spent.
      if (await tx.get('SELECT 1 AS used FROM ledger_transfers WHERE job_id = ? LIMIT 1', [r.jobId])) {
        throw new NightjarError('NJ_DUPLICATE_JOB', 'this jobId was already used; send a fresh request');
      }
      if (amount > 0n && r.keyId !== null) {
        await this.#account(tx, ACCOUNTS.client(r.keyId), r.now);
        await this.#account(tx, ACCOUNTS.holds, r.now);
        try {
          await this.#transfer(tx, {
            jobId: r.jobId,
            kind: 'hold',
            debit: ACCOUNTS.client(r.keyId),
            credit: ACCOUNTS.holds,
            amount,
            now: r.now,
          });
        } catch (err) {
          if (err instanceof NightjarError && err.code === 'NJ_INSUFFICIENT_FUNDS') {
            throw new NightjarError(
              'NJ_INSUFFICIENT_FUNDS',
              `this request may cost up to ${amount} micro-credits, more than the key's balance`,
            );
          }
          throw err;
        }
      }
      return { amount };
    });
  }

  async settle(r: SettleRequest): Promise<SettleResult> {
    return this.#db.transaction(async (tx): Promise<SettleResult> => {
      const row = await tx.get('SELECT * FROM jobs WHERE job_id = ?', [r.jobId]);
      if (!row) return { status: 'unknown' };
      const job = jobOf(row);
      if (job.status === 'released') return { status: 'released', duplicate: true };
      if (job.status === 'settled') {
        return {
          status: 'settled',
          duplicate: true,
          charged: job.charged ?? 0n,
          operatorAmount: job.operatorAmount ?? 0n,
          platformAmount: job.platformAmount ?? 0n,
          released: job.holdAmount - (job.charged ?? 0n),
        };
      }
      const prompt = Math.max(0, Math.min(r.promptTokens, job.bodyLength));
      const completion = Math.max(0, Math.min(r.completionTokens, job.maxTokens));
      const settled = await this.#settleHeld(tx, job, r, prompt, completion, null);
      const refunded = await this.#dispute(tx, r.jobId, r.now, true);
      const { operatorAmount, platformAmount, released } = settled;
      if (refunded === null) return { status: 'settled', duplicate: false, ...settled };
      const after = jobOf((await tx.get('SELECT * FROM jobs WHERE job_id = ?', [r.jobId]))!);
      return {
        status: 'settled',
        duplicate: false,
        charged: after.charged ?? 0n,
        operatorAmount: after.operatorAmount ?? operatorAmount,
        platformAmount: after.platformAmount ?? platformAmount,
        released,
        ...(after.dispute ? { dispute: after.dispute } : {}),
      };
    });
  }

  /** Moves a held job to settled: the charge from its hold to operator and platform, the rest back to the client. */
  async #settleHeld(
    tx: SqlExecutor,
    job: JobRecord,
    r: Pick<SettleRequest, 'jobId' | 'attempt' | 'agentId' | 'operatorId' | 'finishReason' | 'outcome' | 'receipt' | 'now' | 'payableAt'>,
    prompt: number,
    completion: number,
    lateAt: number | null,
  ): Promise<{ charged: bigint; operatorAmount: bigint; platformAmount: bigint; released: bigint }> {
    const cost = costOf({ promptPerMTok: job.promptPerMTok, completionPerMTok: job.completionPerMTok }, prompt, completion);
    // Never more than was held; nothing at all without an operator to pay.
    const charged = r.operatorId === null || job.keyId === null ? 0n : cost < job.holdAmount ? cost : job.holdAmount;
    const operatorAmount = operatorShare(charged, job.operatorShareBps);
    const platformAmount = charged - operatorAmount;
    const released = job.holdAmount - charged;
    await this.#markSettled(tx, job.status, r, prompt, completion, { charged, operatorAmount, platformAmount }, lateAt);
    await this.#payShares(tx, r, ACCOUNTS.holds, operatorAmount, platformAmount);
    if (released > 0n && job.keyId !== null) {
      await this.#transfer(tx, {
        jobId: r.jobId,
        kind: 'release',
        debit: ACCOUNTS.holds,
        credit: ACCOUNTS.client(job.keyId),
        amount: released,
        now: r.now,
      });
    }
    return { charged, operatorAmount, platformAmount, released };
  }

  /** Records a job as settled, if it still has status `from`. */
  async #markSettled(
    tx: SqlExecutor,
    from: JobRecord['status'],
    r: Pick<SettleRequest, 'jobId' | 'attempt' | 'agentId' | 'operatorId' | 'finishReason' | 'outcome' | 'receipt' | 'now' | 'payableAt'>,
    prompt: number,
    completion: number,
    amounts: { charged: bigint; operatorAmount: bigint; platformAmount: bigint },
    lateAt: number | null,
  ): Promise<void> {
    const changed = await tx.run(
      `UPDATE jobs SET status = 'settled', ended_at = ?, outcome = ?, agent_id = ?, operator_id = ?, attempt = ?, prompt_tokens = ?,
         completion_tokens = ?, charged = ?, operator_amount = ?, platform_amount = ?, finish_reason = ?, receipt = ?, settled_late_at = ?,
         payable_at = ?
       WHERE job_id = ? AND status = ?`,
      [
        r.now,
        r.outcome,
        r.agentId,
        r.operatorId,
        r.attempt,
        prompt,
        completion,
        amounts.charged,
        amounts.operatorAmount,
        amounts.platformAmount,
        r.finishReason,
        r.receipt,
        lateAt,
        r.payableAt ?? r.now,
        r.jobId,
        from,
      ],
    );
    if (changed !== 1) throw new NightjarError('NJ_INTERNAL', 'the job changed under its settlement');
  }

  /** Pays the operator's and the platform's shares of a charge out of `from` (the holds, or the client). */
  async #payShares(
    tx: SqlExecutor,
    r: { jobId: string; operatorId: string | null; now: number },
    from: string,
    operatorAmount: bigint,
    platformAmount: bigint,
    memo?: string,
  ): Promise<void> {
    if (operatorAmount > 0n && r.operatorId !== null) {
      await this.#account(tx, ACCOUNTS.operator(r.operatorId), r.now);
      await this.#transfer(tx, {
        jobId: r.jobId,
        kind: 'settle-operator',
        debit: from,
        credit: ACCOUNTS.operator(r.operatorId),
        amount: operatorAmount,
        now: r.now,
        memo,
      });
    }
    if (platformAmount > 0n) {
      await this.#account(tx, ACCOUNTS.platform, r.now);
      await this.#transfer(tx, {
        jobId: r.jobId,
        kind: 'settle-platform',
        debit: from,
        credit: ACCOUNTS.platform,
        amount: platformAmount,
        now: r.now,
        memo,
      });
    }
  }

  async assign(jobId: string, agentId: string, attempt: number): Promise<void> {
    // Not flushed on its own (a job's third fsync otherwise): it must survive a crash of the gateway
    // process, which it does; the job's settle or release flushes it with itself.
    await this.#db.runUnflushed("UPDATE jobs SET agent_id = ?, attempt = ? WHERE job_id = ? AND status = 'held'", [
      agentId,
      attempt,
      jobId,
    ]);
  }

  async settleLate(r: LateSettleRequest): Promise<LateSettleResult> {
    return this.#db.transaction(async (tx): Promise<LateSettleResult> => {
      const row = await tx.get('SELECT * FROM jobs WHERE job_id = ?', [r.jobId]);
      if (!row) return { status: 'unknown' };
      const job = jobOf(row);
      // Only the agent the job was last given to, for that attempt, may bill it: an agent that was
      // failed over from, or one that never had the job, settles nothing (and is told so, not
      // "duplicate", even when another attempt settled the job).
      if (job.agentId !== r.agentId || job.attempt !== r.attempt) {
        return { status: 'refused', reason: 'the job was not given to this agent for this attempt' };
      }
      if (job.status === 'settled') return { status: 'duplicate' };
      // The job ended on a receipt from this very attempt that did not verify against the bytes
      // relayed (ClientJob releases it as 'receipt-invalid'): no later delivery bills it.
      if (job.status === 'released' && job.outcome === RECEIPT_REFUSED) {
        return { status: 'refused', reason: "this attempt's receipt was refused when the job ended: it did not match what was relayed" };
      }
      if (job.model !== r.model) return { status: 'refused', reason: 'the receipt names another model than the job asked for' };
      if (job.requestDigest !== null && job.requestDigest !== r.requestDigest) {
        return { status: 'refused', reason: 'the receipt covers another request than the job relayed' };
      }
      const bounded = boundClaims(r, { bodyLength: job.bodyLength, maxTokens: job.maxTokens, completionBound: job.completionBound });
      const prompt = Math.max(0, bounded.promptTokens);
      const completion = Math.max(0, bounded.completionTokens);
      const settle = { ...r, outcome: 'settled-late' };
      if (job.status === 'held') {
        const amounts = await this.#settleHeld(tx, job, settle, prompt, completion, r.now);
        const disputed = (await this.#dispute(tx, r.jobId, r.now, true)) !== null;
        const dispute = disputed ? jobOf((await tx.get('SELECT * FROM jobs WHERE job_id = ?', [r.jobId]))!).dispute : null;
        return { status: 'settled', from: 'hold', ...amounts, shortfall: 0n, capped: bounded.capped, ...(dispute ? { dispute } : {}) };
      }
      // Released: the hold went back to the client, so the charge comes from the client's balance,
      // capped at the hold and at what the balance holds now.
      const cost = costOf({ promptPerMTok: job.promptPerMTok, completionPerMTok: job.completionPerMTok }, prompt, completion);
      const allowed = r.operatorId === null || job.keyId === null ? 0n : cost < job.holdAmount ? cost : job.holdAmount;
      const balance =
        job.keyId === null
          ? 0n
          : bigOf((await tx.get('SELECT balance FROM ledger_accounts WHERE id = ?', [ACCOUNTS.client(job.keyId)]))?.balance);
      const charged = allowed < balance ? allowed : balance;
      const operatorAmount = operatorShare(charged, job.operatorShareBps);
      const platformAmount = charged - operatorAmount;
      await this.#markSettled(tx, 'released', settle, prompt, completion, { charged, operatorAmount, platformAmount }, r.now);
      // The transfers keep why the hold had gone back (the job row's outcome is now settled-late).
      const memo = `settled late, from the balance; the hold was released: ${job.outcome ?? 'unknown'}`;
      if (job.keyId !== null) await this.#payShares(tx, r, ACCOUNTS.client(job.keyId), operatorAmount, platformAmount, memo);
      const disputed = (await this.#dispute(tx, r.jobId, r.now, true)) !== null;
      const dispute = disputed ? jobOf((await tx.get('SELECT * FROM jobs WHERE job_id = ?', [r.jobId]))!).dispute : null;
      return {
        ...(dispute ? { dispute } : {}),
        status: 'settled',
        from: 'client',
        charged,
        operatorAmount,
        platformAmount,
        shortfall: allowed - charged,
        capped: bounded.capped,
      };
    });
  }

  async release(jobId: string, outcome: string, now: number, completionBound: number | null = null): Promise<ReleaseResult> {
    return this.#db.transaction((tx) => this.#release(tx, jobId, outcome, now, completionBound));
  }

  async #release(tx: SqlExecutor, jobId: string, outcome: string, now: number, completionBound: number | null): Promise<ReleaseResult> {
    const row = await tx.get('SELECT * FROM jobs WHERE job_id = ?', [jobId]);
    if (!row) return { status: 'unknown' };
    const job = jobOf(row);
    if (job.status === 'settled') return { status: 'settled', duplicate: true };
    if (job.status === 'released') return { status: 'released', duplicate: true, amount: job.holdAmount };
    const changed = await tx.run(
      "UPDATE jobs SET status = 'released', ended_at = ?, outcome = ?, completion_bound = ? WHERE job_id = ? AND status = 'held'",
      [now, outcome, completionBound, jobId],
    );
    if (changed !== 1) throw new NightjarError('NJ_INTERNAL', 'the job changed under its release');
    if (job.holdAmount > 0n && job.keyId !== null) {
      await this.#transfer(tx, {
        jobId,
        kind: 'release',
        debit: ACCOUNTS.holds,
        credit: ACCOUNTS.client(job.keyId),
        amount: job.holdAmount,
        now,
      });
    }
    return { status: 'released', duplicate: false, amount: job.holdAmount };
  }

  async releaseAllHeld(outcome: string, now: number): Promise<number> {
    return this.#releaseEach(await this.#db.all("SELECT job_id FROM jobs WHERE status = 'held'"), outcome, now);
  }

  async releaseHeldOf(nodeId: string, outcome: string, now: number): Promise<number> {
    return this.#releaseEach(await this.#db.all("SELECT job_id FROM jobs WHERE node_id = ? AND status = 'held'", [nodeId]), outcome, now);
  }

  /** Releases each job of `held` in its own transaction (idempotent: one another node released first counts nothing). */
  async #releaseEach(held: readonly SqlRow[], outcome: string, now: number): Promise<number> {
    let n = 0;
    for (const r of held) {
      const result = await this.release(String(r.job_id), outcome, now);
      if (result.status === 'released' && !result.duplicate) n++;
    }
    return n;
  }

  async balance(accountId: string): Promise<bigint> {
    if (summed(accountId)) return summedBalance(this.#db, accountId);
    return bigOf((await this.#db.get('SELECT balance FROM ledger_accounts WHERE id = ?', [accountId]))?.balance);
  }

  async clientBalance(keyId: string): Promise<{ balance: bigint; held: bigint }> {
    const balance = await this.balance(ACCOUNTS.client(keyId));
    const held = bigOf(
      (await this.#db.get("SELECT COALESCE(SUM(hold_amount), 0) AS held FROM jobs WHERE client_key_id = ? AND status = 'held'", [keyId]))
        ?.held,
    );
    return { balance, held };
  }

  async accounts(): Promise<AccountBalance[]> {
    return (await this.#db.all(`SELECT id, kind, balance, ${SUMS} FROM ledger_accounts a ORDER BY id`)).map((r) => ({
      id: String(r.id),
      kind: String(r.kind),
      balance: SUMMED_KINDS.has(String(r.kind)) ? bigOf(r.credits) - bigOf(r.debits) : bigOf(r.balance),
    }));
  }

  async job(jobId: string): Promise<JobRecord | null> {
    const row = await this.#db.get('SELECT * FROM jobs WHERE job_id = ?', [jobId]);
    return row ? jobOf(row) : null;
  }

  async earnings(operatorId: string, since: number, until: number): Promise<LedgerEarningsRow[]> {
    const rows = await this.#db.all(
      `SELECT ended_at / ${DAY_MS} AS day, model, COUNT(*) AS jobs, SUM(prompt_tokens) AS prompt_tokens,
              SUM(completion_tokens) AS completion_tokens, SUM(operator_amount) AS earned
         FROM jobs
        WHERE operator_id = ? AND status = 'settled' AND ended_at >= ? AND ended_at < ?
        GROUP BY ended_at / ${DAY_MS}, model
        ORDER BY day, model`,
      [operatorId, since, until],
    );
    return rows.map((r) => ({
      day: dayString(intOf(r.day)),
      model: String(r.model),
      jobs: intOf(r.jobs),
      promptTokens: intOf(r.prompt_tokens),
      completionTokens: intOf(r.completion_tokens),
      earned: bigOf(r.earned),
    }));
  }

  async receipts(
    operatorId: string,
    options: { limit: number; before?: { endedAt: number; jobId: string }; since?: number },
  ): Promise<JobRecord[]> {
    const limit = Math.max(1, Math.min(10_000, Math.floor(options.limit)));
    const params: (string | number)[] = [operatorId, options.since ?? 0];
    let cursor = '';
    if (options.before) {
      cursor = 'AND (ended_at < ? OR (ended_at = ? AND job_id < ?))';
      params.push(options.before.endedAt, options.before.endedAt, options.before.jobId);
    }
    params.push(limit);
    const rows = await this.#db.all(
      "SELECT * FROM jobs WHERE operator_id = ? AND status = 'settled' AND " +
        `ended_at >= ? ${cursor} ORDER BY ended_at DESC, job_id DESC LIMIT ?`,
      params,
    );
    return rows.map(jobOf);
  }

  async sweepJobs(r: SweepRequest): Promise<SweepResult> {
    const batch = Math.max(1, Math.floor(r.batch ?? 1000));
    const sweep = async (status: 'settled' | 'released', before: number): Promise<number> => {
      let total = 0;
      for (;;) {
        const n = await this.#db.run(
          `DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE status = ? AND ended_at < ? LIMIT ${batch})`,
          [status, before],
        );
        total += n;
        if (n < batch) return total;
      }
    };
    return { settled: await sweep('settled', r.settledBefore), released: await sweep('released', r.releasedBefore) };
  }

  async countersign(c: CountersignRecord): Promise<CountersignResult> {
    return this.#db.transaction(async (tx): Promise<CountersignResult> => {
      const row = await tx.get('SELECT * FROM jobs WHERE job_id = ?', [c.jobId]);
      if (!row || textOrNull(row.client_key_id) !== c.keyId) return { status: 'unknown' };
      const stored = await tx.run(
        `INSERT INTO job_countersigns (job_id, key_id, reply_digest, completion_tokens, chunks, received, mac, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        [c.jobId, c.keyId, c.replyDigest, c.completionTokens, c.chunks, c.received, c.mac, c.now],
      );
      if (stored !== 1) return { status: 'duplicate' };
      const job = jobOf(row);
      if (job.status === 'settled' && job.payableAt !== null && c.now >= job.payableAt) return { status: 'late' };
      const refunded = await this.#dispute(tx, c.jobId, c.now, false);
      return { status: 'stored', disputed: refunded !== null, refunded: refunded ?? 0n };
    });
  }

  /**
   * Disputes a settled job whose receipt claims more completion tokens than its countersignature
   * supports, or names another reply digest, while its pending window is open (or as it settles:
   * `settling`). Charges the client what its own count supports (never more than before), gives the
   * rest back from the operator's and the platform's shares, and marks the job disputed, its
   * operator share no longer payable. Resolves with the amount given back, or null if no dispute.
   */
  async #dispute(tx: SqlExecutor, jobId: string, now: number, settling: boolean): Promise<bigint | null> {
    const row = await tx.get('SELECT * FROM jobs WHERE job_id = ?', [jobId]);
    const cs = await tx.get('SELECT * FROM job_countersigns WHERE job_id = ?', [jobId]);
    if (!row || !cs) return null;
    const job = jobOf(row);
    if (job.status !== 'settled' || job.disputedAt !== null || job.forfeitedAt !== null || job.receipt === null) return null;
    if (!settling && job.payableAt !== null && now >= job.payableAt) return null;
    const signed = JSON.parse(job.receipt) as { receipt?: { replyDigest?: unknown } };
    const claimed = job.completionTokens ?? 0;
    const counted = intOf(cs.completion_tokens);
    const digestDiffers = signed.receipt?.replyDigest !== String(cs.reply_digest);
    if (claimed <= counted && !digestDiffers) return null;
    const chargedBefore = job.charged ?? 0n;
    const supported = costOf(
      { promptPerMTok: job.promptPerMTok, completionPerMTok: job.completionPerMTok },
      job.promptTokens ?? 0,
      Math.min(claimed, counted),
    );
    const charged = supported < chargedBefore ? supported : chargedBefore;
    const operatorAmount = operatorShare(charged, job.operatorShareBps);
    const platformAmount = charged - operatorAmount;
    const backFromOperator = (job.operatorAmount ?? 0n) - operatorAmount;
    const backFromPlatform = (job.platformAmount ?? 0n) - platformAmount;
    const dispute: JobDispute = {
      claimedCompletionTokens: claimed,
      countedCompletionTokens: counted,
      digestDiffers,
      broken: String(cs.received) === 'broken',
      chargedBefore: chargedBefore.toString(),
      refunded: (chargedBefore - charged).toString(),
    };
    await tx.run(
      `UPDATE jobs SET completion_tokens = ?, charged = ?, operator_amount = ?, platform_amount = ?, disputed_at = ?, dispute = ?
       WHERE job_id = ?`,
      [Math.min(claimed, counted), charged, operatorAmount, platformAmount, now, JSON.stringify(dispute), jobId],
    );
    if (job.keyId !== null) {
      const client = ACCOUNTS.client(job.keyId);
      const memo = 'disputed by the client countersignature';
      if (job.operatorId !== null) {
        const t = { jobId, debit: ACCOUNTS.operator(job.operatorId), credit: client, now, memo };
        await this.#transfer(tx, { ...t, kind: 'dispute-operator', amount: backFromOperator });
      }
      await this.#transfer(tx, {
        jobId,
        kind: 'dispute-platform',
        debit: ACCOUNTS.platform,
        credit: client,
        amount: backFromPlatform,
        now,
        memo,
      });
    }
    return chargedBefore - charged;
  }

  async forfeit(jobId: string, now: number): Promise<ForfeitResult> {
    return this.#db.transaction(async (tx): Promise<ForfeitResult> => {
      const row = await tx.get('SELECT * FROM jobs WHERE job_id = ?', [jobId]);
      if (!row) return { status: 'unknown' };
      const job = jobOf(row);
      if (job.status !== 'settled') return { status: 'unknown' };
      if (job.forfeitedAt !== null) return { status: 'duplicate' };
      const pending = job.disputedAt !== null || job.payableAt === null || now < job.payableAt;
      if (!pending) return { status: 'payable' };
      const fromOperator = job.operatorId === null ? 0n : (job.operatorAmount ?? 0n);
      const fromPlatform = job.platformAmount ?? 0n;
      const changed = await tx.run(
        'UPDATE jobs SET forfeited_at = ?, charged = 0, operator_amount = 0, platform_amount = 0 WHERE job_id = ? AND forfeited_at IS NULL',
        [now, jobId],
      );
      if (changed !== 1) throw new NightjarError('NJ_INTERNAL', 'the job changed under its forfeit');
      if (job.keyId !== null) {
        const client = ACCOUNTS.client(job.keyId);
        const memo = "forfeited: the gateway's audit of the revealed job failed";
        if (job.operatorId !== null) {
          await this.#transfer(tx, {
            jobId,
            kind: 'forfeit-operator',
            debit: ACCOUNTS.operator(job.operatorId),
            credit: client,
            amount: fromOperator,
            now,
            memo,
          });
        }
        await this.#transfer(tx, {
          jobId,
          kind: 'forfeit-platform',
          debit: ACCOUNTS.platform,
          credit: client,
          amount: fromPlatform,
          now,
          memo,
        });
      }
      return { status: 'forfeited', refunded: fromOperator + fromPlatform, fromOperator, fromPlatform };
    });
  }

  async operatorBalance(operatorId: string, now: number): Promise<OperatorBalance> {
    return this.#db.transaction((tx) => this.#operatorBalance(tx, operatorId, now));
  }

  async #operatorBalance(tx: SqlExecutor, operatorId: string, now: number): Promise<OperatorBalance> {
    const balance = await summedBalance(tx, ACCOUNTS.operator(operatorId));
    const row = await tx.get(
      `SELECT COALESCE(SUM(operator_amount), 0) AS pending FROM jobs
        WHERE operator_id = ? AND status = 'settled' AND (payable_at > ? OR disputed_at IS NOT NULL)`,
      [operatorId, now],
    );
    const pending = bigOf(row?.pending);
    return { balance, pending, payable: balance > pending ? balance - pending : 0n };
  }

  async checkInvariants(): Promise<string[]> {
    const problems: string[] = [];
    // 1. Each cached balance equals its transfers (a summed account's row stays 0).
    const drift = await this.#db.all(
      `SELECT a.id, a.kind, a.balance, COALESCE(c.s, 0) AS credits, COALESCE(d.s, 0) AS debits
         FROM ledger_accounts a
         LEFT JOIN (SELECT credit AS id, SUM(amount) AS s FROM ledger_transfers GROUP BY credit) c ON c.id = a.id
         LEFT JOIN (SELECT debit AS id, SUM(amount) AS s FROM ledger_transfers GROUP BY debit) d ON d.id = a.id`,
    );
    let total = 0n;
    for (const r of drift) {
      const cached = bigOf(r.balance);
      const computed = bigOf(r.credits) - bigOf(r.debits);
      const isSummed = SUMMED_KINDS.has(String(r.kind));
      const balance = isSummed ? computed : cached;
      total += balance;
      if (isSummed ? cached !== 0n : cached !== computed) {
        problems.push(`account ${String(r.id)} holds ${cached} but its transfers sum to ${computed}`);
      }
      if (balance < 0n && String(r.id) !== ACCOUNTS.external) problems.push(`account ${String(r.id)} is negative (${balance})`);
    }
    // 2. Money is neither made nor lost: every balance, the outside world's included, sums to zero.
    if (total !== 0n) problems.push(`balances sum to ${total}, not 0`);
    // 3. Every transfer touches known accounts (double entry; the foreign keys say so too).
    const orphans = await this.#db.get(
      'SELECT COUNT(*) AS n FROM ledger_transfers t WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = t.debit) ' +
        'OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = t.credit)',
    );
    if (intOf(orphans?.n) !== 0) problems.push(`${intOf(orphans?.n)} transfers name unknown accounts`);
    // 4. Per job: at most one transfer of each kind, and the amounts its status implies.
    const perJob = await this.#db.all(
      `SELECT j.job_id, j.status, j.client_key_id, j.hold_amount, j.charged, j.operator_amount, j.platform_amount, j.settled_late_at,
              COUNT(t.id) AS n,
              COUNT(DISTINCT t.kind) AS kinds,
              COALESCE(SUM(CASE WHEN t.kind = 'hold' THEN t.amount ELSE 0 END), 0) AS held,
              COALESCE(SUM(CASE WHEN t.kind = 'settle-operator' THEN t.amount ELSE 0 END), 0) AS op,
              COALESCE(SUM(CASE WHEN t.kind = 'settle-platform' THEN t.amount ELSE 0 END), 0) AS plat,
              COALESCE(SUM(CASE WHEN t.kind = 'release' THEN t.amount ELSE 0 END), 0) AS rel,
              COALESCE(SUM(CASE WHEN t.kind IN ('dispute-operator', 'dispute-platform', 'forfeit-operator', 'forfeit-platform')
                THEN t.amount ELSE 0 END), 0) AS back,
              COALESCE(SUM(CASE WHEN t.kind IN ('dispute-operator', 'forfeit-operator') THEN t.amount ELSE 0 END), 0) AS back_op,
              COALESCE(SUM(CASE WHEN t.kind = 'hold' AND t.debit <> ('client:' || j.client_key_id) THEN 1 ELSE 0 END), 0) AS wrong_payer,
              COALESCE(SUM(CASE WHEN t.kind IN ('release', 'dispute-operator', 'dispute-platform', 'forfeit-operator', 'forfeit-platform')
                AND t.credit <> ('client:' || j.client_key_id) THEN 1 ELSE 0 END), 0) AS wrong_payee,
              COALESCE(SUM(CASE WHEN t.kind IN ('settle-operator', 'settle-platform') AND t.debit <> 'holds' THEN t.amount ELSE 0 END), 0)
                AS from_client,
              COALESCE(SUM(CASE WHEN t.kind IN ('settle-operator', 'settle-platform') AND t.debit <> 'holds'
                AND t.debit <> ('client:' || j.client_key_id) THEN 1 ELSE 0 END), 0) AS wrong_settler
         FROM jobs j LEFT JOIN ledger_transfers t ON t.job_id = j.job_id
        GROUP BY j.job_id, j.status, j.client_key_id, j.hold_amount, j.charged, j.operator_amount, j.platform_amount, j.settled_late_at`,
    );
    let heldTotal = 0n;
    for (const r of perJob) {
      const id = String(r.job_id);
      const hold = bigOf(r.hold_amount);
      const held = bigOf(r.held);
      const op = bigOf(r.op);
      const plat = bigOf(r.plat);
      const rel = bigOf(r.rel);
      const status = String(r.status);
      if (intOf(r.n) !== intOf(r.kinds)) problems.push(`job ${id} has two transfers of one kind (charged twice?)`);
      if (intOf(r.wrong_payer) + intOf(r.wrong_payee) + intOf(r.wrong_settler) > 0)
        problems.push(`job ${id} moved money from or to another client than its own`);
      // A job settled late after its release was charged from its client's balance, not its hold.
      const fromClient = bigOf(r.from_client);
      if (held !== hold) problems.push(`job ${id} held ${held}, recorded ${hold}`);
      if (status === 'held') {
        heldTotal += hold;
        if (op + plat + rel !== 0n) problems.push(`job ${id} is still held but money left the hold`);
      } else if (status === 'released') {
        if (op + plat !== 0n) problems.push(`job ${id} was released but someone was paid`);
        if (rel !== hold) problems.push(`job ${id} was released with ${rel} of ${hold} returned`);
      } else {
        const charged = bigOf(r.charged);
        // A disputed job gave part of its shares back to the client, a forfeited one all of them: the
        // recorded shares are what is left.
        const back = bigOf(r.back);
        const backOp = bigOf(r.back_op);
        if (op - backOp !== bigOf(r.operator_amount) || plat - (back - backOp) !== bigOf(r.platform_amount))
          problems.push(`job ${id}: the payouts differ from the recorded shares`);
        if (op + plat - back !== charged) problems.push(`job ${id}: the shares do not add up to the charge`);
        if (charged > hold) problems.push(`job ${id} charged ${charged}, more than its hold ${hold}`);
        if (fromClient !== 0n && (fromClient !== op + plat || r.settled_late_at === null || r.settled_late_at === undefined))
          problems.push(`job ${id} was charged from its client's balance without a late settlement of the whole charge`);
        if (op + plat + rel !== hold + fromClient) problems.push(`job ${id}: its hold is not fully accounted for (a leak)`);
      }
    }
    // 5. The holds account holds exactly what running jobs reserved: no hold leaks.
    const holds = await this.balance(ACCOUNTS.holds);
    if (holds !== heldTotal) problems.push(`the holds account has ${holds}, running jobs reserved ${heldTotal}`);
    // 6. Transfers outside jobs are only top-ups and payouts, with the outside world.
    const stray = await this.#db.get(
      `SELECT COUNT(*) AS n FROM ledger_transfers WHERE (job_id IS NULL AND kind NOT IN ('topup', 'payout'))
          OR (job_id IS NOT NULL AND kind IN ('topup', 'payout'))
          OR (kind = 'topup' AND debit <> 'external') OR (kind = 'payout' AND credit <> 'external')`,
    );
    if (intOf(stray?.n) !== 0) problems.push(`${intOf(stray?.n)} transfers are of the wrong kind for their place`);
    return problems;
  }
}
