/**
 * The ledger's side of a job, as the jobs plugin uses it: place the hold at admission, settle on
 * the verified receipt or release, count both in the metrics, and keep track of the jobs whose
 * billing is still under way so that shutdown can wait for them (on the injected clock).
 */
import {
  Emitter,
  NightjarError,
  nextEvent,
  verifyReceipt,
  type AgentFrame,
  type Clock,
  type Disposable,
  type Event,
  type Logger,
  type Receipt,
  type ReceiptOutcome,
  type VerifiedBundle,
  loggedEmitter,
} from '../shared/index.js';
import type { LateReceiptAck } from './agent-session.js';
import type { Price } from './accounts/account.store.js';
import type { JobBilling, SettleResult, Settlement } from './job.js';
import type { JobDispute, LedgerStore } from './ledger/ledger.store.js';
import type { GatewayMetrics } from './metrics.js';

/** A job that has been billed (settled or released). */
export interface JobBilled {
  readonly jobId: string;
}

/** A receipt delivered late, and what became of it. */
export interface LateReceipt {
  readonly jobId: string;
  readonly agentId: string;
  readonly outcome: ReceiptOutcome;
}

/** What {@link Billing.hold} needs to know of an admitted job. */
export interface HoldFor {
  jobId: string;
  keyId: string | null;
  model: string;
  price: Price;
  bodyLength: number;
  maxTokens: number;
  /** sha256 of the request ciphertext, base64url: a late receipt must name it. Defaults to none. */
  requestDigest?: string;
  /** Jobs the key may hold at once over every node (the ledger counts them in the hold). Defaults to null: not counted. */
  maxHeldPerKey?: number | null;
}

/** The agent that delivers a late receipt, as its session knows it. */
export interface LateReceiptAgent {
  readonly agentId: string;
  /** The operator it is bound to now; null: nothing is charged. */
  readonly operatorId: string | null;
  /** Its verified bundle: the identity key the receipt must be signed with. */
  readonly bundle: VerifiedBundle;
}

/** What {@link Billing.settleLate} checks besides the receipt and the ledger. */
export interface LateSettleOptions {
  /**
   * Whether the receipt's model file may bill: the catalog lists it for the model, or lists
   * nothing for the model (a free one). Defaults to any file.
   */
  fileListed?: (model: string, sha256: string) => boolean;
}

/** Options of {@link Billing}. */
export interface BillingOptions {
  /** The ledger. Required. */
  ledger: LedgerStore;
  /** The operators' share of each charge, in basis points, already validated. Required. */
  operatorShareBps: number;
  /** Settlements, releases and tokens are counted here. Required. */
  metrics: GatewayMetrics;
  /** Time source of the ledger's timestamps. Required. */
  clock: Clock;
  /** Where settlements are logged (ids and amounts only). Required. */
  logger: Logger;
  /** How long an operator's share stays pending before it is payable, in ms. Defaults to 0 (payable at once). */
  pendingEarningsMs?: number;
  /**
   * Told when a settlement applied a dispute (the client's countersignature had arrived first and
   * claims less): the gateway strikes the agent. Defaults to nothing.
   */
  onDisputed?: (disputed: { jobId: string; agentId: string; dispute: JobDispute }) => void;
  /**
   * This gateway node's id in a cluster: its holds name it, and releaseAllHeld releases only its own.
   * Defaults to null (the embedded default: every hold in the database is this gateway's).
   */
  nodeId?: string | null;
  /**
   * In a cluster: how long a late receipt for a job another node still holds waits for that node to
   * release the hold, ms (see {@link Billing.settleLate}); past it the agent is told to deliver it
   * again later. Defaults to 0 (no wait: the embedded default has no other node).
   */
  heldElsewhereWaitMs?: number;
}

/** How often a job another node holds is looked at while a late receipt for it waits. */
const HELD_ELSEWHERE_POLL_MS = 500;
/** Late receipts waiting at once for another node's hold; more are told to come again later. */
const MAX_HELD_ELSEWHERE_WAITS = 1000;

/** Holds, settles and releases jobs on the ledger, and tells when each job is billed. */
export class Billing implements Disposable {
  readonly #o: BillingOptions;
  readonly #pending = new Set<Promise<void>>();
  /** The billing under way of each job still being billed here. */
  readonly #byJob = new Map<string, Promise<void>>();
  readonly #billed: Emitter<JobBilled>;
  readonly #idle = new Emitter<void>();
  /** Late receipts waiting for another node's hold to go, each with its wake-up. */
  readonly #waits = new Set<() => void>();
  #disposed = false;
  /** Fires once per job, after it was billed (settled or released). */
  readonly onJobBilled: Event<JobBilled>;
  readonly #late: Emitter<LateReceipt>;
  /** Fires after each receipt an agent delivered late was answered, with the outcome. */
  readonly onLateReceipt: Event<LateReceipt>;

  constructor(options: BillingOptions) {
    this.#o = options;
    this.#billed = loggedEmitter(options.logger, 'job billed');
    this.onJobBilled = this.#billed.event;
    this.#late = loggedEmitter(options.logger, 'late receipt');
    this.onLateReceipt = this.#late.event;
  }

  /** Jobs whose billing has not finished. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Moves the job's worst case from the client to holds (throws NJ_INSUFFICIENT_FUNDS, NJ_DUPLICATE_JOB). */
  async hold(job: HoldFor): Promise<void> {
    await this.#o.ledger.hold({
      ...job,
      operatorShareBps: this.#o.operatorShareBps,
      nodeId: this.#o.nodeId ?? null,
      now: this.#o.clock.now(),
    });
  }

  /** The ledger hooks of one job. */
  forJob(jobId: string): JobBilling {
    const { ledger, metrics, clock, logger, onDisputed } = this.#o;
    const pendingMs = this.#o.pendingEarningsMs ?? 0;
    return {
      async settle(s: Settlement): Promise<SettleResult> {
        const result = await ledger.settle({
          jobId,
          attempt: s.attempt,
          agentId: s.agentId,
          operatorId: s.operatorId,
          promptTokens: s.billedPromptTokens,
          completionTokens: s.billedCompletionTokens,
          finishReason: s.receipt.finishReason,
          outcome: s.outcome,
          receipt: JSON.stringify(s.signed),
          payableAt: clock.now() + pendingMs,
          now: clock.now(),
        });
        metrics.settlements.inc({ result: result.status === 'settled' && result.duplicate ? 'duplicate' : result.status });
        metrics.tokens.inc({ kind: 'prompt' }, s.receipt.promptTokens);
        metrics.tokens.inc({ kind: 'completion' }, s.receipt.completionTokens);
        if (result.status === 'settled') {
          logger.info('job settled', {
            jobId,
            agentId: s.agentId,
            charged: result.charged.toString(),
            operatorAmount: result.operatorAmount.toString(),
            outcome: s.outcome,
          });
          if (!result.duplicate && result.dispute) onDisputed?.({ jobId, agentId: s.agentId, dispute: result.dispute });
        }
        if (result.status !== 'settled') return 'released';
        return result.duplicate ? 'duplicate' : 'settled';
      },
      async assigned(agentId: string, attempt: number): Promise<void> {
        await ledger.assign(jobId, agentId, attempt);
      },
      async release(outcome: string, completionBound?: number | null): Promise<void> {
        const result = await ledger.release(jobId, outcome, clock.now(), completionBound ?? null);
        metrics.settlements.inc({ result: result.status === 'released' && !result.duplicate ? 'released' : 'duplicate' });
      },
    };
  }

  /** Follows a job's `billed` promise: {@link Billing.onJobBilled} fires when it settles. */
  track(jobId: string, billed: Promise<void>): void {
    const done = billed.then(() => this.#billed.fire({ jobId }));
    this.#pending.add(done);
    this.#byJob.set(jobId, done);
    void done.finally(() => {
      this.#pending.delete(done);
      if (this.#byJob.get(jobId) === done) this.#byJob.delete(jobId);
      if (this.#pending.size === 0) this.#idle.fire();
    });
  }

  /**
   * Settles a receipt an agent delivered after its job ended here (its link dropped mid-job, or the
   * gateway restarted): checks it is signed by the delivering agent's identity key for the job and
   * attempt it names, lets a job still being billed here finish its own billing first, then has the
   * ledger settle it exactly once (LedgerStore.settleLate: only the agent and attempt the job was
   * given to, claims cut to their bounds). Resolves with the acknowledgement for the agent.
   */
  async settleLate(
    agent: LateReceiptAgent,
    frame: Extract<AgentFrame, { type: 'receipt' }>,
    options: LateSettleOptions = {},
  ): Promise<LateReceiptAck> {
    const { ledger, metrics, clock, logger } = this.#o;
    const ack = (a: LateReceiptAck, log: Record<string, unknown> = {}): LateReceiptAck => {
      metrics.lateReceipts.inc({ outcome: a.outcome });
      this.#late.fire({ jobId: frame.jobId, agentId: agent.agentId, outcome: a.outcome });
      const line = { jobId: frame.jobId, agentId: agent.agentId, attempt: frame.attempt, outcome: a.outcome, ...log };
      if (a.outcome === 'refused') logger.warn('late receipt refused', { ...line, reason: a.message });
      else logger.info('late receipt', line);
      return a;
    };
    let receipt: Receipt;
    try {
      receipt = await verifyReceipt(frame.receipt, {
        identityKey: agent.bundle.identityKey,
        agentId: agent.agentId,
        jobId: frame.jobId,
        attempt: frame.attempt,
      });
    } catch (err) {
      const e = err instanceof NightjarError ? err : new NightjarError('NJ_RECEIPT_INVALID', 'the receipt could not be checked');
      return ack({ outcome: 'refused', code: 'NJ_RECEIPT_INVALID', message: e.message });
    }
    if (options.fileListed && !options.fileListed(receipt.model, receipt.modelSha256)) {
      const message = `the receipt names a file the catalog does not list for ${receipt.model}`;
      return ack({ outcome: 'refused', code: 'NJ_RECEIPT_INVALID', message });
    }
    // A job still being billed here (waiting for this attempt's receipt after a cancel, or running
    // on another agent after a failover) settles or releases first; the ledger then decides.
    await this.#byJob.get(frame.jobId);
    if (!(await this.#notHeldElsewhere(frame.jobId))) {
      return ack({
        outcome: 'retry',
        code: 'NJ_TIMEOUT',
        message: 'the gateway node running this job still holds it; deliver the receipt again later',
      });
    }
    const result = await ledger.settleLate({
      jobId: frame.jobId,
      attempt: frame.attempt,
      agentId: agent.agentId,
      operatorId: agent.operatorId,
      model: receipt.model,
      promptTokens: receipt.promptTokens,
      completionTokens: receipt.completionTokens,
      requestDigest: receipt.requestDigest,
      finishReason: receipt.finishReason,
      receipt: JSON.stringify(frame.receipt),
      payableAt: clock.now() + (this.#o.pendingEarningsMs ?? 0),
      now: clock.now(),
    });
    switch (result.status) {
      case 'settled':
        for (const field of result.capped) metrics.claimsCapped.inc({ field });
        if (result.dispute) this.#o.onDisputed?.({ jobId: frame.jobId, agentId: agent.agentId, dispute: result.dispute });
        return ack(
          { outcome: 'settled' },
          {
            from: result.from,
            charged: result.charged.toString(),
            operatorAmount: result.operatorAmount.toString(),
            shortfall: result.shortfall.toString(),
            capped: result.capped.join(',') || null,
          },
        );
      case 'duplicate':
        return ack({ outcome: 'duplicate', message: 'this job was already settled; nothing more moves' });
      case 'refused':
        return ack({ outcome: 'refused', code: 'NJ_RECEIPT_INVALID', message: result.reason });
      case 'unknown':
        return ack({ outcome: 'unknown', code: 'NJ_NOT_FOUND', message: 'this gateway has no record of the job' });
    }
  }

  /**
   * In a cluster, a late receipt can reach this node while the job's own node still holds the job:
   * the agent's node died mid-stream and the agent reconnected here before the job's node noticed
   * the silence. Settled now, it would be billed up to its claims; the job's node, when it releases
   * the hold, records the bound of what it relayed (completion_bound), which caps the late charge
   * at what the client was sent. So the receipt waits, up to heldElsewhereWaitMs, for the hold to
   * go. The other node is in another process, with no event to await here: the job's row is
   * looked at every HELD_ELSEWHERE_POLL_MS (this path runs only after a node was lost). Resolves
   * false if the job is still held elsewhere when the wait ends.
   */
  async #notHeldElsewhere(jobId: string): Promise<boolean> {
    const { ledger, nodeId, clock } = this.#o;
    const waitMs = this.#o.heldElsewhereWaitMs ?? 0;
    const heldElsewhere = async (): Promise<boolean> => {
      const job = await ledger.job(jobId);
      return job !== null && job.status === 'held' && job.nodeId !== null && job.nodeId !== nodeId;
    };
    if (!nodeId || !(await heldElsewhere())) return true;
    if (waitMs <= 0 || this.#waits.size >= MAX_HELD_ELSEWHERE_WAITS) return false;
    const until = clock.now() + waitMs;
    while (!this.#disposed && clock.now() < until) {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clock.clearTimeout(timer);
          this.#waits.delete(wake);
          resolve();
        };
        const timer = clock.setTimeout(wake, Math.min(HELD_ELSEWHERE_POLL_MS, until - clock.now()));
        this.#waits.add(wake);
      });
      if (this.#disposed) return false;
      if (!(await heldElsewhere())) return true;
    }
    return false;
  }

  /** Resolves once no job's billing is under way (at once if none is). */
  whenIdle(): Promise<void> {
    return this.#pending.size === 0 ? Promise.resolve() : nextEvent(this.#idle.event);
  }

  /**
   * Releases every hold still open (no stream survives a restart or a stop) — in a cluster, only this
   * node's; resolves with how many.
   */
  releaseAllHeld(outcome: string): Promise<number> {
    const { ledger, clock, nodeId } = this.#o;
    return nodeId ? ledger.releaseHeldOf(nodeId, outcome, clock.now()) : ledger.releaseAllHeld(outcome, clock.now());
  }

  /** Drops every listener; late receipts still waiting for another node are told to come again later. */
  dispose(): void {
    this.#disposed = true;
    for (const wake of [...this.#waits]) wake();
    this.#billed.dispose();
    this.#late.dispose();
    this.#idle.dispose();
  }
}
