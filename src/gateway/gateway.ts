/**
 * The gateway, embedded default: one process that takes agents on a WebSocket, keeps a directory
 * of their verified bundles, hands clients candidate bundles, relays sealed jobs and their sealed
 * replies, and keeps the ledger (accounts, holds, settlements) in one SQLite file. It sees
 * ciphertext and metadata only.
 *
 * {@link Gateway.start} resolves the options once, builds the parts (directory, router,
 * transport, metrics, limiter, billing, running jobs) into one {@link GatewayContext} and
 * registers fastify plugins by concern on one server: errors, security headers, health and
 * metrics, the client API, jobs, agent admission, the operator API and static pages.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { cheapRefusals, nightjarErrors, securityHeaders, type StaticSite } from '../node/index.js';
import {
  DisposableStore,
  NightjarError,
  Resource,
  nextEvent,
  raceClock,
  type Clock,
  type Emitter,
  type Event,
  loggedEmitter,
} from '../shared/index.js';
import type { AgentSession } from './agent-session.js';
import { Billing, type JobBilled, type LateReceipt } from './billing.js';
import { ModelCatalog } from './catalog/model-catalog.js';
import { Directory } from './directory.js';
import { Honesty } from './honesty/honesty.js';
import { AgentAdmission, agentAdmissionRoutes } from './http/agent-admission.js';
import { catalogRoutes } from './http/catalog-api.js';
import { clientApiRoutes } from './http/client-api.js';
import type { GatewayContext } from './http/context.js';
import { healthRoutes } from './http/health.js';
import { revealRoutes } from './http/reveal.js';
import { jobRoutes } from './http/jobs.js';
import { operatorApiRoutes } from './http/operator-api.js';
import { createDashboardSite, pageRoutes } from './http/pages.js';
import { GatewayMetrics } from './metrics.js';
import { resolveGatewayOptions, type GatewayOptions, type ResolvedGatewayOptions } from './options.js';
import { RateLimiter } from './rate-limit.js';
import { JobRetention } from './retention.js';
import type { SweepResult } from './ledger/ledger.store.js';
import { Router } from './router.js';
import { RunningJobs, type JobFinished } from './running-jobs.js';
import { openSqliteStore, type GatewayStore } from './store/gateway-store.js';
import { LocalTransport, type JobTransport } from './transport.js';
import {
  clusterLimits,
  clusterMetrics,
  clusterRouting,
  connectNats,
  nodeLiveness,
  type ClusterLimits,
  type ClusterRouting,
  type NatsLink,
} from './cluster/cluster.js';

/** How long shutdown waits for cancelled jobs' receipts before it closes the agents' sockets. */
const CANCELLED_RECEIPT_WAIT_MS = 2000;
/** How long shutdown waits, after the agents are gone, for billing still under way. */
const BILLING_WAIT_MS = 5000;

const shuttingDown = (): NightjarError => new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterMs: 2000 });

/** A running gateway. Build it with {@link Gateway.start}; dispose() stops it gracefully. */
export class Gateway extends Resource {
  /** Base URL of the HTTP API, e.g. http://127.0.0.1:8787. */
  readonly url: string;
  /** WebSocket URL agents connect to. */
  readonly agentUrl: string;
  /** The options, resolved. */
  readonly options: ResolvedGatewayOptions;
  /** Connected agents (their arrival, changes and departure are events on it). */
  readonly directory: Directory<AgentSession>;
  /** Measured speed, strikes and scores (the honesty checks). */
  readonly honesty: Honesty;
  /** The queue of jobs waiting for a slot. */
  readonly router: Router;
  /** How this gateway's jobs reach agents. */
  readonly transport: JobTransport;
  /** Accounts and ledger. */
  readonly store: GatewayStore;
  /** The model catalog and the gateway's signing key (its public half). */
  readonly catalog: ModelCatalog;
  /** Prometheus metrics. */
  readonly metrics: GatewayMetrics;
  /** Fires once per job when it finished, with its outcome as the client saw it. */
  readonly onJobFinished: Event<JobFinished>;
  /** Fires once per job when it has been billed (settled or released). */
  readonly onJobBilled: Event<JobBilled>;
  /** Fires when a receipt an agent delivered late (after a dropped link or a restart) was answered. */
  readonly onLateReceipt: Event<LateReceipt>;
  /** An agent joined the directory. */
  readonly onAgentConnected: Event<AgentSession>;
  /** An agent left the directory. */
  readonly onAgentDisconnected: Event<AgentSession>;
  /** Fires after each retention sweep of old job rows, with how many it deleted. */
  readonly onJobsSwept: Event<SweepResult>;
  /** This node's id in a cluster; null in the embedded default. */
  readonly nodeId: string | null;
  /** Routing between nodes (a cluster with NATS: other nodes' agents, the NATS transport); null otherwise. */
  readonly cluster: ClusterRouting | null;

  readonly #ctx: GatewayContext;
  readonly #app: FastifyInstance;
  readonly #admission: AgentAdmission;
  readonly #retention: JobRetention;
  readonly #state: { closing: boolean };

  private constructor(parts: GatewayParts) {
    super();
    const { ctx } = parts;
    this.#ctx = ctx;
    this.#app = parts.app;
    this.#admission = parts.admission;
    this.#retention = parts.retention;
    this.onJobsSwept = parts.retention.onSwept;
    this.#state = parts.state;
    this.disposables.add(parts.owned);
    this.url = parts.url;
    this.agentUrl = parts.agentUrl;
    this.options = ctx.options;
    this.nodeId = ctx.options.cluster?.nodeId ?? null;
    this.cluster = ctx.cluster;
    this.directory = ctx.directory;
    this.honesty = ctx.honesty;
    this.router = ctx.router;
    this.transport = ctx.transport;
    this.store = ctx.store;
    this.catalog = ctx.catalog;
    this.metrics = ctx.metrics;
    this.onJobFinished = ctx.jobs.onJobFinished;
    this.onJobBilled = ctx.billing.onJobBilled;
    this.onLateReceipt = ctx.billing.onLateReceipt;
    this.onAgentConnected = ctx.directory.onAgentConnected;
    this.onAgentDisconnected = ctx.directory.onAgentDisconnected;
  }

  /** Jobs running now. */
  get activeJobs(): number {
    return this.#ctx.jobs.size;
  }

  /**
   * Resolves with the agent's session once `agentId` is connected and its last heartbeat said
   * serving (at once if it already is), awaiting the directory's events. Rejects with NJ_TIMEOUT
   * after `timeoutMs` on `clock`, or NJ_CANCELLED when `signal` aborts.
   */
  async agentServing(agentId: string, options: AgentServingOptions = {}): Promise<AgentSession> {
    const serving = (): AgentSession | undefined => {
      const session = this.directory.get(agentId);
      return session?.status?.state === 'serving' ? session : undefined;
    };
    const now = serving();
    if (now) return now;
    await nextEvent(this.directory.onAgentChanged, (e) => e.agentId === agentId && serving() !== undefined, {
      clock: options.clock ?? this.#ctx.clock,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      what: `agent ${agentId.slice(0, 8)} to serve`,
    });
    return serving()!;
  }

  /**
   * Deletes the job rows older than the retention options allow now (the periodic sweep does the
   * same every retentionSweepMs); resolves with how many. The ledger's transfers stay.
   */
  sweepJobs(): Promise<SweepResult> {
    return this.#retention.sweep();
  }

  /** True once dispose() has begun: new jobs and agents are refused. */
  get closing(): boolean {
    return this.#state.closing;
  }

  /**
   * Starts a gateway and resolves once it is listening. What it creates (an in-memory store when
   * none is handed in, the dashboard's folder) is disposed with it; a store handed in is not.
   */
  static async start(options: GatewayOptions = {}): Promise<Gateway> {
    const o = resolveGatewayOptions(options);
    const owned = new DisposableStore();
    try {
      const store = options.store ?? owned.add(await openSqliteStore({ path: ':memory:', now: o.clock.now() }));
      // A cluster node releases only dead nodes' holds (and its own previous run's), then keeps sweeping.
      if (o.cluster) await owned.add(nodeLiveness(o, o.cluster, store)).start();
      else if (o.releaseHeldOnStart) {
        const n = await store.ledger.releaseAllHeld('gateway restarted', o.clock.now());
        if (n > 0) o.logger.warn('released holds left by a previous run', { jobs: n });
      }
      const state = { closing: false };
      const capacity: Emitter<void> = owned.add(loggedEmitter(o.logger, 'capacity'));
      const catalog = owned.add(
        await ModelCatalog.load({
          store: store.catalog,
          key: await store.catalog.gatewayKey(o.clock.now()),
          clock: o.clock,
          serveUncatalogued: o.serveUncatalogued,
          refreshMs: o.catalogRefreshMs,
          logger: o.logger,
        }),
      );
      // What agents may be offered changed: jobs waiting in the queue may go, or have nobody left.
      owned.add(catalog.onChanged(() => capacity.fire()));
      const nats = o.cluster?.nats ? owned.add(await connectNats(o.cluster, o.logger)) : null;
      const metrics = new GatewayMetrics({ processMetrics: o.processMetrics });
      // With NATS, request rate limits are the cluster's shared buckets (each falling back to this node's).
      const limits =
        nats && o.cluster ? await clusterLimits(o, o.cluster, nats, metrics, (await store.catalog.gatewayKey(o.clock.now())).seed) : null;
      const ctx = buildContext(o, store, catalog, owned, capacity.event, () => state.closing, metrics, nats, limits);
      await ctx.honesty.reload();
      await ctx.cluster?.start();
      const admission = owned.add(new AgentAdmission({ ctx, onCapacity: () => capacity.fire() }));
      const retention = owned.add(
        new JobRetention({
          ledger: store.ledger,
          clock: o.clock,
          logger: o.logger,
          jobRetentionDays: o.jobRetentionDays,
          releasedJobRetentionDays: o.releasedJobRetentionDays,
          sweepMs: o.retentionSweepMs,
          sessions: store.sessions,
        }),
      );
      const sites = [...o.sites];
      if (o.dashboard) sites.push(owned.add(await createDashboardSite()).site);
      const app = await createServer(ctx, admission, sites);
      const { url, agentUrl } = await listen(app, o);
      o.logger.info('gateway listening', {
        url,
        anonymous: o.allowAnonymous,
        serveUncatalogued: o.serveUncatalogued,
        gatewayKeyId: catalog.gatewayKey.keyId,
      });
      retention.start();
      return new Gateway({ ctx, app, admission, retention, state, owned, url, agentUrl });
    } catch (err) {
      await owned.dispose().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Graceful shutdown: stop taking jobs and agents, let running streams finish within
   * shutdownGraceMs, cancel the rest, wait briefly for their receipts, close the agents' sockets
   * and the server, wait for billing still under way, release every hold left, and dispose what
   * the gateway opened (its in-memory store, if it made one). Every wait runs on the injected clock.
   */
  protected override async onDispose(): Promise<void> {
    const { clock, log, jobs, billing, router, options } = this.#ctx;
    this.#state.closing = true;
    await raceClock(clock, options.shutdownGraceMs, jobs.whenIdle());
    router.clear(shuttingDown());
    jobs.cancelAll('the gateway is shutting down');
    // Cancelled jobs wait briefly for their receipts; whatever is still open is released below.
    await raceClock(clock, CANCELLED_RECEIPT_WAIT_MS, billing.whenIdle());
    await this.#admission.dispose();
    await this.#app.close();
    // Agents are gone: their open jobs were just lost and released; this waits for the rest.
    await raceClock(clock, BILLING_WAIT_MS, billing.whenIdle());
    await billing.releaseAllHeld('gateway stopped').catch((err: unknown) => log.error('could not release holds', { err: String(err) }));
    log.info('gateway stopped');
  }
}

/** Options of {@link Gateway.agentServing}. */
export interface AgentServingOptions {
  /** Give up after this long. Defaults to waiting as long as it takes. */
  timeoutMs?: number;
  /** The clock the timeout runs on. Defaults to the gateway's clock. */
  clock?: Clock;
  /** Stop waiting when aborted. Defaults to none. */
  signal?: AbortSignal;
}

/** What {@link Gateway.start} hands the constructor. */
interface GatewayParts {
  ctx: GatewayContext;
  app: FastifyInstance;
  admission: AgentAdmission;
  retention: JobRetention;
  state: { closing: boolean };
  /** Everything the gateway created, disposed after its own shutdown. */
  owned: DisposableStore;
  url: string;
  agentUrl: string;
}

/** The retry hint of NJ_MODEL_UNKNOWN while agents are coming back (they arrive spread over about 5 s). */
const AGENT_RETURN_RETRY_MS = 500;

/** The shared state of the plugins; what it creates goes in `owned`. */
function buildContext(
  o: ResolvedGatewayOptions,
  store: GatewayStore,
  catalog: ModelCatalog,
  owned: DisposableStore,
  onCapacity: Event<void>,
  closing: () => boolean,
  metrics: GatewayMetrics,
  nats: NatsLink | null = null,
  limits: ClusterLimits | null = null,
): GatewayContext {
  const { clock, logger: log } = o;
  const h = o.honesty;
  const honesty = new Honesty({
    store: store.strikes,
    fileBytes: (model, sha256) => catalog.fileBytes(model, sha256),
    clock,
    logger: log,
    ceilingMargin: h.ceilingMargin,
    claimGapFactor: h.claimGapFactor,
    claimGapMinSamples: h.claimGapMinSamples,
    claimGapMinMsPerToken: h.claimGapMinMsPerToken,
    minTimedDecodeMs: h.minTimedDecodeMs,
    score: { halfLifeMs: h.strikeHalfLifeMs, minScore: h.minScore },
    refreshMs: o.catalogRefreshMs,
  });
  const directoryOptions = {
    catalog,
    logger: log,
    measured: (agentId: string, model: string) => honesty.measured(agentId, model),
    score: (agentId: string, now: number) => honesty.score(agentId, now),
    minScore: h.minScore,
  };
  const directory = owned.add(new Directory<AgentSession>(directoryOptions));
  // Cluster with NATS: other nodes' agents from the presence bucket, and jobs routed to them over NATS.
  const cluster = nats && o.cluster ? clusterRouting(o, o.cluster, nats, directory, onCapacity, directoryOptions, honesty) : null;
  if (cluster) for (const part of [cluster.remote, cluster.presence, cluster.transport]) owned.add(part);
  const router = owned.add(
    new Router({
      clock,
      logger: log,
      maxQueuePerModel: o.maxQueuePerModel,
      queueTimeoutMs: o.queueTimeoutMs,
      // A slot frees, at best, when the fastest agent's job ends: hint that long (0.25–30 s).
      retryAfterMs(model) {
        const now = clock.now();
        const waits = directory
          .all()
          .filter((e) => directory.eligible(e, { model, now }))
          .map((e) => directory.expectedLatencyMs(e, now));
        return Math.min(30_000, Math.max(250, waits.length ? Math.min(...waits) : 1000));
      },
    }),
  );
  const transport = cluster?.transport ?? new LocalTransport({ directory, onCapacity, now: () => clock.now() });
  owned.add(transport.onCapacity(() => router.pump()));
  if (cluster) clusterMetrics(metrics, cluster);
  const jobs = owned.add(new RunningJobs(log));
  const billing = owned.add(
    new Billing({
      ledger: store.ledger,
      operatorShareBps: o.operatorShareBps,
      pendingEarningsMs: o.pendingEarningsMs,
      onDisputed: ({ jobId, agentId, dispute }) => honesty.countDisputed(agentId, jobId, dispute),
      nodeId: o.cluster?.nodeId ?? null,
      heldElsewhereWaitMs: o.cluster?.lateReceiptWaitMs ?? 0,
      metrics,
      clock,
      logger: log,
    }),
  );
  const limiter = limits?.limiter ?? new RateLimiter({ clock, perSecond: o.rateLimit.perSecond, burst: o.rateLimit.burst });
  const unauthenticated =
    limits?.unauthenticated ??
    new RateLimiter({
      clock,
      perSecond: o.unauthenticatedRateLimit.perSecond,
      burst: o.unauthenticatedRateLimit.burst,
    });
  metrics.gauge('nightjar_connected_agents', 'Agents connected and authenticated.', () => directory.size);
  metrics.gauge('nightjar_routable_agents', 'Connected agents that are serving and answered their last challenge.', () => {
    const now = clock.now();
    return directory.all().filter((e) => e.accepting && e.status?.state === 'serving' && e.challengeFresh(now)).length;
  });
  metrics.gauge('nightjar_queue_depth', 'Jobs waiting for a free slot.', () => router.depth());
  metrics.gauge('nightjar_active_jobs', 'Jobs streaming or queued now.', () => jobs.size);
  const startedAt = clock.now();
  const modelUnknown = (model: string): NightjarError => {
    const returning = clock.now() - startedAt < o.agentReturnMs;
    return returning
      ? new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${model} yet; the gateway has just started`, {
          retryAfterMs: AGENT_RETURN_RETRY_MS,
        })
      : new NightjarError('NJ_MODEL_UNKNOWN', `no connected agent serves ${model}`);
  };
  return {
    options: o,
    clock,
    log,
    store,
    catalog,
    directory,
    network: cluster?.network ?? directory,
    cluster,
    honesty,
    router,
    transport,
    metrics,
    limiter,
    unauthenticated,
    billing,
    jobs,
    modelUnknown,
    closing,
  };
}

/** The fastify server with every plugin registered. */
async function createServer(ctx: GatewayContext, admission: AgentAdmission, sites: readonly StaticSite[]): Promise<FastifyInstance> {
  const o = ctx.options;
  const app = Fastify({
    logger: false,
    // Every JSON route but POST /v1/jobs, which has its own (jobBodyLimit).
    bodyLimit: o.maxApiBodyBytes,
    return503OnClosing: true,
    requestTimeout: o.requestTimeoutMs,
    // dispose() has already let streams finish within its grace; whatever is left is cut.
    forceCloseConnections: true,
  });
  try {
    await app.register(nightjarErrors, {
      logger: ctx.log,
      badBodyMessage: 'the request could not be read as JSON',
      internalMessage: 'internal gateway error',
    });
    await app.register(securityHeaders);
    // Unknown paths answered before their body is read; JSON depth-scanned before it is parsed.
    await app.register(cheapRefusals, { maxJsonDepth: o.maxJsonDepth });
    await app.register(healthRoutes, { ctx });
    await app.register(clientApiRoutes, { ctx });
    await app.register(catalogRoutes, { ctx });
    await app.register(jobRoutes, { ctx });
    await app.register(revealRoutes, { ctx });
    await app.register(agentAdmissionRoutes, { ctx, admission });
    if (o.dashboard) await app.register(operatorApiRoutes, { ctx });
    await app.register(pageRoutes, { sites });
    await app.ready();
  } catch (err) {
    await app.close();
    throw err;
  }
  return app;
}

/** Listens on the configured address; resolves with the URLs it answers on. */
async function listen(app: FastifyInstance, o: ResolvedGatewayOptions): Promise<{ url: string; agentUrl: string }> {
  try {
    await app.listen({ host: o.host, port: o.port, backlog: o.listenBacklog });
  } catch (err) {
    await app.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new NightjarError('NJ_CONFIG_INVALID', `cannot listen on ${o.host}:${o.port} (${code}); choose another address or port`, {
        cause: err,
      });
    }
    throw err;
  }
  const address = app.server.address();
  if (!address || typeof address === 'string') {
    await app.close();
    throw new NightjarError('NJ_CONFIG_INVALID', 'the gateway has no TCP address');
  }
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${host}:${address.port}`, agentUrl: `ws://${host}:${address.port}/v1/agent` };
}
