/**
 * POST /v1/jobs/:jobId/reveal (docs/api.md, docs/honesty.md "Disputes"): the client that paid for
 * a job hands over its evidence (src/shared/crypto/evidence.ts); the gateway checks it against the
 * agent's signed receipt it stored at settlement, opens it, and has its reply checker re-check the
 * reply against the model file the receipt names. The audit is recorded (reasons and figures, never
 * content); a failed one strikes the agent (`audit-failed`) and forfeits the job's charge back to
 * the client if its earnings are still pending. A job is revealed once (409 on a second).
 *
 * The gateway keeps nothing of the evidence: the opened conversation lives only for the check.
 * Whoever runs the gateway can read a revealed job, which is what revealing means (SECURITY.md).
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  NightjarError,
  PROTOCOL_VERSION,
  describeIssues,
  errorMessage,
  jobIdSchema,
  openEvidence,
  signedReceiptSchema,
  type AuditVerdict,
  type JobEvidence,
  type Receipt,
  type RevealResponse,
} from '../../shared/index.js';
import type { NewStrike } from '../honesty/strikes.store.js';
import { callerOf, clientAuth } from './callers.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

/** Most figures one strike's details carry (the checker's own figures come first). */
const MAX_STRIKE_FIGURES = 32;

/** Registers POST /v1/jobs/:jobId/reveal. */
export const revealRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  let running = 0;
  const checker = ctx.options.honesty.checker;
  // Without a checker nothing can be re-checked: refused before the (large) body is read.
  const refuseWithoutChecker = async (): Promise<void> => {
    if (!checker) throw new NightjarError('NJ_AUDIT_UNAVAILABLE', 'this gateway has no reply checker: it cannot re-check a revealed job');
  };
  app.post<{ Params: { jobId: string } }>(
    '/v1/jobs/:jobId/reveal',
    // A reveal costs a request token like any route; the check itself is bounded below.
    { bodyLimit: ctx.options.maxRevealBytes, onRequest: [clientAuth(ctx, true), refuseWithoutChecker] },
    async (req): Promise<RevealResponse> => {
      const { jobId, agentId, receipt } = await revealedJob(ctx, req);
      if (!checker) throw new NightjarError('NJ_INTERNAL', 'the reveal route ran without a checker');
      if (await ctx.store.audits.get(jobId, 'reveal')) throw revealedBefore();
      const evidence = req.body as JobEvidence;
      if (evidence === null || typeof evidence !== 'object' || (evidence as { jobId?: unknown }).jobId !== jobId) {
        throw new NightjarError('NJ_EVIDENCE_INVALID', 'evidence: the evidence is of another job than the path names');
      }
      const opened = await openEvidence(evidence, receipt);
      if (running >= ctx.options.honesty.maxConcurrentChecks) {
        ctx.metrics.rejected.inc({ limit: 'reveal' });
        throw new NightjarError('NJ_RATE_LIMITED', 'the gateway is re-checking as many revealed jobs as it may at once', {
          retryAfterMs: 2000,
        });
      }
      running++;
      let verdict: AuditVerdict;
      try {
        verdict = await checker(opened);
      } finally {
        running--;
      }
      return record(ctx, jobId, agentId, verdict);
    },
  );
};

/** The job the path names, if it is the caller's and settled on a receipt; else NJ_NOT_FOUND (or 409 once revealed). */
async function revealedJob(
  ctx: GatewayContext,
  req: FastifyRequest<{ Params: { jobId: string } }>,
): Promise<{ jobId: string; agentId: string; receipt: Receipt }> {
  const { key } = callerOf(req);
  const parsed = jobIdSchema.safeParse(req.params.jobId);
  if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `jobId: ${describeIssues(parsed.error)}`);
  const jobId = parsed.data;
  const job = await ctx.store.ledger.job(jobId);
  // Another key's job is answered like no job at all: nothing about it is told.
  if (!job || job.keyId !== key!.id) throw new NightjarError('NJ_NOT_FOUND', 'this API key has no job with that id');
  if (job.status !== 'settled' || job.receipt === null || job.agentId === null) {
    throw new NightjarError('NJ_NOT_FOUND', 'this job has no receipt to check a reply against (it ended without one)');
  }
  const signed = signedReceiptSchema.safeParse(JSON.parse(job.receipt));
  if (!signed.success) throw new NightjarError('NJ_INTERNAL', 'the stored receipt of this job cannot be read');
  return { jobId, agentId: job.agentId, receipt: signed.data.receipt };
}

function revealedBefore(): NightjarError {
  return new NightjarError('NJ_ALREADY_REVEALED', 'this job was revealed before; its audit stands');
}

/** Records the audit and, on a failed verdict, the strike and the forfeit; answers the client. */
async function record(ctx: GatewayContext, jobId: string, agentId: string, verdict: AuditVerdict): Promise<RevealResponse> {
  const now = ctx.clock.now();
  const audit = await ctx.store.audits.add({
    jobId,
    agentId,
    at: now,
    source: 'reveal',
    pass: verdict.pass,
    findings: verdict.findings.map((f) => ({ reason: f.reason, figures: f.figures })),
    figures: verdict.figures,
  });
  // A reveal of the same job that finished first recorded its audit: this one records nothing.
  if (!audit) throw revealedBefore();
  const answer: Pick<RevealResponse, 'v' | 'jobId' | 'agentId' | 'verdict'> = { v: PROTOCOL_VERSION, jobId, agentId, verdict };
  if (verdict.pass) {
    ctx.log.info('revealed job passed its audit', { jobId, agentId });
    ctx.metrics.reveals.inc({ result: 'passed' });
    return { ...answer, forfeited: false, refunded: '0', message: 'the reply passed its check; the audit is recorded and nothing moves' };
  }
  ctx.honesty.strike(auditStrike(agentId, jobId, verdict, now));
  let forfeit;
  try {
    forfeit = await ctx.store.ledger.forfeit(jobId, now);
  } catch (err) {
    ctx.log.error('could not forfeit a job that failed its audit', { jobId, agentId, err: errorMessage(err) });
    throw err;
  }
  const reasons = verdict.findings.map((f) => f.reason).join(', ') || 'no reason given';
  ctx.log.warn('revealed job failed its audit', { jobId, agentId, reasons, forfeit: forfeit.status });
  ctx.metrics.reveals.inc({ result: forfeit.status === 'forfeited' ? 'forfeited' : 'failed-payable' });
  if (forfeit.status === 'forfeited') {
    return {
      ...answer,
      forfeited: true,
      refunded: forfeit.refunded.toString(),
      message: `the reply failed its check (${reasons}): the agent is struck and the job's charge went back to this key`,
    };
  }
  return {
    ...answer,
    forfeited: false,
    refunded: '0',
    message:
      `the reply failed its check (${reasons}): the agent is struck; the job's earnings were already payable, ` + 'so no money moves',
  };
}

/** The audit-failed strike: the failed checks' reasons and their figures, never content. */
function auditStrike(agentId: string, jobId: string, verdict: AuditVerdict, now: number): NewStrike {
  const details: Record<string, number | string> = { reasons: verdict.findings.map((f) => f.reason).join(',') };
  let n = 0;
  for (const f of verdict.findings) {
    for (const [name, value] of Object.entries(f.figures)) {
      if (n++ >= MAX_STRIKE_FIGURES) break;
      details[`${f.reason}.${name}`] = value;
    }
  }
  return { agentId, reason: 'audit-failed', jobId, details, at: now };
}
