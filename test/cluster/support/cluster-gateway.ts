/**
 * A cluster gateway node in a process of its own, for a test to kill (SIGKILL) mid-stream:
 * `cluster-gateway.ts CONFIG_JSON`, where the JSON names the PostgreSQL URL, the node id, NATS and
 * the cluster's bucket and subject prefix. It prints its URLs as one JSON line and runs until it is
 * killed (SIGTERM stops it gracefully).
 */
import { Gateway, openPostgresStore, type ClusterOptions } from '../../../src/gateway/index.js';

interface NodeConfig {
  postgres: string;
  cluster: ClusterOptions;
}

const config = JSON.parse(process.argv[2] ?? 'null') as NodeConfig | null;
if (!config) throw new Error('usage: cluster-gateway.ts CONFIG_JSON');
const store = await openPostgresStore({ connectionString: config.postgres });
const gateway = await Gateway.start({ port: 0, store, cluster: config.cluster, agentReturnMs: 30_000 });
process.stdout.write(JSON.stringify({ url: gateway.url, agentUrl: gateway.agentUrl, nodeId: gateway.nodeId }) + '\n');
process.once('SIGTERM', () => {
  void gateway
    .dispose()
    .then(() => store.dispose())
    .finally(() => process.exit(0));
});
