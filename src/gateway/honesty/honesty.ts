/**
 * The gateway's honesty checks on what it can see of a job without reading it: its own timing of
 * each job (speed.ts), the physical ceiling for the claimed model on the claimed chip (ceiling.ts),
 * and the gap between what an agent says of its speed and what the gateway measured. Each
 * violation is a strike in the database (strikes.store.ts); the score (score.ts) is what routing
 * uses. Strikes are kept in memory for the synchronous ranking and re-read from the store every
 * refreshMs, so a `nightjar gateway strikes clear` run next to the gateway takes effect.
 */
import { Emitter, errorMessage, silentLogger, withDefaults, type Clock, type Event, type Logger } from '../../shared/index.js';
import { CEILING_MARGIN, ceilingTokensPerSecond } from './ceiling.js';
import { SCORE_DEFAULTS, scoreOf, type ScoreOptions } from './score.js';
import { MIN_TIMED_DECODE_MS, SpeedBook, type JobTiming, type MeasuredSpeed, type SpeedSample } from './speed.js';
import type { NewStrike, Strike, StrikeStore } from './strikes.store.js';

/** The agent a timing is about, as the honesty checks need it. */
export interface TimedAgent {
  agentId: string;
  /** The bundle's platform.chip. */
  chip: string;
  /** The agent's last claimed decode speed (heartbeat), tokens/s; null if it said none. */
  claimedTokensPerSecond: number | null;
}

/** Options of {@link Honesty}. */
export interface HonestyOptions {
  /** Where strikes are kept. Required. */
  store: StrikeStore;
  /** The catalogued size, bytes, of a model file; null for an uncatalogued one (no ceiling). Required. */
  fileBytes: (model: string, sha256: string) => number | null;
  /** The clock strikes are dated and decay on. Required. */
  clock: Clock;
  /** Where strikes are logged (numbers only). Defaults to a silent logger. */
  logger?: Logger;
  /** Margin over the physical ceiling before a job counts as impossible. Defaults to 1.25. */
  ceilingMargin?: number;
  /** A claimed speed this many times the measured one is a claim-gap strike. Defaults to 3. */
  claimGapFactor?: number;
  /** Timed jobs of an (agent, model) before a claim gap counts (persistent, not one slow job). Defaults to 3. */
  claimGapMinSamples?: number;
  /**
   * How much longer, ms per token, the measured decode must take than the claimed one before a
   * claim gap counts: the relay adds its own time to every chunk (more on a loaded gateway), which
   * next to a very fast decode (a small model, a fast chip) is a large factor of nothing. Defaults to 5.
   */
  claimGapMinMsPerToken?: number;
  /** The shortest decode, ms, that is timed at all (shorter jobs are neither measured nor struck). Defaults to 250. */
  minTimedDecodeMs?: number;
  /** How strikes become a score. Defaults to {@link SCORE_DEFAULTS}. */
  score?: ScoreOptions;
  /** How old the in-memory copy of the strikes may get before it is re-read. Defaults to 2000 ms. */
  refreshMs?: number;
}

type Resolved = Required<Omit<HonestyOptions, 'score'>> & { score: Required<ScoreOptions> };

/** Measured speed, strikes and scores. */
export class Honesty {
  readonly #o: Resolved;
  readonly speeds: SpeedBook;
  readonly #timed = new Emitter<SpeedSample>();
  /** Fires with each job this node timed (a cluster shares them, {@link Honesty.absorb}). */
  readonly onTimed: Event<SpeedSample> = this.#timed.event;
  #strikes = new Map<string, Strike[]>();
  #loadedAt = -Infinity;
  #loading: Promise<void> | null = null;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(options: HonestyOptions) {
    const { score, ...rest } = options;
    this.#o = {
      ...withDefaults(
        {
          logger: silentLogger,
          ceilingMargin: CEILING_MARGIN,
          claimGapFactor: 3,
          claimGapMinSamples: 3,
          claimGapMinMsPerToken: 5,
          minTimedDecodeMs: MIN_TIMED_DECODE_MS,
          refreshMs: 2000,
        },
        rest,
      ),
      score: withDefaults(SCORE_DEFAULTS, score ?? {}),
    };
    this.speeds = new SpeedBook(0.3, this.#o.minTimedDecodeMs);
  }

  /** The score's options, resolved. */
  get scoreOptions(): Required<ScoreOptions> {
    return this.#o.score;
  }

  /** The agent's score now, in (0, 1]: 1 with no strikes. */
  score(agentId: string, now = this.#o.clock.now()): number {
    return scoreOf(this.#strikes.get(agentId) ?? [], now, this.#o.score);
  }

  /** True if the agent's score is below the floor: it gets no jobs. */
  barred(agentId: string, now = this.#o.clock.now()): boolean {
    return this.score(agentId, now) < this.#o.score.minScore;
  }

  /** What the gateway measured of `agentId` serving `model`. */
  measured(agentId: string, model: string): MeasuredSpeed | undefined {
    return this.speeds.get(agentId, model);
  }

  /** Re-reads the strikes if the copy is refreshMs old (concurrent callers share one read). */
  async refresh(): Promise<void> {
    if (this.#o.clock.now() - this.#loadedAt < this.#o.refreshMs) return;
    await this.reload();
  }

  /** Re-reads the strikes that still weigh (younger than ten half-lives) now. */
  reload(): Promise<void> {
    this.#loading ??= (async () => {
      await this.#writes;
      const now = this.#o.clock.now();
      const recent = await this.#o.store.list({ since: now - 10 * this.#o.score.halfLifeMs, limit: 100_000 });
      const byAgent = new Map<string, Strike[]>();
      for (const s of recent) byAgent.set(s.agentId, [...(byAgent.get(s.agentId) ?? []), s]);
      this.#strikes = byAgent;
      this.#loadedAt = now;
    })().finally(() => (this.#loading = null));
    return this.#loading;
  }

  /** Settles once every strike recorded so far is in the store. */
  whenWritten(): Promise<void> {
    return this.#writes.then(() => undefined);
  }

  /**
   * Takes one verified job's timing: updates the measured speed, and strikes the agent if the
   * decode was faster than its chip allows for the file it claims, or if its claimed speed is
   * claimGapFactor × the measured one over claimGapMinSamples timed jobs, and each token took at
   * least claimGapMinMsPerToken longer than claimed. Returns the strikes.
   */
  observe(agent: TimedAgent, timing: JobTiming): NewStrike[] {
    const now = this.#o.clock.now();
    const { speed, rate } = this.speeds.add(agent.agentId, timing, now);
    this.#timed.fire({ agentId: agent.agentId, model: timing.model, tokensPerSecond: rate, ttftMs: timing.ttftMs });
    const found: NewStrike[] = [];
    const bytes = this.#o.fileBytes(timing.model, timing.modelSha256);
    const ceiling = ceilingTokensPerSecond(agent.chip, bytes, this.#o.ceilingMargin);
    if (rate !== null && ceiling !== null && rate > ceiling) {
      found.push({
        agentId: agent.agentId,
        reason: 'over-ceiling',
        jobId: timing.jobId,
        details: { model: timing.model, chip: agent.chip, modelBytes: bytes ?? 0, measuredTps: round(rate), ceilingTps: round(ceiling) },
        at: now,
      });
    }
    const claimed = agent.claimedTokensPerSecond;
    if (
      rate !== null &&
      claimed !== null &&
      speed.samples >= this.#o.claimGapMinSamples &&
      speed.tokensPerSecond > 0 &&
      claimed >= this.#o.claimGapFactor * speed.tokensPerSecond &&
      1000 / speed.tokensPerSecond - 1000 / claimed >= this.#o.claimGapMinMsPerToken
    ) {
      found.push({
        agentId: agent.agentId,
        reason: 'claim-gap',
        jobId: timing.jobId,
        details: {
          model: timing.model,
          claimedTps: round(claimed),
          measuredTps: round(speed.tokensPerSecond),
          factor: round(claimed / speed.tokensPerSecond),
        },
        at: now,
      });
    }
    for (const s of found) this.#record(s);
    return found;
  }

  /**
   * Takes a job another node of the cluster timed: it counts in the measured speed that ranks
   * the agent here, never towards a strike (the node that timed it judged it).
   */
  absorb(sample: SpeedSample): void {
    this.speeds.fold(sample, this.#o.clock.now());
  }

  /**
   * Records a strike found outside the timing checks (a failed audit, a disputed count): counted
   * at once for routing, written to the store after ({@link Honesty.whenWritten}).
   */
  strike(s: NewStrike): void {
    this.#record(s);
  }

  /**
   * Strikes an agent whose receipt its client's countersignature disputed (count-disputed), with
   * the dispute's numbers. The ledger disputes a job at most once, so this runs once per job.
   */
  countDisputed(
    agentId: string,
    jobId: string,
    d: { claimedCompletionTokens: number; countedCompletionTokens: number; digestDiffers: boolean; broken: boolean; refunded: string },
  ): void {
    this.#record({
      agentId,
      reason: 'count-disputed',
      jobId,
      details: {
        claimedCompletionTokens: d.claimedCompletionTokens,
        countedCompletionTokens: d.countedCompletionTokens,
        digestDiffers: d.digestDiffers ? 1 : 0,
        broken: d.broken ? 1 : 0,
        refunded: d.refunded,
      },
      at: this.#o.clock.now(),
    });
  }

  /** Deletes an agent's strikes (everyone's with none) and forgets its measurements. */
  async clear(agentId?: string): Promise<number> {
    await this.#writes;
    const n = await this.#o.store.clear(agentId);
    if (agentId === undefined) this.#strikes.clear();
    else {
      this.#strikes.delete(agentId);
      this.speeds.forget(agentId);
    }
    return n;
  }

  /** The strikes in memory of one agent, newest first. */
  strikesOf(agentId: string): readonly Strike[] {
    return this.#strikes.get(agentId) ?? [];
  }

  #record(s: NewStrike): void {
    // Counted at once (routing is synchronous), written after.
    const pending: Strike = { ...s, id: 'pending' };
    this.#strikes.set(s.agentId, [pending, ...(this.#strikes.get(s.agentId) ?? [])]);
    this.#o.logger.warn('agent struck', { agentId: s.agentId, reason: s.reason, jobId: s.jobId, ...s.details });
    this.#writes = this.#writes
      .then(() => this.#o.store.add(s))
      .then(
        (stored) => {
          const list = this.#strikes.get(s.agentId);
          const i = list?.indexOf(pending) ?? -1;
          if (list && i >= 0) list[i] = stored;
        },
        (err: unknown) => this.#o.logger.error('could not record a strike', { agentId: s.agentId, err: errorMessage(err) }),
      );
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
