/**
 * The gateway's options: {@link GatewayOptions} as callers pass them, {@link GATEWAY_DEFAULTS},
 * and {@link resolveGatewayOptions}, which merges and validates them once, where the gateway is
 * built. Everything after that reads the resolved object; nothing re-applies a default.
 */
import type { StaticSite } from '../node/index.js';
import {
  LIMITS,
  NightjarError,
  randomBytes,
  silentLogger,
  toHex,
  systemClock,
  withDefaults,
  type Clock,
  type Logger,
  type ReleasedApps,
  type ReplyChecker,
} from '../shared/index.js';
import { checkNodeId } from './cluster/node-liveness.js';
import { JOB_TIMEOUT_DEFAULTS, type JobTimeouts } from './job.js';
import type { GatewayStore } from './store/gateway-store.js';

/** Options of {@link Gateway.start}. */
export interface GatewayOptions {
  /** Interface to listen on. Defaults to '127.0.0.1'. */
  host?: string;
  /** TCP port; 0 picks a free one. Defaults to 8787. */
  port?: number;
  /**
   * Connections the kernel may hold accepted before the gateway picks them up (listen(2)'s
   * backlog; Linux caps it at net.core.somaxconn, 4096 by default). Past it the kernel drops new
   * connections and their clients retry after 1 s, 3 s, 7 s, 15 s…: Node's default of 511
   * overflowed when 1,000 clients arrived at once, and their requests took seconds to tens of
   * seconds while the gateway's own timings looked fine (bench: accept-burst). Defaults to 4096.
   */
  listenBacklog?: number;
  /** Name signed into agent challenges. Defaults to 'nightjar-gateway'. */
  gatewayId?: string;
  /** Where log lines go. Defaults to a silent logger. */
  logger?: Logger;
  /** Time source. Defaults to the system clock. */
  clock?: Clock;
  /**
   * Accounts and ledger. Defaults to an in-memory SQLite store that lives and dies with the
   * gateway (a development network); a store handed in is not disposed with the gateway.
   */
  store?: GatewayStore;
  /**
   * Let clients without an API key run jobs that cost nothing (uncatalogued or zero-priced models).
   * Defaults to true when no store is handed in (an in-memory development gateway, as
   * `nightjar up` runs), false when one is.
   */
  allowAnonymous?: boolean;
  /**
   * Offer, free, agents' files under model ids the signed catalog does not list (a development
   * network's synthetic model). A file under a listed id that the catalog does not list for it is
   * never offered, and prices apply only to catalogued files, whatever this says or a file's own
   * `synthetic` flag says. Defaults to true when no store is handed in (an in-memory development
   * gateway, as `nightjar up` runs), false when one is.
   */
  serveUncatalogued?: boolean;
  /**
   * @deprecated The synthetic flag no longer decides anything at the gateway; this is read as
   * {@link GatewayOptions.serveUncatalogued} when that is not given. Defaults to unset.
   */
  allowSynthetic?: boolean;
  /** How long the gateway uses its copy of the catalog before it reads the store again (admin changes). Defaults to 2000 ms. */
  catalogRefreshMs?: number;
  /** Operator share of each charge, in basis points (an integer from 0 to 10 000). Defaults to 9500 (95 %). */
  operatorShareBps?: number;
  /** Largest agent WebSocket frame, at most LIMITS.maxAgentFrameBytes. Defaults to LIMITS.maxAgentFrameBytes (6 MiB). */
  maxAgentFrameBytes?: number;
  /** Largest request ciphertext a client may send, at most LIMITS.maxRequestBodyBytes. Defaults to LIMITS.maxRequestBodyBytes. */
  maxRequestBodyBytes?: number;
  /**
   * How long after start the gateway expects its agents back (they reconnect within 5 s with their
   * default timing): until then a model no connected agent serves is answered NJ_MODEL_UNKNOWN with
   * a retry hint (retryAfterMs 500), which the SDK follows; after it, plainly, so a client asking
   * for a model nobody serves fails at once. 0 never hints. Defaults to 10 000 ms.
   */
  agentReturnMs?: number;
  /**
   * Largest JSON body of every API route but POST /v1/jobs (whose limit follows from
   * maxRequestBodyBytes): the operator sign-in, and any route that takes JSON. Defaults to 64 KiB.
   */
  maxApiBodyBytes?: number;
  /**
   * Largest body of POST /v1/jobs/:jobId/reveal (a job's evidence: its request and every reply
   * chunk, base64url in JSON). The default holds the largest request (4 MiB, about 5.6 MiB as
   * base64url) and a reply of LIMITS.maxTokens one-token chunks (about 4.3 MiB as evidence) with
   * room for replies sent in larger chunks. Defaults to 32 MiB.
   */
  maxRevealBytes?: number;
  /** Deepest nesting of a JSON body, checked by a byte scan before it is parsed. Defaults to LIMITS.maxJsonDepth (64). */
  maxJsonDepth?: number;
  /**
   * Largest frame an agent may send before its handshake completes (hello, auth), and a quarter of
   * the bytes it may send in all before then; at most maxAgentFrameBytes. Defaults to 64 KiB.
   */
  maxHandshakeFrameBytes?: number;
  /** Time from agent connect to verified auth. Defaults to 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Agent status heartbeat interval. Defaults to 15 000 ms. */
  heartbeatMs?: number;
  /** How long an admitted agent may say nothing before the gateway pings it (a WebSocket ping). Defaults to 5000 ms. */
  agentPingMs?: number;
  /**
   * How long an admitted agent may say nothing at all (no frame, ping or pong) before its link
   * counts as dead and is cut: its jobs end for their clients with NJ_AGENT_FAILED (or fail over,
   * before a first chunk) and their holds are released as for any drop. Three pings unanswered
   * with the defaults; longer than the 10 s challenge deadline, so a slow answer is not a dead
   * link. 0 never. Defaults to 15 000 ms.
   */
  agentSilenceTimeoutMs?: number;
  /** Time between periodic challenges to each agent. Defaults to 60 000 ms. */
  challengeIntervalMs?: number;
  /** Time an agent has to answer a periodic challenge. Defaults to 10 000 ms. */
  challengeTimeoutMs?: number;
  /**
   * Which app hashes are released Nightjar builds: an agent is `attested` only while its posture's
   * appHash is one (and its Secure Enclave signatures and hardened posture hold). Asked at every
   * handshake and periodic challenge. Defaults to null: the store's released-versions list
   * (`nightjar gateway releases add`), the one GET /v1/releases signs; an empty list attests nobody.
   */
  releasedApps?: ReleasedApps | null;
  /** Candidates handed to a client when it asks for none in particular. Defaults to 3. */
  defaultCandidates?: number;
  /** Per-job timeouts, each field defaulted on its own. Defaults as {@link JobTimeouts} says. */
  jobTimeouts?: JobTimeouts;
  /** The honesty checks' limits (docs/honesty.md), each field defaulted on its own. Defaults as {@link HonestyLimits} says. */
  honesty?: HonestyLimits;
  /** Jobs that may wait for a slot, per model. Defaults to 64. */
  maxQueuePerModel?: number;
  /** Longest wait in the queue. Defaults to 30 000 ms. */
  queueTimeoutMs?: number;
  /**
   * Requests per API key (or address, in open mode): sustained rate and burst, each defaulted on its
   * own. In a cluster with NATS, one bucket per caller for the whole cluster (ClusterOptions.limitsBucket);
   * every node must be given the same figures. Defaults to 10/s, burst 40.
   */
  rateLimit?: { perSecond?: number; burst?: number };
  /**
   * Requests per address that carry no valid API key, operator token or metrics token (each is
   * refused, 401 while the address has tokens left, then 429), checked before any body is read;
   * sustained rate and burst, each defaulted on its own. Defaults to 2/s, burst 20.
   */
  unauthenticatedRateLimit?: { perSecond?: number; burst?: number };
  /**
   * Reply streams one API key (or address) may hold open at once. In a cluster a key's streams are
   * counted over every node (its held jobs on the shared ledger, in the hold's own transaction); an
   * anonymous caller's, by address, on each node. Defaults to 16.
   */
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
  /**
   * While a reply stream has had nothing else to send for this long, the gateway writes a
   * keepalive (an empty NDJSON line), so a client can tell a silent agent from a dead connection
   * (the SDK's streamIdleMs). 0 sends none. Defaults to 250 ms.
   */
  streamKeepaliveMs?: number;
  /** How long dispose() lets running streams finish before it cancels them. Defaults to 10 000 ms. */
  shutdownGraceMs?: number;
  /** Bearer token /metrics requires. Defaults to none (metrics are public). */
  metricsToken?: string;
  /** Also export prom-client's default process metrics at /metrics. Defaults to false. */
  processMetrics?: boolean;
  /** Serve the operator dashboard at /dashboard/ and the operator API. Defaults to true. */
  dashboard?: boolean;
  /** Lifetime of a dashboard sign-in. Defaults to 12 hours. */
  operatorSessionTtlMs?: number;
  /** Dashboard sign-ins kept at once; the oldest go first. Defaults to 10 000. */
  maxOperatorSessions?: number;
  /** Mark the dashboard session cookie Secure (behind TLS). Defaults to false. */
  secureCookies?: boolean;
  /** Release holds left by a previous run (no stream survives a restart). Defaults to true. */
  releaseHeldOnStart?: boolean;
  /**
   * Days a settled job's row is kept (its receipt, for the operator's export and earnings) before
   * the retention sweep deletes it; the ledger's transfers are kept for ever. Defaults to 366, the
   * longest window the operator's earnings and receipts export answer for (a shorter one would make
   * them silently short).
   */
  jobRetentionDays?: number;
  /**
   * Days a released job's row (refused, failed or cancelled without a receipt) is kept. A late
   * receipt (one an agent delivers after a dropped link) settles only while the row is there, and
   * agents give up undelivered receipts after a day: twice that leaves room. Defaults to 2.
   */
  releasedJobRetentionDays?: number;
  /** Time between retention sweeps; the first runs at start. 0 turns the sweep off. Defaults to 3 600 000 ms (1 hour). */
  retentionSweepMs?: number;
  /**
   * How long an operator's share of a settled job stays pending before it is payable: a client's
   * countersignature that arrives within the window can still dispute the receipt (docs/gateway.md
   * "Money"). A payout takes only the payable part. Shorter than jobRetentionDays. 0 makes shares
   * payable at once (a countersignature that arrives first still disputes). Defaults to 86 400 000 ms
   * (24 hours): a client that lost its link (a laptop closed mid-reply) has a day to post.
   */
  pendingEarningsMs?: number;
  /** Static web pages to serve (the chat page). Defaults to none. */
  sites?: readonly StaticSite[];
  /**
   * Cluster mode: this gateway is one node of many on a shared database (PostgreSQL). Holds are
   * owned by the node and released by whichever node finds it dead, never by every node on start
   * (releaseHeldOnStart is then ignored). Defaults to null: the embedded default, one node.
   */
  cluster?: ClusterOptions | null;
}

/** A cluster node's identity and liveness (see src/gateway/cluster/node-liveness.ts). */
export interface ClusterOptions {
  /** This node's id, unique among the nodes on the database (1–64 of A–Z a–z 0–9 . _ -). Defaults to a random `gw-` id. */
  nodeId?: string;
  /** Time between this node's heartbeats in the nodes table. Defaults to 5000 ms. */
  nodeHeartbeatMs?: number;
  /** A node not seen for this long is dead: its holds are released. At least twice nodeHeartbeatMs. Defaults to 30 000 ms. */
  nodeTtlMs?: number;
  /** Time between sweeps for dead nodes' holds. Defaults to 10 000 ms. */
  nodeSweepMs?: number;
  /**
   * NATS server URL(s), comma-separated (nats://127.0.0.1:4222): presence in JetStream key-value
   * and jobs routed between nodes over NATS subjects (src/gateway/cluster/nats-transport.ts).
   * Defaults to null: no routing between nodes (each node serves the agents connected to it).
   */
  nats?: string | null;
  /** The token NATS requires of clients (its `authorization { token }`), if it does. Defaults to null (none). */
  natsToken?: string | null;
  /**
   * Replicas of the key-value buckets this node creates (presence, limits) on a NATS cluster: 3 for
   * production, so a NATS server's loss loses no entry. Only a bucket's creator sets it. Defaults to 1.
   */
  kvReplicas?: number;
  /** The presence key-value bucket (created if missing). Defaults to 'nightjar_presence'. */
  presenceBucket?: string;
  /** A presence entry not refreshed for this long is gone (the bucket's TTL). Defaults to 15 000 ms. */
  presenceTtlMs?: number;
  /** Time between refreshes of this node's agents' entries; under presenceTtlMs / 2. Defaults to 5000 ms. */
  presenceRefreshMs?: number;
  /** Prefix of the cluster's NATS subjects. Defaults to 'nightjar'. */
  subjectPrefix?: string;
  /** Keepalive interval of an attempt open on another node. Defaults to 1000 ms. */
  attemptKeepaliveMs?: number;
  /** Silence after which an attempt open on another node ends lost (that node is taken for gone). Defaults to 5000 ms. */
  attemptSilenceMs?: number;
  /** How long a dispatch to another node waits for its answer. Defaults to 5000 ms. */
  dispatchTimeoutMs?: number;
  /** How long an agent's node waits for the job's node to acknowledge a receipt before settling it late. Defaults to 10 000 ms. */
  receiptAckTimeoutMs?: number;
  /**
   * How long a late receipt for a job another live node still holds waits for that node to release
   * it (so the charge is capped by what that node relayed), ms; then the agent delivers it again
   * later. Defaults to 15 000 ms (three times attemptSilenceMs's default).
   */
  lateReceiptWaitMs?: number;
  /**
   * Largest message read from NATS; larger ones are dropped unread. The NATS server's max_payload
   * (1 MiB by default) also bounds what is sent: raise it to 8 MiB to carry the largest requests.
   * Defaults to 8 MiB.
   */
  maxClusterMessageBytes?: number;
  /** Other nodes' agents kept at most. Defaults to 200 000. */
  maxRemoteAgents?: number;
  /**
   * The key-value bucket of the shared request rate limits (rateLimit and unauthenticatedRateLimit
   * counted once for the whole cluster; created if missing, in memory, with a max age of the longest
   * time a bucket takes to refill). Defaults to 'nightjar_limits'.
   */
  limitsBucket?: string;
  /**
   * Longest a shared rate-limit read or write may take; past it (or on an error) the node counts
   * NATS unreachable and limits with its own buckets. Defaults to 250 ms.
   */
  rateLimitTimeoutMs?: number;
  /** After NATS failed a rate-limit take, how long the node limits with its own buckets before it tries NATS again. Defaults to 1000 ms. */
  rateLimitRetryMs?: number;
  /** Compare-and-swap attempts of one shared rate-limit take before it uses the node's own bucket. Defaults to 5. */
  rateLimitCasAttempts?: number;
  /**
   * Callers with a shared rate-limit take in flight at once on this node, per limit; past it, takes
   * use the node's own bucket. Defaults to 10 000.
   */
  rateLimitMaxPending?: number;
}

/** The defaults of {@link ClusterOptions} (nodeId: a random one, drawn where the options are resolved). */
export const CLUSTER_DEFAULTS: Omit<Required<ClusterOptions>, 'nodeId'> = {
  nodeHeartbeatMs: 5000,
  nodeTtlMs: 30_000,
  nodeSweepMs: 10_000,
  nats: null,
  natsToken: null,
  kvReplicas: 1,
  presenceBucket: 'nightjar_presence',
  presenceTtlMs: 15_000,
  presenceRefreshMs: 5000,
  subjectPrefix: 'nightjar',
  attemptKeepaliveMs: 1000,
  attemptSilenceMs: 5000,
  dispatchTimeoutMs: 5000,
  receiptAckTimeoutMs: 10_000,
  lateReceiptWaitMs: 15_000,
  maxClusterMessageBytes: 8 * 1024 * 1024,
  maxRemoteAgents: 200_000,
  limitsBucket: 'nightjar_limits',
  rateLimitTimeoutMs: 250,
  rateLimitRetryMs: 1000,
  rateLimitCasAttempts: 5,
  rateLimitMaxPending: 10_000,
};

function resolveCluster(cluster: ClusterOptions | null | undefined): Required<ClusterOptions> | null {
  if (!cluster) return null;
  const c = withDefaults({ ...CLUSTER_DEFAULTS, nodeId: `gw-${toHex(randomBytes(6))}` }, cluster);
  checkNodeId(c.nodeId);
  if (!(c.nodeHeartbeatMs > 0) || !(c.nodeSweepMs > 0) || !(c.nodeTtlMs >= 2 * c.nodeHeartbeatMs)) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'cluster: nodeHeartbeatMs and nodeSweepMs must be positive and nodeTtlMs at least twice nodeHeartbeatMs',
    );
  }
  if (!(c.presenceRefreshMs > 0) || !(c.presenceTtlMs >= 2 * c.presenceRefreshMs) || !(c.attemptSilenceMs >= 2 * c.attemptKeepaliveMs)) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'cluster: presenceTtlMs must be at least twice presenceRefreshMs, and attemptSilenceMs at least twice attemptKeepaliveMs',
    );
  }
  if (!Number.isInteger(c.kvReplicas) || c.kvReplicas < 1 || c.kvReplicas > 5) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'cluster: kvReplicas must be an integer from 1 to 5');
  }
  if (!(c.lateReceiptWaitMs >= 0)) throw new NightjarError('NJ_CONFIG_INVALID', 'cluster: lateReceiptWaitMs must be 0 or more');
  if (
    !/^[A-Za-z0-9_-]{1,64}$/.test(c.presenceBucket) ||
    !/^[A-Za-z0-9_-]{1,64}$/.test(c.limitsBucket) ||
    !/^[A-Za-z0-9_-]{1,32}$/.test(c.subjectPrefix)
  ) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'cluster: presenceBucket, limitsBucket and subjectPrefix are letters, digits, _ and - only',
    );
  }
  const positive = (n: number): boolean => Number.isInteger(n) && n > 0;
  if (
    !positive(c.rateLimitTimeoutMs) ||
    !positive(c.rateLimitRetryMs) ||
    !positive(c.rateLimitCasAttempts) ||
    !positive(c.rateLimitMaxPending)
  ) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'cluster: rateLimitTimeoutMs, rateLimitRetryMs, rateLimitCasAttempts and rateLimitMaxPending must be positive whole numbers',
    );
  }
  return c;
}

/** The honesty checks' limits (measured speed, the physical ceiling, strikes and the score). */
export interface HonestyLimits {
  /** Margin over the physical ceiling before a decode counts as impossible. Defaults to 1.25. */
  ceilingMargin?: number;
  /** A claimed speed this many times the measured one is a claim-gap strike. Defaults to 3. */
  claimGapFactor?: number;
  /** Timed jobs of an agent and model before a claim gap counts. Defaults to 3. */
  claimGapMinSamples?: number;
  /** How much longer, ms per token, the measured decode must take than the claimed one for a claim gap. Defaults to 5. */
  claimGapMinMsPerToken?: number;
  /** The shortest decode, ms, the gateway times; shorter jobs are neither measured nor struck. Defaults to 250. */
  minTimedDecodeMs?: number;
  /** Half-life of a strike's weight in the score. Defaults to 86 400 000 ms (a day). */
  strikeHalfLifeMs?: number;
  /** Below this score (in (0, 1]) an agent gets no jobs. Defaults to 0.25. */
  minScore?: number;
  /**
   * Re-checks the reply of a job its client reveals (POST /v1/jobs/:jobId/reveal) against the
   * model file its receipt names; `nightjar gateway --audit-models DIR` builds one. Defaults to
   * none: reveals are answered 501 NJ_AUDIT_UNAVAILABLE.
   */
  checker?: ReplyChecker;
  /** Reply checks run at once (each evaluates a model); a reveal past them is answered 429. Defaults to 1. */
  maxConcurrentChecks?: number;
}

/** {@link HonestyLimits} once resolved. */
export type ResolvedHonestyLimits = Required<Omit<HonestyLimits, 'checker'>> & { checker: ReplyChecker | null };

/** The defaults of {@link HonestyLimits}. */
export const HONESTY_DEFAULTS: ResolvedHonestyLimits = {
  ceilingMargin: 1.25,
  claimGapFactor: 3,
  claimGapMinSamples: 3,
  claimGapMinMsPerToken: 5,
  minTimedDecodeMs: 250,
  strikeHalfLifeMs: 86_400_000,
  minScore: 0.25,
  checker: null,
  maxConcurrentChecks: 1,
};

/** {@link GatewayOptions} once resolved: every field set, nested ones too. */
export interface ResolvedGatewayOptions extends Required<
  Omit<
    GatewayOptions,
    'store' | 'metricsToken' | 'rateLimit' | 'unauthenticatedRateLimit' | 'jobTimeouts' | 'allowSynthetic' | 'honesty' | 'cluster'
  >
> {
  honesty: ResolvedHonestyLimits;
  /** Null in the embedded default. */
  cluster: Required<ClusterOptions> | null;
  /** Null when /metrics is public. */
  metricsToken: string | null;
  rateLimit: { perSecond: number; burst: number };
  unauthenticatedRateLimit: { perSecond: number; burst: number };
  jobTimeouts: Required<JobTimeouts>;
}

/** The defaults of {@link GatewayOptions} (allowAnonymous and serveUncatalogued are true instead when no store is handed in). */
export const GATEWAY_DEFAULTS: ResolvedGatewayOptions = {
  host: '127.0.0.1',
  port: 8787,
  listenBacklog: 4096,
  gatewayId: 'nightjar-gateway',
  logger: silentLogger,
  clock: systemClock,
  allowAnonymous: false,
  serveUncatalogued: false,
  catalogRefreshMs: 2000,
  operatorShareBps: 9500,
  maxAgentFrameBytes: LIMITS.maxAgentFrameBytes,
  maxRequestBodyBytes: LIMITS.maxRequestBodyBytes,
  agentReturnMs: 10_000,
  maxApiBodyBytes: 64 * 1024,
  maxRevealBytes: 32 * 1024 * 1024,
  maxJsonDepth: LIMITS.maxJsonDepth,
  maxHandshakeFrameBytes: 64 * 1024,
  handshakeTimeoutMs: 10_000,
  heartbeatMs: 15_000,
  agentPingMs: 5000,
  agentSilenceTimeoutMs: 15_000,
  challengeIntervalMs: 60_000,
  challengeTimeoutMs: 10_000,
  releasedApps: null,
  defaultCandidates: 3,
  jobTimeouts: JOB_TIMEOUT_DEFAULTS,
  honesty: HONESTY_DEFAULTS,
  maxQueuePerModel: 64,
  queueTimeoutMs: 30_000,
  rateLimit: { perSecond: 10, burst: 40 },
  unauthenticatedRateLimit: { perSecond: 2, burst: 20 },
  maxStreamsPerKey: 16,
  maxPendingHandshakes: 128,
  maxPendingHandshakesPerIp: 16,
  maxAgentConnectionsPerIp: 256,
  requestTimeoutMs: 30_000,
  maxBufferedBytesPerClient: 8 * 1024 * 1024,
  streamKeepaliveMs: 250,
  shutdownGraceMs: 10_000,
  metricsToken: null,
  processMetrics: false,
  dashboard: true,
  operatorSessionTtlMs: 12 * 3600_000,
  maxOperatorSessions: 10_000,
  secureCookies: false,
  releaseHeldOnStart: true,
  jobRetentionDays: 366,
  releasedJobRetentionDays: 2,
  retentionSweepMs: 3_600_000,
  pendingEarningsMs: 86_400_000,
  sites: [],
  cluster: null,
};

function resolveHonesty(honesty: HonestyLimits | undefined): ResolvedHonestyLimits {
  const h = withDefaults(HONESTY_DEFAULTS, honesty ?? {});
  if (!Number.isInteger(h.maxConcurrentChecks) || h.maxConcurrentChecks < 1) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'honesty.maxConcurrentChecks must be a positive integer');
  }
  if (!(h.ceilingMargin >= 1) || !(h.claimGapFactor > 1) || !(h.strikeHalfLifeMs > 0) || !(h.minScore >= 0 && h.minScore <= 1)) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'honesty: ceilingMargin must be at least 1, claimGapFactor above 1, strikeHalfLifeMs positive and minScore from 0 to 1',
    );
  }
  if (!Number.isInteger(h.claimGapMinSamples) || h.claimGapMinSamples < 1) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'honesty.claimGapMinSamples must be a positive integer');
  }
  if (!(h.claimGapMinMsPerToken >= 0)) throw new NightjarError('NJ_CONFIG_INVALID', 'honesty.claimGapMinMsPerToken must be 0 or more');
  if (!(h.minTimedDecodeMs >= 0)) throw new NightjarError('NJ_CONFIG_INVALID', 'honesty.minTimedDecodeMs must be 0 or more');
  return h;
}

/**
 * Merges `options` over {@link GATEWAY_DEFAULTS} and validates them: the operator share must be
 * an integer from 0 to 10 000 basis points and retention days positive (NJ_CONFIG_INVALID
 * otherwise); frame, body and depth limits are clamped to the protocol's LIMITS (the handshake's
 * frames to the agent frame limit).
 */
export function resolveGatewayOptions(options: GatewayOptions = {}): ResolvedGatewayOptions {
  const { store, metricsToken, rateLimit, unauthenticatedRateLimit, jobTimeouts, allowSynthetic, honesty, cluster, ...rest } = options;
  const dev = store === undefined;
  const o = withDefaults({ ...GATEWAY_DEFAULTS, allowAnonymous: dev, serveUncatalogued: allowSynthetic ?? dev }, rest);
  if (!Number.isInteger(o.operatorShareBps) || o.operatorShareBps < 0 || o.operatorShareBps > 10_000) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'operatorShareBps must be an integer from 0 to 10000');
  }
  if (!Number.isInteger(o.maxRevealBytes) || o.maxRevealBytes < 1024) {
    throw new NightjarError('NJ_CONFIG_INVALID', 'maxRevealBytes must be a whole number of bytes, at least 1024');
  }
  for (const field of ['jobRetentionDays', 'releasedJobRetentionDays'] as const) {
    if (!(o[field] > 0)) throw new NightjarError('NJ_CONFIG_INVALID', `${field} must be a positive number of days`);
  }
  if (!Number.isInteger(o.pendingEarningsMs) || o.pendingEarningsMs < 0 || o.pendingEarningsMs >= o.jobRetentionDays * 86_400_000) {
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      'pendingEarningsMs must be a whole number of ms, at least 0 and shorter than jobRetentionDays',
    );
  }
  return {
    ...o,
    maxAgentFrameBytes: Math.min(o.maxAgentFrameBytes, LIMITS.maxAgentFrameBytes),
    maxRequestBodyBytes: Math.min(o.maxRequestBodyBytes, LIMITS.maxRequestBodyBytes),
    maxHandshakeFrameBytes: Math.min(o.maxHandshakeFrameBytes, o.maxAgentFrameBytes, LIMITS.maxAgentFrameBytes),
    maxJsonDepth: Math.min(o.maxJsonDepth, LIMITS.maxJsonDepth),
    metricsToken: metricsToken ?? null,
    rateLimit: withDefaults(GATEWAY_DEFAULTS.rateLimit, rateLimit),
    unauthenticatedRateLimit: withDefaults(GATEWAY_DEFAULTS.unauthenticatedRateLimit, unauthenticatedRateLimit),
    jobTimeouts: withDefaults(JOB_TIMEOUT_DEFAULTS, jobTimeouts),
    honesty: resolveHonesty(honesty),
    cluster: resolveCluster(cluster),
  };
}
