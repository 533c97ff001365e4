/**
 * Gateway relay: chunks/s and added latency at 1, 100 and 1,000 concurrent streams through the
 * real gateway against a bare forwarder with the same transports; memory per idle agent
 * connection.
 */
import http from 'node:http';
import type { SealedRequest } from '../src/shared/index.js';
import { benchAgentKeys, type BenchAgentKeys } from './identities.js';
import { RelayStream, sealTo, type FakeAgent, type FakeAgentOptions, type ProducerJob } from './relay-peers.js';
import { RelayProcess, connectAgents, type RelayKind } from './relay-process.js';

import type { AreaReport, BenchContext } from './report.js';
import { fmt, fmtInt, fmtRatio, now, percentile, sleep, waitUntil } from './stats.js';

const KINDS: readonly RelayKind[] = ['gateway', 'forwarder'];
const STREAM_COUNTS = [1, 100, 1000] as const;
/** Fake agents the streams are spread over (each bundle offers at most 256 slots). */
const AGENTS = 8;
const SLOTS = 200;
/** Chunks in flight across all streams in the throughput phase (at least one per stream). */
const IN_FLIGHT = 256;
/** Per-stream chunk rate offered in the latency phase: a 1B model on a Mac, about 100 tokens/s. */
const STREAM_RATE = 100;

/** What streams run through: a relay process, or several cluster nodes seen as one. */
export interface RelayTarget {
  /** Names it in progress and error messages. */
  readonly kind: string;
  /** CPU time its processes have used so far, in microseconds. */
  cpuMicros(): Promise<number>;
}

/** N streams open through one relay, each with one chunk delivered. */
export interface Session {
  relay: RelayTarget;
  streams: RelayStream[];
  jobs: Map<string, ProducerJob>;
  pool: http.Agent;
}

/** Where a session's clients send their jobs, and with which key. */
export interface SessionClients {
  /** The base URL a stream to `agent` posts to. */
  urlFor(agent: FakeAgent, stream: number): string;
  /** The API key stream i's client sends. Defaults to none. */
  apiKeyFor?(stream: number): string;
  /** Streams started at once, each wave once the last one's jobs reached their agents. Defaults to all of them. */
  wave?: number;
}

/**
 * Opens `n` streams spread over `agents` (stream i to agent i mod the count), each through the
 * URL `clients` picks for it, and waits until each has delivered one chunk.
 */
export async function openSession(relay: RelayTarget, agents: readonly FakeAgent[], n: number, clients: SessionClients): Promise<Session> {
  const jobs = new Map<string, ProducerJob>();
  for (const a of agents) a.onJob = (job) => jobs.set(job.jobId, job);
  const pool = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const streams: RelayStream[] = [];
  const sealed: SealedRequest[] = [];
  for (let i = 0; i < n; i++) {
    const agent = agents[i % Math.min(agents.length, n)]!;
    const s = await sealTo(agent, 'relay me');
    sealed.push(s);
    streams.push(new RelayStream(s.jobId, agent));
  }
  const wave = clients.wave ?? n;
  for (let from = 0; from < n; from += wave) {
    const upTo = Math.min(n, from + wave);
    for (let i = from; i < upTo; i++)
      streams[i]!.start(clients.urlFor(streams[i]!.agent, i), sealed[i]!.envelope, pool, clients.apiKeyFor?.(i));
    await Promise.race([
      waitUntil(() => jobs.size === upTo, 30_000, `${upTo} jobs to reach the fake agents through the ${relay.kind}`),
      // A stream refused before its job reached an agent fails the session at once, saying why.
      Promise.race(streams.slice(from, upTo).map((s) => s.ended)).then((e) => {
        if (jobs.size < upTo) throw new Error(`a stream through the ${relay.kind} ended before its job reached the agent: ${e.error}`);
      }),
    ]);
  }
  for (const s of streams) s.agent.sendChunk(jobs.get(s.jobId)!);
  await waitUntil(() => streams.every((s) => s.received >= 1), 30_000, `the first chunk of ${n} streams through the ${relay.kind}`);
  return { relay, streams, jobs, pool };
}

/** Ends every stream of `session` with a signed receipt; counts those that ended with a verified done. */
export async function closeSession(session: Session): Promise<{ completed: number; errors: string[] }> {
  for (const s of session.streams) s.onChunk = null;
  for (const s of session.streams) await s.agent.finish(session.jobs.get(s.jobId)!);
  const ends = await Promise.race([Promise.all(session.streams.map((s) => s.ended)), sleep(30_000).then(() => null)]);
  for (const s of session.streams) s.abort();
  session.pool.destroy();
  if (!ends) return { completed: 0, errors: ['streams did not end within 30 s'] };
  return { completed: ends.filter((e) => e.done).length, errors: ends.flatMap((e) => (e.error ? [e.error] : [])) };
}

/**
 * Closed loop: every stream keeps `window` chunks in flight (256 in all, at least one per
 * stream), sending the next when one arrives. Counts arrivals over the last 80% of the phase;
 * the relay's CPU time is divided over every chunk of the phase.
 */
export async function throughput(
  session: Session,
  durationMs: number,
): Promise<{ chunksPerSecond: number; cpuMicrosPerChunk: number; chunks: number; cpuMicros: number; ms: number }> {
  const n = session.streams.length;
  const window = Math.max(1, Math.ceil(IN_FLIGHT / n));
  let active = true;
  let inFlight = 0;
  let counted = 0;
  let total = 0;
  const cpuBefore = await session.relay.cpuMicros();
  const start = now();
  const countFrom = start + durationMs * 0.2;
  const countTo = start + durationMs;
  for (const s of session.streams) {
    const job = session.jobs.get(s.jobId)!;
    s.onChunk = () => {
      inFlight--;
      total++;
      const t = now();
      if (t >= countFrom && t <= countTo) counted++;
      if (active) {
        s.agent.sendChunk(job);
        inFlight++;
      }
    };
  }
  for (const s of session.streams) {
    const job = session.jobs.get(s.jobId)!;
    for (let w = 0; w < window; w++) {
      s.agent.sendChunk(job);
      inFlight++;
    }
  }
  await sleep(durationMs);
  active = false;
  await waitUntil(() => inFlight === 0, 30_000, `in-flight chunks to drain through the ${session.relay.kind}`);
  const cpu = (await session.relay.cpuMicros()) - cpuBefore;
  return {
    chunksPerSecond: (counted * 1000) / (countTo - countFrom),
    cpuMicrosPerChunk: cpu / total,
    chunks: total,
    cpuMicros: cpu,
    ms: now() - start,
  };
}

/**
 * Open loop: chunks leave at `rate` per second in all, spread round-robin over the streams,
 * whatever the relay does; returns each chunk's latency (send → client receive, ms).
 */
export async function latency(session: Session, rate: number, durationMs: number): Promise<number[]> {
  const samples: number[] = [];
  let inFlight = 0;
  const start = now();
  for (const s of session.streams) {
    s.onChunk = (_s, sentAt, ms) => {
      inFlight--;
      if (sentAt >= start) samples.push(ms);
    };
  }
  let sent = 0;
  let next = 0;
  const n = session.streams.length;
  for (let elapsed = 0; elapsed < durationMs; elapsed = now() - start) {
    const due = Math.floor((rate * elapsed) / 1000) - sent;
    for (let k = 0; k < due; k++) {
      const s = session.streams[next++ % n]!;
      s.agent.sendChunk(session.jobs.get(s.jobId)!);
      sent++;
      inFlight++;
    }
    await sleep(1);
  }
  await waitUntil(() => inFlight === 0, 30_000, `in-flight chunks to drain through the ${session.relay.kind}`);
  return samples;
}

/** Options of {@link idleMemory}. */
export interface IdleMemoryOptions {
  /** Agents connected before the first reading (JIT code and one-time structures then fall outside the difference). Defaults to 0. */
  warmup?: number;
  /** The i-th agent's options (of all, warm-up first). Defaults to none. */
  agentOptions?: (index: number) => FakeAgentOptions;
  /** How long the agents stay idle before the second reading. Defaults to 500 ms. */
  idleMs?: number;
  /**
   * Second readings taken, a second apart; the lowest counts. Work in flight (a round of presence
   * writes every 5 s on a cluster node) holds memory for a moment that an idle connection does not.
   * Defaults to 1.
   */
  readings?: number;
}

/**
 * Memory per idle, authenticated agent connection, from the relay process's own figures (after two
 * full GCs): the first `warmup` keys connect, a reading, the rest connect, a reading; the
 * difference ÷ the agents that joined between the two.
 */
export async function idleMemory(
  start: () => Promise<RelayProcess>,
  keys: readonly BenchAgentKeys[],
  options: IdleMemoryOptions = {},
): Promise<{ rssPerConnection: number; heapPerConnection: number; connections: number; cpuMicrosPerAgentSecond: number }> {
  const { warmup = 0, agentOptions = () => ({}), idleMs = 500, readings = 1 } = options;
  const relay = await start();
  const agents: FakeAgent[] = [];
  try {
    agents.push(...(await connectAgents(relay, keys.slice(0, warmup), 4, agentOptions)));
    const before = await relay.memory();
    agents.push(...(await connectAgents(relay, keys.slice(warmup), 4, (i) => agentOptions(warmup + i))));
    let after = await relay.memory();
    const deadline = Date.now() + 15_000;
    while (after.agents < keys.length && Date.now() < deadline) {
      await sleep(100);
      after = await relay.memory();
    }
    const cpuBefore = await relay.cpuMicros();
    const idleStart = now();
    await sleep(idleMs);
    const cpuMicrosPerAgentSecond = ((await relay.cpuMicros()) - cpuBefore) / after.agents / ((now() - idleStart) / 1000);
    after = await relay.memory();
    for (let r = 1; r < readings; r++) {
      await sleep(1000);
      const m = await relay.memory();
      if (m.heapUsed < after.heapUsed) after = m;
    }
    const joined = after.agents - before.agents;
    return {
      rssPerConnection: (after.rss - before.rss) / joined,
      heapPerConnection: (after.heapUsed - before.heapUsed) / joined,
      connections: joined,
      cpuMicrosPerAgentSecond,
    };
  } finally {
    for (const a of agents) a.close();
    await relay.close();
  }
}

interface StreamFigures {
  streams: number;
  chunksPerSecond: Record<RelayKind, number>;
  cpuMicrosPerChunk: Record<RelayKind, number>;
  offeredRate: number;
  latency: Record<RelayKind, { p50: number; p99: number; samples: number }>;
  completed: Record<RelayKind, number>;
  errors: Record<RelayKind, string[]>;
}

/** Runs the relay area: the gateway against a bare forwarder at 1, 100 and 1,000 streams, and idle memory. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const phaseMs = ctx.quick ? 1000 : 2000;
  const idleConnections = ctx.quick ? 200 : 500;

  ctx.log(`making ${AGENTS} + ${idleConnections} agent identities`);
  const keys: BenchAgentKeys[] = [];
  for (let i = 0; i < AGENTS; i++) keys.push(await benchAgentKeys(SLOTS));
  const relays: Record<RelayKind, RelayProcess> = {
    gateway: await RelayProcess.start('gateway'),
    forwarder: await RelayProcess.start('forwarder'),
  };
  const figures: StreamFigures[] = [];
  try {
    const agents: Record<RelayKind, FakeAgent[]> = {
      gateway: await connectAgents(relays.gateway, keys, SLOTS),
      forwarder: await connectAgents(relays.forwarder, keys, SLOTS),
    };
    for (const [i, n] of STREAM_COUNTS.entries()) {
      ctx.log(`${n} stream${n === 1 ? '' : 's'}: opening`);
      const order = i % 2 === 0 ? KINDS : [...KINDS].reverse();
      const sessions = {} as Record<RelayKind, Session>;
      for (const kind of order) sessions[kind] = await openSession(relays[kind], agents[kind], n, { urlFor: () => relays[kind].url });
      const f: StreamFigures = {
        streams: n,
        chunksPerSecond: { gateway: 0, forwarder: 0 },
        cpuMicrosPerChunk: { gateway: 0, forwarder: 0 },
        offeredRate: 0,
        latency: { gateway: { p50: 0, p99: 0, samples: 0 }, forwarder: { p50: 0, p99: 0, samples: 0 } },
        completed: { gateway: 0, forwarder: 0 },
        errors: { gateway: [], forwarder: [] },
      };
      for (const kind of order) {
        const t = await throughput(sessions[kind], phaseMs);
        f.chunksPerSecond[kind] = t.chunksPerSecond;
        f.cpuMicrosPerChunk[kind] = t.cpuMicrosPerChunk;
        ctx.log(
          `${n} stream${n === 1 ? '' : 's'}, ${kind}: ` +
            `${fmt(t.chunksPerSecond)} chunks/s, ${fmt(t.cpuMicrosPerChunk)} µs of relay CPU per chunk`,
        );
      }
      // The same offered load on both: STREAM_RATE chunks/s per stream, capped at half of what the slower
      // relay carried, so neither is measured while saturated.
      f.offeredRate = Math.min(n * STREAM_RATE, 0.5 * Math.min(f.chunksPerSecond.gateway, f.chunksPerSecond.forwarder));
      for (const kind of order) {
        const samples = await latency(sessions[kind], f.offeredRate, phaseMs);
        f.latency[kind] = { p50: percentile(samples, 50), p99: percentile(samples, 99), samples: samples.length };
        ctx.log(
          `${n} stream${n === 1 ? '' : 's'}, ${kind}: p50 ${fmt(f.latency[kind].p50)} ms, ` +
            `p99 ${fmt(f.latency[kind].p99)} ms at ${fmt(f.offeredRate)} chunks/s`,
        );
      }
      for (const kind of order) {
        const closed = await closeSession(sessions[kind]);
        f.completed[kind] = closed.completed;
        f.errors[kind] = closed.errors;
      }
      figures.push(f);
    }
    for (const kind of KINDS) for (const a of agents[kind]) a.close();
  } finally {
    await Promise.all(KINDS.map((k) => relays[k].close()));
  }

  ctx.log(`memory of ${idleConnections} idle agent connections`);
  const idleKeys: BenchAgentKeys[] = [];
  for (let i = 0; i < idleConnections; i++) idleKeys.push(await benchAgentKeys(4));
  const memory = {
    gateway: await idleMemory(() => RelayProcess.start('gateway'), idleKeys),
    forwarder: await idleMemory(() => RelayProcess.start('forwarder'), idleKeys),
  };

  const notes: string[] = [];
  for (const f of figures) {
    for (const kind of KINDS) {
      if (f.completed[kind] !== f.streams || f.errors[kind].length > 0) {
        notes.push(
          `${f.streams} streams through the ${kind}: ${f.completed[kind]} of ${f.streams} ended with a verified done event; ` +
            `errors: ${f.errors[kind].slice(0, 3).join(', ') || 'none'}.`,
        );
      }
    }
  }
  const kb = (bytes: number): string => `${fmt(bytes / 1024)} KiB`;
  const signed = (ms: number): string => (ms < 0 ? `−${fmt(-ms)}` : `+${fmt(ms)}`);
  return {
    title: 'Gateway relay: chunks/s, added latency and memory against a bare forwarder',
    method: [
      'The relay runs in its own process; the fake agents and the clients run together in the measuring process, ' +
        'so one clock times each chunk from the moment the agent sends it to the moment the client has parsed it. ' +
        'The relay is either the real gateway (`Gateway.start`: handshake with bundle and challenge verification, ' +
        'frame validation, per-chunk digest and idle timer, receipt verification at the end) or the baseline: ' +
        'a bare forwarder written for this benchmark with the same transports and wire format ' +
        '(agents on a WebSocket, clients POST and read an NDJSON stream) that only parses each frame, finds the job and writes the line.',
      'Fake agents speak the real protocol (signed bundle, challenge answer, status, accepted, ' +
        `chunks, a real signed receipt the gateway verifies). Streams are spread over ${AGENTS} agents (1 for a single stream). A chunk ` +
        'carries 80 bytes, the size of a one-token chunk ciphertext. Each client is a plain node:http request with a sealed envelope.',
      `Chunks/s: a closed loop — ${IN_FLIGHT} chunks in flight across all streams (at least one per stream); ` +
        `each arrival triggers the next chunk of that stream. Counted over the last 80% of a ${phaseMs / 1000} s phase. ` +
        'When the measuring process (which does more work per chunk than either relay: encode, send, receive, parse) is the bottleneck, ' +
        "chunks/s comes out alike for both relays, so the relay's own cost is also measured directly: the relay process's CPU time " +
        "(user + system, `process.cpuUsage`) over the phase ÷ the chunks it relayed, and one core's worth of chunks/s = 1 s ÷ that.",
      'Latency: an open loop — chunks leave on a schedule, round-robin over the streams, ' +
        `at ${STREAM_RATE} chunks/s per stream (a generation at ${STREAM_RATE} tokens/s, what a 1B model does on a Mac) ` +
        `but at most half of what the slower relay carried in the closed loop, the same rate for both relays, for ${phaseMs / 1000} s. ` +
        'Percentiles over every chunk sent in the phase (a difference below zero means the forwarder had the worse moment: noise). ' +
        'How busy that rate keeps each relay follows from its CPU per chunk (offered rate × CPU per chunk) and ' +
        "is shown with the figures. The latency includes the measuring process's own send and parse, which is the same for both relays; " +
        'the difference is what the gateway adds.',
      'Memory per idle agent connection: a fresh relay process; RSS and V8 heap after two full GCs, ' +
        `before and after ${idleConnections} agents connect (authenticated, one status each, then idle); (after − before) ÷ connections.`,
      'The relay and the measuring process share this machine’s cores, so ' +
        'at high stream counts the measuring process itself takes CPU the relay could have used; it does the same work for both relays.',
    ],
    tables: [
      {
        title: 'Throughput (closed loop)',
        columns: [
          'streams',
          'gateway chunks/s',
          'bare forwarder chunks/s',
          'gateway ÷ forwarder',
          'relay CPU µs per chunk: gateway / forwarder',
          'CPU per chunk, gateway ÷ forwarder',
          'one core’s worth of chunks/s: gateway / forwarder',
        ],
        rows: figures.map((f) => [
          fmtInt(f.streams),
          fmt(f.chunksPerSecond.gateway),
          fmt(f.chunksPerSecond.forwarder),
          fmtRatio(f.chunksPerSecond.gateway / f.chunksPerSecond.forwarder),
          `${fmt(f.cpuMicrosPerChunk.gateway)} / ${fmt(f.cpuMicrosPerChunk.forwarder)}`,
          fmtRatio(f.cpuMicrosPerChunk.gateway / f.cpuMicrosPerChunk.forwarder),
          `${fmt(1e6 / f.cpuMicrosPerChunk.gateway)} / ${fmt(1e6 / f.cpuMicrosPerChunk.forwarder)}`,
        ]),
      },
      {
        title: 'Latency, agent send → client receive (open loop, ms)',
        columns: [
          'streams',
          'offered chunks/s',
          'relay CPU busy at that rate: gateway / forwarder',
          'gateway p50 / p99',
          'bare forwarder p50 / p99',
          'added by the gateway p50 / p99',
        ],
        rows: figures.map((f) => [
          fmtInt(f.streams),
          fmt(f.offeredRate),
          `${fmt((f.offeredRate * f.cpuMicrosPerChunk.gateway) / 1e6, 2)} / ` +
            `${fmt((f.offeredRate * f.cpuMicrosPerChunk.forwarder) / 1e6, 2)} of a core`,
          `${fmt(f.latency.gateway.p50)} / ${fmt(f.latency.gateway.p99)}`,
          `${fmt(f.latency.forwarder.p50)} / ${fmt(f.latency.forwarder.p99)}`,
          `${signed(f.latency.gateway.p50 - f.latency.forwarder.p50)} / ${signed(f.latency.gateway.p99 - f.latency.forwarder.p99)}`,
        ]),
      },
      {
        title: `Memory per idle agent connection (${memory.gateway.connections} connections)`,
        columns: ['', 'RSS per connection', 'V8 heap per connection'],
        rows: [
          ['gateway', kb(memory.gateway.rssPerConnection), kb(memory.gateway.heapPerConnection)],
          ['bare forwarder (a bare ws connection)', kb(memory.forwarder.rssPerConnection), kb(memory.forwarder.heapPerConnection)],
          [
            'gateway ÷ forwarder',
            fmtRatio(memory.gateway.rssPerConnection / memory.forwarder.rssPerConnection),
            fmtRatio(memory.gateway.heapPerConnection / memory.forwarder.heapPerConnection),
          ],
        ],
      },
    ],
    targets: [],
    notes,
    data: { phaseMs, figures, memory },
  };
}
