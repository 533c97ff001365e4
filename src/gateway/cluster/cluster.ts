/**
 * Cluster mode's parts as the gateway builds them from its resolved options: the node's liveness
 * (heartbeat and dead-node sweep on the shared database), and — with NATS — the presence bucket,
 * the other nodes' agents and the transport that routes jobs to them.
 *
 * The NATS client is the official one, in its v3 modules (@nats-io/transport-node, @nats-io/kv):
 * the maintained line (the `nats` v2 package gets fixes only), split so that the gateway loads
 * the core, JetStream key-value and the Node transport and nothing else.
 */
import { StorageType } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NightjarError, errorMessage, type Event, type Logger } from '../../shared/index.js';
import type { AgentSession } from '../agent-session.js';
import { Directory, type DirectoryOptions } from '../directory.js';
import type { GatewayMetrics } from '../metrics.js';
import type { ClusterOptions, ResolvedGatewayOptions } from '../options.js';
import { RateLimiter, type RequestLimiter } from '../rate-limit.js';
import type { GatewayStore } from '../store/gateway-store.js';
import { NatsTransport, NetworkDirectory, type NatsTransportOptions } from './nats-transport.js';
import { NodeLiveness } from './node-liveness.js';
import { Presence, type RemoteAgent } from './presence.js';
import { SharedLimits, rateLimitKeySecret } from './shared-rate-limit.js';

/** This node's heartbeat and dead-node sweep, not started yet (`start()` registers the node). */
export function nodeLiveness(o: ResolvedGatewayOptions, cluster: Required<ClusterOptions>, store: GatewayStore): NodeLiveness {
  return new NodeLiveness({
    nodeId: cluster.nodeId,
    nodes: store.nodes,
    ledger: store.ledger,
    clock: o.clock,
    logger: o.logger,
    heartbeatMs: cluster.nodeHeartbeatMs,
    ttlMs: cluster.nodeTtlMs,
    sweepMs: cluster.nodeSweepMs,
  });
}

/** `text` with any user:password@ of a URL in it cut out (a NATS error may name the server it tried). */
function withoutCredentials(text: string): string {
  return text.replace(/\/\/[^@/\s]+@/g, '//');
}

/** A NATS connection and the presence bucket on it. */
export interface NatsLink {
  readonly nc: NatsConnection;
  readonly kv: KV;
  /** Drains and closes the connection. */
  dispose(): Promise<void>;
}

/** Connects to NATS and opens (creating if needed) the presence bucket. Throws NJ_CONFIG_INVALID if NATS cannot be reached. */
export async function connectNats(cluster: Required<ClusterOptions>, logger: Logger): Promise<NatsLink> {
  const servers = (cluster.nats ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: `nightjar-gateway ${cluster.nodeId}`,
      maxReconnectAttempts: -1,
      ...(cluster.natsToken ? { token: cluster.natsToken } : {}),
    });
  } catch (cause) {
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot reach NATS: ${withoutCredentials(errorMessage(cause))}`, { cause });
  }
  try {
    const kv = await new Kvm(nc).create(cluster.presenceBucket, {
      ttl: cluster.presenceTtlMs,
      history: 1,
      maxValueSize: 64 * 1024,
      replicas: cluster.kvReplicas,
    });
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'disconnect' || s.type === 'reconnect') logger.warn(`NATS ${s.type}`, {});
    })().catch(() => undefined);
    return { nc, kv, dispose: () => nc.drain().catch(() => nc.close()) };
  } catch (cause) {
    await nc.close();
    throw new NightjarError(
      'NJ_CONFIG_INVALID',
      `cannot open the NATS key-value bucket ${cluster.presenceBucket}: ${errorMessage(cause)}`,
      {
        cause,
      },
    );
  }
}

/** The request rate limits of a cluster node with NATS: shared by the cluster, each with this node's fallback. */
export interface ClusterLimits {
  /** The link to the shared buckets and its outage state. */
  readonly shared: SharedLimits;
  /** options.rateLimit, per caller, for the whole cluster. */
  readonly limiter: RequestLimiter;
  /** options.unauthenticatedRateLimit, per address, for the whole cluster. */
  readonly unauthenticated: RequestLimiter;
}

/**
 * Opens (creating if needed) the shared rate-limit bucket (in memory, history 1, max age the
 * longest refill of the two limits: an absent entry is a full bucket) and builds the shared limits
 * on it, each falling back to a bucket of this node's while NATS is unreachable; every such take is
 * counted in `metrics`. Throws NJ_CONFIG_INVALID if the bucket cannot be opened.
 */
export async function clusterLimits(
  o: ResolvedGatewayOptions,
  cluster: Required<ClusterOptions>,
  link: NatsLink,
  metrics: GatewayMetrics,
  gatewayKeySeed: Uint8Array,
): Promise<ClusterLimits> {
  const { rateLimit: rate, unauthenticatedRateLimit: unauth, clock, logger } = o;
  const refillMs = Math.max(1000, ...[rate, unauth].map((l) => Math.ceil((l.burst / l.perSecond) * 1000)));
  let kv: KV;
  try {
    kv = await new Kvm(link.nc).create(cluster.limitsBucket, {
      ttl: refillMs,
      history: 1,
      maxValueSize: 256,
      storage: StorageType.Memory,
      replicas: cluster.kvReplicas,
    });
  } catch (cause) {
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot open the NATS key-value bucket ${cluster.limitsBucket}: ${errorMessage(cause)}`, {
      cause,
    });
  }
  const shared = new SharedLimits({
    kv,
    clock,
    logger,
    timeoutMs: cluster.rateLimitTimeoutMs,
    retryMs: cluster.rateLimitRetryMs,
    casAttempts: cluster.rateLimitCasAttempts,
    maxPending: cluster.rateLimitMaxPending,
    onFallback: (reason) => metrics.rateLimitFallbacks.inc({ reason }),
    keySecret: rateLimitKeySecret(gatewayKeySeed),
  });
  // The connection's own news of an outage spares the takes their timeout.
  void (async () => {
    for await (const s of link.nc.status()) {
      if (s.type === 'disconnect') shared.connectionLost('NATS disconnected');
      else if (s.type === 'reconnect') shared.connectionRestored();
    }
  })().catch(() => undefined);
  metrics.gauge(
    'nightjar_rate_limit_shared',
    "1 while this node's request rate limits are the cluster's shared buckets (NATS), 0 while it uses its own.",
    () => (shared.shared ? 1 : 0),
  );
  return {
    shared,
    limiter: shared.limiter('rate', rate, new RateLimiter({ clock, ...rate })),
    unauthenticated: shared.limiter('unauth', unauth, new RateLimiter({ clock, ...unauth })),
  };
}

/** What routing between nodes adds to a gateway. */
export interface ClusterRouting {
  readonly transport: NatsTransport;
  readonly network: NetworkDirectory;
  readonly presence: Presence;
  readonly remote: Directory<RemoteAgent>;
  /** Opens the presence watch and this node's subjects. */
  start(): Promise<void>;
}

/** The cluster's gauges: other nodes' agents known here, and messages from NATS dropped for failing their checks. */
export function clusterMetrics(metrics: GatewayMetrics, routing: ClusterRouting): void {
  metrics.gauge(
    'nightjar_cluster_remote_agents',
    'Agents connected to other gateway nodes, as the presence bucket says.',
    () => routing.remote.size,
  );
  metrics.gauge(
    'nightjar_cluster_rejected_messages',
    'Messages read from NATS (presence entries, the cluster wire) dropped for failing their checks.',
    () => routing.presence.rejected + routing.transport.rejected,
  );
}

/** Builds the presence, the other nodes' directory and the NATS transport (not started). */
export function clusterRouting(
  o: ResolvedGatewayOptions,
  cluster: Required<ClusterOptions>,
  link: NatsLink,
  local: Directory<AgentSession>,
  localCapacity: Event<void>,
  directoryOptions: DirectoryOptions,
  speeds: NatsTransportOptions['speeds'],
): ClusterRouting {
  const remote = new Directory<RemoteAgent>(directoryOptions);
  const limits = { maxMessageBytes: cluster.maxClusterMessageBytes };
  // The presence needs the transport (its RemoteAgents dispatch through it) and the transport the
  // presence's changes: the link is handed over once both exist.
  let transport: NatsTransport | null = null;
  const presence = new Presence({
    nodeId: cluster.nodeId,
    kv: link.kv,
    local,
    remote,
    link: {
      dispatch: (a, jobId, attempt, envelope, listener) => transport!.dispatch(a, jobId, attempt, envelope, listener),
      cancel: (a, jobId, attempt, reason) => transport!.cancel(a, jobId, attempt, reason),
      forget: (a, jobId, attempt) => transport!.forget(a, jobId, attempt),
    },
    clock: o.clock,
    logger: o.logger,
    ttlMs: cluster.presenceTtlMs,
    refreshMs: cluster.presenceRefreshMs,
    limits,
    maxRemoteAgents: cluster.maxRemoteAgents,
  });
  transport = new NatsTransport({
    nodeId: cluster.nodeId,
    nc: link.nc,
    local,
    remote,
    localCapacity,
    remoteChanged: presence.onChanged,
    clock: o.clock,
    logger: o.logger,
    subjectPrefix: cluster.subjectPrefix,
    attemptKeepaliveMs: cluster.attemptKeepaliveMs,
    attemptSilenceMs: cluster.attemptSilenceMs,
    dispatchTimeoutMs: cluster.dispatchTimeoutMs,
    receiptAckTimeoutMs: cluster.receiptAckTimeoutMs,
    limits,
    speeds,
  });
  const t = transport;
  return {
    transport: t,
    network: new NetworkDirectory(local, remote),
    presence,
    remote,
    async start() {
      t.start();
      await t.ready();
      await presence.start();
    },
  };
}
