/**
 * src/gateway: relay, directory, router and HTTP/WebSocket API. Never imports agent or client
 * code; speaks the protocol in src/shared.
 */
export { Gateway, type AgentServingOptions } from './gateway.js';
export * from './honesty/index.js';
export {
  CLUSTER_DEFAULTS,
  GATEWAY_DEFAULTS,
  HONESTY_DEFAULTS,
  resolveGatewayOptions,
  type ClusterOptions,
  type GatewayOptions,
  type HonestyLimits,
  type ResolvedGatewayOptions,
} from './options.js';
export type { GatewayContext, GatewayPluginOptions } from './http/context.js';
export {
  LocalTransport,
  type AgentChannel,
  type AttemptListener,
  type AttemptReport,
  type JobCandidate,
  type JobNeeds,
  type JobTransport,
  type LocalTransportOptions,
} from './transport.js';
export {
  Billing,
  type BillingOptions,
  type HoldFor,
  type JobBilled,
  type LateReceipt,
  type LateReceiptAgent,
  type LateSettleOptions,
} from './billing.js';
export { RunningJobs, type JobFinished } from './running-jobs.js';
export {
  Directory,
  DIRECTORY_DEFAULTS,
  OPEN_CATALOG,
  type FileCatalog,
  newHealth,
  type DirectoryEntry,
  type DirectoryModel,
  type AgentStatus,
  type AgentHealth,
  type DirectoryOptions,
  type EligibilityNeeds,
} from './directory.js';
export { AgentSession, AGENT_SESSION_DEFAULTS, type AgentSessionOptions, type LateReceiptAck } from './agent-session.js';
export {
  promptTokenBound,
  chunkTextCapacity,
  completionTokenBound,
  boundClaims,
  UNDELIVERED_COMPLETION_ALLOWANCE,
  type BoundedClaims,
} from './claims.js';
export {
  ClientJob,
  CLIENT_JOB_DEFAULTS,
  JOB_TIMEOUT_DEFAULTS,
  type ClientJobOptions,
  type JobOutcome,
  type JobTimeouts,
  type JobBilling,
  type JobObserver,
  type JobSink,
  type Settlement,
} from './job.js';
export { Router, ROUTER_DEFAULTS, type RouterOptions, type QueueWaiter, type QueueChange } from './router.js';
export { RateLimiter, RATE_LIMITER_DEFAULTS, type RateLimiterOptions, type RateTaken, type RequestLimiter } from './rate-limit.js';
export { GatewayMetrics, type GatewayMetricsOptions } from './metrics.js';
export { operatorApiRoutes, csvCell, SESSION_COOKIE } from './http/operator-api.js';
export { OperatorSessions, type OperatorSessionsOptions } from './operator/operator-sessions.js';
export { SqlOperatorSessionStore, type OperatorSessionStore } from './operator/operator-session.store.js';
export {
  AgentAdmission,
  agentAdmissionRoutes,
  type AgentAdmissionOptions,
  type AgentAdmissionPluginOptions,
} from './http/agent-admission.js';
export { healthRoutes } from './http/health.js';
export { clientApiRoutes } from './http/client-api.js';
export { jobRoutes } from './http/jobs.js';
export { pageRoutes, createDashboardSite, type DashboardSite, type PagesPluginOptions } from './http/pages.js';
export { authenticateClient, priceOf, type Caller, type ModelPricing } from './http/callers.js';
export { catalogRoutes } from './http/catalog-api.js';
export { ModelCatalog, MODEL_CATALOG_DEFAULTS, type ModelCatalogOptions } from './catalog/model-catalog.js';
export { SqlCatalogStore, type CatalogStore, type CatalogFileRow, type GatewayKeyInfo } from './catalog/catalog.store.js';
export type { StaticSite } from '../node/index.js';
export { openSqliteStore, openPostgresStore, storeOn, type GatewayStore } from './store/gateway-store.js';
export { openSqliteDriver, type SqliteDriverOptions } from './store/sqlite.driver.js';
export { openPostgresDriver, toPostgresPlaceholders, type PostgresDriverOptions } from './store/pg.driver.js';
export { MIGRATIONS, migrate, type Migration } from './store/migrations.js';
export { SqlNodeStore, type NodeStore, type NodeRecord } from './cluster/node.store.js';
export { clusterLimits, clusterRouting, connectNats, type ClusterLimits, type ClusterRouting, type NatsLink } from './cluster/cluster.js';
export {
  SharedLimits,
  rateLimitEntryName,
  rateLimitKeySecret,
  type SharedLimitsOptions,
  type FallbackReason,
  type LimitsKv,
} from './cluster/shared-rate-limit.js';
export { NatsTransport, NetworkDirectory, type CandidateSource, type NatsTransportOptions } from './cluster/nats-transport.js';
export { Presence, RemoteAgent, presenceOf, type PresenceOptions, type RemoteLink } from './cluster/presence.js';
export * from './cluster/wire.js';
export { NodeLiveness, NODE_ID_PATTERN, checkNodeId, type NodeLivenessOptions, type NodeSweep } from './cluster/node-liveness.js';
export type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './store/sql.js';
export {
  SqlAccountStore,
  MAX_PRICE_PER_MTOK,
  type AccountStore,
  type ApiKeyInfo,
  type OperatorInfo,
  type EnrollmentInfo,
  type AgentRecord,
  type Price,
  type PriceRow,
  type AdmitRequest,
} from './accounts/account.store.js';
export { issueSecret, hashSecret, secretId, type SecretKind, type IssuedSecret } from './accounts/secrets.js';
export {
  SqlLedgerStore,
  ACCOUNTS,
  costOf,
  holdAmount,
  operatorShare,
  tooManyStreams,
  type LedgerStore,
  type HoldRequest,
  type SettleRequest,
  type SettleResult,
  type ReleaseResult,
  type LateSettleRequest,
  type LateSettleResult,
  type SweepRequest,
  type SweepResult,
  type JobRecord,
  type LedgerEarningsRow,
  type AccountBalance,
} from './ledger/ledger.store.js';
