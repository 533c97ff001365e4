/**
 * An agent's score from its strikes. Each strike weighs by its reason and fades with a half-life:
 *
 *     penalty = Σ weight(reason) · 2^(−age / halfLife)        score = 1 / (1 + penalty)
 *
 * so an agent with no strikes scores 1, one fresh over-ceiling strike (weight 1) halves it, two fresh
 * audit-failed strikes (weight 2 each) put it below the default floor of 0.25, and it
 * recovers as strikes age. Routing divides an agent's expected latency by its score (a score of ½
 * ranks it as if twice as slow, so it gets jobs only when faster agents are busy) and offers no job
 * at all below {@link ScoreOptions.minScore}.
 *
 * Strikes on a client's word alone (count-disputed: a countersignature is the client's statement,
 * and a client may lie) add at most {@link ScoreOptions.maxClientWordPenalty} together: they can
 * cost an agent jobs but never bar it, so a client cannot shut an honest agent out by disputing
 * its replies. Barring takes what the gateway itself measured or proved (over-ceiling, claim-gap,
 * audit-failed).
 */
import type { StrikeReason } from './strikes.store.js';

/** How strikes become a score. */
export interface ScoreOptions {
  /**
   * Weight of each reason. Defaults to 1 for over-ceiling (impossible), 0.25 for claim-gap
   * (dishonest, not impossible), 2 for audit-failed (a reply proven off the claimed model: two
   * fresh ones bar an agent) and 0.25 for count-disputed (the client's word against the agent's).
   */
  weights?: Readonly<Record<StrikeReason, number>>;
  /** Half-life of a strike's weight. Defaults to 86 400 000 ms (a day). */
  halfLifeMs?: number;
  /** Below this score an agent gets no jobs. Defaults to 0.25 (a penalty of 3: three fresh over-ceiling strikes). */
  minScore?: number;
  /**
   * The most penalty strikes on a client's word (count-disputed) add together, however many there
   * are. Defaults to 1: alone they can halve a score, never bring it below minScore.
   */
  maxClientWordPenalty?: number;
}

/** Reasons that rest on a client's statement only, capped by {@link ScoreOptions.maxClientWordPenalty}. */
const CLIENT_WORD: ReadonlySet<StrikeReason> = new Set<StrikeReason>(['count-disputed']);

/** The defaults of {@link ScoreOptions}. */
export const SCORE_DEFAULTS: Required<ScoreOptions> = {
  weights: { 'over-ceiling': 1, 'claim-gap': 0.25, 'audit-failed': 2, 'count-disputed': 0.25 },
  halfLifeMs: 86_400_000,
  minScore: 0.25,
  maxClientWordPenalty: 1,
};

/** The score, in (0, 1], of an agent with `strikes` at `now`. */
export function scoreOf(strikes: readonly { reason: StrikeReason; at: number }[], now: number, o: Required<ScoreOptions>): number {
  let proven = 0;
  let clientWord = 0;
  for (const s of strikes) {
    const w = (o.weights[s.reason] ?? 1) * 2 ** (-Math.max(0, now - s.at) / o.halfLifeMs);
    if (CLIENT_WORD.has(s.reason)) clientWord += w;
    else proven += w;
  }
  return 1 / (1 + proven + Math.min(clientWord, o.maxClientWordPenalty));
}
