/**
 * The operator's side of the gateway: JSON endpoints under /v1/operator/* (agents, earnings,
 * receipts and their CSV export) and the dashboard page at /dashboard/ that uses them.
 *
 * Sign-in: POST /v1/operator/session with the operator token sets an HttpOnly, SameSite=Strict
 * session cookie (sessions live in memory; a restart signs everyone out). Scripts may instead
 * send the operator token as `Authorization: Bearer njop_…` on every call. Only the session POST
 * changes anything, and it takes JSON only, which a cross-site form cannot send.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { NightjarError, randomBytes, toBase64Url, type Clock, type Logger } from '../../shared/index.js';
import type { OperatorInfo } from '../accounts/account.store.js';
import type { AgentSession } from '../agent-session.js';
import type { Directory } from '../directory.js';
import { ACCOUNTS, type JobRecord } from '../ledger/ledger.store.js';
import type { RateLimiter } from '../rate-limit.js';
import type { GatewayStore } from '../store/gateway-store.js';
import { DASHBOARD_CSS, DASHBOARD_HTML } from './dashboard-page.js';
import { PAGE_CSP } from '../static-sites.js';

/** Options of {@link registerOperatorRoutes}. */
export interface OperatorRoutesOptions {
  store: GatewayStore;
  directory: Directory<AgentSession>;
  clock: Clock;
  logger: Logger;
  /** Lifetime of a sign-in. Defaults to 12 hours. */
  sessionTtlMs?: number;
  /** Mark the cookie Secure. Defaults to false. */
  secureCookies?: boolean;
  /** Sign-ins kept at once; the oldest go first. Defaults to 10 000. */
  maxSessions?: number;
  /** Rate limiter shared with the client API. Defaults to none. */
  limiter?: RateLimiter;
}

/** Name of the session cookie. */
export const SESSION_COOKIE = 'nj_operator';
const DAY_MS = 86_400_000;

/** One agent as the dashboard shows it. */
export interface OperatorAgentView {
  agentId: string;
  connected: boolean;
  /** The agent's state, or 'offline'. */
  state: string;
  trust: string | null;
  model: string | null;
  tokensPerSecond: number | null;
  ttftMs: number | null;
  slots: number | null;
  freeSlots: number | null;
  /** True if the router would send it work now (serving, challenge answered, bound). */
  routable: boolean;
  challengeFresh: boolean | null;
  uptimeMs: number | null;
  lastSeenAt: number;
  boundAt: number | null;
  jobsDone: number | null;
  jobsFailed: number | null;
}

/** Quotes a CSV cell; a cell that a spreadsheet would run as a formula is defused with a quote. */
export function csvCell(value: string | number | null): string {
  let s = value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function receiptView(j: JobRecord) {
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

/** Loads the dashboard's script: compiled next to this module (dist), or transpiled from source. */
async function dashboardScript(): Promise<string> {
  const compiled = new URL('../web/dashboard/app.js', import.meta.url);
  try {
    return await readFile(compiled, 'utf8');
  } catch {
    // Running from source (tests, tsx): transpile the TypeScript once; esbuild is a dev dependency.
    const source = await readFile(new URL('../web/dashboard/app.ts', import.meta.url), 'utf8');
    const esbuild = await import('esbuild');
    return (await esbuild.transform(source, { loader: 'ts', format: 'esm', target: 'es2022' })).code;
  }
}

/** Registers the operator API and, with it, the dashboard page. */
export async function registerOperatorRoutes(app: FastifyInstance, options: OperatorRoutesOptions): Promise<void> {
  const { store, directory, clock } = options;
  const ttl = options.sessionTtlMs ?? 12 * 3600_000;
  const maxSessions = options.maxSessions ?? 10_000;
  const sessions = new Map<string, { operatorId: string; expiresAt: number }>();
  let script: Promise<string> | null = null;

  const page = (reply: FastifyReply, type: string, body: string): FastifyReply =>
    reply
      .header('content-type', type)
      .header('content-security-policy', PAGE_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cache-control', 'no-cache')
      .send(body);

  app.get('/dashboard', async (_req, reply) => reply.redirect('/dashboard/', 301));
  app.get('/dashboard/', async (_req, reply) => page(reply, 'text/html; charset=utf-8', DASHBOARD_HTML));
  app.get('/dashboard/app.css', async (_req, reply) => page(reply, 'text/css; charset=utf-8', DASHBOARD_CSS));
  app.get('/dashboard/app.js', async (_req, reply) => {
    script ??= dashboardScript();
    return page(reply, 'text/javascript; charset=utf-8', await script);
  });

  const limit = (key: string): void => {
    const taken = options.limiter?.take(key);
    if (taken && !taken.ok) throw new NightjarError('NJ_RATE_LIMITED', 'too many requests', { retryAfterMs: taken.retryAfterMs });
  };

  function cookieOf(req: FastifyRequest): string | undefined {
    const header = req.headers.cookie;
    if (!header) return undefined;
    for (const part of header.split(';')) {
      const [name, ...rest] = part.trim().split('=');
      if (name === SESSION_COOKIE) return rest.join('=');
    }
    return undefined;
  }

  async function operator(req: FastifyRequest): Promise<OperatorInfo> {
    const header = req.headers.authorization;
    let found: OperatorInfo | null = null;
    if (header !== undefined) {
      const m = /^Bearer ([!-~]{1,256})$/.exec(header);
      found = m ? await store.accounts.authenticateOperator(m[1]!) : null;
    } else {
      const id = cookieOf(req);
      const s = id ? sessions.get(id) : undefined;
      if (s && s.expiresAt > clock.now()) found = await store.accounts.getOperator(s.operatorId);
      else if (id) sessions.delete(id);
    }
    if (!found) throw new NightjarError('NJ_UNAUTHORIZED', 'sign in with an operator token');
    limit(`op:${found.id}`);
    return found;
  }

  const cookie = (value: string, maxAgeS: number): string =>
    `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${options.secureCookies ? '; Secure' : ''}`;

  app.post('/v1/operator/session', async (req, reply) => {
    limit(`ip:${req.ip}`);
    const body = req.body as { token?: unknown } | undefined;
    const token = typeof body?.token === 'string' ? body.token.trim() : '';
    const op = token.length > 0 && token.length <= 256 ? await store.accounts.authenticateOperator(token) : null;
    if (!op) throw new NightjarError('NJ_UNAUTHORIZED', 'that operator token is not valid');
    const now = clock.now();
    for (const [id, s] of sessions) if (s.expiresAt <= now) sessions.delete(id);
    while (sessions.size >= maxSessions) sessions.delete(sessions.keys().next().value!);
    const id = toBase64Url(randomBytes(32));
    sessions.set(id, { operatorId: op.id, expiresAt: now + ttl });
    options.logger.info('operator signed in', { operatorId: op.id });
    return reply
      .header('set-cookie', cookie(id, Math.floor(ttl / 1000)))
      .header('cache-control', 'no-store')
      .send({ operator: { id: op.id, name: op.name } });
  });

  app.delete('/v1/operator/session', async (req, reply) => {
    const id = cookieOf(req);
    if (id) sessions.delete(id);
    return reply.header('set-cookie', cookie('', 0)).send({ ok: true });
  });

  app.get('/v1/operator/me', async (req) => {
    const op = await operator(req);
    return { operator: { id: op.id, name: op.name }, balance: (await store.ledger.balance(ACCOUNTS.operator(op.id))).toString() };
  });

  app.get('/v1/operator/agents', async (req) => {
    const op = await operator(req);
    const now = clock.now();
    const agents: OperatorAgentView[] = (await store.accounts.listAgents(op.id)).map((rec) => {
      const live = directory.get(rec.agentId);
      if (!live || !live.ready) {
        return {
          agentId: rec.agentId,
          connected: false,
          state: 'offline',
          trust: null,
          model: rec.model,
          tokensPerSecond: null,
          ttftMs: null,
          slots: null,
          freeSlots: null,
          routable: false,
          challengeFresh: null,
          uptimeMs: null,
          lastSeenAt: rec.lastSeenAt,
          boundAt: rec.boundAt,
          jobsDone: null,
          jobsFailed: null,
        };
      }
      const model = live.status?.model ?? live.bundle.bundle.models[0]?.id ?? null;
      return {
        agentId: rec.agentId,
        connected: true,
        state: live.leaving ? 'draining' : (live.status?.state ?? 'loading'),
        trust: live.trust,
        model,
        tokensPerSecond: live.status?.tokensPerSecond ?? null,
        ttftMs: live.health.ttftMs || live.status?.ttftMs || null,
        slots: live.status?.totalSlots ?? live.bundle.bundle.capacity.slots,
        freeSlots: directory.freeSlots(live),
        routable: model !== null && directory.eligible(live, { model, paid: true, now }),
        challengeFresh: live.challengeFresh(now),
        uptimeMs: now - live.connectedAt,
        lastSeenAt: live.lastSeenAt,
        boundAt: rec.boundAt,
        jobsDone: live.health.jobsDone,
        jobsFailed: live.health.jobsFailed,
      };
    });
    return { agents };
  });

  const daysOf = (q: Record<string, string | undefined>, fallback: number): number => {
    const days = q.days === undefined ? fallback : Number(q.days);
    if (!Number.isInteger(days) || days < 1 || days > 366)
      throw new NightjarError('NJ_BAD_REQUEST', 'days must be an integer from 1 to 366');
    return days;
  };

  app.get('/v1/operator/earnings', async (req: FastifyRequest<{ Querystring: Record<string, string | undefined> }>) => {
    const op = await operator(req);
    const days = daysOf(req.query, 30);
    const now = clock.now();
    const since = Math.floor(now / DAY_MS) * DAY_MS - (days - 1) * DAY_MS;
    const rows = await store.ledger.earnings(op.id, since, now + 1);
    const allDays = Array.from({ length: days }, (_, i) => new Date(since + i * DAY_MS).toISOString().slice(0, 10));
    const total = rows.reduce((s, r) => s + r.earned, 0n);
    return {
      days: allDays,
      models: [...new Set(rows.map((r) => r.model))].sort(),
      rows: rows.map((r) => ({ ...r, earned: r.earned.toString() })),
      total: total.toString(),
    };
  });

  app.get('/v1/operator/receipts', async (req: FastifyRequest<{ Querystring: Record<string, string | undefined> }>) => {
    const op = await operator(req);
    const q = req.query;
    const limitN = q.limit === undefined ? 50 : Number(q.limit);
    if (!Number.isInteger(limitN) || limitN < 1 || limitN > 500)
      throw new NightjarError('NJ_BAD_REQUEST', 'limit must be an integer from 1 to 500');
    let before: { endedAt: number; jobId: string } | undefined;
    if (q.before !== undefined) {
      const m = /^(\d{1,16}):([A-Za-z0-9_-]{22})$/.exec(q.before);
      if (!m) throw new NightjarError('NJ_BAD_REQUEST', 'before must be a cursor from a previous page');
      before = { endedAt: Number(m[1]), jobId: m[2]! };
    }
    const rows = await store.ledger.receipts(op.id, { limit: limitN, ...(before ? { before } : {}) });
    const last = rows.at(-1);
    return { receipts: rows.map(receiptView), next: rows.length === limitN && last ? `${last.endedAt}:${last.jobId}` : null };
  });

  app.get('/v1/operator/receipts.csv', async (req: FastifyRequest<{ Querystring: Record<string, string | undefined> }>, reply) => {
    const op = await operator(req);
    const days = daysOf(req.query, 90);
    const since = clock.now() - days * DAY_MS;
    const lines = [
      'job_id,ended_at,model,agent_id,attempt,prompt_tokens,completion_tokens,finish_reason,outcome,charged_micro,earned_micro,signed_receipt',
    ];
    let before: { endedAt: number; jobId: string } | undefined;
    for (;;) {
      const page = await store.ledger.receipts(op.id, { limit: 1000, since, ...(before ? { before } : {}) });
      for (const j of page) {
        lines.push(
          [
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
            .join(','),
        );
      }
      const last = page.at(-1);
      if (page.length < 1000 || !last) break;
      before = { endedAt: last.endedAt ?? 0, jobId: last.jobId };
    }
    const day = new Date(clock.now()).toISOString().slice(0, 10);
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="nightjar-receipts-${day}.csv"`)
      .header('cache-control', 'no-store')
      .send(lines.join('\r\n') + '\r\n');
  });
}
