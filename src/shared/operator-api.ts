/**
 * The gateway's operator API (behind the operator dashboard): its requests and answers as zod
 * schemas, and the types derived from them. The gateway's routes validate what they are sent and
 * answer these shapes; the dashboard page (src/gateway/web/dashboard) reads them with these types.
 *
 * Endpoints (JSON unless said otherwise; see docs/api.md):
 * - `POST /v1/operator/session` {@link OperatorSessionRequest} → {@link OperatorSessionResponse},
 *   and an HttpOnly session cookie; `DELETE /v1/operator/session` signs out.
 * - `GET /v1/operator/me` → {@link OperatorMeResponse}
 * - `GET /v1/operator/agents` → {@link OperatorAgentsResponse}
 * - `GET /v1/operator/earnings?days=N` ({@link operatorEarningsQuerySchema}) → {@link OperatorEarningsResponse}
 * - `GET /v1/operator/receipts?limit=N&before=CURSOR` ({@link operatorReceiptsQuerySchema}) → {@link OperatorReceiptsResponse}
 * - `GET /v1/operator/receipts.csv?days=N` ({@link operatorReceiptsCsvQuerySchema}) → text/csv
 */
import { z } from 'zod';
import { agentIdSchema, agentStateSchema, modelIdSchema, trustSchema } from './protocol/schemas.js';

const timeMs = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
/** An integer count of micro-credits (1 credit = 1 000 000) as a decimal string. */
const microCredits = z.string().regex(/^-?(0|[1-9][0-9]{0,18})$/, 'expected an integer count of micro-credits');
const day = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'expected a UTC day as YYYY-MM-DD');
/** A query-string integer within [min, max], with the message the API has always answered. */
const queryInt = (name: string, min: number, max: number) => {
  const message = `${name} must be an integer from ${min} to ${max}`;
  return z
    .string({ error: message })
    .regex(/^\d{1,6}$/, message)
    .transform(Number)
    .refine((n) => n >= min && n <= max, message);
};

/** The operator a session belongs to. */
export const operatorIdentitySchema = z.strictObject({ id: z.string().max(64), name: z.string().max(200) });
/** The operator a session belongs to. */
export type OperatorIdentity = z.infer<typeof operatorIdentitySchema>;

/** What signing in sends: the operator token (`njop_…`), at most 256 characters. */
export const operatorSessionRequestSchema = z.object({ token: z.string().trim().min(1).max(256) });
/** What signing in sends. */
export type OperatorSessionRequest = z.infer<typeof operatorSessionRequestSchema>;

/** What signing in answers (the session itself travels in the cookie). */
export const operatorSessionResponseSchema = z.strictObject({ operator: operatorIdentitySchema });
/** What signing in answers. */
export type OperatorSessionResponse = z.infer<typeof operatorSessionResponseSchema>;

/**
 * The signed-in operator and their balance: `pending` is the part still inside its jobs' pending
 * window or disputed (a client's countersignature can still cut it), `payable` the rest, what a
 * payout may take.
 */
export const operatorMeResponseSchema = z.strictObject({
  operator: operatorIdentitySchema,
  balance: microCredits,
  pending: microCredits,
  payable: microCredits,
});
/** The signed-in operator and their balance. */
export type OperatorMeResponse = z.infer<typeof operatorMeResponseSchema>;

/** One strike the gateway's honesty checks recorded against an agent (numbers only, never content). */
export const operatorStrikeViewSchema = z.strictObject({
  at: timeMs,
  /**
   * Why: 'over-ceiling' (decoded faster than its chip allows for the model), 'claim-gap' (claims far
   * more speed than measured), 'audit-failed' (a revealed job's reply failed the gateway's re-check)
   * or 'count-disputed' (the client's countersignature disputed the receipt's count or digest).
   */
  reason: z.string().max(64),
  jobId: z.string().max(64).nullable(),
  /** The numbers that explain it (rates in tokens/s, sizes in bytes, the chip's name). */
  details: z.record(z.string().max(64), z.union([z.number(), z.string().max(256)])),
});
/** One strike against an agent. */
export type OperatorStrikeView = z.infer<typeof operatorStrikeViewSchema>;

/** One failed audit of an agent's reply: the failed checks' reasons and figures (never content). */
export const operatorAuditFailureViewSchema = z.strictObject({
  at: timeMs,
  jobId: z.string().max(64),
  /** The failed checks, e.g. 'off-distribution', 'completion-count' (docs/honesty.md). */
  reasons: z.array(z.string().max(64)).max(16),
  /** The figures behind them, each named `<reason>.<figure>` (ranks, counts, log-likelihoods). */
  figures: z.record(z.string().max(128), z.number()),
});
/** One failed audit of an agent's reply. */
export type OperatorAuditFailureView = z.infer<typeof operatorAuditFailureViewSchema>;

/** An agent's audits: how many passed and failed, and the last failures. */
export const operatorAuditsViewSchema = z.strictObject({
  passed: count,
  failed: count,
  /** The latest failures, newest first (at most 5). */
  lastFailures: z.array(operatorAuditFailureViewSchema).max(5),
});
/** An agent's audits. */
export type OperatorAuditsView = z.infer<typeof operatorAuditsViewSchema>;

/** One agent as the dashboard shows it: live figures while connected, nulls while offline. */
export const operatorAgentViewSchema = z.strictObject({
  agentId: agentIdSchema,
  connected: z.boolean(),
  /** The agent's state, or 'offline'. */
  state: z.union([agentStateSchema, z.literal('offline')]),
  trust: trustSchema.nullable(),
  model: modelIdSchema.nullable(),
  /** The decode speed the agent claims (its heartbeat): shown beside the measured one, not routed on. */
  tokensPerSecond: z.number().min(0).nullable(),
  /** The decode speed the gateway measured of its jobs for its model; null until one was timed. */
  measuredTokensPerSecond: z.number().min(0).nullable(),
  ttftMs: z.number().min(0).nullable(),
  slots: count.nullable(),
  freeSlots: count.nullable(),
  /**
   * True if the router would send it work now at its model's price (serving, challenge answered,
   * bound, and — for a model the catalog lists — serving a file the catalog lists for it).
   */
  routable: z.boolean(),
  /**
   * True if the gateway's signed catalog lists the file the agent serves for its model (only
   * such files are priced and earn); false if not (free work at most); null while offline.
   */
  catalogued: z.boolean().nullable(),
  challengeFresh: z.boolean().nullable(),
  uptimeMs: timeMs.nullable(),
  lastSeenAt: timeMs,
  boundAt: timeMs.nullable(),
  jobsDone: count.nullable(),
  jobsFailed: count.nullable(),
  /** The honesty score in (0, 1] (1: no strikes); below the gateway's floor the agent gets no jobs. */
  score: z.number().min(0).max(1),
  /** Its strikes that still weigh, newest first (at most 20). */
  strikes: z.array(operatorStrikeViewSchema).max(20),
  /** The gateway's audits of its replies (jobs their clients revealed). */
  audits: operatorAuditsViewSchema,
});
/** One agent as the dashboard shows it. */
export type OperatorAgentView = z.infer<typeof operatorAgentViewSchema>;

/** The operator's agents, live and offline. */
export const operatorAgentsResponseSchema = z.strictObject({ agents: z.array(operatorAgentViewSchema) });
/** The operator's agents. */
export type OperatorAgentsResponse = z.infer<typeof operatorAgentsResponseSchema>;

/** The query of the earnings: how many UTC days back (1–366, default 30). */
export const operatorEarningsQuerySchema = z.object({ days: queryInt('days', 1, 366).default(30) });

/** The query of the CSV export: how many days back (1–366, default 90). */
export const operatorReceiptsCsvQuerySchema = z.object({ days: queryInt('days', 1, 366).default(90) });

/** One UTC day and model of earnings. */
export const operatorEarningsRowSchema = z.strictObject({
  day,
  model: modelIdSchema,
  jobs: count,
  promptTokens: count,
  completionTokens: count,
  /** The operator's share, in micro-credits. */
  earned: microCredits,
});
/** One UTC day and model of earnings. */
export type OperatorEarningsRow = z.infer<typeof operatorEarningsRowSchema>;

/** Earnings by UTC day and model, over every day of the period (oldest first). */
export const operatorEarningsResponseSchema = z.strictObject({
  days: z.array(day),
  models: z.array(modelIdSchema),
  rows: z.array(operatorEarningsRowSchema),
  total: microCredits,
});
/** Earnings by day and model. */
export type OperatorEarningsResponse = z.infer<typeof operatorEarningsResponseSchema>;

/** A page cursor: `<endedAt>:<jobId>` of the last receipt of the previous page. */
export const receiptCursorSchema = z
  .string({ error: 'before must be a cursor from a previous page' })
  .regex(/^(\d{1,16}):([A-Za-z0-9_-]{22})$/, 'before must be a cursor from a previous page')
  .transform((s) => {
    const [endedAt, jobId] = s.split(':') as [string, string];
    return { endedAt: Number(endedAt), jobId };
  });

/** The query of a receipts page: its size (1–500, default 50) and where it starts. */
export const operatorReceiptsQuerySchema = z.object({
  limit: queryInt('limit', 1, 500).default(50),
  before: receiptCursorSchema.optional(),
});

/** One settled job on the operator's agents. */
export const operatorReceiptViewSchema = z.strictObject({
  jobId: z.string(),
  endedAt: timeMs.nullable(),
  model: modelIdSchema,
  agentId: agentIdSchema.nullable(),
  attempt: count.nullable(),
  promptTokens: count.nullable(),
  completionTokens: count.nullable(),
  finishReason: z.string().nullable(),
  outcome: z.string().nullable(),
  /** What the client paid, in micro-credits. */
  charged: microCredits,
  /** The operator's share, in micro-credits. */
  earned: microCredits,
});
/** One settled job. */
export type OperatorReceiptView = z.infer<typeof operatorReceiptViewSchema>;

/** A page of receipts, newest first, and the cursor of the next page (null on the last). */
export const operatorReceiptsResponseSchema = z.strictObject({
  receipts: z.array(operatorReceiptViewSchema),
  next: z.string().nullable(),
});
/** A page of receipts. */
export type OperatorReceiptsResponse = z.infer<typeof operatorReceiptsResponseSchema>;
