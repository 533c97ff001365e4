/**
 * The operator's side of the gateway: JSON endpoints under /v1/operator/* (agents, earnings,
 * receipts and their CSV export), in the shapes src/shared/operator-api.ts defines. The dashboard
 * page that uses them is served by the static-pages plugin.
 *
 * Sign-in: POST /v1/operator/session with the operator token sets an HttpOnly, SameSite=Strict
 * session cookie (@fastify/cookie). Sessions live in the gateway's database (the token's hash only),
 * so any node of a cluster accepts them and a sign-out on one node signs out on all.
 * Scripts may instead send the operator token as `Authorization: Bearer njop_…` on every call.
 * Only the session POST changes anything, and it takes JSON only, which a cross-site form cannot send.
 */
import fastifyCookie from '@fastify/cookie';
import type { CookieSerializeOptions } from '@fastify/cookie';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import {
  NightjarError,
  operatorEarningsQuerySchema,
  operatorReceiptsCsvQuerySchema,
  operatorReceiptsQuerySchema,
  operatorSessionRequestSchema,
  type OperatorAgentView,
  type OperatorAuditFailureView,
  type OperatorAuditsView,
  type OperatorAgentsResponse,
  type OperatorEarningsResponse,
  type OperatorMeResponse,
  type OperatorReceiptView,
  type OperatorReceiptsResponse,
  type OperatorSessionResponse,
} from '../../shared/index.js';
import type { AgentRecord, OperatorInfo } from '../accounts/account.store.js';
import type { Directory, DirectoryEntry } from '../directory.js';
import type { Audit } from '../honesty/audits.store.js';
import type { JobRecord } from '../ledger/ledger.store.js';
import { OperatorSessions } from '../operator/operator-sessions.js';
import { bearerOf, refuseUnauthenticated } from './callers.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'nj_operator';
const DAY_MS = 86_400_000;
const CSV_PAGE = 1000;
const CSV_HEADER =
  'job_id,ended_at,model,agent_id,attempt,prompt_tokens,completion_tokens,finish_reason,outcome,charged_micro,earned_micro,signed_receipt';

type QueryOf = { Querystring: Record<string, string | undefined> };
type Query = FastifyRequest<QueryOf>;

/** Quotes a CSV cell; a cell that a spreadsheet would run as a formula is defused with a quote. */
export function csvCell(value: string | number | null): string {
  let s = value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Parses a query with `schema`, answering NJ_BAD_REQUEST with the first problem's message. */
function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  const parsed = schema.safeParse(query);
  if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', parsed.error.issues[0]?.message ?? 'the query is not valid');
  return parsed.data;
}

/** Registers the operator API. */
export const operatorApiRoutes: FastifyPluginAsync<GatewayPluginOptions> = async (app, { ctx }) => {
  await app.register(fastifyCookie);
  const sessions = new OperatorSessions({
    store: ctx.store.sessions,
    clock: ctx.clock,
    ttlMs: ctx.options.operatorSessionTtlMs,
    maxSessions: ctx.options.maxOperatorSessions,
  });
  const cookieOptions: CookieSerializeOptions = { path: '/', httpOnly: true, sameSite: 'strict', secure: ctx.options.secureCookies };
  const limit = async (key: string): Promise<void> => {
    const taken = await ctx.limiter.take(key);
    if (!taken.ok) throw new NightjarError('NJ_RATE_LIMITED', 'too many requests', { retryAfterMs: taken.retryAfterMs });
  };

  const operators = new WeakMap<FastifyRequest, OperatorInfo>();
  /**
   * The `onRequest` hook of every operator route: finds the operator calling, by bearer token or
   * by session cookie, before any body is read, and applies the operator's rate limit; a request
   * without a valid one is counted against its address.
   */
  const operatorAuth = async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    let found: OperatorInfo | null = null;
    if (header !== undefined) {
      const token = bearerOf(header);
      found = token === null ? null : await ctx.store.accounts.authenticateOperator(token);
    } else {
      const id = req.cookies[SESSION_COOKIE];
      const operatorId = id ? await sessions.operatorOf(id) : null;
      if (operatorId) found = await ctx.store.accounts.getOperator(operatorId);
    }
    if (!found) return await refuseUnauthenticated(ctx, req, new NightjarError('NJ_UNAUTHORIZED', 'sign in with an operator token'));
    await limit(`op:${found.id}`);
    operators.set(req, found);
  };
  /** The operator {@link operatorAuth} found for `req`. */
  const operator = async (req: FastifyRequest): Promise<OperatorInfo> => {
    const found = operators.get(req);
    if (!found) throw new NightjarError('NJ_INTERNAL', 'the route has no operator hook');
    return found;
  };
  const authed = { onRequest: operatorAuth };

  // The token is in the (small, JSON-only) body: the address's rate limit is taken before it is read.
  app.post(
    '/v1/operator/session',
    { onRequest: async (req) => limit(`ip:${req.ip}`) },
    async (req, reply): Promise<OperatorSessionResponse> => {
      const body = operatorSessionRequestSchema.safeParse(req.body);
      const op = body.success ? await ctx.store.accounts.authenticateOperator(body.data.token) : null;
      if (!op) return await refuseUnauthenticated(ctx, req, new NightjarError('NJ_UNAUTHORIZED', 'that operator token is not valid'));
      const id = await sessions.create(op.id);
      ctx.log.info('operator signed in', { operatorId: op.id });
      reply.setCookie(SESSION_COOKIE, id, { ...cookieOptions, maxAge: sessions.maxAgeSeconds }).header('cache-control', 'no-store');
      return { operator: { id: op.id, name: op.name } };
    },
  );

  app.delete('/v1/operator/session', async (req, reply) => {
    const id = req.cookies[SESSION_COOKIE];
    if (id) await sessions.delete(id);
    reply.clearCookie(SESSION_COOKIE, cookieOptions);
    return { ok: true };
  });

  app.get('/v1/operator/me', authed, async (req): Promise<OperatorMeResponse> => {
    const op = await operator(req);
    const { balance, pending, payable } = await ctx.store.ledger.operatorBalance(op.id, ctx.clock.now());
    return {
      operator: { id: op.id, name: op.name },
      balance: balance.toString(),
      pending: pending.toString(),
      payable: payable.toString(),
    };
  });

  app.get('/v1/operator/agents', authed, async (req): Promise<OperatorAgentsResponse> => {
    const op = await operator(req);
    await ctx.honesty.refresh();
    const now = ctx.clock.now();
    const records = await ctx.store.accounts.listAgents(op.id);
    const counts = new Map((await ctx.store.audits.counts()).map((c) => [c.agentId, c]));
    const audits = new Map<string, OperatorAuditsView>();
    for (const rec of records) {
      const c = counts.get(rec.agentId);
      const lastFailures = c?.failed ? await ctx.store.audits.list({ agentId: rec.agentId, failedOnly: true, limit: 5 }) : [];
      audits.set(rec.agentId, { passed: c?.passed ?? 0, failed: c?.failed ?? 0, lastFailures: lastFailures.map(auditFailureView) });
    }
    return { agents: records.map((rec) => agentView(ctx, rec, now, audits.get(rec.agentId)!)) };
  });

  app.get<QueryOf>('/v1/operator/earnings', authed, async (req: Query) => earnings(ctx, (await operator(req)).id, req.query));

  app.get<QueryOf>('/v1/operator/receipts', authed, async (req: Query): Promise<OperatorReceiptsResponse> => {
    const op = await operator(req);
    const q = parseQuery(operatorReceiptsQuerySchema, req.query);
    const rows = await ctx.store.ledger.receipts(op.id, { limit: q.limit, before: q.before });
    const last = rows.at(-1);
    return { receipts: rows.map(receiptView), next: rows.length === q.limit && last ? `${last.endedAt}:${last.jobId}` : null };
  });

  app.get<QueryOf>('/v1/operator/receipts.csv', authed, async (req: Query, reply) =>
    receiptsCsv(ctx, (await operator(req)).id, req.query, reply),
  );
};

/** A failed audit as the operator sees it: reasons, and figures named `<reason>.<figure>` (at most 32). */
function auditFailureView(a: Audit): OperatorAuditFailureView {
  const figures: Record<string, number> = {};
  let n = 0;
  for (const f of a.findings) {
    for (const [name, value] of Object.entries(f.figures)) if (n++ < 32) figures[`${f.reason}.${name}`] = value;
  }
  return { at: a.at, jobId: a.jobId, reasons: a.findings.map((f) => f.reason).slice(0, 16), figures };
}

/**
 * One agent bound to the operator: live figures from the directory while it is connected — to this
 * node, or in a cluster to another (from the presence bucket, so an operator sees every agent
 * whichever node answers; the job counts are then unknown here: each node counts its own).
 */
function agentView(ctx: GatewayContext, rec: AgentRecord, now: number, audits: OperatorAuditsView): OperatorAgentView {
  const { directory, honesty } = ctx;
  const standing = {
    audits,
    score: honesty.score(rec.agentId, now),
    strikes: honesty
      .strikesOf(rec.agentId)
      .slice(0, 20)
      .map((s) => ({ at: s.at, reason: s.reason, jobId: s.jobId, details: { ...s.details } })),
  };
  const local = directory.get(rec.agentId);
  if (local?.ready) {
    const { jobsDone, jobsFailed } = local.health;
    return { ...liveView(ctx, directory, local, local.leaving, now), boundAt: rec.boundAt, jobsDone, jobsFailed, ...standing };
  }
  const remote = ctx.cluster?.remote;
  const elsewhere = remote?.get(rec.agentId);
  if (remote && elsewhere) {
    return {
      ...liveView(ctx, remote, elsewhere, !elsewhere.accepting, now),
      boundAt: rec.boundAt,
      jobsDone: null,
      jobsFailed: null,
      ...standing,
    };
  }
  return {
    agentId: rec.agentId,
    connected: false,
    state: 'offline',
    trust: null,
    model: rec.model,
    tokensPerSecond: null,
    measuredTokensPerSecond: rec.model === null ? null : honesty.measured(rec.agentId, rec.model)?.tokensPerSecond || null,
    ttftMs: null,
    slots: null,
    freeSlots: null,
    routable: false,
    catalogued: null,
    challengeFresh: null,
    uptimeMs: null,
    lastSeenAt: rec.lastSeenAt,
    boundAt: rec.boundAt,
    jobsDone: null,
    jobsFailed: null,
    ...standing,
  };
}

/** The live part of a connected agent's view, from the directory that holds it. */
function liveView<T extends DirectoryEntry>(
  ctx: GatewayContext,
  directory: Directory<T>,
  live: T,
  draining: boolean,
  now: number,
): Omit<OperatorAgentView, 'jobsDone' | 'jobsFailed' | 'audits' | 'score' | 'strikes' | 'boundAt'> {
  const model = live.status?.model ?? live.bundle.bundle.models[0]?.id ?? null;
  const listed = model !== null && ctx.catalog.lists(model);
  const catalogued = model !== null && live.bundle.bundle.models.some((m) => m.id === model && ctx.catalog.catalogued(model, m.sha256));
  return {
    agentId: live.agentId,
    connected: true,
    state: draining ? 'draining' : (live.status?.state ?? 'loading'),
    trust: live.trust,
    model,
    tokensPerSecond: live.status?.tokensPerSecond ?? null,
    measuredTokensPerSecond: model === null ? null : ctx.honesty.measured(live.agentId, model)?.tokensPerSecond || null,
    ttftMs: live.health.ttftMs || live.status?.ttftMs || null,
    slots: live.status?.totalSlots ?? live.bundle.bundle.capacity.slots,
    freeSlots: directory.freeSlots(live),
    routable: model !== null && directory.eligible(live, { model, paid: true, catalogued: listed, now }),
    catalogued,
    challengeFresh: live.challengeFresh(now),
    uptimeMs: now - live.connectedAt,
    lastSeenAt: live.lastSeenAt,
  };
}

/** Earnings by UTC day and model over the last `days` days (30 by default), every day listed. */
async function earnings(ctx: GatewayContext, operatorId: string, query: unknown): Promise<OperatorEarningsResponse> {
  const { days } = parseQuery(operatorEarningsQuerySchema, query);
  const now = ctx.clock.now();
  const since = Math.floor(now / DAY_MS) * DAY_MS - (days - 1) * DAY_MS;
  const rows = await ctx.store.ledger.earnings(operatorId, since, now + 1);
  const total = rows.reduce((s, r) => s + r.earned, 0n);
  return {
    days: Array.from({ length: days }, (_, i) => new Date(since + i * DAY_MS).toISOString().slice(0, 10)),
    models: [...new Set(rows.map((r) => r.model))].sort(),
    rows: rows.map((r) => ({ ...r, earned: r.earned.toString() })),
    total: total.toString(),
  };
}

function receiptView(j: JobRecord): OperatorReceiptView {
  return {
    jobId: j.jobId,
    endedAt: j.endedAt,
    model: j.model,
    agentId: j.agentId,
    attempt: j.attempt,
    promptTokens: j.promptTokens,
    completionTokens: j.completionTokens,
    finishReason: j.finishReason,
    outcome: j.outcome,
    charged: (j.charged ?? 0n).toString(),
    earned: (j.operatorAmount ?? 0n).toString(),
  };
}

/** Every receipt of the last `days` days (90 by default) as CSV, read from the ledger a page at a time. */
async function receiptsCsv(ctx: GatewayContext, operatorId: string, query: unknown, reply: FastifyReply): Promise<FastifyReply> {
  const { days } = parseQuery(operatorReceiptsCsvQuerySchema, query);
  const since = ctx.clock.now() - days * DAY_MS;
  const lines = [CSV_HEADER];
  let before: { endedAt: number; jobId: string } | undefined;
  for (;;) {
    const page = await ctx.store.ledger.receipts(operatorId, { limit: CSV_PAGE, since, before });
    for (const j of page) lines.push(csvRow(j));
    const last = page.at(-1);
    if (page.length < CSV_PAGE || !last) break;
    before = { endedAt: last.endedAt ?? 0, jobId: last.jobId };
  }
  const day = new Date(ctx.clock.now()).toISOString().slice(0, 10);
  return reply
    .header('content-type', 'text/csv; charset=utf-8')
    .header('content-disposition', `attachment; filename="nightjar-receipts-${day}.csv"`)
    .header('cache-control', 'no-store')
    .send(lines.join('\r\n') + '\r\n');
}

function csvRow(j: JobRecord): string {
  return [
    j.jobId,
    new Date(j.endedAt ?? 0).toISOString(),
    j.model,
    j.agentId,
    j.attempt,
    j.promptTokens,
    j.completionTokens,
    j.finishReason,
    j.outcome,
    (j.charged ?? 0n).toString(),
    (j.operatorAmount ?? 0n).toString(),
    j.receipt,
  ]
    .map(csvCell)
    .join(',');
}
