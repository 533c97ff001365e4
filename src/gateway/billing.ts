/**
 * The ledger's side of a job, as the jobs plugin uses it: place the hold at admission, settle on
 * the verified receipt or release, count both in the metrics, and keep track of the jobs whose
 * billing is still under way so that shutdown can wait for them (on the injected clock).
 */
import { Emitter, nextEvent, type Clock, type Disposable, type Event, type Logger, loggedEmitter } from '../shared/index.js';
import type { Price } from './accounts/account.store.js';
import type { JobBilling, Settlement } from './job.js';
import type { LedgerStore } from './ledger/ledger.store.js';
import type { GatewayMetrics } from './metrics.js';

/** A job that has been billed (settled or released). */
export interface JobBilled {
  readonly jobId: string;
}

/** What {@link Billing.hold} needs to know of an admitted job. */
export interface HoldFor {
  jobId: string;
  keyId: string | null;
  model: string;
  price: Price;
  bodyLength: number;
  maxTokens: number;
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
}

/** Holds, settles and releases jobs on the ledger, and tells when each job is billed. */
export class Billing implements Disposable {
  readonly #o: BillingOptions;
  readonly #pending = new Set<Promise<void>>();
  readonly #billed: Emitter<JobBilled>;
  readonly #idle = new Emitter<void>();
  /** Fires once per job, after it was billed (settled or released). */
  readonly onJobBilled: Event<JobBilled>;

  constructor(options: BillingOptions) {
    this.#o = options;
    this.#billed = loggedEmitter(options.logger, 'job billed');
    this.onJobBilled = this.#billed.event;
  }

  /** Jobs whose billing has not finished. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Moves the job's worst case from the client to holds (throws NJ_INSUFFICIENT_FUNDS, NJ_DUPLICATE_JOB). */
  async hold(job: HoldFor): Promise<void> {
    await this.#o.ledger.hold({ ...job, operatorShareBps: this.#o.operatorShareBps, now: this.#o.clock.now() });
  }

  /** The ledger hooks of one job. */
  forJob(jobId: string): JobBilling {
    const { ledger, metrics, clock, logger } = this.#o;
    return {
      async settle(s: Settlement): Promise<void> {
        const result = await ledger.settle({
          jobId,
          attempt: s.attempt,
          agentId: s.agentId,
          operatorId: s.operatorId,
          promptTokens: s.receipt.promptTokens,
          completionTokens: s.billedCompletionTokens,
          finishReason: s.receipt.finishReason,
          outcome: s.outcome,
          receipt: JSON.stringify(s.signed),
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
        }
      },
      async release(outcome: string): Promise<void> {
        const result = await ledger.release(jobId, outcome, clock.now());
        metrics.settlements.inc({ result: result.status === 'released' && !result.duplicate ? 'released' : 'duplicate' });
      },
    };
  }

  /** Follows a job's `billed` promise: {@link Billing.onJobBilled} fires when it settles. */
  track(jobId: string, billed: Promise<void>): void {
    const done = billed.then(() => this.#billed.fire({ jobId }));
    this.#pending.add(done);
    void done.finally(() => {
      this.#pending.delete(done);
      if (this.#pending.size === 0) this.#idle.fire();
    });
  }

  /** Resolves once no job's billing is under way (at once if none is). */
  whenIdle(): Promise<void> {
    return this.#pending.size === 0 ? Promise.resolve() : nextEvent(this.#idle.event);
  }

  /** Releases every hold still open (no stream survives a restart or a stop); resolves with how many. */
  releaseAllHeld(outcome: string): Promise<number> {
    return this.#o.ledger.releaseAllHeld(outcome, this.#o.clock.now());
  }

  /** Drops every listener. */
  dispose(): void {
    this.#billed.dispose();
    this.#idle.dispose();
  }
}
