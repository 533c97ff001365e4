/**
 * Retention of job rows: the gateway deletes settled job rows after jobRetentionDays and released
 * ones (refused, failed or cancelled without a receipt) after releasedJobRetentionDays, sweeping
 * at start and then every retentionSweepMs on the injected clock. The ledger's transfers, the
 * money record, are never touched (see {@link LedgerStore.sweepJobs}); held jobs never go. The same
 * sweep deletes expired operator dashboard sessions.
 */
import { Resource, TimerSlot, errorMessage, loggedEmitter, type Clock, type Emitter, type Event, type Logger } from '../shared/index.js';
import type { LedgerStore, SweepResult } from './ledger/ledger.store.js';
import type { OperatorSessionStore } from './operator/operator-session.store.js';

const DAY_MS = 86_400_000;

/** Options of {@link JobRetention}. */
export interface JobRetentionOptions {
  /** The ledger to sweep. Required. */
  ledger: LedgerStore;
  /** Time source of the sweeps and of what counts as old. Required. */
  clock: Clock;
  /** Where each sweep's counts go. Required. */
  logger: Logger;
  /** Days a settled job row is kept. Required (the gateway's option defaults it). */
  jobRetentionDays: number;
  /** Days a released job row is kept. Required (the gateway's option defaults it). */
  releasedJobRetentionDays: number;
  /** Time between sweeps; 0 sweeps never. Required (the gateway's option defaults it). */
  sweepMs: number;
  /** Operator sessions whose expired rows each sweep deletes. Defaults to none. */
  sessions?: OperatorSessionStore;
}

/** The periodic sweep of old job rows. */
export class JobRetention extends Resource {
  /** Fires after each sweep, with how many rows it deleted. */
  readonly onSwept: Event<SweepResult>;
  readonly #o: JobRetentionOptions;
  readonly #timer: TimerSlot;
  readonly #swept: Emitter<SweepResult>;
  #running: Promise<void> | null = null;

  constructor(options: JobRetentionOptions) {
    super();
    this.#o = options;
    this.#timer = this.disposables.add(new TimerSlot(options.clock));
    this.#swept = this.disposables.add(loggedEmitter<SweepResult>(options.logger, 'jobs swept'));
    this.onSwept = this.#swept.event;
  }

  /** Sweeps at once (on the clock's next turn) and then every sweepMs; nothing if sweepMs is 0. */
  start(): void {
    if (this.#o.sweepMs <= 0) return;
    this.#timer.set(0, () => this.#tick());
  }

  /** Deletes the job rows that are old enough now (and expired operator sessions); resolves with how many job rows. */
  async sweep(): Promise<SweepResult> {
    const now = this.#o.clock.now();
    const result = await this.#o.ledger.sweepJobs({
      settledBefore: now - this.#o.jobRetentionDays * DAY_MS,
      releasedBefore: now - this.#o.releasedJobRetentionDays * DAY_MS,
    });
    if (result.settled + result.released > 0) this.#o.logger.info('old job rows deleted', { ...result });
    const sessions = (await this.#o.sessions?.sweepExpired(now)) ?? 0;
    if (sessions > 0) this.#o.logger.info('expired operator sessions deleted', { sessions });
    this.#swept.fire(result);
    return result;
  }

  #tick(): void {
    if (this.isDisposed || this.#running) return;
    this.#running = this.sweep()
      .then(
        () => undefined,
        (err: unknown) => this.#o.logger.warn('job retention sweep failed; next one later', { err: errorMessage(err) }),
      )
      .finally(() => {
        this.#running = null;
        if (!this.isDisposed) this.#timer.set(this.#o.sweepMs, () => this.#tick());
      });
  }

  /** Waits for a sweep under way, so the database is not closed under it. */
  protected override async onDispose(): Promise<void> {
    this.#timer.dispose();
    await this.#running;
  }
}
