/**
 * One client job at the gateway: dispatch to the best live candidate the client sealed the
 * envelope for (or wait in the router's queue while they are all busy), fail over to the next
 * before the first chunk (fresh attempt number, failed agent excluded and penalised), relay
 * chunks unchanged after it, verify the receipt against the bytes relayed, bill it, and carry a
 * client disconnect to the agent as cancel. The gateway never holds a key. The job reaches agents
 * only through a {@link JobTransport} (see transport.ts for the contract), so the agent's socket
 * may be on this gateway node or another; the receipt is always verified here, on the job's node.
 *
 * Billing: exactly one of `settle` (on a verified receipt) or `release` (no verified receipt) is
 * called per job. A cancelled job is still billed on the receipt the agent sends after the
 * cancel, but for at most as many completion tokens as reply chunks had reached the client when
 * it went away (each chunk carries at least one token): the client pays for the prompt it sent
 * and the reply it was given, never for tokens generated after it left.
 *
 * Claims are bounded by what the gateway saw (claims.ts): prompt tokens by the padded request's
 * plaintext capacity, completion tokens by the text the relayed chunks could carry. A receipt
 * claiming more is billed at the bound and the cut is logged and counted. When an attempt is
 * lost (the agent's link dropped) the job records, with the release of its hold, the completion
 * bound of what it relayed, so a late receipt the agent delivers after reconnecting is billed no
 * higher (see LedgerStore.settleLate).
 */
import {
  LIMITS,
  NightjarError,
  ReplyDigest,
  errorMessage,
  fromBase64Url,
  verifyReceipt,
  type Clock,
  type Envelope,
  type ErrorCode,
  type JobEvent,
  type Logger,
  type Receipt,
  type SignedReceipt,
  type TimerHandle,
  withDefaults,
} from '../shared/index.js';
import { boundClaims, chunkTextCapacity, completionTokenBound } from './claims.js';
import type { JobTiming } from './honesty/speed.js';
import type { QueueWaiter, Router } from './router.js';
import { RECEIPT_REFUSED } from './ledger/ledger.store.js';
import type { AgentChannel, AttemptListener, JobCandidate, JobNeeds, JobTransport, ReceiptAck } from './transport.js';

/** Where a job's events go: the client's response stream. */
export interface JobSink {
  /** Writes one event to the client. */
  send(event: JobEvent): void;
}

/** How a job ended, as the client saw it. */
export type JobOutcome =
  | { status: 'done'; agentId: string; attempt: number; receipt: Receipt }
  | { status: 'failed'; code: ErrorCode; agentId: string | null; delivered: boolean }
  | { status: 'cancelled'; agentId: string | null; reason: string };

/** A verified receipt, ready to bill. */
export interface Settlement {
  agentId: string;
  operatorId: string | null;
  attempt: number;
  receipt: Receipt;
  signed: SignedReceipt;
  /** Prompt tokens to bill: the receipt's, cut to the bound of the request's size (claims.ts). */
  billedPromptTokens: number;
  /** Completion tokens to bill: the receipt's, cut to the relayed chunks' bound and, for a cancelled job, to what was delivered. */
  billedCompletionTokens: number;
  outcome: 'done' | 'cancelled';
}

/**
 * What the ledger did with a job's receipt: `settled` it now, found it settled before
 * (`duplicate`), or found no hold to settle (`released` already, or no record: nothing moved, and
 * the receipt can only be settled late).
 */
export type SettleResult = 'settled' | 'duplicate' | 'released';

/** The ledger's side of a job. */
export interface JobBilling {
  /** Bills the job on its verified receipt; resolves with what the ledger did. */
  settle(settlement: Settlement): Promise<SettleResult>;
  /**
   * Gives the job's hold back: no verified receipt will come now. `completionBound`, when the job
   * relayed part of a reply, caps what a receipt delivered late may bill. Defaults to none.
   */
  release(outcome: string, completionBound?: number | null): Promise<void>;
  /** Records the agent and attempt that accepted the job (only its receipt may settle it late). Defaults to nothing. */
  assigned?(agentId: string, attempt: number): Promise<void>;
}

/**
 * What the job measures, for metrics. A port with one implementer (the gateway's metrics), not a
 * listener list: it is called for every chunk on the relay's hot path.
 */
export interface JobObserver {
  /** The first chunk reached the client, `ms` after the job was admitted. */
  firstChunk(agentId: string, ms: number): void;
  /** A chunk went out to the client `ms` after it arrived from the agent. */
  relayed(ms: number): void;
  /** An attempt failed on an agent. */
  attemptFailed(agentId: string, code: ErrorCode): void;
  /** A receipt claimed more tokens of `field` than the bytes the gateway saw could hold. Defaults to nothing. */
  claimCapped?(agentId: string, field: 'prompt' | 'completion'): void;
}

/** Timing limits of a job. */
export interface JobTimeouts {
  /** From dispatch to the agent's accepted. Defaults to 10 000 ms. */
  acceptMs?: number;
  /** From accepted to the first chunk. Defaults to 60 000 ms. */
  firstChunkMs?: number;
  /** Longest silence between chunks. Defaults to 60 000 ms. */
  idleMs?: number;
  /** After a cancel, how long to wait for the agent's receipt before releasing the hold. Defaults to 10 000 ms. */
  cancelReceiptMs?: number;
}

/** The defaults of {@link JobTimeouts}. */
export const JOB_TIMEOUT_DEFAULTS: Required<JobTimeouts> = {
  acceptMs: 10_000,
  firstChunkMs: 60_000,
  idleMs: 60_000,
  cancelReceiptMs: 10_000,
};

/** Options of {@link ClientJob}. */
export interface ClientJobOptions {
  /** The sealed request. Required. */
  envelope: Envelope;
  /** sha256 of the request body ciphertext. Required. */
  requestDigest: Uint8Array;
  /** How the job reaches agents. Required. */
  transport: JobTransport;
  /** The queue the job waits in while its agents are busy. Required. */
  router: Router;
  /** Time source of the job's timeouts. Required. */
  clock: Clock;
  /** Where the job logs (metadata only, never a payload). Required. */
  logger: Logger;
  /** The client's stream. Required. */
  sink: JobSink;
  /** The job costs money: only agents bound to an operator may serve it. Defaults to false. */
  paid?: boolean;
  /**
   * The job was priced from the catalog: true for the files the catalog lists for the model.
   * Only agents serving such a file are tried, and a receipt naming any other file bills nothing
   * (so an agent that also lists an uncatalogued file under the id cannot bill for it). Defaults to
   * null: any file the agent serves (a free job).
   */
  pricedFiles?: ((model: string, sha256: string) => boolean) | null;
  /** The ledger's side of the job. Defaults to billing nothing. */
  billing?: JobBilling;
  /** Metrics. Defaults to measuring nothing. */
  observer?: JobObserver;
  /**
   * Hears the gateway's own timing of an attempt whose receipt verified and that the client did
   * not cancel (the honesty checks: measured speed, the physical ceiling). Defaults to nothing.
   */
  timed?: (channel: AgentChannel, timing: JobTiming) => void;
  /** Timeouts, each resolved against {@link JOB_TIMEOUT_DEFAULTS}. Defaults to those. */
  timeouts?: JobTimeouts;
  /** Attempts before giving up. Defaults to the number of recipients (at most LIMITS.maxAttempts either way). */
  maxAttempts?: number;
}

const NO_BILLING: JobBilling = { settle: async () => 'settled', release: async () => undefined };
const NO_OBSERVER: JobObserver = { firstChunk: () => undefined, relayed: () => undefined, attemptFailed: () => undefined };

/** The defaults of {@link ClientJobOptions} (its timeouts default to {@link JOB_TIMEOUT_DEFAULTS}). */
export const CLIENT_JOB_DEFAULTS: Required<
  Pick<ClientJobOptions, 'paid' | 'pricedFiles' | 'billing' | 'observer' | 'timed' | 'maxAttempts'>
> = {
  paid: false,
  timed: () => undefined,
  pricedFiles: null,
  billing: NO_BILLING,
  observer: NO_OBSERVER,
  maxAttempts: LIMITS.maxAttempts,
};

type ResolvedJobOptions = Required<Omit<ClientJobOptions, 'timeouts'>> & { timeouts: Required<JobTimeouts> };

interface Attempt {
  readonly channel: AgentChannel;
  readonly number: number;
  readonly dispatchedAt: number;
  readonly digest: ReplyDigest;
  /** Chunks received from the agent, and the part of them written to the client. */
  received: number;
  /** The most text, in bytes, the chunks received could carry (claims.ts). */
  capacity: number;
  delivered: number;
  started: boolean;
  /** Clock readings at the first and the latest chunk (the gateway's own timing of the attempt). */
  firstChunkAt: number;
  lastChunkAt: number;
  replySalt: string | null;
  timer: TimerHandle | null;
  /** The client went away; the attempt lives on only to collect its receipt. */
  cancelled: boolean;
  /** The listener heard its last frame (or was dropped). */
  closed: boolean;
}

/** Runs one job; await {@link ClientJob.finished} for its outcome and {@link ClientJob.billed} for the ledger. */
export class ClientJob {
  readonly jobId: string;
  /** The outcome as the client saw it. */
  readonly finished: Promise<JobOutcome>;
  /** Settles once the job has been billed (settled or released). */
  readonly billed: Promise<void>;
  readonly #o: ResolvedJobOptions;
  readonly #needs: JobNeeds;
  readonly #tried = new Set<string>();
  readonly #admittedAt: number;
  readonly #waiter: QueueWaiter;
  #attempt: Attempt | null = null;
  #next = 0;
  #lastError: NightjarError | null = null;
  #queued = false;
  #ended = false;
  #billing: 'open' | 'busy' | 'done' = 'open';
  /** The ledger's record of who accepted the job, written before the job is billed. */
  #assignment: Promise<void> = Promise.resolve();
  #resolve!: (o: JobOutcome) => void;
  #resolveBilled!: () => void;

  constructor(options: ClientJobOptions) {
    const { timeouts, ...rest } = options;
    this.#o = { ...withDefaults(CLIENT_JOB_DEFAULTS, rest), timeouts: withDefaults(JOB_TIMEOUT_DEFAULTS, timeouts) };
    const { header } = options.envelope;
    this.#needs = { model: header.model, paid: this.#o.paid, catalogued: this.#o.pricedFiles !== null, maxTokens: header.maxTokens };
    this.jobId = header.jobId;
    this.#admittedAt = options.clock.now();
    this.finished = new Promise((r) => (this.#resolve = r));
    this.billed = new Promise((r) => (this.#resolveBilled = r));
    this.#waiter = {
      model: options.envelope.header.model,
      ready: () => this.#candidates().some((c) => c.free),
      viable: () => this.#candidates().length > 0,
      go: () => {
        this.#queued = false;
        this.#dispatchNext();
      },
      expire: (error) => {
        this.#queued = false;
        this.#fail(error, false);
      },
    };
  }

  /** Dispatches the first attempt (or queues the job). */
  start(): void {
    this.#dispatchNext();
  }

  /** True while the job waits in the queue. */
  get queued(): boolean {
    return this.#queued;
  }

  /** The client went away (or is too slow, or the gateway stops): tell the agent, send nothing more. */
  cancel(reason: string): void {
    if (this.#ended) return;
    if (this.#queued) {
      this.#o.router.remove(this.#waiter);
      this.#queued = false;
    }
    const a = this.#attempt;
    this.#finish({ status: 'cancelled', agentId: a?.channel.agentId ?? null, reason });
    if (!a || a.closed) {
      void this.#release('cancelled');
      return;
    }
    a.cancelled = true;
    a.channel.cancel(this.jobId, a.number, reason);
    this.#arm(a, this.#o.timeouts.cancelReceiptMs, () => {
      a.channel.forget(this.jobId, a.number);
      a.closed = true;
      this.#log().info('no receipt after a cancel; releasing the hold', { jobId: this.jobId, agentId: a.channel.agentId });
      void this.#release('cancelled');
    });
  }

  #log(): Logger {
    return this.#o.logger;
  }

  /** The recipients not tried yet that may take the job, those with a free slot first, best first. */
  #candidates(): JobCandidate[] {
    const untried = this.#o.envelope.header.recipients.map((r) => r.agentId).filter((id) => !this.#tried.has(id));
    return untried.length === 0 ? [] : this.#o.transport.candidates(untried, this.#needs);
  }

  #dispatchNext(): void {
    if (this.#ended) return;
    const { envelope, transport } = this.#o;
    const max = Math.min(this.#o.maxAttempts, envelope.header.recipients.length, LIMITS.maxAttempts);
    if (this.#next >= max) {
      this.#fail(
        this.#lastError ?? new NightjarError('NJ_NO_CAPACITY', 'every agent this request was sealed for was tried', { retryAfterMs: 1000 }),
        false,
      );
      return;
    }
    const candidates = this.#candidates();
    const best = candidates[0];
    if (!best?.free) {
      if (best) {
        // Its agents are busy, not gone: wait for a slot.
        try {
          this.#o.router.enqueue(this.#waiter);
          this.#queued = true;
          this.#log().debug('job queued', { jobId: this.jobId, model: envelope.header.model });
        } catch (err) {
          this.#fail(err as NightjarError, false);
        }
        return;
      }
      const model = envelope.header.model;
      const error =
        this.#lastError ??
        (transport.knows(model)
          ? new NightjarError('NJ_NO_CAPACITY', 'no agent this request was sealed for can take it now', {
              retryAfterMs: this.#o.router.retryAfterMs(model),
            })
          : new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${model}`));
      this.#fail(error, false);
      return;
    }
    const channel = best.channel;
    this.#tried.add(channel.agentId);
    const attempt: Attempt = {
      channel,
      number: this.#next++,
      dispatchedAt: this.#o.clock.now(),
      digest: new ReplyDigest(),
      received: 0,
      capacity: 0,
      delivered: 0,
      started: false,
      firstChunkAt: 0,
      lastChunkAt: 0,
      replySalt: null,
      timer: null,
      cancelled: false,
      closed: false,
    };
    this.#attempt = attempt;
    this.#armFailure(attempt, this.#o.timeouts.acceptMs, 'NJ_JOB_TIMEOUT', 'the agent did not accept in time');
    this.#log().debug('job dispatched', { jobId: this.jobId, agentId: channel.agentId, attempt: attempt.number });
    try {
      channel.dispatch(this.jobId, attempt.number, envelope, this.#listener(attempt));
    } catch (err) {
      // The agent went away between the pick and the dispatch: fail over as for any lost attempt.
      attempt.closed = true;
      this.#attemptFailed(attempt, err instanceof NightjarError ? err : new NightjarError('NJ_AGENT_FAILED', 'the agent is not connected'));
    }
  }

  #listener(a: Attempt): AttemptListener {
    const live = (): boolean => this.#attempt === a && !a.closed;
    const closed = (): void => {
      a.closed = true;
      this.#disarm(a);
    };
    return {
      accepted: (frame) => {
        if (!live() || a.cancelled) return;
        a.replySalt = frame.replySalt;
        const assigned = this.#o.billing.assigned?.(a.channel.agentId, a.number);
        if (assigned) {
          this.#assignment = this.#assignment.then(() =>
            assigned.catch((err: unknown) =>
              this.#log().error('could not record who accepted the job', { jobId: this.jobId, err: errorMessage(err) }),
            ),
          );
        }
        this.#armFailure(a, this.#o.timeouts.firstChunkMs, 'NJ_JOB_TIMEOUT', 'the agent produced nothing in time');
      },
      declined: (frame) => {
        if (!live()) return;
        closed();
        if (a.cancelled) void this.#release('cancelled');
        else this.#attemptFailed(a, new NightjarError(frame.code, frame.message));
      },
      chunk: (frame, arrivedAt) => {
        if (!live()) return;
        a.received++;
        a.lastChunkAt = this.#o.clock.now();
        const data = fromBase64Url(frame.data);
        a.capacity += chunkTextCapacity(data.length);
        a.digest.add(data);
        if (a.cancelled) return;
        if (!a.replySalt) {
          a.channel.cancel(this.jobId, a.number, 'a chunk arrived before the job was accepted');
          a.channel.forget(this.jobId, a.number);
          closed();
          this.#attemptFailed(a, new NightjarError('NJ_FRAME_UNEXPECTED', 'a chunk arrived before the job was accepted'));
          return;
        }
        if (!a.started) {
          a.started = true;
          const now = this.#o.clock.now();
          a.firstChunkAt = now;
          this.#o.transport.report(a.channel, { type: 'first-chunk', ms: now - a.dispatchedAt });
          this.#o.observer.firstChunk(a.channel.agentId, now - this.#admittedAt);
          this.#o.sink.send({ type: 'start', agentId: a.channel.agentId, attempt: a.number, replySalt: a.replySalt });
        }
        this.#armFailure(a, this.#o.timeouts.idleMs, 'NJ_JOB_TIMEOUT', 'the agent went silent mid-reply');
        this.#o.sink.send({ type: 'chunk', seq: frame.seq, data: frame.data });
        if (!this.#ended) a.delivered++;
        this.#o.observer.relayed(this.#o.clock.now() - arrivedAt);
      },
      done: (frame) => {
        if (!live()) return Promise.resolve(null);
        closed();
        return this.#receipt(a, frame.receipt);
      },
      failed: (frame) => {
        if (!live()) return;
        closed();
        if (a.cancelled) void this.#release('cancelled');
        else this.#attemptFailed(a, new NightjarError(frame.code, frame.message));
      },
      lost: (reason) => {
        if (!live()) return;
        closed();
        if (a.cancelled) void this.#release('cancelled');
        else this.#attemptFailed(a, new NightjarError('NJ_AGENT_FAILED', reason));
      },
    };
  }

  /**
   * Verifies a receipt against what the gateway relayed, bills it, and (unless cancelled) tells the
   * client. Resolves with the agent's acknowledgement once the ledger has it (null: this job could
   * not bill it, so it is for late settlement).
   */
  async #receipt(a: Attempt, signed: SignedReceipt): Promise<ReceiptAck | null> {
    const { header } = this.#o.envelope;
    let receipt: Receipt;
    try {
      if (a.received === 0) throw new NightjarError('NJ_RECEIPT_INVALID', 'the job ended without a reply');
      receipt = await verifyReceipt(signed, {
        identityKey: a.channel.bundle.identityKey,
        agentId: a.channel.agentId,
        jobId: this.jobId,
        attempt: a.number,
        model: header.model,
        requestDigest: this.#o.requestDigest,
        replyDigest: a.digest.digest(),
      });
      const served = a.channel.bundle.bundle.models.some((m) => m.id === receipt.model && m.sha256 === receipt.modelSha256);
      if (!served) throw new NightjarError('NJ_RECEIPT_INVALID', 'the receipt names a model file the agent does not serve');
      if (this.#o.pricedFiles && !this.#o.pricedFiles(receipt.model, receipt.modelSha256)) {
        throw new NightjarError('NJ_RECEIPT_INVALID', `the receipt names a file the catalog does not list for ${receipt.model}`);
      }
      if (receipt.completionTokens > header.maxTokens) {
        throw new NightjarError('NJ_RECEIPT_INVALID', 'the receipt claims more tokens than the request allowed');
      }
    } catch (err) {
      const e = err instanceof NightjarError ? err : new NightjarError('NJ_RECEIPT_INVALID', 'the receipt could not be checked');
      this.#log().warn('receipt rejected; nobody is credited', {
        jobId: this.jobId,
        agentId: a.channel.agentId,
        code: e.code,
        reason: e.message,
      });
      this.#o.transport.report(a.channel, { type: 'failed' });
      this.#o.observer.attemptFailed(a.channel.agentId, e.code);
      await this.#release(RECEIPT_REFUSED);
      this.#fail(e, a.started);
      return { outcome: 'refused', code: 'NJ_RECEIPT_INVALID', message: e.message };
    }
    this.#o.transport.report(a.channel, { type: 'done' });
    const bounded = boundClaims(receipt, {
      bodyLength: header.bodyLength,
      maxTokens: header.maxTokens,
      completionBound: completionTokenBound(a.capacity, header.maxTokens),
    });
    for (const field of bounded.capped) {
      this.#log().warn('receipt claims more tokens than the relayed bytes can hold; billed at the bound', {
        jobId: this.jobId,
        agentId: a.channel.agentId,
        field,
        claimed: field === 'prompt' ? receipt.promptTokens : receipt.completionTokens,
        bound: field === 'prompt' ? bounded.promptTokens : bounded.completionTokens,
      });
      this.#o.observer.claimCapped?.(a.channel.agentId, field);
    }
    const billed = a.cancelled ? Math.min(bounded.completionTokens, a.delivered) : bounded.completionTokens;
    if (!a.cancelled && a.started) {
      try {
        this.#o.timed(a.channel, {
          jobId: this.jobId,
          model: receipt.model,
          modelSha256: receipt.modelSha256,
          ttftMs: a.firstChunkAt - a.dispatchedAt,
          decodeMs: a.lastChunkAt - a.firstChunkAt,
          tokens: bounded.completionTokens,
          chunks: a.received,
        });
      } catch (err) {
        this.#log().error('timing the job failed', { jobId: this.jobId, err: errorMessage(err) });
      }
    }
    const settled = await this.#settle({
      agentId: a.channel.agentId,
      operatorId: a.channel.operatorId,
      attempt: a.number,
      receipt,
      signed,
      billedPromptTokens: bounded.promptTokens,
      billedCompletionTokens: billed,
      outcome: a.cancelled ? 'cancelled' : 'done',
    });
    if (!this.#ended) {
      this.#o.sink.send({ type: 'done', receipt: signed });
      this.#finish({ status: 'done', agentId: a.channel.agentId, attempt: a.number, receipt });
    }
    switch (settled) {
      case 'settled':
      case 'duplicate':
        return { outcome: settled };
      case 'failed':
        return { outcome: 'retry', code: 'NJ_INTERNAL', message: 'the gateway could not settle the receipt now; deliver it again later' };
      default:
        return null;
    }
  }

  #attemptFailed(a: Attempt, error: NightjarError): void {
    this.#disarm(a);
    this.#o.transport.report(a.channel, { type: 'failed' });
    this.#o.observer.attemptFailed(a.channel.agentId, error.code);
    this.#log().info('attempt failed', { jobId: this.jobId, agentId: a.channel.agentId, attempt: a.number, code: error.code });
    if (a.started) {
      // Text already reached the client: another agent's reply cannot be spliced in.
      // A lost agent says why (its link dropped, or went silent); other codes speak for themselves.
      const why = error.code === 'NJ_AGENT_FAILED' ? `${error.code}: ${error.message}` : error.code;
      this.#fail(new NightjarError('NJ_AGENT_FAILED', `the agent failed mid-reply (${why}); retry the request`), true);
      return;
    }
    this.#lastError = error;
    this.#dispatchNext();
  }

  #arm(a: Attempt, ms: number, fn: () => void): void {
    this.#disarm(a);
    a.timer = this.#o.clock.setTimeout(() => {
      a.timer = null;
      if (this.#attempt !== a || a.closed) return;
      fn();
    }, ms);
  }

  #armFailure(a: Attempt, ms: number, code: ErrorCode, message: string): void {
    this.#arm(a, ms, () => {
      if (a.cancelled) return;
      a.channel.cancel(this.jobId, a.number, 'timed out at the gateway');
      a.channel.forget(this.jobId, a.number);
      a.closed = true;
      this.#attemptFailed(a, new NightjarError(code, message));
    });
  }

  #disarm(a: Attempt): void {
    if (a.timer) this.#o.clock.clearTimeout(a.timer);
    a.timer = null;
  }

  #fail(error: NightjarError, delivered: boolean): void {
    if (this.#ended) return;
    this.#o.sink.send({
      type: 'error',
      code: error.code,
      message: error.message.slice(0, 1000),
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
    });
    this.#finish({ status: 'failed', code: error.code, agentId: this.#attempt?.channel.agentId ?? null, delivered });
    const a = this.#attempt;
    if (!a || a.closed) void this.#release('failed');
  }

  /** Bills the job on `s`, once; resolves with what the ledger did, `failed`, or `not-open` (billed before). */
  async #settle(s: Settlement): Promise<SettleResult | 'failed' | 'not-open'> {
    if (this.#billing !== 'open') return 'not-open';
    this.#billing = 'busy';
    await this.#assignment;
    try {
      return await this.#o.billing.settle(s);
    } catch (err) {
      this.#log().error('settlement failed; releasing the hold', {
        jobId: this.jobId,
        err: errorMessage(err),
      });
      await this.#o.billing.release('settle-failed').catch(() => undefined);
      return 'failed';
    } finally {
      this.#billing = 'done';
      this.#resolveBilled();
    }
  }

  async #release(outcome: string): Promise<void> {
    if (this.#billing !== 'open') return;
    this.#billing = 'busy';
    // Who accepted the job is on record before the hold goes: a late receipt is checked against it.
    await this.#assignment;
    try {
      await this.#o.billing.release(outcome, this.#completionBound());
    } catch (err) {
      this.#log().error('release failed', { jobId: this.jobId, err: errorMessage(err) });
    } finally {
      this.#billing = 'done';
      this.#resolveBilled();
    }
  }

  /**
   * What a late receipt for the current attempt may bill at most: the text its relayed chunks
   * could carry (and, once the client left, no more than the chunks it was given); null when no
   * attempt was accepted.
   */
  #completionBound(): number | null {
    const a = this.#attempt;
    if (!a || a.replySalt === null) return null;
    const bound = completionTokenBound(a.capacity, this.#o.envelope.header.maxTokens);
    return a.cancelled ? Math.min(bound, a.delivered) : bound;
  }

  #finish(outcome: JobOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    const a = this.#attempt;
    if (a && !a.cancelled) this.#disarm(a);
    this.#resolve(outcome);
  }
}
