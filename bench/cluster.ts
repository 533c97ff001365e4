/**
 * Cluster: three gateway nodes (each its own process) on the real PostgreSQL and NATS, simulated
 * agents and client streams whose agents sit on other nodes than their clients, against the same
 * load on one node; what a job costs on NATS and PostgreSQL; memory per idle agent connection of a
 * cluster node against a bare ws connection.
 */
import http from 'node:http';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { openPostgresStore, type GatewayStore } from '../src/gateway/index.js';
import { createScratchDatabase, type ScratchDatabase } from '../test/cluster/support/pg.js';
import { NATS_URL, scratchNats, type ScratchNats } from '../test/cluster/support/nats.js';
import { BENCH_MODEL, benchAgentKeys, type BenchAgentKeys } from './identities.js';
import { closeSession, idleMemory, latency, openSession, throughput, type RelayTarget, type Session } from './relay.js';
import { RelayStream, sealTo, type FakeAgent, type ProducerJob } from './relay-peers.js';
import { RelayProcess, connectAgents } from './relay-process.js';
import type { ClusterNodeConfig, SqlCounts } from './relay-server.js';
import { target, type AreaReport, type BenchContext } from './report.js';
import { fmt, fmtInt, fmtRatio, now, percentile, sleep } from './stats.js';

/** The two ways the same load is laid out. */
const TOPOLOGIES = ['one node', 'three nodes'] as const;
type Topology = (typeof TOPOLOGIES)[number];

/** Slots each simulated agent offers. */
const SLOTS = 4;
/** Chunks of a job in the jobs phase (a short reply), sent as soon as the agent has the job. */
const JOB_CHUNKS = 16;
/** Per-stream chunk rate offered in the latency phase: a 1B model on a Mac, about 100 tokens/s. */
const STREAM_RATE = 100;
/** Node ids, A first: in the one-node layout everything is on A. */
const NODES = ['a', 'b', 'c'] as const;
/** 1 credit per million prompt tokens, 2 per million completion tokens. */
const PRICE = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };

interface Settings {
  /** Simulated agents per layout. */
  agents: number;
  /** Concurrent streams per layout (stream i to agent i). */
  streams: number;
  phaseMs: number;
  /** Clients running jobs back to back in the jobs phase. */
  /** Clients running jobs back to back, one jobs phase per count and layout. */
  jobClients: readonly number[];
  jobsMs: number;
  idleConnections: number;
  idleWarmup: number;
  /** How long the idle agents stay connected before the second reading: presence refreshes are counted over it. */
  idleMs: number;
}

const FULL: Settings = {
  agents: 240,
  streams: 240,
  phaseMs: 3000,
  jobClients: [4, 32],
  jobsMs: 5000,
  idleConnections: 1000,
  idleWarmup: 100,
  idleMs: 6000,
};
const QUICK: Settings = {
  agents: 60,
  streams: 60,
  phaseMs: 1000,
  jobClients: [8],
  jobsMs: 2000,
  idleConnections: 300,
  idleWarmup: 50,
  idleMs: 5000,
};

/** Messages seen on the cluster's subjects, by kind. */
interface NatsCounts {
  /** Jobs sent to an agent's node (requests: each has one reply, counted in `replies`). */
  dispatch: number;
  /** Cancel and forget. */
  control: number;
  /** What an agent said about an attempt (accepted, chunks, done, keepalives), to the job's node. */
  attempt: number;
  /** Replies to the requests above (dispatch answers, receipt acknowledgements): one per request, not seen on the wire here. */
  replies: number;
  /** Bytes of the messages above (replies not seen). */
  bytes: number;
  /** Presence key-value puts (each also gets a JetStream ack and is delivered to every node watching the bucket). */
  presence: number;
  presenceBytes: number;
}

const NATS_FIELDS = ['dispatch', 'control', 'attempt', 'replies', 'bytes', 'presence', 'presenceBytes'] as const;
const zeroNats = (): NatsCounts => ({ dispatch: 0, control: 0, attempt: 0, replies: 0, bytes: 0, presence: 0, presenceBytes: 0 });
/** Messages a job's traffic puts on NATS (presence aside). */
const jobMessages = (c: NatsCounts): number => c.dispatch + c.control + c.attempt + c.replies;
const minusNats = (a: NatsCounts, b: NatsCounts): NatsCounts => {
  const out = zeroNats();
  for (const k of NATS_FIELDS) out[k] = a[k] - b[k];
  return out;
};

/** A subscriber on the run's subjects and presence bucket that counts what the nodes publish. */
async function natsCounter(nats: ScratchNats): Promise<{ counts: NatsCounts; close(): Promise<void> }> {
  const nc: NatsConnection = await connect({ servers: NATS_URL, name: 'nightjar bench counter' });
  const counts = zeroNats();
  const p = nats.prefix;
  nc.subscribe(`${p}.>`, {
    callback: (_err, m) => {
      const parts = m.subject.split('.');
      if (parts[1] === 'attempt') counts.attempt++;
      else if (parts[3] === 'dispatch') counts.dispatch++;
      else counts.control++;
      if (m.reply) counts.replies++;
      counts.bytes += m.data.length;
    },
  });
  nc.subscribe(`$KV.${nats.bucket}.>`, {
    callback: (_err, m) => {
      counts.presence++;
      counts.presenceBytes += m.data.length;
    },
  });
  await nc.flush();
  return { counts, close: () => nc.close() };
}

const SQL_FIELDS = ['writes', 'rowsChanged', 'reads', 'commits', 'attempts'] as const;
const zeroSql = (): SqlCounts => ({ writes: 0, rowsChanged: 0, reads: 0, commits: 0, attempts: 0 });
const combineSql = (a: SqlCounts, b: SqlCounts, sign: 1 | -1): SqlCounts => {
  const out = zeroSql();
  for (const k of SQL_FIELDS) out[k] = a[k] + sign * b[k];
  return out;
};

/** The three nodes' statements, summed. */
async function sqlOf(nodes: readonly RelayProcess[]): Promise<SqlCounts> {
  let sum = zeroSql();
  for (const n of nodes) sum = combineSql(sum, await n.sql(), 1);
  return sum;
}

/**
 * The ledger's setup: the bench model catalogued and priced, an operator, `keys` funded API keys and
 * `tokens` enrollment tokens. Clients get a key each (one key per stream, one per job client): a
 * key's holds are serializable transactions on its balance, and many jobs starting at once on one
 * key conflict (see the area's notes).
 */
async function seed(store: GatewayStore, keys: number, tokens: number): Promise<{ apiKeys: string[]; tokens: string[] }> {
  const t = Date.now();
  await store.catalog.addFile(
    BENCH_MODEL.id,
    { sha256: BENCH_MODEL.sha256, bytes: 1_000_000, name: 'synthetic-bench.gguf', quantization: 'Q4_0', contextLength: 4096 },
    t,
  );
  await store.accounts.setPrice(BENCH_MODEL.id, PRICE, t);
  const operator = await store.accounts.createOperator({ name: 'bench', now: t });
  const apiKeys: string[] = [];
  for (let i = 0; i < keys; i++) {
    const key = await store.accounts.createApiKey({ name: `bench-${i}`, now: t });
    await store.ledger.topUp(key.id, 10n ** 15n, t);
    apiKeys.push(key.key);
  }
  const out: string[] = [];
  for (let i = 0; i < tokens; i++) {
    out.push((await store.accounts.createEnrollmentToken({ operatorId: operator.id, now: t, ttlMs: 3600_000 })).token);
  }
  return { apiKeys, tokens: out };
}

/** Waits until every node lists `expected` agents serving the bench model (its own and, from the presence bucket, the others'). */
async function visibleEverywhere(urls: readonly string[], apiKey: string, expected: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (const url of urls) {
    for (;;) {
      const res = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
      const body = (await res.json()) as { models?: { id: string; agents: number }[] };
      const n = body.models?.find((m) => m.id === BENCH_MODEL.id)?.agents ?? 0;
      if (n >= expected) break;
      if (Date.now() > deadline) throw new Error(`${url} lists ${n} of ${expected} agents after 30 s`);
      await sleep(100);
    }
  }
}

/** One job phase's figures. */
interface JobFigures {
  layout: Topology;
  clients: number;
  jobs: number;
  failed: number;
  /** Failed jobs by what the client got. */
  errors: Record<string, number>;
  jobsPerSecond: number;
  chunksPerSecond: number;
  firstChunkMs: { p50: number; p99: number };
  cpuMicrosPerJob: number;
  sql: SqlCounts;
  nats: NatsCounts;
}

/**
 * Closed loop of short jobs: `clients` loops, each sealing a request to the next agent, posting it
 * to the node `urlFor` picks and reading the reply to its end; every agent answers a job with
 * {@link JOB_CHUNKS} chunks and a signed receipt at once. Counts what the nodes wrote and published.
 */
async function jobsPhase(
  s: Settings,
  layout: Topology,
  clients: number,
  target: RelayTarget,
  nodes: readonly RelayProcess[],
  nats: { counts: NatsCounts },
  agents: readonly FakeAgent[],
  urlFor: (agent: FakeAgent, n: number) => string,
  apiKeys: readonly string[],
): Promise<JobFigures> {
  for (const a of agents) {
    a.onJob = (job: ProducerJob) => {
      for (let i = 0; i < JOB_CHUNKS; i++) a.sendChunk(job);
      void a.finish(job);
    };
  }
  const pool = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const firstChunk: number[] = [];
  const errors: Record<string, number> = {};
  let jobs = 0;
  let failed = 0;
  let chunks = 0;
  let next = 0;
  const sqlBefore = await sqlOf(nodes);
  const natsBefore = { ...nats.counts };
  const cpuBefore = await target.cpuMicros();
  const start = now();
  const end = start + s.jobsMs;
  const loop = async (_: unknown, client: number): Promise<void> => {
    const apiKey = apiKeys[client % apiKeys.length]!;
    while (now() < end) {
      const n = next++;
      const agent = agents[n % agents.length]!;
      const sealed = await sealTo(agent, 'a short one');
      const stream = new RelayStream(sealed.jobId, agent);
      stream.onChunk = (st) => {
        chunks++;
        if (st.received === 1) firstChunk.push(now() - st.startedAt);
      };
      stream.start(urlFor(agent, n), sealed.envelope, pool, apiKey);
      const ended = await stream.ended;
      if (ended.done && !ended.error) jobs++;
      else {
        failed++;
        const why = ended.error ?? 'no done event';
        errors[why] = (errors[why] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  const elapsed = now() - start;
  // Settlements are written as the receipts arrive; give the last ones a moment.
  await sleep(500);
  const cpu = (await target.cpuMicros()) - cpuBefore;
  const sql = combineSql(await sqlOf(nodes), sqlBefore, -1);
  const natsDelta = minusNats({ ...nats.counts }, natsBefore);
  pool.destroy();
  for (const a of agents) a.onJob = null;
  return {
    layout,
    clients,
    jobs,
    failed,
    errors,
    jobsPerSecond: (jobs * 1000) / elapsed,
    chunksPerSecond: (chunks * 1000) / elapsed,
    firstChunkMs: { p50: percentile(firstChunk, 50), p99: percentile(firstChunk, 99) },
    cpuMicrosPerJob: cpu / Math.max(1, jobs),
    sql,
    nats: natsDelta,
  };
}

interface StreamFigures {
  chunksPerSecond: number;
  /** Chunks relayed over the closed loop (warm-up and drain included). */
  chunks: number;
  cpuMicrosPerChunk: number;
  latency: { p50: number; p99: number; samples: number };
  completed: number;
  errors: string[];
  nats: NatsCounts;
}

/** Runs the cluster area. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const s = ctx.quick ? QUICK : FULL;
  const db: ScratchDatabase = await createScratchDatabase('nj_bench');
  const nats = scratchNats();
  const nodes: RelayProcess[] = [];
  let counter: Awaited<ReturnType<typeof natsCounter>> | null = null;
  const agents = new Map<Topology, FakeAgent[]>();
  try {
    ctx.log(`making ${2 * s.agents + s.idleConnections + s.idleWarmup} agent identities and enrollment tokens`);
    const setup = await openPostgresStore({ connectionString: db.url });
    let seeded: { apiKeys: string[]; tokens: string[] };
    try {
      seeded = await seed(setup, Math.max(s.streams, ...s.jobClients), 2 * s.agents + s.idleConnections + s.idleWarmup);
    } finally {
      await setup.dispose();
    }
    const { apiKeys } = seeded;
    const tokens = [...seeded.tokens];
    const keys = async (n: number): Promise<BenchAgentKeys[]> => {
      const out: BenchAgentKeys[] = [];
      for (let i = 0; i < n; i++) out.push(await benchAgentKeys(SLOTS));
      return out;
    };
    const layoutKeys: Record<Topology, BenchAgentKeys[]> = { 'one node': await keys(s.agents), 'three nodes': await keys(s.agents) };
    const idleKeys = await keys(s.idleWarmup + s.idleConnections);

    const nodeConfig = (id: string): ClusterNodeConfig => ({
      postgres: db.url,
      cluster: { nodeId: `bench-${id}`, nats: NATS_URL, presenceBucket: nats.bucket, subjectPrefix: nats.prefix },
    });
    ctx.log('starting three nodes');
    for (const id of NODES) nodes.push(await RelayProcess.startClusterNode(nodeConfig(id)));
    counter = await natsCounter(nats);
    const cluster: RelayTarget = {
      kind: 'cluster',
      cpuMicros: async () => {
        let sum = 0;
        for (const n of nodes) sum += await n.cpuMicros();
        return sum;
      },
    };
    const nodeOf = new Map<FakeAgent, number>();
    for (const layout of TOPOLOGIES) {
      const list: FakeAgent[] = [];
      // One node: every agent on A. Three nodes: agent i on node i mod 3.
      for (let i = 0; i < s.agents; i++) {
        const node = layout === 'one node' ? 0 : i % NODES.length;
        const [a] = await connectAgents(nodes[node]!, [layoutKeys[layout][i]!], SLOTS, () => ({
          enrollToken: tokens.pop()!,
          heartbeat: true,
        }));
        nodeOf.set(a!, node);
        list.push(a!);
      }
      agents.set(layout, list);
    }
    await visibleEverywhere(
      nodes.map((n) => n.url),
      apiKeys[0]!,
      2 * s.agents,
    );
    // One node: clients on A. Three nodes: a stream's client on one of the two nodes its agent is not on.
    const urlFor = (layout: Topology) => (agent: FakeAgent, n: number) =>
      layout === 'one node' ? nodes[0]!.url : nodes[(nodeOf.get(agent)! + 1 + (n % 2)) % NODES.length]!.url;

    ctx.log(`${s.streams} streams per layout: opening`);
    const sessions = {} as Record<Topology, Session>;
    for (const layout of TOPOLOGIES) {
      sessions[layout] = await openSession(cluster, agents.get(layout)!, s.streams, {
        urlFor: urlFor(layout),
        apiKeyFor: (i) => apiKeys[i % apiKeys.length]!,
        // A few at a time: many holds at once conflict on the ledger (see the notes).
        wave: 4,
      });
    }
    // What the nodes spend with every agent and stream open and no chunk moving (heartbeats,
    // pings, presence refreshes): taken out of the CPU per chunk.
    const idleCpuStart = await cluster.cpuMicros();
    const idleStart = now();
    await sleep(s.phaseMs);
    const backgroundMicrosPerMs = ((await cluster.cpuMicros()) - idleCpuStart) / (now() - idleStart);
    const streams = {} as Record<Topology, StreamFigures>;
    for (const layout of TOPOLOGIES) {
      const before = { ...counter.counts };
      const t = await throughput(sessions[layout], s.phaseMs);
      streams[layout] = {
        chunksPerSecond: t.chunksPerSecond,
        chunks: t.chunks,
        cpuMicrosPerChunk: Math.max(0, t.cpuMicros - backgroundMicrosPerMs * t.ms) / t.chunks,
        latency: { p50: 0, p99: 0, samples: 0 },
        completed: 0,
        errors: [],
        nats: minusNats({ ...counter.counts }, before),
      };
      ctx.log(`${layout}: ${fmt(t.chunksPerSecond)} chunks/s, ${fmt(streams[layout].cpuMicrosPerChunk)} µs of the nodes' CPU per chunk`);
    }
    const offeredRate = Math.min(s.streams * STREAM_RATE, 0.4 * Math.min(...TOPOLOGIES.map((l) => streams[l].chunksPerSecond)));
    for (const layout of TOPOLOGIES) {
      const samples = await latency(sessions[layout], offeredRate, s.phaseMs);
      streams[layout].latency = { p50: percentile(samples, 50), p99: percentile(samples, 99), samples: samples.length };
      ctx.log(
        `${layout}: chunk p50 ${fmt(percentile(samples, 50))} ms, p99 ${fmt(percentile(samples, 99))} ms at ${fmt(offeredRate)} chunks/s`,
      );
    }
    for (const layout of TOPOLOGIES) {
      const closed = await closeSession(sessions[layout]);
      streams[layout].completed = closed.completed;
      streams[layout].errors = closed.errors;
    }

    const jobs: JobFigures[] = [];
    for (const clients of s.jobClients) {
      for (const layout of TOPOLOGIES) {
        ctx.log(`${layout}: jobs of ${JOB_CHUNKS} chunks, ${clients} clients back to back for ${s.jobsMs / 1000} s`);
        const j = await jobsPhase(s, layout, clients, cluster, nodes, counter, agents.get(layout)!, urlFor(layout), apiKeys);
        jobs.push(j);
        ctx.log(
          `${layout}, ${clients} clients: ${fmt(j.jobsPerSecond)} jobs/s (${j.failed} failed), ` +
            `first chunk p50 ${fmt(j.firstChunkMs.p50)} ms, ` +
            `${fmt(j.sql.writes / j.jobs)} SQL writes and ${fmt(jobMessages(j.nats) / j.jobs)} NATS messages per job`,
        );
      }
    }
    const logged: Record<string, number> = {};
    for (const n of nodes) for (const [m, c] of Object.entries(await n.logged())) logged[m] = (logged[m] ?? 0) + c;
    for (const list of agents.values()) for (const a of list) a.close();
    agents.clear();
    for (const n of nodes.splice(0)) await n.close();

    ctx.log(`memory of ${s.idleConnections} idle agent connections (after ${s.idleWarmup} to warm up)`);
    const idleTokens = tokens.splice(0, s.idleWarmup + s.idleConnections);
    const idleOptions = { warmup: s.idleWarmup, idleMs: s.idleMs, readings: 4 };
    const presenceBefore = { ...counter.counts };
    const idleStarted = now();
    const clusterMemory = await idleMemory(() => RelayProcess.startClusterNode(nodeConfig('idle')), idleKeys, {
      ...idleOptions,
      agentOptions: (i) => ({ enrollToken: idleTokens[i]!, heartbeat: true }),
    });
    const presenceWrites = counter.counts.presence - presenceBefore.presence;
    const presenceBytes = counter.counts.presenceBytes - presenceBefore.presenceBytes;
    const idleSeconds = (now() - idleStarted) / 1000;
    const bareMemory = await idleMemory(() => RelayProcess.start('forwarder'), idleKeys, { ...idleOptions, idleMs: 500 });
    const singleMemory = await idleMemory(() => RelayProcess.start('gateway'), idleKeys, {
      ...idleOptions,
      idleMs: 500,
      agentOptions: () => ({ heartbeat: true }),
    });

    return report(s, {
      backgroundMicrosPerMs,
      streams,
      offeredRate,
      jobs,
      clusterMemory,
      bareMemory,
      singleMemory,
      presenceWrites,
      presenceBytes,
      idleSeconds,
      logged,
    });
  } finally {
    for (const list of agents.values()) for (const a of list) a.close();
    for (const n of nodes) await n.close().catch(() => undefined);
    await counter?.close().catch(() => undefined);
    await nats.drop().catch(() => undefined);
    await db.drop().catch(() => undefined);
  }
}

interface Memory {
  rssPerConnection: number;
  heapPerConnection: number;
  connections: number;
  /** The node's CPU over the idle window ÷ agents ÷ seconds. */
  cpuMicrosPerAgentSecond: number;
}

interface Figures {
  /** The three nodes' CPU with every agent and stream open and idle, µs per ms (thousandths of a core). */
  backgroundMicrosPerMs: number;
  streams: Record<Topology, StreamFigures>;
  offeredRate: number;
  jobs: JobFigures[];
  clusterMemory: Memory;
  bareMemory: Memory;
  singleMemory: Memory;
  /** Key-value writes seen while the idle node ran (connects, heartbeats, refreshes). */
  presenceWrites: number;
  presenceBytes: number;
  idleSeconds: number;
  /** The three nodes' warnings and errors over the streams and jobs phases, by message. */
  logged: Record<string, number>;
}

function report(s: Settings, f: Figures): AreaReport {
  const kb = (bytes: number): string => `${fmt(bytes / 1024)} KiB`;
  const signed = (ms: number): string => (ms < 0 ? `−${fmt(-ms)}` : `+${fmt(ms)}`);
  const rssRatio = f.clusterMemory.rssPerConnection / f.bareMemory.rssPerConnection;
  const heapRatio = f.clusterMemory.heapPerConnection / f.bareMemory.heapPerConnection;
  const notes: string[] = [];
  for (const layout of TOPOLOGIES) {
    const st = f.streams[layout];
    if (st.completed !== s.streams || st.errors.length > 0) {
      notes.push(
        `${layout}: ${st.completed} of ${s.streams} streams ended with a verified done; ` +
          `errors: ${st.errors.slice(0, 3).join(', ') || 'none'}.`,
      );
    }
  }
  for (const j of f.jobs) {
    if (j.failed > 0) {
      const why = Object.entries(j.errors).map(([e, n]) => `${n} × ${e}`);
      notes.push(`${j.layout}, ${j.clients} clients: ${j.failed} of ${j.jobs + j.failed} jobs failed (${why.join(', ')}).`);
    }
  }
  const logLines = Object.entries(f.logged).map(([m, n]) => `${n} × "${m}"`);
  if (logLines.length > 0) notes.push(`The three nodes logged, over the streams and jobs phases: ${logLines.join(', ')}.`);
  const perJob = (x: number, j: JobFigures): string => fmt(x / Math.max(1, j.jobs));
  const ended = f.jobs.reduce((n, j) => n + j.jobs, 0) + TOPOLOGIES.reduce((n, l) => n + f.streams[l].completed, 0);
  const started = f.jobs.reduce((n, j) => n + j.jobs + j.failed, 0) + TOPOLOGIES.length * s.streams;
  const idleAgents = f.clusterMemory.connections + s.idleWarmup;
  return {
    title: 'Cluster: three nodes on PostgreSQL and NATS against one, and memory per idle agent connection',
    method: [
      'Three gateway nodes, each in its own process (bench/relay-server.ts `cluster`), on the real PostgreSQL (a scratch database, ' +
        'dropped after) and NATS with JetStream (a presence bucket and subject prefix of this run), with the bench limits ' +
        '(`BENCH_GATEWAY_LIMITS`). The bench model is catalogued and priced, every simulated agent is enrolled (an enrollment ' +
        'token binds it to an operator) and heartbeats at the interval its welcome names, and every client sends a funded API ' +
        'key: each job places a hold and settles on its verified receipt, as a paid job does.',
      `Simulated agents are the relay area's (bench/relay-peers.ts: the protocol's real frames, real keys, a real signed receipt ` +
        `per job); clients are plain node:http requests with a sealed envelope, all in the measuring process on this machine. ` +
        `Two layouts of ${s.agents} agents each, both connected for the whole run: **one node** (every agent and every client on ` +
        `node A: the job never leaves it) and **three nodes** (agent i on node i mod 3, each stream's client on one of the two ` +
        `nodes its agent is not on: every job, chunk and receipt crosses NATS).`,
      `Streams: ${s.streams} per layout, opened together. Chunks/s in a closed loop (256 chunks in flight) over ${s.phaseMs / 1000} s, ` +
        `counted over its last 80%, and the nodes' CPU time (all three processes, user + system) per chunk, ` +
        `less what they spent over ${s.phaseMs / 1000} s with every agent and stream open and nothing sent ` +
        `(${fmt(f.backgroundMicrosPerMs / 1000, 2)} of a core: heartbeats, pings, presence refreshes); then the latency of each ` +
        `chunk from the agent's send to the client's parse in an open loop at ${fmt(f.offeredRate)} chunks/s over ${s.phaseMs / 1000} s ` +
        `(${STREAM_RATE} chunks/s per stream, at most 40% of the slower layout's closed-loop rate, the same rate for both).`,
      `Jobs: ${s.jobClients.join(' and then ')} clients back to back for ${s.jobsMs / 1000} s, ` +
        'each job sealed to the next agent; an agent answers with ' +
        `${JOB_CHUNKS} chunks and its receipt at once. Time to first chunk from the client's POST. PostgreSQL: every statement the ` +
        'three nodes ran over the phase, counted in their drivers (INSERT, UPDATE, DELETE as writes; committed transactions), ÷ jobs ' +
        "completed (a transaction retried after a serialization conflict counts its statements again); it includes the nodes' own " +
        'heartbeats (one write per node every 5 s) and sweeps. NATS: every message published on the run’s subjects, counted by a ' +
        'subscriber on `<prefix>.>`, plus one reply for each request (dispatch, receipt), ÷ jobs completed; presence puts ' +
        '(`$KV.<bucket>.>`) separately, as a rate: they come from every connected agent, not from jobs.',
      `Memory per idle agent connection: a fresh cluster node (its own process, on the same database and NATS), ${s.idleWarmup} agents ` +
        `connected first to warm it up, then a reading (RSS and V8 heap after two full GCs), then ${s.idleConnections} more enrolled, ` +
        `heartbeating agents, ${s.idleMs / 1000} s idle, four more readings a second apart (the one with the least heap counts: ` +
        `a round of presence writes in flight holds memory for a moment): the difference ÷ ${s.idleConnections}. The same for the ` +
        "relay area's bare forwarder (a bare ws connection: no handshake crypto, no session, no directory) and for the embedded " +
        'gateway (no store given, no NATS), with the same agents. Presence writes are counted over the idle node’s run.',
      'Everything shares this machine’s 2 cores: three nodes, PostgreSQL, NATS and the measuring process. The figures are what one ' +
        'machine carries for all of them, not what three machines would; the ratios between layouts hold the machine alike.',
    ],
    tables: [
      {
        title: `Streams (${s.streams} per layout)`,
        columns: [
          'layout',
          'chunks/s (closed loop)',
          "nodes' CPU µs per chunk",
          `chunk latency p50 / p99, ms (${fmt(f.offeredRate)} chunks/s)`,
          'added by crossing nodes p50 / p99',
          'NATS messages per chunk (closed loop, presence aside)',
        ],
        rows: TOPOLOGIES.map((l) => {
          const st = f.streams[l];
          const o = f.streams['one node'];
          return [
            l,
            fmt(st.chunksPerSecond),
            fmt(st.cpuMicrosPerChunk),
            `${fmt(st.latency.p50)} / ${fmt(st.latency.p99)}`,
            l === 'one node' ? '' : `${signed(st.latency.p50 - o.latency.p50)} / ${signed(st.latency.p99 - o.latency.p99)}`,
            fmt(jobMessages(st.nats) / Math.max(1, st.chunks)),
          ];
        }),
      },
      {
        title: `Jobs (${JOB_CHUNKS} chunks each, clients back to back for ${s.jobsMs / 1000} s)`,
        columns: [
          'layout',
          'clients',
          'jobs (failed)',
          'jobs/s',
          'chunks/s',
          'first chunk p50 / p99, ms',
          "nodes' CPU ms per job",
          'PostgreSQL writes / commits / reads per job',
          'transaction runs per commit (retries after conflicts)',
          'rows changed per job',
          'NATS messages per job (dispatch, attempt, control, replies)',
          'NATS bytes per job',
          'presence puts/s over the phase',
        ],
        rows: f.jobs.map((j) => {
          return [
            j.layout,
            fmtInt(j.clients),
            `${fmtInt(j.jobs)} (${fmtInt(j.failed)})`,
            fmt(j.jobsPerSecond),
            fmt(j.chunksPerSecond),
            `${fmt(j.firstChunkMs.p50)} / ${fmt(j.firstChunkMs.p99)}`,
            fmt(j.cpuMicrosPerJob / 1000),
            `${perJob(j.sql.writes, j)} / ${perJob(j.sql.commits, j)} / ${perJob(j.sql.reads, j)}`,
            fmt(j.sql.attempts / Math.max(1, j.sql.commits)),
            perJob(j.sql.rowsChanged, j),
            `${perJob(jobMessages(j.nats), j)} (${perJob(j.nats.dispatch, j)}, ${perJob(j.nats.attempt, j)}, ` +
              `${perJob(j.nats.control, j)}, ${perJob(j.nats.replies, j)})`,
            fmtInt(j.nats.bytes / Math.max(1, j.jobs)),
            fmt(j.nats.presence / (s.jobsMs / 1000)),
          ];
        }),
      },
      {
        title: `Memory per idle agent connection (${f.clusterMemory.connections} connections after ${s.idleWarmup})`,
        columns: ['', 'RSS per connection', 'V8 heap per connection', 'RSS ÷ bare', 'heap ÷ bare', 'CPU µs per idle agent per second'],
        rows: (
          [
            ['cluster node (PostgreSQL, NATS presence; enrolled, heartbeating)', f.clusterMemory],
            ['embedded gateway (no store given, no NATS; heartbeating)', f.singleMemory],
            ['bare ws connection (the relay area’s forwarder)', f.bareMemory],
          ] satisfies [string, Memory][]
        ).map(([name, m]) => [
          name,
          kb(m.rssPerConnection),
          kb(m.heapPerConnection),
          fmtRatio(m.rssPerConnection / f.bareMemory.rssPerConnection),
          fmtRatio(m.heapPerConnection / f.bareMemory.heapPerConnection),
          fmt(m.cpuMicrosPerAgentSecond),
        ]),
      },
      {
        title: 'Presence on NATS while the idle node ran',
        columns: ['agents', 'seconds', 'key-value puts', 'puts per agent per second', 'bytes per put'],
        rows: [
          [
            fmtInt(idleAgents),
            fmt(f.idleSeconds),
            fmtInt(f.presenceWrites),
            fmt(f.presenceWrites / idleAgents / f.idleSeconds),
            fmtInt(f.presenceBytes / Math.max(1, f.presenceWrites)),
          ],
        ],
      },
    ],
    targets: [
      target(
        'memory per idle agent connection, cluster node ÷ bare ws connection (RSS)',
        `${kb(f.clusterMemory.rssPerConnection)} vs ${kb(f.bareMemory.rssPerConnection)}: ` +
          `${fmtRatio(rssRatio)} (heap ${fmtRatio(heapRatio)})`,
        '≤ 2×',
        rssRatio <= 2,
        `V8 heap per connection ${kb(f.clusterMemory.heapPerConnection)} against ${kb(f.bareMemory.heapPerConnection)} bare`,
      ),
      target(
        'jobs and streams across nodes ended with a verified receipt',
        `${fmtInt(ended)} of ${fmtInt(started)}`,
        'all',
        ended === started,
        notes.join(' '),
      ),
    ],
    notes,
    data: { settings: s, ...f },
  };
}
