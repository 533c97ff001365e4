/**
 * Accept burst: 1,000 clients arriving at the gateway at once, each on a connection of its own,
 * with the gateway's default listen backlog (4096) against Node's default (511). An outside
 * tester's 1,000 client loops saw a p99 of 50 s while the gateway's own p99 was 3.3 s, with
 * accept-queue overflows counted: a connection the kernel drops past the backlog is retried by
 * the client's TCP after 1 s, 3 s, 7 s…, so its request starts seconds late and the gateway never
 * sees the wait. Measured from the client: time from starting the request to its first chunk and
 * to its end, and the kernel's ListenOverflows counter over the burst.
 */
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import type { SealedRequest } from '../src/shared/index.js';
import { benchAgentKeys, type BenchAgentKeys } from './identities.js';
import { RelayStream, sealTo, type FakeAgent } from './relay-peers.js';
import { RelayProcess, connectAgents } from './relay-process.js';
import type { AreaReport, BenchContext } from './report.js';
import { fmt, fmtInt, median, now, percentile, sleep } from './stats.js';

const CLIENTS = 1000;
/** Fake agents the jobs are spread over, each with enough slots for its share at once. */
const AGENTS = 8;
const SLOTS = 200;
/** Node's own default listen backlog, the gateway's before this area existed. */
const NODE_BACKLOG = 511;

/** The kernel's count of connections dropped because a listen queue was full (Linux), or null. */
async function listenOverflows(): Promise<number | null> {
  try {
    const lines = (await readFile('/proc/net/netstat', 'utf8')).split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]!.trim().split(/\s+/);
    const values = lines[1]!.trim().split(/\s+/);
    const i = names.indexOf('ListenOverflows');
    return i < 0 ? null : Number(values[i]);
  } catch {
    return null;
  }
}

interface Burst {
  firstChunk: number[];
  end: number[];
  errors: string[];
  overflows: number | null;
}

/** Starts `sealed.length` requests at once, each on a fresh connection, and times each from the client. */
async function burst(relay: RelayProcess, agents: readonly FakeAgent[], sealed: readonly SealedRequest[]): Promise<Burst> {
  const streams = sealed.map((s, i) => new RelayStream(s.jobId, agents[i % agents.length]!));
  const firstChunk: number[] = [];
  const end: number[] = [];
  const errors: string[] = [];
  const before = await listenOverflows();
  const pools = streams.map(() => new http.Agent({ keepAlive: false }));
  const started = now();
  for (const s of streams) s.onChunk = (stream) => stream.received === 1 && firstChunk.push(now() - started);
  streams.forEach((s, i) => s.start(relay.url, sealed[i]!.envelope, pools[i]!));
  const ends = await Promise.race([
    Promise.all(streams.map((s) => s.ended.then((e) => (end.push(now() - started), e)))),
    sleep(120_000).then(() => null),
  ]);
  const after = await listenOverflows();
  for (const s of streams) s.abort();
  for (const p of pools) p.destroy();
  if (!ends) errors.push('requests still open after 120 s');
  else for (const e of ends) if (e.error || !e.done) errors.push(e.error ?? 'ended without done');
  return { firstChunk, end, errors, overflows: before === null || after === null ? null : after - before };
}

async function sealAll(agents: readonly FakeAgent[]): Promise<SealedRequest[]> {
  const sealed: SealedRequest[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    sealed.push(await sealTo(agents[i % agents.length]!, 'arrive with everyone else'));
  }
  return sealed;
}

interface BacklogFigures {
  backlog: number;
  label: string;
  rounds: Burst[];
}

/** The overflow count of each round, in order. */
const overflowsOf = (f: BacklogFigures): string => f.rounds.map((b) => (b.overflows === null ? 'n/a' : fmtInt(b.overflows))).join(', ');

export async function run(ctx: BenchContext): Promise<AreaReport> {
  const rounds = ctx.quick ? 1 : 3;
  const keys: BenchAgentKeys[] = [];
  for (let i = 0; i < AGENTS; i++) keys.push(await benchAgentKeys(SLOTS));
  const settings = [
    { backlog: NODE_BACKLOG, label: `${NODE_BACKLOG} (Node's default, before)` },
    { backlog: 4096, label: '4096 (the gateway default)' },
  ];
  const figures: BacklogFigures[] = settings.map((s) => ({ ...s, rounds: [] }));
  for (let r = 0; r < rounds; r++) {
    // Alternate the order so neither setting always runs on a warmer machine.
    const order = r % 2 === 0 ? figures : [...figures].reverse();
    for (const f of order) {
      const relay = await RelayProcess.start('gateway', f.backlog === 4096 ? undefined : f.backlog);
      try {
        const agents = await connectAgents(relay, keys, SLOTS);
        // Every job is answered at once with one chunk and its receipt: the burst measures arrival.
        for (const a of agents) {
          a.onJob = (job) => {
            a.sendChunk(job);
            void a.finish(job);
          };
        }
        const sealed = await sealAll(agents);
        const b = await burst(relay, agents, sealed);
        f.rounds.push(b);
        ctx.log(
          `backlog ${f.backlog}, round ${r + 1}: first chunk p50 ${fmt(percentile(b.firstChunk, 50))} ms, ` +
            `p99 ${fmt(percentile(b.firstChunk, 99))} ms, max ${fmt(Math.max(...b.end))} ms; ` +
            `overflows ${b.overflows ?? 'n/a'}; errors ${b.errors.length}`,
        );
        for (const a of agents) a.close();
      } finally {
        await relay.close();
      }
    }
  }

  const p = (f: BacklogFigures, pick: (b: Burst) => number): number => median(f.rounds.map(pick));
  const rows = figures.map((f) => [
    f.label,
    fmt(p(f, (b) => percentile(b.firstChunk, 50))),
    fmt(p(f, (b) => percentile(b.firstChunk, 99))),
    fmt(p(f, (b) => Math.max(...b.end))),
    overflowsOf(f),
    fmtInt(f.rounds.reduce((n, b) => n + b.errors.length, 0)),
  ]);
  const chosen = figures[1]!;
  const p99 = p(chosen, (b) => percentile(b.firstChunk, 99));
  const overflowed = chosen.rounds.some((b) => (b.overflows ?? 0) > 0);
  const overflowCounted = chosen.rounds.every((b) => b.overflows !== null);
  const errors = figures.flatMap((f) => f.rounds.flatMap((b) => b.errors));
  return {
    title: 'Accept burst: 1,000 clients arriving at once',
    method: [
      `A real gateway in its own process, ${AGENTS} fake agents (${SLOTS} slots each) that answer every job at once with one ` +
        `chunk and a signed receipt; ${fmtInt(CLIENTS)} requests sealed beforehand, then started in the same tick, each on a ` +
        'connection of its own (no keep-alive), as 1,000 client processes starting together would.',
      'Times are taken by the client, from starting the request: to its first chunk, and (max) to the last request ending.',
      'ListenOverflows is the kernel counter (/proc/net/netstat) across the burst: connections dropped because the accept ' +
        'queue was full. It counts the whole machine, so run on a quiet one.',
      `${rounds} round${rounds === 1 ? '' : 's'} per setting, interleaved; medians across rounds.`,
    ],
    tables: [
      {
        columns: ['listen backlog', 'first chunk p50 (ms)', 'first chunk p99 (ms)', 'last end (ms)', 'ListenOverflows', 'errors'],
        rows,
      },
    ],
    targets: [
      {
        name: '1,000 simultaneous clients, default backlog: connections dropped by the kernel',
        figure: `${overflowsOf(chosen)} (first chunk p99 ${fmt(p99)} ms)`,
        target: '0 in every round (each dropped connection waits at least the 1 s SYN retransmit)',
        status: overflowCounted ? (overflowed ? 'not met' : 'met') : 'not measured',
        ...(overflowed ? { limitedBy: 'the accept queue overflowed at the default backlog' } : {}),
      },
    ],
    notes: errors.length ? [`errors: ${errors.slice(0, 5).join('; ')}`] : [],
    data: { figures },
  };
}
