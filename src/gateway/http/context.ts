/**
 * What the gateway's fastify plugins share: one typed context object, built once by
 * {@link Gateway.start} and handed to each plugin as its options. Nothing is kept at module level.
 */
import type { Clock, Logger, NightjarError } from '../../shared/index.js';
import type { AgentSession } from '../agent-session.js';
import type { Billing } from '../billing.js';
import type { ModelCatalog } from '../catalog/model-catalog.js';
import type { ClusterRouting } from '../cluster/cluster.js';
import type { CandidateSource } from '../cluster/nats-transport.js';
import type { Directory } from '../directory.js';
import type { Honesty } from '../honesty/honesty.js';
import type { GatewayMetrics } from '../metrics.js';
import type { ResolvedGatewayOptions } from '../options.js';
import type { RequestLimiter } from '../rate-limit.js';
import type { Router } from '../router.js';
import type { RunningJobs } from '../running-jobs.js';
import type { GatewayStore } from '../store/gateway-store.js';
import type { JobTransport } from '../transport.js';

/** The state the plugins share. */
export interface GatewayContext {
  /** The gateway's options, resolved once. */
  readonly options: ResolvedGatewayOptions;
  /** The injected clock (options.clock). */
  readonly clock: Clock;
  /** The gateway's logger (options.logger). */
  readonly log: Logger;
  /** Accounts and ledger. */
  readonly store: GatewayStore;
  /** The model catalog (what is priced and routed for which files) and the gateway key that signs it. */
  readonly catalog: ModelCatalog;
  /** This node's connected agents. */
  readonly directory: Directory<AgentSession>;
  /** The agents clients may be handed: this node's, and in a cluster with NATS every node's. */
  readonly network: CandidateSource;
  /** Routing between nodes (cluster mode with NATS); null otherwise. */
  readonly cluster: ClusterRouting | null;
  /** Measured speed, strikes and scores (the honesty checks). */
  readonly honesty: Honesty;
  /** The queue of jobs waiting for a slot. */
  readonly router: Router;
  /** How jobs reach agents. */
  readonly transport: JobTransport;
  /** The gateway's metrics. */
  readonly metrics: GatewayMetrics;
  /** Per-caller request rate limits (client API and operator API): this node's, or in a cluster with NATS the cluster's. */
  readonly limiter: RequestLimiter;
  /** Per-address limit of requests that carry no valid key or token (options.unauthenticatedRateLimit), likewise. */
  readonly unauthenticated: RequestLimiter;
  /** The ledger's side of jobs. */
  readonly billing: Billing;
  /** The jobs running on this node. */
  readonly jobs: RunningJobs;
  /**
   * NJ_MODEL_UNKNOWN for `model`, with a retry hint while the gateway's agents may still be coming
   * back after its start (options.agentReturnMs).
   */
  modelUnknown(model: string): NightjarError;
  /** True once shutdown has begun: new work is refused. */
  closing(): boolean;
}

/** The options every gateway plugin takes. */
export interface GatewayPluginOptions {
  ctx: GatewayContext;
}
