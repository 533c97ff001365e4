/**
 * judgeReply on hand-made inspections: the edges of each rule (src/shared/honesty/judge.ts). The
 * real-model cases are in test/main/agent/engine/reply-check.test.ts.
 *
 * Each security test names the protection it fails without; each was removed once and its test
 * seen to fail (2026-12-01).
 */
import { describe, expect, it } from 'vitest';
import {
  allowedRank,
  countSlack,
  DEFAULT_AUDIT_POLICY,
  effectiveSampling,
  judgeReply,
  resolveAuditPolicy,
  type AuditPolicy,
  type ReplyInspection,
  type ReplyUnderCheck,
  type Sampling,
  type TokenInspection,
} from '../../../src/shared/index.js';

const ln = Math.log;

/** A position whose top-k log-probabilities are `top`, holding the token at `index` (or one with `logprob`, outside). */
function at(top: number[], index: number, logprob = top[index]!): TokenInspection {
  return { rank: 1 + top.filter((l) => l > logprob).length, logprob, top };
}

function inspection(positions: TokenInspection[], extra: Partial<ReplyInspection> = {}): ReplyInspection {
  return {
    promptTokens: 20,
    replyTokens: positions.length,
    positions,
    end: null,
    stopSequenceTokens: 0,
    heldBackTokens: 3,
    respelled: 0,
    ...extra,
  };
}

function input(
  sampling: Sampling,
  finishReason: ReplyUnderCheck['reply']['finishReason'],
  claimed = { promptTokens: 20, completionTokens: 0 },
): ReplyUnderCheck {
  return {
    jobId: 'job-1',
    model: 'm',
    modelSha256: '00'.repeat(32),
    messages: [{ role: 'user', content: 'hi' }],
    sampling,
    reply: { text: 'x', finishReason },
    claimed,
  };
}

const reasons = (i: ReplyUnderCheck, s: ReplyInspection, p?: AuditPolicy): string[] => judgeReply(i, s, p).findings.map((f) => f.reason);

describe('the effective sampling', () => {
  it("takes the request's fields over the defaults; k is 1 when greedy", () => {
    expect(effectiveSampling({ maxTokens: 1 })).toEqual({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 });
    expect(effectiveSampling({ maxTokens: 1, temperature: 0, topK: 7, topP: 0.5 })).toEqual({
      temperature: 0,
      topK: 7,
      topP: 0.5,
      minP: 0.05,
    });
    expect(allowedRank(effectiveSampling({ maxTokens: 1, temperature: 0, topK: 7 }))).toBe(1);
    expect(allowedRank(effectiveSampling({ maxTokens: 1, topK: 7 }))).toBe(7);
  });

  it('checks the policy', () => {
    expect(resolveAuditPolicy(undefined)).toEqual(DEFAULT_AUDIT_POLICY);
    expect(resolveAuditPolicy({ logitTolerance: 0.5 }).logitTolerance).toBe(0.5);
    expect(() => resolveAuditPolicy({ logitTolerance: -1 })).toThrow('AuditPolicy.logitTolerance must be from 0 to 10; got -1.');
    expect(() => resolveAuditPolicy({ farTolerance: 0.1 })).toThrow(/farTolerance/);
    expect(countSlack(10)).toBe(1);
    expect(countSlack(101)).toBe(3);
  });
});

describe('off-distribution (fails without the rank and min-p check)', () => {
  const greedy: Sampling = { maxTokens: 4, temperature: 0 };
  const tol = DEFAULT_AUDIT_POLICY.logitTolerance;
  const far = DEFAULT_AUDIT_POLICY.farTolerance;

  it('greedy: the top token passes; one just within the tolerance passes; beyond the far tolerance fails', () => {
    const top = [ln(0.5)];
    expect(reasons(input(greedy, 'length'), inspection([at(top, 0), at(top, 0), at(top, 0), at(top, 0)]))).toEqual([]);
    const near = at(top, 0, ln(0.5) - tol + 1e-9);
    expect(reasons(input(greedy, 'length'), inspection([near, near, near, near]))).toEqual([]);
    const beyondFar = at(top, 0, ln(0.5) - far - 1e-6);
    expect(reasons(input(greedy, 'length'), inspection([at(top, 0), beyondFar, at(top, 0), at(top, 0)]))).toEqual(['off-distribution']);
  });

  it('tokens between the tolerance and the far tolerance: one is allowed (of up to 50), two are not', () => {
    const top = [ln(0.5)];
    const between = at(top, 0, ln(0.5) - (tol + far) / 2);
    const ok = at(top, 0);
    expect(reasons(input(greedy, 'length'), inspection([ok, between, ok, ok]))).toEqual([]);
    expect(reasons(input(greedy, 'length'), inspection([ok, between, between, ok]))).toEqual(['off-distribution']);
    // 2% of 100 tokens: two allowed, three not.
    const many = (bad: number): TokenInspection[] => Array.from({ length: 100 }, (_, i) => (i < bad ? between : ok));
    expect(reasons(input({ maxTokens: 100, temperature: 0 }, 'length'), inspection(many(2)))).toEqual([]);
    expect(reasons(input({ maxTokens: 100, temperature: 0 }, 'length'), inspection(many(3)))).toEqual(['off-distribution']);
  });

  it('sampled: the k-th token passes, a token far below the k-th fails', () => {
    const s: Sampling = { maxTokens: 2, topK: 4, topP: 1 };
    const top = [ln(0.3), ln(0.29), ln(0.28), ln(0.1)];
    const kth = at(top, 3);
    expect(judgeReply(input(s, 'length'), inspection([kth, kth])).findings.map((f) => f.reason)).not.toContain('off-distribution');
    const fifth = at(top, 0, ln(0.1) - far - 0.01);
    expect(reasons(input(s, 'length'), inspection([kth, fifth]))).toContain('off-distribution');
  });

  it('sampled: min-p × the top is a boundary too (the engine always samples with min-p 0.05)', () => {
    const s: Sampling = { maxTokens: 1, topK: 40, topP: 1 };
    const top = [ln(0.5), ln(0.5 * 0.05), ln(0.5 * 0.05 * Math.exp(-far - 0.01))];
    expect(reasons(input(s, 'length'), inspection([at(top, 1)]))).not.toContain('off-distribution');
    expect(reasons(input(s, 'length'), inspection([at(top, 2)]))).toContain('off-distribution');
  });
});

describe('implausible-likelihood (fails without the likelihood test)', () => {
  const s: Sampling = { maxTokens: 200, temperature: 1, topK: 2, topP: 1 };
  const top = [ln(0.8), ln(0.2)];

  it('a reply that always takes the less likely of two tokens fails; honest proportions pass', () => {
    const always = Array.from({ length: 200 }, () => at(top, 1));
    expect(reasons(input(s, 'length'), inspection(always))).toEqual(['implausible-likelihood']);
    const honest = Array.from({ length: 200 }, (_, i) => at(top, i % 5 === 0 ? 1 : 0));
    const verdict = judgeReply(input(s, 'length'), inspection(honest));
    expect(verdict.findings).toEqual([]);
    expect(verdict.figures['likelihoodLnBound']).toBe(0);
  });

  it('short replies cannot fail it by chance: four unlikely tokens in a row stay above the bound', () => {
    const four = Array.from({ length: 4 }, () => at(top, 1));
    const verdict = judgeReply(input({ ...s, maxTokens: 4 }, 'length'), inspection(four));
    expect(verdict.findings).toEqual([]);
    expect(verdict.figures['likelihoodLnBound']).toBeLessThan(0);
    expect(verdict.figures['likelihoodLnBound']).toBeGreaterThan(ln(DEFAULT_AUDIT_POLICY.likelihoodFalsePositive));
  });

  it('is not applied to greedy requests', () => {
    const g = Array.from({ length: 200 }, () => at([ln(0.9)], 0));
    expect(judgeReply(input({ maxTokens: 200, temperature: 0 }, 'length'), inspection(g)).figures['likelihoodLnBound']).toBe(0);
  });
});

describe('tail-dropped (fails without the end check)', () => {
  const greedy: Sampling = { maxTokens: 8, temperature: 0 };
  const ok = at([ln(0.5)], 0);

  it("'stop' needs an end token within the tolerance of what the sampling allows", () => {
    const end = at([ln(0.5)], 0, ln(0.5) - 0.1);
    expect(reasons(input(greedy, 'stop'), inspection([ok, ok], { end }))).toEqual([]);
    const unlikely = at([ln(0.5)], 0, ln(0.5) - 5);
    expect(reasons(input(greedy, 'stop'), inspection([ok, ok], { end: unlikely }))).toEqual(['tail-dropped']);
    expect(reasons(input(greedy, 'stop'), inspection([ok, ok], { end: null }))).toEqual(['tail-dropped']);
  });

  it("'length' needs maxTokens less the slack", () => {
    const seven = Array.from({ length: 7 }, () => ok);
    expect(reasons(input(greedy, 'length'), inspection(seven))).toEqual([]);
    expect(reasons(input(greedy, 'length'), inspection(seven.slice(1)))).toEqual(['tail-dropped']);
  });

  it("'cancelled' has no end check", () => {
    expect(reasons(input(greedy, 'cancelled'), inspection([ok]))).toEqual([]);
  });
});

describe('counts (fail without the count checks)', () => {
  const greedy: Sampling = { maxTokens: 100, temperature: 0 };
  const ok = at([ln(0.5)], 0);
  const fifty = Array.from({ length: 50 }, () => ok);
  const end = ok;

  it('completion: reply + end + stop-sequence tokens + slack, and one more fails', () => {
    // 50 tokens + 1 end + 3 stop tokens + slack max(1, 2% of 50) = 55.
    const s = inspection(fifty, { end, stopSequenceTokens: 3 });
    expect(reasons(input(greedy, 'stop', { promptTokens: 20, completionTokens: 55 }), s)).toEqual([]);
    expect(reasons(input(greedy, 'stop', { promptTokens: 20, completionTokens: 56 }), s)).toEqual(['completion-count']);
  });

  it('completion, cancelled: what the engine may hold back', () => {
    const s = inspection(fifty, { heldBackTokens: 9 });
    expect(reasons(input(greedy, 'cancelled', { promptTokens: 20, completionTokens: 60 }), s)).toEqual([]);
    expect(reasons(input(greedy, 'cancelled', { promptTokens: 20, completionTokens: 61 }), s)).toEqual(['completion-count']);
  });

  it('prompt: no more than the rendered prompt', () => {
    expect(reasons(input(greedy, 'cancelled', { promptTokens: 20, completionTokens: 0 }), inspection(fifty))).toEqual([]);
    expect(reasons(input(greedy, 'cancelled', { promptTokens: 21, completionTokens: 0 }), inspection(fifty))).toEqual(['prompt-count']);
  });
});

describe('greedy-mismatch (fails without the reference comparison)', () => {
  const greedy: Sampling = { maxTokens: 4, temperature: 0 };
  const ok = at([ln(0.5)], 0);

  it('a match passes; a divergence at a near-tie passes with its figures; past the far tolerance fails', () => {
    const match = judgeReply(input(greedy, 'length'), inspection([ok, ok, ok, ok], { reference: { referenceTokens: 4, divergeAt: null } }));
    expect(match.findings).toEqual([]);
    expect(match.figures).toMatchObject({ greedyMatch: 1, referenceTokens: 4 });
    const tie = at([ln(0.5)], 0, ln(0.5) - 0.2);
    const nearTie = judgeReply(input(greedy, 'length'), inspection([ok, tie, ok, ok], { reference: { referenceTokens: 4, divergeAt: 1 } }));
    expect(nearTie.findings).toEqual([]);
    expect(nearTie.figures).toMatchObject({ greedyMatch: 0, greedyDivergeAt: 1, greedyGap: 0.2 });
    // A policy whose far tolerance is below the gap: the same divergence is a mismatch.
    const strict = resolveAuditPolicy({ logitTolerance: 0.25, farTolerance: 0.25, outsideFraction: 0 });
    const tie3 = at([ln(0.5)], 0, ln(0.5) - 0.3);
    expect(
      reasons(input(greedy, 'length'), inspection([ok, tie3, ok, ok], { reference: { referenceTokens: 4, divergeAt: 1 } }), strict),
    ).toContain('greedy-mismatch');
  });
});
