/**
 * The gateway's own measurement of each agent's speed, per agent and model: time to first chunk
 * from dispatch, and the decode rate once the receipt verifies. An EWMA per (agent, model), with
 * the count of samples so a gap must be persistent before it counts.
 */

/** What the gateway timed of one job with a verified receipt. */
export interface JobTiming {
  jobId: string;
  model: string;
  modelSha256: string;
  /** Dispatch to first chunk, ms on the gateway's clock. */
  ttftMs: number;
  /** First chunk to last chunk, ms on the gateway's clock. */
  decodeMs: number;
  /** Completion tokens in the verified receipt (cut to the bound of what was relayed). */
  tokens: number;
  /** Chunks relayed (the last, with the usage, carries no text). */
  chunks: number;
}

/**
 * The shortest decode, ms on the gateway's clock, that is timed. Below it the relay's own jitter
 * (a loaded gateway, a burst after a stall) is a large part of the figure: a 16-token reply the
 * agent made in 2 ms and the gateway relayed in 8 looks 4× slower than claimed, and chunks that
 * arrive bunched look faster than the chip allows. Real replies on a Mac decode for seconds.
 */
export const MIN_TIMED_DECODE_MS = 250;

/**
 * The decode rate of a job, tokens/s: the receipt's tokens after the first chunk over the time
 * from first to last chunk, cross-checked by the chunk rate (every text chunk holds at least one
 * token, so chunks after the first, less the closing one, per second is a floor the agent cannot
 * talk down by signing fewer tokens); the higher of the two. Null when the job is too short to
 * time (fewer than 3 chunks, or a decode shorter than `minDecodeMs`).
 */
export function decodeRate(t: JobTiming, minDecodeMs = MIN_TIMED_DECODE_MS): number | null {
  if (t.chunks < 3 || t.decodeMs <= 0 || t.decodeMs < minDecodeMs) return null;
  const seconds = t.decodeMs / 1000;
  const byTokens = Math.max(0, t.tokens - 1) / seconds;
  const byChunks = Math.max(0, t.chunks - 2) / seconds;
  return Math.max(byTokens, byChunks);
}

/** What one timed job says of an agent's speed: what a cluster's nodes share with each other. */
export interface SpeedSample {
  agentId: string;
  model: string;
  /** The job's decode rate ({@link decodeRate}); null when it was too short to time. */
  tokensPerSecond: number | null;
  /** Dispatch to first chunk, ms. */
  ttftMs: number;
}

/** A smoothed figure for one (agent, model). */
export interface MeasuredSpeed {
  /** Smoothed decode rate, tokens/s; 0 until a job was long enough to time. */
  tokensPerSecond: number;
  /** Smoothed time to first chunk, ms. */
  ttftMs: number;
  /** Jobs whose decode rate was timed. */
  samples: number;
  /** When the last sample came. */
  at: number;
}

/** Per-agent, per-model measured speed (in memory: it is rebuilt from the traffic after a restart). */
export class SpeedBook {
  readonly #speeds = new Map<string, MeasuredSpeed>();

  /**
   * @param alpha weight of a new sample in the average.
   * @param minDecodeMs the shortest decode that is timed ({@link MIN_TIMED_DECODE_MS}).
   */
  constructor(
    readonly alpha = 0.3,
    readonly minDecodeMs = MIN_TIMED_DECODE_MS,
  ) {}

  /** Adds one job's timing; returns the figure after it and the job's own decode rate (null if untimed). */
  add(agentId: string, t: JobTiming, now: number): { speed: MeasuredSpeed; rate: number | null } {
    return this.fold({ agentId, model: t.model, tokensPerSecond: decodeRate(t, this.minDecodeMs), ttftMs: t.ttftMs }, now);
  }

  /** Adds one timed job's figures (this node's, or another node's in a cluster); returns the figure after it and the job's rate. */
  fold(sample: SpeedSample, now: number): { speed: MeasuredSpeed; rate: number | null } {
    const key = `${sample.agentId}\n${sample.model}`;
    const rate = sample.tokensPerSecond;
    const old = this.#speeds.get(key);
    const a = this.alpha;
    const speed: MeasuredSpeed = old
      ? {
          ttftMs: old.ttftMs * (1 - a) + sample.ttftMs * a,
          tokensPerSecond: rate === null ? old.tokensPerSecond : old.samples === 0 ? rate : old.tokensPerSecond * (1 - a) + rate * a,
          samples: old.samples + (rate === null ? 0 : 1),
          at: now,
        }
      : { ttftMs: sample.ttftMs, tokensPerSecond: rate ?? 0, samples: rate === null ? 0 : 1, at: now };
    this.#speeds.set(key, speed);
    return { speed, rate };
  }

  /** The measured figure of `agentId` serving `model`, if any job was timed. */
  get(agentId: string, model: string): MeasuredSpeed | undefined {
    return this.#speeds.get(`${agentId}\n${model}`);
  }

  /** Forgets an agent (cleared by the operator). */
  forget(agentId: string): void {
    for (const k of [...this.#speeds.keys()]) if (k.startsWith(`${agentId}\n`)) this.#speeds.delete(k);
  }
}
