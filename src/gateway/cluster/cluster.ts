/**
 * Cluster mode's parts as the gateway builds them from its resolved options: the node's liveness
 * (heartbeat and dead-node sweep on the shared database).
 */
import type { ClusterOptions, ResolvedGatewayOptions } from '../options.js';
import type { GatewayStore } from '../store/gateway-store.js';
import { NodeLiveness } from './node-liveness.js';

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
