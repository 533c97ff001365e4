/**
 * A billed network with a fault proxy on every link, for the reliability scenarios (issue 17): a
 * real gateway on a real SQLite ledger (a priced, catalogued model, an operator, a funded key),
 * real agents with the fake engine each reaching the gateway through a proxy of its own, and
 * SDK clients reaching it through the client proxy. {@link FaultyNet.reconcile} checks what no
 * fault may break: the ledger's invariants, nothing held, and the agents' receipts against the
 * ledger's settlements, exactly.
 */
import path from 'node:path';
import { NightjarClient, type NightjarClientOptions } from '../../../src/client/index.js';
import { Agent, type AgentOptions, type InferenceEngine } from '../../../src/main/agent/index.js';
import { ACCOUNTS, Gateway, openSqliteStore, type GatewayOptions, type GatewayStore } from '../../../src/gateway/index.js';
import { Emitter, generateIdentity, type SignedReceipt } from '../../../src/shared/index.js';
import { onceTrue } from '../../helpers/events.js';
import { startFaultProxy, type FaultProxy, type FaultProxyOptions } from '../../helpers/fault-proxy.js';
import { closableFetch, type ClosableFetch } from '../../helpers/http-client.js';
import { agentServing } from '../../helpers/network.js';
import { REAL_FILE, REAL_MODEL, REAL_PRICE, tempDir } from '../../gateway/support/net.js';

/** Credits the client key starts with. */
export const FUNDS = 10_000_000n;

/** An agent of the network, its link through a proxy. */
export interface FaultyAgent {
  readonly agent: Agent;
  readonly agentId: string;
  /** The proxy between this agent and the gateway. */
  readonly link: FaultProxy;
  /** Every receipt the agent signed, in order. */
  readonly receipts: SignedReceipt[];
  /** Resolves once the agent has signed `count` receipts. */
  receiptsSigned(count: number): Promise<void>;
}

/** What {@link FaultyNet.reconcile} found. */
export interface Reconciliation {
  /** Broken promises: must be empty. */
  problems: string[];
  /** Receipts of an attempt the job did not settle on (an agent cut off before its first chunk, the job failed over). */
  unpaid: string[];
  /** Jobs settled. */
  settled: number;
}

/** Options of {@link startFaultyNet}. */
export interface FaultyNetOptions {
  /** Gateway options (port, store and allowSynthetic are set here). Defaults to none. */
  gateway?: GatewayOptions;
  /** Options of the client proxy (its target is set here). Defaults to none. */
  clientProxy?: Partial<FaultProxyOptions>;
  /** SQLite busy timeout of the gateway's store. Defaults to the driver's (5000 ms). */
  busyTimeoutMs?: number;
}

/** The network. */
export interface FaultyNet {
  readonly gateway: Gateway;
  readonly store: GatewayStore;
  /** The SQLite file. */
  readonly file: string;
  readonly operatorId: string;
  readonly key: { id: string; key: string };
  /** The proxy between clients and the gateway. */
  readonly clientLink: FaultProxy;
  readonly agents: FaultyAgent[];
  /** Starts an agent through a proxy of its own, enrolled to the operator, and waits until it serves. */
  addAgent(engine: InferenceEngine, options?: Partial<AgentOptions> & { proxy?: Partial<FaultProxyOptions> }): Promise<FaultyAgent>;
  /** A client through the client proxy, with the funded key and a fetch of its own (closed with the network). */
  client(options?: Partial<NightjarClientOptions>): NightjarClient;
  /**
   * What no fault may break, as problems (none: `[]`): the ledger's invariants; no credit still
   * held; every job an agent signed a receipt for settled, on exactly one receipt of the attempt
   * it settled, for that receipt's tokens; every settled job backed by a receipt; the client's
   * spending equal to the charges, and the operator holding its share of each. Receipts of other
   * attempts of a settled job are listed as unpaid.
   */
  reconcile(): Promise<Reconciliation>;
  close(): Promise<void>;
}

/** Starts the network in a fresh temp folder (removed at close). */
export async function startFaultyNet(options: FaultyNetOptions = {}): Promise<FaultyNet> {
  const tmp = await tempDir('nightjar-rel-');
  const file = path.join(tmp.dir, 'gateway.db');
  const store = await openSqliteStore({
    path: file,
    ...(options.busyTimeoutMs !== undefined ? { busyTimeoutMs: options.busyTimeoutMs } : {}),
  });
  const now = Date.now();
  await store.catalog.addFile(REAL_MODEL.id, REAL_FILE, now);
  await store.accounts.setPrice(REAL_MODEL.id, REAL_PRICE, now);
  const operator = await store.accounts.createOperator({ name: 'Ada', now });
  const key = await store.accounts.createApiKey({ name: 'client', now });
  await store.ledger.topUp(key.id, FUNDS, now);
  const gateway = await Gateway.start({ port: 0, allowSynthetic: true, store, ...options.gateway });
  const gatewayPort = Number(new URL(gateway.url).port);
  const clientLink = await startFaultProxy({ ...options.clientProxy, targetPort: gatewayPort });
  const agents: FaultyAgent[] = [];
  const proxies: FaultProxy[] = [clientLink];
  const fetches: ClosableFetch[] = [];

  const net: FaultyNet = {
    gateway,
    store,
    file,
    operatorId: operator.id,
    key: { id: key.id, key: key.key },
    clientLink,
    agents,
    async addAgent(engine, o = {}) {
      const { proxy: proxyOptions, ...agentOptions } = o;
      const link = await startFaultProxy({ seed: agents.length + 2, ...proxyOptions, targetPort: gatewayPort });
      proxies.push(link);
      const token = await store.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3600_000 });
      const receipts: SignedReceipt[] = [];
      const signed = new Emitter<void>();
      const agent = await Agent.create({
        gatewayUrl: `ws://127.0.0.1:${link.port}/v1/agent`,
        identity: await generateIdentity(),
        engine,
        model: REAL_MODEL,
        backoff: { initialMs: 50, maxMs: 200 },
        stopGraceMs: 100,
        enrollToken: token.token,
        recordReceipt: (r) => {
          receipts.push(r);
          signed.fire();
        },
        ...agentOptions,
      });
      agent.start();
      await agentServing(gateway, agent.agentId, 10_000);
      const entry: FaultyAgent = {
        agent,
        agentId: agent.agentId,
        link,
        receipts,
        receiptsSigned: (count) => onceTrue(signed.event, () => receipts.length >= count, `the agent to sign ${count} receipt(s)`, 10_000),
      };
      agents.push(entry);
      return entry;
    },
    client(o = {}) {
      const f = closableFetch();
      fetches.push(f);
      return new NightjarClient({
        gatewayUrl: `http://127.0.0.1:${clientLink.port}`,
        apiKey: key.key,
        trust: { allowSynthetic: true },
        fetch: f.fetch,
        ...o,
      });
    },
    async reconcile() {
      const problems = [...(await store.ledger.checkInvariants())];
      const unpaid: string[] = [];
      const client = await store.ledger.clientBalance(key.id);
      if (client.held !== 0n) problems.push(`${client.held} credits are still held`);
      const byJob = new Map<string, { agentId: string; r: SignedReceipt }[]>();
      for (const a of agents)
        for (const r of a.receipts) byJob.set(r.receipt.jobId, [...(byJob.get(r.receipt.jobId) ?? []), { agentId: a.agentId, r }]);
      let charged = 0n;
      let operatorShare = 0n;
      for (const [jobId, signed] of byJob) {
        const job = await store.ledger.job(jobId);
        if (!job) {
          problems.push(`job ${jobId}: the ledger has no row for a signed receipt`);
          continue;
        }
        if (job.status !== 'settled') {
          problems.push(`job ${jobId}: ${signed.length} receipt(s) signed, the job is ${job.status} (${job.outcome ?? ''})`);
          continue;
        }
        charged += job.charged ?? 0n;
        operatorShare += job.operatorAmount ?? 0n;
        const mine = signed.filter((s) => s.agentId === job.agentId && s.r.receipt.attempt === job.attempt);
        if (mine.length !== 1) problems.push(`job ${jobId}: ${mine.length} receipts for the attempt it settled`);
        for (const s of signed)
          if (!mine.includes(s)) unpaid.push(`job ${jobId} attempt ${s.r.receipt.attempt} (${s.r.receipt.completionTokens} tokens)`);
        const r = mine[0]?.r.receipt;
        // A cancelled job bills at most the chunks the client was given; any other, its receipt exactly.
        const cut = r?.finishReason === 'cancelled' && (job.completionTokens ?? 0) <= r.completionTokens;
        if (r && (job.promptTokens !== r.promptTokens || (job.completionTokens !== r.completionTokens && !cut))) {
          problems.push(
            `job ${jobId}: settled ${job.promptTokens}+${job.completionTokens} tokens, ` +
              `the receipt says ${r.promptTokens}+${r.completionTokens}`,
          );
        }
      }
      const settled = await store.ledger.receipts(operator.id, { limit: 10_000 });
      for (const job of settled) if (!byJob.has(job.jobId)) problems.push(`job ${job.jobId} settled without a receipt an agent signed`);
      if (FUNDS - client.balance !== charged) problems.push(`the client spent ${FUNDS - client.balance}, the receipts charged ${charged}`);
      const paid = await store.ledger.balance(ACCOUNTS.operator(operator.id));
      if (paid !== operatorShare) problems.push(`the operator holds ${paid}, its share of the receipts is ${operatorShare}`);
      return { problems, unpaid, settled: settled.length };
    },
    async close() {
      await Promise.all(agents.map((a) => a.agent.dispose()));
      await Promise.all(fetches.map((f) => f.close()));
      await gateway.dispose();
      await Promise.all(proxies.map((p) => p.close()));
      await store.dispose();
      await tmp.remove();
    },
  };
  return net;
}
