/**
 * The jobs running on this gateway node: by jobId (a jobId runs once at a time), the reply
 * streams each caller holds open (its limit is enforced at admission), and an event per finished
 * job, which shutdown, tests and observers await instead of polling.
 */
import type { Emitter } from '../shared/index.js';
import { nextEvent, type Disposable, type Event, type Logger, loggedEmitter } from '../shared/index.js';
import type { ClientJob, JobOutcome } from './job.js';

/** A job that finished, with its outcome as the client saw it. */
export interface JobFinished {
  readonly jobId: string;
  readonly outcome: JobOutcome;
}

/** Running jobs and open streams. */
export class RunningJobs implements Disposable {
  readonly #jobs = new Map<string, ClientJob>();
  readonly #streams = new Map<string, number>();
  readonly #finished: Emitter<JobFinished>;
  /** Fires once per job when it ends, after it left the table. */
  readonly onJobFinished: Event<JobFinished>;

  constructor(logger: Logger) {
    this.#finished = loggedEmitter(logger, 'job finished');
    this.onJobFinished = this.#finished.event;
  }

  /** Jobs running now. */
  get size(): number {
    return this.#jobs.size;
  }

  /** True if a job with this id is running. */
  has(jobId: string): boolean {
    return this.#jobs.has(jobId);
  }

  /** Streams `caller` holds open. */
  streamsOf(caller: string): number {
    return this.#streams.get(caller) ?? 0;
  }

  /** Records a job that started streaming to `caller`. */
  add(job: ClientJob, caller: string): void {
    this.#jobs.set(job.jobId, job);
    this.#streams.set(caller, this.streamsOf(caller) + 1);
  }

  /** Takes a finished job out of the table and fires {@link RunningJobs.onJobFinished}. */
  finish(job: ClientJob, caller: string, outcome: JobOutcome): void {
    this.#jobs.delete(job.jobId);
    const left = this.streamsOf(caller) - 1;
    if (left > 0) this.#streams.set(caller, left);
    else this.#streams.delete(caller);
    this.#finished.fire({ jobId: job.jobId, outcome });
  }

  /** Cancels every running job with `reason`. */
  cancelAll(reason: string): void {
    for (const job of [...this.#jobs.values()]) job.cancel(reason);
  }

  /** Resolves once no job is running (at once if none is). */
  whenIdle(): Promise<void> {
    return this.#jobs.size === 0 ? Promise.resolve() : nextEvent(this.onJobFinished, () => this.#jobs.size === 0).then(() => undefined);
  }

  /** Drops every listener. */
  dispose(): void {
    this.#finished.dispose();
  }
}
