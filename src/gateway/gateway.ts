/**
 * The gateway, embedded default: one process that takes agents on a WebSocket, keeps a directory
 * of their verified bundles, hands clients candidate bundles, relays sealed jobs and their sealed
 * replies, and keeps the ledger (accounts, holds, settlements) in one SQLite file. It sees
 * ciphertext and metadata only.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  CLOSE_CODES,
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  TRUST_LEVELS,
  describeIssues,
  fromBase64Url,
  jobRequestSchema,
  modelIdSchema,
  sha256,
  silentLogger,
  systemClock,
  toBase64Url,
  type AccountResponse,
  type CandidatesResponse,
  type Clock,
  type JobEvent,
  type Logger,
  type ModelsResponse,
  type Trust,
} from '../shared/index.js';
import type { ApiKeyInfo, Price } from './accounts/account.store.js';
import { AgentSession } from './agent-session.js';
import { Directory } from './directory.js';
import { ClientJob, type JobOutcome, type JobTimeouts, type Settlement } from './job.js';
import { GatewayMetrics } from './metrics.js';
import { registerOperatorRoutes } from './operator/operator-routes.js';
import { RateLimiter } from './rate-limit.js';
import { Router } from './router.js';
import { registerStaticSites, type StaticSite } from './static-sites.js';
import { openSqliteStore, type GatewayStore } from './store/gateway-store.js';

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** Interface to listen on. Defaults to '127.0.0.1'. */
  host?: string;
  /** TCP port; 0 picks a free one. Defaults to 8787. */
  port?: number;
  /** Name signed into agent challenges. Defaults to 'nightjar-gateway'. */
  gatewayId?: string;
  /** Where log lines go. Defaults to a silent logger. */
  logger?: Logger;
  /** Time source. Defaults to the system clock. */
  clock?: Clock;
  /**
   * Accounts and ledger. Defaults to an in-memory SQLite store that lives and dies with the
   * gateway (a development network); a store handed in is not disposed by close().
   */
  store?: GatewayStore;
  /**
   * Let clients without an API key run jobs that cost nothing (synthetic or zero-priced models).
   * Defaults to true when no store is handed in (an in-memory development gateway, as
   * `nightjar up` runs), false when one is.
   */
  allowAnonymous?: boolean;
  /** Offer synthetic models to clients (development networks). Defaults to false. */
  allowSynthetic?: boolean;
  /** Operator share of each charge, in basis points. Defaults to 9500 (95 %). */
  operatorShareBps?: number;
  /** Largest agent WebSocket frame. Defaults to LIMITS.maxAgentFrameBytes (6 MiB). */
  maxAgentFrameBytes?: number;
  /** Largest request ciphertext a client may send. Defaults to LIMITS.maxRequestBodyBytes. */
  maxRequestBodyBytes?: number;
  /** Time from agent connect to verified auth. Defaults to 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Agent status heartbeat interval. Defaults to 15 000 ms. */
  heartbeatMs?: number;
  /** Time between periodic challenges to each agent. Defaults to 60 000 ms. */
  challengeIntervalMs?: number;
  /** Time an agent has to answer a periodic challenge. Defaults to 10 000 ms. */
  challengeTimeoutMs?: number;
  /** Candidates handed to a client when it asks for none in particular. Defaults to 3. */
  defaultCandidates?: number;
  /** Per-job timeouts. Defaults as {@link JobTimeouts} says. */
  jobTimeouts?: JobTimeouts;
  /** Jobs that may wait for a slot, per model. Defaults to 64. */
  maxQueuePerModel?: number;
  /** Longest wait in the queue. Defaults to 30 000 ms. */
  queueTimeoutMs?: number;
  /** Requests per API key (or address, in open mode): sustained rate and burst. Defaults to 10/s, burst 40. */
  rateLimit?: { perSecond?: number; burst?: number };
  /** Reply streams one API key (or address) may hold open at once. Defaults to 16. */
  maxStreamsPerKey?: number;
  /** Agent connections still in their handshake, in all. Defaults to 128. */
  maxPendingHandshakes?: number;
  /** Agent connections still in their handshake, per address. Defaults to 16. */
  maxPendingHandshakesPerIp?: number;
  /** Agent connections per address, in any phase. Defaults to 256. */
  maxAgentConnectionsPerIp?: number;
  /** Time a client has to send its whole request (headers and body). Defaults to 30 000 ms. */
  requestTimeoutMs?: number;
  /** Bytes a slow client may leave unread before its job is cancelled. Defaults to 8 MiB. */
  maxBufferedBytesPerClient?: number;
  /** How long close() lets running streams finish. Defaults to 10 000 ms. */
  shutdownGraceMs?: number;
  /** Bearer token /metrics requires. Defaults to none (metrics are public). */
  metricsToken?: string;
  /** Serve the operator dashboard at /dashboard/. Defaults to true. */
  dashboard?: boolean;
  /** Lifetime of a dashboard sign-in. Defaults to 12 hours. */
  operatorSessionTtlMs?: number;
  /** Mark the dashboard session cookie Secure (behind TLS). Defaults to false. */
  secureCookies?: boolean;
  /** Release holds left by a previous run (no stream survives a restart). Defaults to true. */
  releaseHeldOnStart?: boolean;
  /** Static web pages to serve (chat page). Defaults to none. */
  sites?: readonly StaticSite[];
}

/** A running gateway. */
export interface Gateway extends AsyncDisposable {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8787. */
  readonly url: string;
  /** WebSocket URL agents connect to. */
  readonly agentUrl: string;
  /** Connected agents. */
  readonly directory: Directory<AgentSession>;
  /** The queue of jobs waiting for a slot. */
  readonly router: Router;
  /** Accounts and ledger. */
  readonly store: GatewayStore;
  /** Prometheus metrics. */
  readonly metrics: GatewayMetrics;
  /** Jobs running now. */
  readonly activeJobs: number;
  /** Called with every finished job's outcome (as the client saw it), for observers. */
  onJobFinished(listener: (jobId: string, outcome: JobOutcome) => void): void;
  /** Called once each job has been billed (settled or released). */
  onJobBilled(listener: (jobId: string) => void): void;
  /** Stops taking jobs, lets running streams finish within the grace, closes everything. */
  close(): Promise<void>;
}

const FREE: Price = { promptPerMTok: 0n, completionPerMTok: 0n };

function httpError(reply: FastifyReply, error: NightjarError): FastifyReply {
  if (error.retryAfterMs !== undefined) reply.header('retry-after', Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
  return reply.code(error.status).send({ error: error.toJSON() });
}

function rawHttpError(res: ServerResponse, error: NightjarError): void {
  const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
  if (error.retryAfterMs !== undefined) headers['retry-after'] = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
  res.writeHead(error.status, headers);
  res.end(JSON.stringify({ error: error.toJSON() }));
}

/** Starts a gateway and resolves once it is listening. */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const log = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const gatewayId = options.gatewayId ?? 'nightjar-gateway';
  const maxFrame = Math.min(options.maxAgentFrameBytes ?? LIMITS.maxAgentFrameBytes, LIMITS.maxAgentFrameBytes);
  const maxBody = Math.min(options.maxRequestBodyBytes ?? LIMITS.maxRequestBodyBytes, LIMITS.maxRequestBodyBytes);
  const maxBuffered = options.maxBufferedBytesPerClient ?? 8 * 1024 * 1024;
  const shareBps = options.operatorShareBps ?? 9500;
  if (!Number.isInteger(shareBps) || shareBps < 0 || shareBps > 10_000) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'operatorShareBps must be an integer from 0 to 10000');
  }
  const ownsStore = options.store === undefined;
  const store = options.store ?? (await openSqliteStore({ path: ':memory:', now: clock.now() }));
  const allowAnonymous = options.allowAnonymous ?? ownsStore;
  const { accounts, ledger } = store;
  if (options.releaseHeldOnStart ?? true) {
    const n = await ledger.releaseAllHeld('gateway restarted', clock.now());
    if (n > 0) log.warn('released holds left by a previous run', { jobs: n });
  }

  const metrics = new GatewayMetrics();
  const directory = new Directory<AgentSession>({ allowSynthetic: options.allowSynthetic ?? false });
  const router = new Router({
    clock,
    maxQueuePerModel: options.maxQueuePerModel ?? 64,
    queueTimeoutMs: options.queueTimeoutMs ?? 30_000,
    // A slot frees, at best, when the fastest agent's job ends: hint that long (0.25–30 s).
    retryAfterMs(model) {
      const now = clock.now();
      const waits = directory
        .all()
        .filter((e) => directory.eligible(e, { model, now }))
        .map((e) => directory.expectedLatencyMs(e, now));
      return Math.min(30_000, Math.max(250, waits.length ? Math.min(...waits) : 1000));
    },
  });
  const limiter = new RateLimiter({ clock, perSecond: options.rateLimit?.perSecond ?? 10, burst: options.rateLimit?.burst ?? 40 });
  const maxStreams = options.maxStreamsPerKey ?? 16;
  const streams = new Map<string, number>();
  const jobs = new Map<string, ClientJob>();
  const billing = new Set<Promise<void>>();
  const finishedListeners: ((jobId: string, outcome: JobOutcome) => void)[] = [];
  const billedListeners: ((jobId: string) => void)[] = [];
  let closing = false;

  metrics.gauge('nightjar_connected_agents', 'Agents connected and authenticated.', () => directory.size);
  metrics.gauge('nightjar_routable_agents', 'Connected agents that are serving and answered their last challenge.', () => {
    const now = clock.now();
    return directory.all().filter((e) => e.accepting && e.status?.state === 'serving' && e.challengeFresh(now)).length;
  });
  metrics.gauge('nightjar_queue_depth', 'Jobs waiting for a free slot.', () => router.depth());
  metrics.gauge('nightjar_active_jobs', 'Jobs streaming or queued now.', () => jobs.size);

  const app: FastifyInstance = Fastify({
    logger: false,
    // base64url of the largest body plus the header and JSON punctuation.
    bodyLimit: Math.ceil((maxBody * 4) / 3) + 64 * 1024,
    return503OnClosing: true,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    // close() has already let streams finish within its grace; whatever is left is cut.
    forceCloseConnections: true,
  });

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, _req, reply) => {
    if (err instanceof NightjarError) return httpError(reply, err);
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return httpError(reply, new NightjarError('NJ_PAYLOAD_TOO_LARGE', 'the request body exceeds the gateway limit'));
    }
    if (err.statusCode && err.statusCode < 500) {
      return httpError(reply, new NightjarError('NJ_BAD_REQUEST', 'the request could not be read as JSON'));
    }
    log.error('request handler failed', { err: err.message });
    return httpError(reply, new NightjarError('NJ_INTERNAL', 'internal gateway error'));
  });
  app.setNotFoundHandler((_req, reply) => httpError(reply, new NightjarError('NJ_NOT_FOUND', 'no such endpoint')));

  registerStaticSites(app, options.sites ?? []);

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    if (closing) return httpError(reply, new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterMs: 2000 }));
    try {
      await store.ping();
    } catch {
      return httpError(reply, new NightjarError('NJ_INTERNAL', 'the database does not answer'));
    }
    return { ok: true, agents: directory.size };
  });
  app.get('/metrics', async (req, reply) => {
    if (options.metricsToken !== undefined && req.headers.authorization !== `Bearer ${options.metricsToken}`) {
      return httpError(reply, new NightjarError('NJ_UNAUTHORIZED', 'metrics need the metrics token'));
    }
    return reply
      .header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(metrics.render());
  });

  /** Who is calling: an API key, or (in open mode) nobody in particular. Applies the rate limit. */
  async function client(req: FastifyRequest, required = false): Promise<{ key: ApiKeyInfo | null; caller: string }> {
    const header = req.headers.authorization;
    let key: ApiKeyInfo | null = null;
    if (header === undefined) {
      if (!allowAnonymous || required) throw new NightjarError('NJ_UNAUTHORIZED', 'send an API key as Authorization: Bearer njk_…');
    } else {
      const m = /^Bearer ([!-~]{1,256})$/.exec(header);
      if (!m) throw new NightjarError('NJ_UNAUTHORIZED', 'the Authorization header must be "Bearer <API key>"');
      key = await accounts.authenticateApiKey(m[1]!);
      if (!key) throw new NightjarError('NJ_UNAUTHORIZED', 'the API key is unknown or revoked');
    }
    const caller = key ? `key:${key.id}` : `ip:${req.ip}`;
    const taken = limiter.take(caller);
    if (!taken.ok) {
      metrics.rejected.inc({ limit: 'rate' });
      throw new NightjarError('NJ_RATE_LIMITED', 'too many requests for this key', { retryAfterMs: taken.retryAfterMs });
    }
    return { key, caller };
  }

  /** What `model` costs: synthetic models are free; real ones need a price (0 is a price). */
  async function priceOf(model: string): Promise<{ price: Price; free: boolean }> {
    if (directory.isSynthetic(model)) return { price: FREE, free: true };
    const price = await accounts.getPrice(model);
    if (!price) throw new NightjarError('NJ_MODEL_UNPRICED', `the gateway has no price for ${model}`);
    return { price, free: price.promptPerMTok === 0n && price.completionPerMTok === 0n };
  }

  app.get('/v1/models', async (req): Promise<ModelsResponse> => {
    await client(req);
    const prices = new Map((await accounts.listPrices()).map((p) => [p.model, p]));
    const models: ModelsResponse['models'] = [];
    for (const m of directory.models(clock.now())) {
      const p = m.synthetic ? FREE : prices.get(m.id);
      if (!p) continue; // unpriced real models are not on offer
      models.push({ ...m, price: { promptPerMTok: p.promptPerMTok.toString(), completionPerMTok: p.completionPerMTok.toString() } });
    }
    return { v: PROTOCOL_VERSION, models };
  });

  app.get('/v1/account', async (req): Promise<AccountResponse> => {
    const { key } = await client(req, true);
    const { balance, held } = await ledger.clientBalance(key!.id);
    return { v: PROTOCOL_VERSION, keyId: key!.id, name: key!.name, balance: balance.toString(), held: held.toString() };
  });

  app.get('/v1/candidates', async (req: FastifyRequest<{ Querystring: Record<string, string | undefined> }>) => {
    const { key } = await client(req);
    const q = req.query;
    const model = modelIdSchema.safeParse(q.model);
    if (!model.success) throw new NightjarError('NJ_BAD_REQUEST', `model: ${describeIssues(model.error)}`);
    const k = q.k === undefined ? (options.defaultCandidates ?? 3) : Number(q.k);
    if (!Number.isInteger(k) || k < 1 || k > LIMITS.maxCandidates) {
      throw new NightjarError('NJ_BAD_REQUEST', `k must be an integer from 1 to ${LIMITS.maxCandidates}`);
    }
    const minTrust = (q.minTrust ?? 'signed') as Trust;
    if (!TRUST_LEVELS.includes(minTrust)) throw new NightjarError('NJ_BAD_REQUEST', `minTrust must be one of ${TRUST_LEVELS.join(', ')}`);
    if (!directory.knows(model.data)) throw new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${model.data}`);
    const { free } = await priceOf(model.data);
    if (!free && !key) throw new NightjarError('NJ_UNAUTHORIZED', `${model.data} is not free: send an API key`);
    const needs = { model: model.data, minTrust, paid: !free, now: clock.now() };
    const chosen = directory.candidates(needs, k);
    if (chosen.length === 0 && minTrust !== 'signed' && directory.candidates({ ...needs, minTrust: 'signed' }, 1).length > 0) {
      throw new NightjarError(
        'NJ_TRUST_POLICY',
        `no agent serving ${model.data} is ${minTrust}; this gateway verifies no attestation, so every agent is signed`,
      );
    }
    const anyFree = chosen.some((e) => directory.freeSlots(e) > 0);
    if (chosen.length === 0 || (!anyFree && !router.hasRoom(model.data))) {
      const why =
        chosen.length === 0
          ? `no agent serving ${model.data} at trust ${minTrust} can take jobs now`
          : `every agent serving ${model.data} is busy and the queue is full`;
      throw new NightjarError('NJ_NO_CAPACITY', why, { retryAfterMs: router.retryAfterMs(model.data) });
    }
    const answer: CandidatesResponse = {
      v: PROTOCOL_VERSION,
      model: model.data,
      candidates: chosen.map((e) => ({ bundle: e.bundle.signed, trust: e.trust })),
    };
    return answer;
  });

  app.post('/v1/jobs', async (req, reply) => {
    if (closing) throw new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down; retry shortly', { retryAfterMs: 2000 });
    const { key, caller } = await client(req);
    const parsed = jobRequestSchema.safeParse(req.body);
    if (!parsed.success) throw new NightjarError('NJ_BAD_REQUEST', `job request: ${describeIssues(parsed.error)}`);
    const { envelope } = parsed.data;
    const { header } = envelope;
    const body = fromBase64Url(envelope.body);
    if (body.length !== header.bodyLength) throw new NightjarError('NJ_BAD_REQUEST', 'the body length differs from the header');
    if (body.length > maxBody) throw new NightjarError('NJ_PAYLOAD_TOO_LARGE', `the body exceeds ${maxBody} bytes`);
    const jobId = header.jobId;
    if (jobs.has(jobId)) throw new NightjarError('NJ_DUPLICATE_JOB', 'a job with this jobId is running');
    if ((streams.get(caller) ?? 0) >= maxStreams) {
      metrics.rejected.inc({ limit: 'streams' });
      throw new NightjarError(
        'NJ_RATE_LIMITED',
        `this key already has ${maxStreams} ${maxStreams === 1 ? 'reply' : 'replies'} streaming, its limit`,
        { retryAfterMs: 1000 },
      );
    }
    if (!directory.knows(header.model)) throw new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${header.model}`);
    const { price, free } = await priceOf(header.model);
    if (!free && !key) throw new NightjarError('NJ_UNAUTHORIZED', `${header.model} is not free: send an API key`);
    const admittedAt = clock.now();
    await ledger.hold({
      jobId,
      keyId: key?.id ?? null,
      model: header.model,
      price,
      operatorShareBps: shareBps,
      bodyLength: header.bodyLength,
      maxTokens: header.maxTokens,
      now: admittedAt,
    });

    reply.hijack();
    const res = reply.raw;
    let headSent = false;
    let finished = false;
    streams.set(caller, (streams.get(caller) ?? 0) + 1);
    const job: ClientJob = new ClientJob({
      envelope,
      requestDigest: sha256(body),
      directory,
      router,
      clock,
      logger: log,
      paid: !free,
      ...(options.jobTimeouts ? { timeouts: options.jobTimeouts } : {}),
      sink: {
        send(event: JobEvent) {
          if (res.destroyed || res.writableEnded) return;
          if (!headSent && event.type === 'error') {
            // Nothing streamed yet: a plain HTTP error, with its status and Retry-After.
            headSent = true;
            rawHttpError(
              res,
              new NightjarError(
                event.code,
                event.message,
                event.retryAfterMs === undefined ? undefined : { retryAfterMs: event.retryAfterMs },
              ),
            );
            return;
          }
          if (!headSent) {
            headSent = true;
            res.writeHead(200, {
              'content-type': 'application/x-ndjson',
              'cache-control': 'no-store',
              'x-content-type-options': 'nosniff',
            });
          }
          res.write(JSON.stringify(event) + '\n');
          if (res.writableLength > maxBuffered) {
            log.warn('client too slow; cancelling its job', { jobId });
            metrics.rejected.inc({ limit: 'slow-client' });
            job.cancel('the client is not reading its reply');
            res.destroy();
          }
        },
      },
      billing: {
        settle: async (s: Settlement) => {
          const result = await ledger.settle({
            jobId,
            attempt: s.attempt,
            agentId: s.agentId,
            operatorId: s.operatorId,
            promptTokens: s.receipt.promptTokens,
            completionTokens: s.billedCompletionTokens,
            finishReason: s.receipt.finishReason,
            outcome: s.outcome,
            receipt: JSON.stringify(s.signed),
            now: clock.now(),
          });
          metrics.settlements.inc({ result: result.status === 'settled' && result.duplicate ? 'duplicate' : result.status });
          metrics.tokens.inc({ kind: 'prompt' }, s.receipt.promptTokens);
          metrics.tokens.inc({ kind: 'completion' }, s.receipt.completionTokens);
          if (result.status === 'settled') {
            log.info('job settled', {
              jobId,
              agentId: s.agentId,
              charged: result.charged.toString(),
              operatorAmount: result.operatorAmount.toString(),
              outcome: s.outcome,
            });
          }
        },
        release: async (outcome) => {
          const result = await ledger.release(jobId, outcome, clock.now());
          metrics.settlements.inc({ result: result.status === 'released' && !result.duplicate ? 'released' : 'duplicate' });
        },
      },
      observer: {
        firstChunk: (_agentId, ms) => metrics.ttft.observe(ms / 1000),
        relayed: (ms) => metrics.relay.observe(ms / 1000),
        attemptFailed: (_agentId, code) => metrics.attemptsFailed.inc({ code }),
      },
    });
    jobs.set(jobId, job);
    const billed = job.billed.then(() => {
      for (const l of billedListeners) l(jobId);
    });
    billing.add(billed);
    void billed.finally(() => billing.delete(billed));
    res.on('close', () => {
      if (!finished) job.cancel('the client disconnected');
    });
    job.start();
    const outcome = await job.finished;
    finished = true;
    jobs.delete(jobId);
    const left = (streams.get(caller) ?? 1) - 1;
    if (left > 0) streams.set(caller, left);
    else streams.delete(caller);
    if (!res.destroyed && !res.writableEnded) {
      if (!headSent) res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      res.end();
    }
    metrics.jobs.inc({ outcome: outcome.status, code: outcome.status === 'failed' ? outcome.code : '' });
    logOutcome(jobId, outcome, clock.now() - admittedAt);
    for (const l of finishedListeners) l(jobId, outcome);
  });

  function logOutcome(jobId: string, outcome: JobOutcome, ms: number): void {
    if (outcome.status === 'done') {
      log.info('job done', {
        jobId,
        agentId: outcome.agentId,
        attempt: outcome.attempt,
        model: outcome.receipt.model,
        promptTokens: outcome.receipt.promptTokens,
        completionTokens: outcome.receipt.completionTokens,
        ms,
      });
    } else if (outcome.status === 'failed') {
      log.info('job failed', { jobId, agentId: outcome.agentId, code: outcome.code, delivered: outcome.delivered, ms });
    } else {
      log.info('job cancelled', { jobId, agentId: outcome.agentId, reason: outcome.reason, ms });
    }
  }

  if (options.dashboard ?? true) {
    await registerOperatorRoutes(app, {
      store,
      directory,
      clock,
      logger: log,
      sessionTtlMs: options.operatorSessionTtlMs ?? 12 * 3600_000,
      secureCookies: options.secureCookies ?? false,
      limiter,
    });
  }

  // ---- agents ----
  const maxPending = options.maxPendingHandshakes ?? 128;
  const maxPendingPerIp = options.maxPendingHandshakesPerIp ?? 16;
  const maxPerIp = options.maxAgentConnectionsPerIp ?? 256;
  const perIp = new Map<string, { open: number; pending: number }>();
  let pendingTotal = 0;

  const wss = new WebSocketServer({ noServer: true, maxPayload: maxFrame, perMessageDeflate: false });

  function accept(socket: WebSocket, ip: string): void {
    const counts = perIp.get(ip) ?? { open: 0, pending: 0 };
    perIp.set(ip, counts);
    counts.open++;
    counts.pending++;
    pendingTotal++;
    let pending = true;
    const handshakeOver = (): void => {
      if (!pending) return;
      pending = false;
      counts.pending--;
      pendingTotal--;
    };
    new AgentSession({
      socket,
      gatewayId,
      clock,
      logger: log,
      maxFrameBytes: maxFrame,
      ...(options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: options.handshakeTimeoutMs }),
      ...(options.heartbeatMs === undefined ? {} : { heartbeatMs: options.heartbeatMs }),
      ...(options.challengeIntervalMs === undefined ? {} : { challengeIntervalMs: options.challengeIntervalMs }),
      ...(options.challengeTimeoutMs === undefined ? {} : { challengeTimeoutMs: options.challengeTimeoutMs }),
      async admit(session, enrollToken) {
        if (closing) throw new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down');
        const result = await accounts.admitAgent({
          agentId: session.agentId,
          identityKey: toBase64Url(session.bundle.identityKey),
          enrollToken,
          model: session.bundle.bundle.models[0]?.id ?? null,
          now: clock.now(),
        });
        if (result.boundNow) log.info('agent enrolled', { agentId: session.agentId, operatorId: result.operatorId });
        return result;
      },
      onAuthenticated(session) {
        handshakeOver();
        const previous = directory.set(session);
        if (previous) previous.close(CLOSE_CODES.replaced, 'NJ_AGENT_REPLACED');
        log.info('agent connected', {
          agentId: session.agentId,
          operatorId: session.operatorId,
          models: session.bundle.bundle.models.map((m) => m.id).join(','),
          slots: session.bundle.bundle.capacity.slots,
        });
        router.pump();
      },
      onCapacity: () => router.pump(),
      onClosed(session) {
        directory.delete(session);
        log.info('agent disconnected', { agentId: session.agentId });
        accounts.touchAgent(session.agentId, clock.now()).catch(() => undefined);
        router.pump();
      },
      onSocketClosed() {
        handshakeOver();
        counts.open--;
        if (counts.open === 0) perIp.delete(ip);
      },
    });
  }

  function refuseUpgrade(socket: Duplex, status: string, error: NightjarError): void {
    const body = JSON.stringify({ error: error.toJSON() });
    const retry = error.retryAfterMs === undefined ? '' : `Retry-After: ${Math.max(1, Math.ceil(error.retryAfterMs / 1000))}\r\n`;
    socket.end(
      `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}Connection: close\r\n\r\n${body}`,
    );
  }

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/v1/agent') {
      refuseUpgrade(socket, '404 Not Found', new NightjarError('NJ_NOT_FOUND', 'agents connect to /v1/agent'));
      return;
    }
    if (closing) {
      refuseUpgrade(
        socket,
        '503 Service Unavailable',
        new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterMs: 2000 }),
      );
      return;
    }
    const ip = req.socket.remoteAddress ?? 'unknown';
    const counts = perIp.get(ip) ?? { open: 0, pending: 0 };
    const n = (count: number, what: string): string => `${count} ${what}${count === 1 ? '' : 's'}`;
    const over =
      counts.open >= maxPerIp
        ? `this address already has ${n(maxPerIp, 'agent connection')}`
        : counts.pending >= maxPendingPerIp
          ? `this address already has ${n(maxPendingPerIp, 'unfinished handshake')}`
          : pendingTotal >= maxPending
            ? `the gateway already has ${n(maxPending, 'unfinished handshake')}`
            : null;
    if (over) {
      metrics.rejected.inc({ limit: 'agent-connections' });
      log.warn('agent connection refused', { ip, reason: over });
      refuseUpgrade(socket, '429 Too Many Requests', new NightjarError('NJ_RATE_LIMITED', over, { retryAfterMs: 1000 }));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, ip));
  });

  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8787;
  try {
    await app.listen({ host, port });
  } catch (err) {
    await app.close();
    if (ownsStore) await store.dispose();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new NightjarError('NJ_CONFIG_INVALID', `cannot listen on ${host}:${port} (${code}); choose another address or port`, {
        cause: err,
      });
    }
    throw err;
  }
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new NightjarError('NJ_CONFIG_INVALID', 'the gateway has no TCP address');
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${hostForUrl}:${address.port}`;
  log.info('gateway listening', { url, anonymous: allowAnonymous });

  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  let closed: Promise<void> | null = null;
  const gateway: Gateway = {
    url,
    agentUrl: `ws://${hostForUrl}:${address.port}/v1/agent`,
    directory,
    router,
    store,
    metrics,
    get activeJobs() {
      return jobs.size;
    },
    onJobFinished(listener) {
      finishedListeners.push(listener);
    },
    onJobBilled(listener) {
      billedListeners.push(listener);
    },
    close() {
      closed ??= (async () => {
        closing = true;
        const deadline = Date.now() + (options.shutdownGraceMs ?? 10_000);
        while (jobs.size > 0 && Date.now() < deadline) await sleep(25);
        router.clear(new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterMs: 2000 }));
        for (const job of jobs.values()) job.cancel('the gateway is shutting down');
        // Cancelled jobs wait briefly for their receipts; whatever is still open is released below.
        const billedBy = Date.now() + 2000;
        while (billing.size > 0 && Date.now() < billedBy) await sleep(25);
        for (const ws of wss.clients) ws.close(CLOSE_CODES.goingAway, 'gateway shutting down');
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            for (const ws of wss.clients) ws.terminate();
            resolve();
          }, 2000);
          const left = (): void => {
            if (wss.clients.size > 0) return;
            clearTimeout(t);
            resolve();
          };
          for (const ws of wss.clients) ws.once('close', left);
          left();
        });
        await new Promise<void>((r) => wss.close(() => r()));
        await app.close();
        // Agents are gone: their open jobs were just lost and released; this settles the rest.
        const settledBy = Date.now() + 5000;
        while (billing.size > 0 && Date.now() < settledBy) await Promise.race([...billing, sleep(100)]);
        await ledger
          .releaseAllHeld('gateway stopped', clock.now())
          .catch((err: unknown) => log.error('could not release holds', { err: String(err) }));
        if (ownsStore) await store.dispose();
        log.info('gateway stopped');
      })();
      return closed;
    },
    [Symbol.asyncDispose]() {
      return gateway.close();
    },
  };
  return gateway;
}
