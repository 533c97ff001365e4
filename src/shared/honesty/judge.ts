/**
 * The verdict of a reply check, as a pure function of numbers (docs/honesty.md "Audits: the
 * check"). A checker that holds the claimed model file evaluates the rendered prompt and the reply
 * in one teacher-forced pass (src/main/agent/engine) and hands the figures here as a
 * {@link ReplyInspection}; {@link judgeReply} decides. Nothing here sees text: the inspection holds
 * ranks, log-probabilities and counts only, so the rules can be tested on hand-made figures.
 *
 * What an honest agent (Nightjar's engine on node-llama-cpp) does, and so what is checked:
 * - Sampling runs llama.cpp's chain top-k → top-p → min-p → temperature on the model's raw logits
 *   (temperature last, so top-p and min-p act on the raw distribution). Every sampled token is
 *   therefore within the raw top-k, and its raw probability is at least min-p × the top one. A
 *   greedy request (temperature 0) takes the top token. A token outside that set is
 *   'off-distribution' unless its log-probability is within {@link AuditPolicy.logitTolerance} of
 *   the boundary (the k-th token, or min-p × the top).
 * - The reply's likelihood under the request's own sampling distribution: honest sampling gives a
 *   sum of log q(token) whose mean is minus the summed entropy; a sum far below it is
 *   'implausible-likelihood' (Freedman's inequality, see {@link AuditPolicy.likelihoodFalsePositive}).
 * - Counts from the reply's own tokenization: 'completion-count', 'prompt-count'.
 * - The end: a reply that says it stopped must end where the model could have ended it, one that
 *   says it hit the length must have the length ('tail-dropped').
 * - Greedy replies against a reference run (when the checker made one): 'greedy-mismatch'.
 */
import type { Sampling } from '../protocol/schemas.js';
import type { AuditFinding, AuditVerdict, ReplyUnderCheck } from './audit.js';

/** One reply position as the model saw it under teacher forcing: plain numbers, never a token's text. */
export interface TokenInspection {
  /** 1 + how many tokens the model gave a strictly higher probability (ties rank together). */
  rank: number;
  /** ln p of the token under the model's raw distribution (temperature 1, nothing cut). */
  logprob: number;
  /**
   * ln p of the most likely tokens, most likely first: the top k for the k that applies (1 when
   * greedy), or the whole vocabulary when it is smaller.
   */
  top: readonly number[];
}

/** What a checker measured for one reply under the claimed model file (the engine's `inspect`). */
export interface ReplyInspection {
  /** Tokens of the prompt rendered with the model's own chat template, as the agent renders it. */
  promptTokens: number;
  /** Tokens of the reply text under the model's tokenizer. */
  replyTokens: number;
  /** One entry per reply token, in order: the distribution it was drawn from and where it sits in it. */
  positions: readonly TokenInspection[];
  /**
   * For a reply that finished 'stop': the best-ranked end token (end of generation, the first token of
   * the named stop sequence, or of the chat template's end-of-turn text) after the last reply
   * token. Null for other finish reasons.
   */
  end: TokenInspection | null;
  /** Tokens of the stop sequence the reply names; 0 when it names none. */
  stopSequenceTokens: number;
  /**
   * The most tokens an honest engine can generate and hold back unsent when cancelled (an
   * incomplete character, or the start of a possible stop sequence).
   */
  heldBackTokens: number;
  /**
   * Positions where the tokenizer's own spelling of the text was replaced by another single token
   * with the same text, because the model ranks that one higher (a generator can emit either).
   */
  respelled: number;
  /** The greedy reference run, when one was made. */
  reference?: ReferenceComparison;
}

/** How a greedy reply compares with the checker's own greedy run of the same request. */
export interface ReferenceComparison {
  /** Tokens of the reference reply. */
  referenceTokens: number;
  /**
   * The first reply position that differs from the reference (or that the reference does not
   * reach); null when the reply is the reference or a prefix of it.
   */
  divergeAt: number | null;
}

/** The sampling an honest agent used: the request's fields over the agent's defaults. */
export interface EffectiveSampling {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
}

/** The rules of {@link judgeReply}. */
export interface AuditPolicy {
  /**
   * The agent engine's defaults for fields a request leaves out: a copy of DEFAULT_SAMPLING in
   * src/main/agent/engine/engine.ts (llama.cpp's server defaults), kept equal by a test. Min-p is
   * not a request field: the engine always uses this one. Defaults to
   * `{ temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05 }`.
   */
  defaultSampling: Readonly<EffectiveSampling>;
  /**
   * How far (in natural-log units of probability, i.e. logits) a token may fall below a boundary
   * (the k-th token, the top token when greedy, or min-p × the top) and still count as inside.
   * The agent runs on Metal, the checker on a CPU: different kernels and accumulation orders (and,
   * on the CPU, 8-bit quantised activations) give slightly different logits for the same weights.
   * 0.25 is a probability ratio of 1.28. Defaults to 0.25.
   */
  logitTolerance: number;
  /**
   * A few tokens may fall outside by more than {@link logitTolerance}, up to
   * {@link farTolerance}: this fraction of the reply's tokens (rounded up), at least one. Kernel
   * differences compound along a sequence, so a long reply from other hardware can put one boundary
   * token just past the tolerance; a cheat (another model, junk) puts many tokens outside, or one far
   * outside. Defaults to 0.02.
   */
  outsideFraction: number;
  /**
   * No token may fall further outside than this (logits), and a greedy reply that leaves the
   * reference run is a near-tie only within it. Measured with bench/reply-check.ts on synthetic
   * models (which amplify kernel differences: their weights are random) between a Q8_0 file and
   * the same weights stored as F32, honest replies from one judged against the other: the worst
   * token of 500 replies fell 0.96 outside (at temperature 2; 0.58 greedy). 2 is twice that, a
   * probability ratio of 7.4; the cheats measured there fall 15 or more outside. Defaults to 2.
   */
  farTolerance: number;
  /**
   * A reply fails 'implausible-likelihood' when, under honest sampling from the request's own
   * distribution (top-k, top-p, min-p, temperature), a log-likelihood this far below its
   * expectation would happen with probability below this. The probability is bounded with
   * Freedman's inequality for martingales (bounded steps, predictable variance), so the bound
   * holds for any reply length and any model, not only asymptotically. Measured with
   * bench/reply-check.ts (64-token replies, synthetic models): over 1,000 honest replies at
   * temperatures 0.8, 1, 1.5 and 2, on the checker's own kernel and on another (F32 against Q8_0),
   * the lowest ln bound was −3.7 (−2.3 on the same kernel), against ln 1e-6 = −13.8; another
   * model's sampled replies and random text fell to −53 and below, all 150 caught. Not applied to
   * greedy requests (they are checked token by token against the top one). Defaults to 1e-6.
   */
  likelihoodFalsePositive: number;
  /**
   * Slack on token counts, as a fraction of the reply's tokens (rounded up), never less than
   * {@link countSlackMin}. An honest agent's generated tokens may spell the text differently from the
   * tokenizer (BPE merges the sampler did not take, e.g. "hel"+"lo" for "hello"), so the reply's own
   * tokenization can hold fewer tokens than were generated; at ordinary temperatures that is rare, and
   * the slack keeps an inflated claim to a few percent. Defaults to 0.02.
   */
  countSlackFraction: number;
  /** The least slack on token counts, in tokens (see {@link countSlackFraction}). Defaults to 1. */
  countSlackMin: number;
  /**
   * Tokens a receipt may claim over the rendered prompt. The agent counts the same rendering with
   * the same tokenizer, so none are needed. Defaults to 0.
   */
  promptSlack: number;
}

/** The defaults of {@link AuditPolicy}. */
export const DEFAULT_AUDIT_POLICY: Readonly<AuditPolicy> = Object.freeze({
  defaultSampling: Object.freeze({ temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05 }),
  logitTolerance: 0.25,
  outsideFraction: 0.02,
  farTolerance: 2,
  likelihoodFalsePositive: 1e-6,
  countSlackFraction: 0.02,
  countSlackMin: 1,
  promptSlack: 0,
});

/** `policy` over {@link DEFAULT_AUDIT_POLICY}, checked. Throws RangeError on a value out of range. */
export function resolveAuditPolicy(policy: Partial<AuditPolicy> | undefined): AuditPolicy {
  const out: AuditPolicy = { ...DEFAULT_AUDIT_POLICY };
  for (const [key, value] of Object.entries(policy ?? {})) {
    if (value !== undefined) (out as unknown as Record<string, unknown>)[key] = value;
  }
  const finite = (name: string, v: number, lo: number, hi: number): void => {
    if (!Number.isFinite(v) || v < lo || v > hi) throw new RangeError(`AuditPolicy.${name} must be from ${lo} to ${hi}; got ${v}.`);
  };
  finite('logitTolerance', out.logitTolerance, 0, 10);
  finite('outsideFraction', out.outsideFraction, 0, 1);
  finite('farTolerance', out.farTolerance, out.logitTolerance, 10);
  finite('likelihoodFalsePositive', out.likelihoodFalsePositive, Number.MIN_VALUE, 1);
  finite('countSlackFraction', out.countSlackFraction, 0, 1);
  finite('countSlackMin', out.countSlackMin, 0, 1_000_000);
  finite('promptSlack', out.promptSlack, 0, 1_000_000);
  const s = out.defaultSampling;
  finite('defaultSampling.temperature', s.temperature, 0, 2);
  finite('defaultSampling.topK', s.topK, 1, 1_000_000);
  finite('defaultSampling.topP', s.topP, Number.MIN_VALUE, 1);
  finite('defaultSampling.minP', s.minP, 0, 1);
  return out;
}

/** The request's sampling fields over the policy's defaults. */
export function effectiveSampling(sampling: Sampling, policy: AuditPolicy = DEFAULT_AUDIT_POLICY): EffectiveSampling {
  const d = policy.defaultSampling;
  return {
    temperature: sampling.temperature ?? d.temperature,
    topK: sampling.topK ?? d.topK,
    topP: sampling.topP ?? d.topP,
    minP: d.minP,
  };
}

/** The k that applies: 1 when greedy (temperature 0), else the effective top-k. */
export function allowedRank(sampling: EffectiveSampling): number {
  return sampling.temperature === 0 ? 1 : sampling.topK;
}

/** Slack on a token count of `tokens` (see {@link AuditPolicy.countSlackFraction}). */
export function countSlack(tokens: number, policy: AuditPolicy = DEFAULT_AUDIT_POLICY): number {
  return Math.max(policy.countSlackMin, Math.ceil(tokens * policy.countSlackFraction));
}

/** How far (in logits) a token falls outside what the sampling could draw; ≤ 0 when inside. */
function outsideBy(t: TokenInspection, sampling: EffectiveSampling): number {
  const k = allowedRank(sampling);
  const top = t.top[0] ?? t.logprob;
  let gap = 0;
  if (t.rank > k && t.top.length >= k) gap = Math.max(gap, (t.top[k - 1] ?? top) - t.logprob);
  if (sampling.temperature > 0 && sampling.minP > 0) gap = Math.max(gap, top + Math.log(sampling.minP) - t.logprob);
  return gap;
}

function logSumExp(values: readonly number[]): number {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}

/** The likelihood test's figures for sampled replies. */
interface Likelihood {
  /** Σ ln q(token) − Σ E[ln q]: how far below its expectation the reply's log-likelihood is (< 0 is below). */
  excess: number;
  /** ln of Freedman's bound on the probability of a deficit this large under honest sampling (0 when none). */
  lnBound: number;
}

/**
 * The reply's log-likelihood under the sampling distribution q at each position (llama.cpp's chain:
 * top-k, then top-p on the renormalised top-k, then min-p, then temperature), against what honest
 * draws from q give: mean Σ E_t[ln q], predictable variance Σ Var_t[ln q], and each step's
 * downward deviation at most b. Freedman: P(deficit ≥ a) ≤ exp(−a² / (2(σ² + b·a/3))).
 */
function likelihood(positions: readonly TokenInspection[], sampling: EffectiveSampling): Likelihood {
  const T = sampling.temperature;
  let sum = 0;
  let mean = 0;
  let variance = 0;
  let b = 0;
  for (const t of positions) {
    const top = t.top;
    if (top.length === 0) continue;
    const k = Math.min(sampling.topK, top.length);
    // top-p over the renormalised top-k: the smallest prefix whose mass reaches topP.
    const lseK = logSumExp(top.slice(0, k));
    let kept = k;
    let cum = 0;
    for (let i = 0; i < k; i++) {
      cum += Math.exp(top[i]! - lseK);
      if (cum >= sampling.topP) {
        kept = i + 1;
        break;
      }
    }
    // min-p on what is left.
    const floor = top[0]! + Math.log(sampling.minP);
    let m = 0;
    while (m < kept && top[m]! >= floor) m++;
    m = Math.max(1, m);
    const scaled = top.slice(0, m).map((l) => l / T);
    const inside = t.rank <= m;
    const lse = logSumExp(inside ? scaled : [...scaled, t.logprob / T]);
    const logq = t.logprob / T - lse;
    let e = 0;
    let e2 = 0;
    let lowest = 0;
    for (const s of scaled) {
      const lq = s - lse;
      const q = Math.exp(lq);
      e += q * lq;
      e2 += q * lq * lq;
      lowest = Math.min(lowest, lq);
    }
    sum += logq;
    mean += e;
    variance += Math.max(0, e2 - e * e);
    b = Math.max(b, e - Math.min(lowest, logq));
  }
  const excess = sum - mean;
  const a = -excess;
  const lnBound = a <= 0 ? 0 : -(a * a) / (2 * (variance + (b * a) / 3));
  return { excess, lnBound };
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${s}`;
}

function round(n: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Tokens of call syntax and whitespace one tool call may take besides its name and arguments. */
export const TOOL_CALL_SYNTAX_TOKENS = 16;
/** Tokens a grammar's end text (four newlines) may take after a constrained reply. */
export const GRAMMAR_END_TOKENS = 4;

/**
 * Judges the counts of a constrained reply (tools, a response format, penalties): its tokens were
 * drawn under a grammar or penalties the teacher-forced test does not model, so only the counts
 * are checked. `counted` holds the prompt's tokens rendered with the request's tools and format,
 * and the reply's tokens: its text and each call written as the agent generates it.
 */
export function judgeConstrainedCounts(
  input: ReplyUnderCheck,
  counted: { promptTokens: number; replyTokens: number },
  policy: AuditPolicy = DEFAULT_AUDIT_POLICY,
): AuditVerdict {
  const findings: AuditFinding[] = [];
  const calls = input.toolCalls?.length ?? 0;
  const completionBound =
    counted.replyTokens +
    1 +
    GRAMMAR_END_TOKENS +
    calls * TOOL_CALL_SYNTAX_TOKENS +
    (input.sampling.stop?.length ? LIMITS_STOP_TOKENS : 0) +
    countSlack(counted.replyTokens, policy);
  if (input.claimed.completionTokens > completionBound) {
    findings.push({
      reason: 'completion-count',
      detail:
        `the receipt claims ${input.claimed.completionTokens} completion tokens; ` +
        `the constrained reply holds ${counted.replyTokens}, at most ${completionBound} with its end and slack`,
      figures: { claimed: input.claimed.completionTokens, replyTokens: counted.replyTokens, bound: completionBound },
    });
  }
  const promptBound = counted.promptTokens + policy.promptSlack;
  if (input.claimed.promptTokens > promptBound) {
    findings.push({
      reason: 'prompt-count',
      detail: `the receipt claims ${input.claimed.promptTokens} prompt tokens; the rendered prompt holds ${counted.promptTokens}`,
      figures: { claimed: input.claimed.promptTokens, promptTokens: counted.promptTokens, bound: promptBound },
    });
  }
  return {
    pass: findings.length === 0,
    findings,
    figures: { promptTokens: counted.promptTokens, replyTokens: counted.replyTokens, constrained: 1, toolCalls: calls },
  };
}

/** Tokens a request's stop sequence may take when it ends a reply (its longest spelling, one token per byte). */
const LIMITS_STOP_TOKENS = 256;

/**
 * Judges one reply from its inspection under the claimed model file. Pure: the same input,
 * inspection and policy always give the same verdict. Findings carry figures only.
 */
export function judgeReply(input: ReplyUnderCheck, inspection: ReplyInspection, policy: AuditPolicy = DEFAULT_AUDIT_POLICY): AuditVerdict {
  const sampling = effectiveSampling(input.sampling, policy);
  const k = allowedRank(sampling);
  const tol = policy.logitTolerance;
  const findings: AuditFinding[] = [];
  const n = inspection.positions.length;
  const finish = input.reply.finishReason;

  // Every token within what the sampling could draw: all within the tolerance but a few, and
  // those few within the far tolerance. The end of a stopped reply counts as one more token.
  const endGap = finish === 'stop' ? (inspection.end === null ? Infinity : outsideBy(inspection.end, sampling)) : 0;
  let worstRank = 0;
  let worstGap = 0;
  let firstOutside = -1;
  let firstFar = -1;
  let outside = 0;
  let logprobSum = 0;
  inspection.positions.forEach((t, i) => {
    worstRank = Math.max(worstRank, t.rank);
    logprobSum += t.logprob;
    const gap = outsideBy(t, sampling);
    worstGap = Math.max(worstGap, gap);
    if (gap > tol) {
      outside += 1;
      if (firstOutside < 0) firstOutside = i;
      if (gap > policy.farTolerance && firstFar < 0) firstFar = i;
    }
  });
  const allowance = Math.max(1, Math.ceil(n * policy.outsideFraction));
  const endOutside = endGap > tol ? 1 : 0;
  if (firstFar >= 0 || outside + endOutside > allowance) {
    const at = firstFar >= 0 ? firstFar : firstOutside >= 0 ? firstOutside : -1;
    const t = at >= 0 ? inspection.positions[at] : undefined;
    if (t !== undefined) {
      findings.push({
        reason: 'off-distribution',
        detail:
          `token ${at + 1} of ${n} ranks ${ordinal(t.rank)} at ${round(t.logprob - (t.top[0] ?? t.logprob), 2)} below the top; ` +
          (k === 1 ? 'a greedy request takes the top token' : `the request allowed the top ${k} within min-p ${sampling.minP}`) +
          ` (${outside} of ${n} tokens outside, ${allowance} allowed)`,
        figures: { position: at, rank: t.rank, allowedRank: k, outside, allowance, worstGap: round(worstGap), tolerance: tol },
      });
    }
  }

  // The likelihood of a sampled reply.
  const lik = sampling.temperature > 0 && n > 0 ? likelihood(inspection.positions, sampling) : { excess: 0, lnBound: 0 };
  if (lik.lnBound < Math.log(policy.likelihoodFalsePositive)) {
    findings.push({
      reason: 'implausible-likelihood',
      detail:
        `the reply's log-likelihood is ${round(-lik.excess, 1)} below what sampling at temperature ${sampling.temperature} gives; ` +
        `honest sampling falls that low with probability below e^${round(lik.lnBound, 1)}`,
      figures: { excess: round(lik.excess), lnBound: round(lik.lnBound), lnThreshold: round(Math.log(policy.likelihoodFalsePositive)) },
    });
  }

  // The end.
  if (finish === 'stop') {
    const end = inspection.end;
    const spare = allowance - Math.min(outside, allowance);
    if (endGap > policy.farTolerance || (endGap > tol && spare < 1)) {
      findings.push({
        reason: 'tail-dropped',
        detail:
          end === null
            ? 'the reply says it stopped, but the check found no end token to rank'
            : `the reply says it stopped after token ${n}, where the end ranks ${ordinal(end.rank)} ` +
              `at ${round(end.logprob - (end.top[0] ?? end.logprob), 2)} below the top` +
              (k === 1
                ? ' (a greedy request ends only on the top token)'
                : ` (the request allowed the top ${k} within min-p ${sampling.minP})`),
        figures: { replyTokens: n, endRank: end?.rank ?? -1, endGap: Number.isFinite(endGap) ? round(endGap) : -1, tolerance: tol },
      });
    }
  } else if (finish === 'length') {
    const need = input.sampling.maxTokens - countSlack(input.sampling.maxTokens, policy);
    if (inspection.replyTokens < need) {
      findings.push({
        reason: 'tail-dropped',
        detail: `the reply says it reached maxTokens ${input.sampling.maxTokens} but holds ${inspection.replyTokens} tokens`,
        figures: {
          replyTokens: inspection.replyTokens,
          maxTokens: input.sampling.maxTokens,
          slack: countSlack(input.sampling.maxTokens, policy),
        },
      });
    }
  }

  // Counts.
  const endAllowance = finish === 'cancelled' ? Math.max(1, inspection.heldBackTokens) : 1 + inspection.stopSequenceTokens;
  const completionBound = inspection.replyTokens + endAllowance + countSlack(inspection.replyTokens, policy);
  if (input.claimed.completionTokens > completionBound) {
    findings.push({
      reason: 'completion-count',
      detail:
        `the receipt claims ${input.claimed.completionTokens} completion tokens; ` +
        `the reply holds ${inspection.replyTokens}, at most ${completionBound} with its end and slack`,
      figures: { claimed: input.claimed.completionTokens, replyTokens: inspection.replyTokens, bound: completionBound },
    });
  }
  const promptBound = inspection.promptTokens + policy.promptSlack;
  if (input.claimed.promptTokens > promptBound) {
    findings.push({
      reason: 'prompt-count',
      detail: `the receipt claims ${input.claimed.promptTokens} prompt tokens; the rendered prompt holds ${inspection.promptTokens}`,
      figures: { claimed: input.claimed.promptTokens, promptTokens: inspection.promptTokens, bound: promptBound },
    });
  }

  // The greedy reference.
  const figures: Record<string, number> = {
    promptTokens: inspection.promptTokens,
    replyTokens: inspection.replyTokens,
    tokensChecked: n + (inspection.end === null ? 0 : 1),
    meanLogprob: n === 0 ? 0 : round(logprobSum / n),
    worstRank,
    worstGap: round(worstGap),
    outside,
    allowedRank: k,
    likelihoodExcess: round(lik.excess),
    likelihoodLnBound: round(lik.lnBound),
    respelled: inspection.respelled,
  };
  const ref = inspection.reference;
  if (ref !== undefined) {
    figures['referenceTokens'] = ref.referenceTokens;
    figures['greedyMatch'] = ref.divergeAt === null ? 1 : 0;
    if (ref.divergeAt !== null) {
      const t = inspection.positions[ref.divergeAt];
      const gap = t === undefined ? Infinity : (t.top[0] ?? t.logprob) - t.logprob;
      figures['greedyDivergeAt'] = ref.divergeAt;
      figures['greedyGap'] = Number.isFinite(gap) ? round(gap) : -1;
      if (!(gap <= policy.farTolerance)) {
        findings.push({
          reason: 'greedy-mismatch',
          detail:
            `the greedy reply leaves the reference run at token ${ref.divergeAt + 1}, ` +
            `${Number.isFinite(gap) ? `${round(gap, 2)} below the top token` : 'past its end'} ` +
            `(a near-tie is within ${policy.farTolerance})`,
          figures: { divergeAt: ref.divergeAt, gap: Number.isFinite(gap) ? round(gap) : -1, tolerance: policy.farTolerance },
        });
      }
    }
  }
  return { pass: findings.length === 0, findings, figures };
}
