/**
 * The answer to a reveal (POST /v1/jobs/:jobId/reveal, docs/api.md): the gateway's verdict on the
 * revealed job's reply and what it did about it. Schemas, so the SDK checks the answer at run time.
 */
import { z } from 'zod';
import { PROTOCOL_VERSION } from '../protocol/limits.js';
import { agentIdSchema, jobIdSchema } from '../protocol/schemas.js';
import type { AuditFailureReason, AuditVerdict } from './audit.js';

/** Every {@link AuditFailureReason}, in the order docs/honesty.md lists them. */
export const AUDIT_FAILURE_REASONS = [
  'off-distribution',
  'implausible-likelihood',
  'greedy-mismatch',
  'completion-count',
  'prompt-count',
  'tail-dropped',
] as const satisfies readonly AuditFailureReason[];

const figuresSchema = z
  .record(z.string().max(64), z.number())
  .refine((r) => Object.keys(r).length <= 64, { message: 'at most 64 figures' });

/** An {@link AuditVerdict} as it crosses the wire. */
export const auditVerdictSchema = z.strictObject({
  pass: z.boolean(),
  findings: z
    .array(z.strictObject({ reason: z.enum(AUDIT_FAILURE_REASONS), detail: z.string().max(1024), figures: figuresSchema }))
    .max(64),
  figures: figuresSchema,
}) satisfies z.ZodType<AuditVerdict>;

/** What the gateway answers to a reveal. */
export const revealResponseSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  jobId: jobIdSchema,
  /** The agent whose reply was checked. */
  agentId: agentIdSchema,
  verdict: auditVerdictSchema,
  /** The job's charge went back to the client (a failed verdict while its earnings were pending). */
  forfeited: z.boolean(),
  /** Micro-credits given back to the client, a decimal string ("0" when nothing moved). */
  refunded: z.string().regex(/^\d{1,30}$/),
  /** One sentence for a person: what was recorded and what moved (or why nothing did). */
  message: z.string().max(1024),
});
/** What the gateway answers to a reveal. */
export type RevealResponse = z.infer<typeof revealResponseSchema>;
