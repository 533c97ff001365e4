/**
 * src/gateway: relay, directory, router and HTTP/WebSocket API. Never imports agent or client
 * code; speaks the protocol in src/shared.
 */
export { startGateway, type Gateway, type GatewayOptions } from './gateway.js';
export {
  Directory,
  newHealth,
  type DirectoryEntry,
  type DirectoryModel,
  type AgentStatus,
  type AgentHealth,
  type DirectoryOptions,
  type EligibilityNeeds,
} from './directory.js';
export { AgentSession, type AgentSessionOptions, type JobListener } from './agent-session.js';
export {
  ClientJob,
  type ClientJobOptions,
  type JobOutcome,
  type JobTimeouts,
  type JobBilling,
  type JobObserver,
  type JobSink,
  type Settlement,
} from './job.js';
export { Router, type RouterOptions, type QueueWaiter } from './router.js';
export { RateLimiter, type RateLimiterOptions } from './rate-limit.js';
export { GatewayMetrics, Counter, Gauge, Histogram } from './metrics.js';
export {
  registerOperatorRoutes,
  csvCell,
  SESSION_COOKIE,
  type OperatorRoutesOptions,
  type OperatorAgentView,
} from './operator/operator-routes.js';
export { registerStaticSites, PAGE_CSP, type StaticSite } from './static-sites.js';
export { openSqliteStore, openPostgresStore, storeOn, type GatewayStore } from './store/gateway-store.js';
export { openSqliteDriver, type SqliteDriverOptions } from './store/sqlite.driver.js';
export { openPostgresDriver, toPostgresPlaceholders, type PostgresDriverOptions } from './store/pg.driver.js';
export { MIGRATIONS, migrate, type Migration } from './store/migrations.js';
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
  type LedgerStore,
  type HoldRequest,
  type SettleRequest,
  type SettleResult,
  type ReleaseResult,
  type JobRecord,
  type EarningsRow,
  type AccountBalance,
} from './ledger/ledger.store.js';
