/**
 * The relay under test, in its own process: `node relay-server.js gateway [backlog]` runs the real
 * gateway; `node relay-server.js forwarder` runs the baseline, a bare forwarder with the very same
 * transports and wire format (agents on a WebSocket, clients on HTTP with an NDJSON reply) and
 * nothing else: no handshake crypto, no validation, no digests, no timers, no receipt checks —
 * parse the frame, find the job, write the line. `node relay-server.js cluster CONFIG_JSON` runs
 * one cluster node (PostgreSQL and NATS, {@link ClusterNodeConfig}) whose driver counts the
 * statements it runs.
 *
 * It tells its parent where it listens over IPC and answers memory questions (after two full GCs;
 * start it with --expose-gc).
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  Gateway,
  migrate,
  openPostgresDriver,
  storeOn,
  type ClusterOptions,
  type GatewayStore,
  type SqlDriver,
  type SqlExecutor,
} from '../src/gateway/index.js';
import type { Logger, LogFields } from '../src/shared/index.js';
import { BENCH_GATEWAY_LIMITS } from './stats.js';

/** Messages from the parent. */
export type RelayServerRequest = { type: 'memory' } | { type: 'cpu' } | { type: 'sql' } | { type: 'logged' } | { type: 'close' };

/** What a cluster node is started with. */
export interface ClusterNodeConfig {
  /** The PostgreSQL database (a scratch one per run). */
  postgres: string;
  cluster: ClusterOptions;
}

/** Statements a cluster node's driver ran, by what they do; transactions it committed. */
export interface SqlCounts {
  /** INSERT, UPDATE and DELETE statements (an upsert counts once). */
  writes: number;
  /** Rows those statements changed. */
  rowsChanged: number;
  reads: number;
  /** Serializable transactions committed (each may hold several statements), plus unflushed single-statement commits. */
  commits: number;
  /** Runs of a serializable transaction's body, retries after a conflict included (statements of every run are counted). */
  attempts: number;
}

/** Messages to the parent. */
export type RelayServerMessage =
  | { type: 'ready'; url: string; agentUrl: string }
  | { type: 'memory'; rss: number; heapUsed: number; external: number; arrayBuffers: number; agents: number }
  /** CPU time this process has used, user + system, in microseconds. */
  | { type: 'cpu'; micros: number }
  | ({ type: 'sql' } & SqlCounts)
  /** A cluster node's warnings and errors so far, by message. */
  | { type: 'logged'; counts: Record<string, number> };

interface Relay {
  url: string;
  agentUrl: string;
  agents(): number;
  sql?(): SqlCounts;
  logged?(): Record<string, number>;
  close(): Promise<void>;
}

async function gateway(listenBacklog: number | undefined): Promise<Relay> {
  const g = await Gateway.start({ port: 0, allowSynthetic: true, shutdownGraceMs: 0, ...BENCH_GATEWAY_LIMITS, listenBacklog });
  return { url: g.url, agentUrl: g.agentUrl, agents: () => g.directory.size, close: () => g.dispose() };
}

/** `driver` with every statement counted into `counts`, inside transactions too. */
function countingDriver(driver: SqlDriver, counts: SqlCounts): SqlDriver {
  const count = (sql: string, changed: number | null): void => {
    if (/^\s*(INSERT|UPDATE|DELETE)\b/i.test(sql)) {
      counts.writes++;
      counts.rowsChanged += changed ?? 0;
    } else counts.reads++;
  };
  const wrap = (x: SqlExecutor): SqlExecutor => ({
    all: async (sql, values) => {
      const rows = await x.all(sql, values);
      count(sql, /\bRETURNING\b/i.test(sql) ? rows.length : 0);
      return rows;
    },
    get: async (sql, values) => {
      const row = await x.get(sql, values);
      count(sql, row === undefined ? 0 : 1);
      return row;
    },
    run: async (sql, values) => {
      const changed = await x.run(sql, values);
      count(sql, changed);
      return changed;
    },
  });
  return {
    ...wrap(driver),
    dialect: driver.dialect,
    transaction: async (fn) => {
      const result = await driver.transaction((tx) => {
        counts.attempts++;
        return fn(wrap(tx));
      });
      counts.commits++;
      return result;
    },
    runUnflushed: async (sql, values) => {
      const changed = await driver.runUnflushed(sql, values);
      count(sql, changed);
      counts.commits++;
      return changed;
    },
    script: (sql) => driver.script(sql),
    dispose: () => driver.dispose(),
    [Symbol.asyncDispose]: () => driver.dispose(),
  };
}

/** Lines of one message printed before the rest are only counted. */
const PRINTED_PER_MESSAGE = 2;

/**
 * Warnings and errors, counted by message into `counts`; the first few of each printed to stderr as
 * JSON lines, so a failed run says why. Nothing below a warning.
 */
function countingLogger(fields: LogFields, counts: Record<string, number>): Logger {
  const line = (level: string, message: string, more?: LogFields): void => {
    const n = (counts[`${level}: ${message}`] = (counts[`${level}: ${message}`] ?? 0) + 1);
    if (n <= PRINTED_PER_MESSAGE) process.stderr.write(JSON.stringify({ level, message, ...fields, ...more }) + '\n');
  };
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (message, more) => line('warn', message, more),
    error: (message, more) => line('error', message, more),
    child: (more) => countingLogger({ ...fields, ...more }, counts),
  };
}

/** A cluster node on PostgreSQL and NATS, with the bench's limits, its statements counted. */
async function clusterNode(config: ClusterNodeConfig): Promise<Relay> {
  const counts: SqlCounts = { writes: 0, rowsChanged: 0, reads: 0, commits: 0, attempts: 0 };
  const logged: Record<string, number> = {};
  const driver = countingDriver(await openPostgresDriver({ connectionString: config.postgres }), counts);
  await migrate(driver, Date.now());
  const store: GatewayStore = storeOn(driver);
  const g = await Gateway.start({
    port: 0,
    store,
    cluster: config.cluster,
    logger: countingLogger({ node: config.cluster.nodeId ?? null }, logged),
    allowSynthetic: true,
    shutdownGraceMs: 0,
    ...BENCH_GATEWAY_LIMITS,
  });
  return {
    url: g.url,
    agentUrl: g.agentUrl,
    agents: () => g.directory.size,
    sql: () => ({ ...counts }),
    logged: () => ({ ...logged }),
    async close() {
      await g.dispose();
      await store.dispose();
    },
  };
}

interface ForwardedJob {
  res: http.ServerResponse;
  agentId: string;
  replySalt: string | null;
  started: boolean;
}

async function forwarder(): Promise<Relay> {
  const producers = new Map<string, WebSocket>();
  const jobs = new Map<string, ForwardedJob>();
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/jobs') {
      res.writeHead(404).end();
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const { envelope } = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
        envelope: { header: { jobId: string; recipients: { agentId: string }[] } };
      };
      const jobId = envelope.header.jobId;
      const agentId = envelope.header.recipients[0]!.agentId;
      const producer = producers.get(agentId);
      if (!producer) {
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      jobs.set(jobId, { res, agentId, replySalt: null, started: false });
      res.on('close', () => jobs.delete(jobId));
      producer.send(JSON.stringify({ v: 1, type: 'job', jobId, attempt: 0, envelope }));
    });
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  wss.on('connection', (socket) => {
    let agentId: string | null = null;
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data)) as {
        type: string;
        jobId?: string;
        seq?: number;
        data?: string;
        replySalt?: string;
        receipt?: unknown;
        bundle?: { bundle: { agentId: string; capacity: { slots: number } } };
      };
      if (frame.type === 'hello' && frame.bundle) {
        agentId = frame.bundle.bundle.agentId;
        producers.set(agentId, socket);
        socket.send(
          JSON.stringify({
            v: 1,
            type: 'welcome',
            agentId,
            trust: 'signed',
            heartbeatMs: 15_000,
            maxConcurrentJobs: frame.bundle.bundle.capacity.slots,
            operator: null,
          }),
        );
        return;
      }
      const job = frame.jobId === undefined ? undefined : jobs.get(frame.jobId);
      if (!job) return;
      if (frame.type === 'accepted') job.replySalt = frame.replySalt ?? null;
      else if (frame.type === 'chunk') {
        if (!job.started) {
          job.started = true;
          job.res.write(JSON.stringify({ type: 'start', agentId: job.agentId, attempt: 0, replySalt: job.replySalt }) + '\n');
        }
        job.res.write(JSON.stringify({ type: 'chunk', seq: frame.seq, data: frame.data }) + '\n');
      } else if (frame.type === 'done') {
        job.res.end(JSON.stringify({ type: 'done', receipt: frame.receipt }) + '\n');
        jobs.delete(frame.jobId!);
      }
    });
    socket.on('close', () => {
      if (agentId !== null && producers.get(agentId) === socket) producers.delete(agentId);
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    agentUrl: `ws://127.0.0.1:${address.port}/v1/agent`,
    agents: () => producers.size,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function main(): Promise<void> {
  const kind = process.argv[2];
  if (kind !== 'gateway' && kind !== 'forwarder' && kind !== 'cluster') {
    throw new Error('usage: relay-server.js gateway|forwarder [listen backlog] | cluster CONFIG_JSON');
  }
  const relay =
    kind === 'cluster'
      ? await clusterNode(JSON.parse(process.argv[3] ?? 'null') as ClusterNodeConfig)
      : kind === 'gateway'
        ? await gateway(process.argv[3] === undefined ? undefined : Number(process.argv[3]))
        : await forwarder();
  const send = (m: RelayServerMessage): void => {
    process.send!(m);
  };
  process.on('message', (m: RelayServerRequest) => {
    if (m.type === 'memory') {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      const u = process.memoryUsage();
      send({
        type: 'memory',
        rss: u.rss,
        heapUsed: u.heapUsed,
        external: u.external,
        arrayBuffers: u.arrayBuffers,
        agents: relay.agents(),
      });
    } else if (m.type === 'cpu') {
      const u = process.cpuUsage();
      send({ type: 'cpu', micros: u.user + u.system });
    } else if (m.type === 'sql') {
      send({ type: 'sql', ...(relay.sql?.() ?? { writes: 0, rowsChanged: 0, reads: 0, commits: 0, attempts: 0 }) });
    } else if (m.type === 'logged') {
      send({ type: 'logged', counts: relay.logged?.() ?? {} });
    } else if (m.type === 'close') {
      void relay.close().finally(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', url: relay.url, agentUrl: relay.agentUrl });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
