/**
 * Whole path: a client (the SDK) → a real gateway on loopback → an agent → the engine → back,
 * against the very same engine called directly. Tokens/s on a 1B shape; added time to first
 * token on the tiny model, whose own TTFT is a few milliseconds, so the path's share is visible.
 */
import { Agent, defaultThreads, loadEngine, sha256File, type GenerateResult, type SyntheticShapeName } from '../src/main/agent/index.js';
import { NightjarClient, nodeFetch } from '../src/client/index.js';
import { Gateway } from '../src/gateway/index.js';
import { generateIdentity, type ChatMessage } from '../src/shared/index.js';
import { steadyRate } from './llama-direct.js';
import { ensureModel } from './models.js';
import { target, type AreaReport, type BenchContext, type Target } from './report.js';
import { TimedEngine } from './timed-engine.js';
import { BENCH_GATEWAY_LIMITS, fmt, fmtRatio, median, now, percentile, range, sleep, waitUntil } from './stats.js';

const MESSAGES: ChatMessage[] = [{ role: 'user', content: 'Tell me about nightjars.' }];

/** One generation as a client sees it: when it started, each delta's arrival, the end. */
interface Observed {
  startedAt: number;
  deltaTimes: number[];
  /** Characters in each delta: tokens, for a synthetic model's greedy output. */
  deltaSizes: number[];
  endedAt: number;
  completionTokens: number;
  /** The engine's own figures for this job. */
  engine: GenerateResult;
  /** When the engine got the call and sent its first delta. */
  engineCalledAt: number;
  engineFirstDeltaAt: number;
  /** When the SDK sent GET /v1/candidates, got its answer, and sent POST /v1/jobs (path runs only). */
  candidatesAt: number;
  candidatesAnsweredAt: number;
  postAt: number;
}

/** Tokens/s of a run: 1 ÷ the median time per token between deltas (see bench/engine.ts). */
function decodeRate(o: Observed): number {
  return steadyRate(o.deltaTimes, o.deltaSizes);
}

interface Network {
  gateway: Gateway;
  agent: Agent;
  client: NightjarClient;
  engine: TimedEngine;
  modelId: string;
  /** When the SDK's fetch sent each request, and when its answer's headers came back. */
  fetches: { method: string; sentAt: number; answeredAt: number }[];
  /** A new client on the same gateway and fetch: no candidates and no prepared key yet. */
  freshClient(): NightjarClient;
  close(): Promise<void>;
}

async function startNetwork(modelPath: string, modelId: string): Promise<Network> {
  const threads = defaultThreads();
  // Two slots though jobs run one at a time: the gateway routes on the free slots of the agent's
  // last status frame. The agent sends one as each job ends, but the client may ask again before
  // that frame has reached the gateway; with one slot, that request would get NJ_NO_CAPACITY.
  const engine = new TimedEngine(await loadEngine({ modelPath, threads, slots: 2, contextLength: 1024, batchSize: 512 }));
  const gateway = await Gateway.start({ port: 0, allowSynthetic: true, ...BENCH_GATEWAY_LIMITS });
  const agent = await Agent.create({
    gatewayUrl: gateway.agentUrl,
    identity: await generateIdentity(),
    engine,
    model: { id: modelId, sha256: await sha256File(modelPath), synthetic: true, contextLength: engine.model.contextLength },
    stopGraceMs: 1000,
  });
  agent.start();
  await waitUntil(() => gateway.directory.get(agent.agentId)?.status?.state === 'serving', 10_000, 'the agent to register');
  const fetches: Network['fetches'] = [];
  const timedFetch: typeof fetch = async (input, init) => {
    const entry = { method: init?.method ?? 'GET', sentAt: now(), answeredAt: Number.NaN };
    fetches.push(entry);
    const res = await nodeFetch(input, init);
    entry.answeredAt = now();
    return res;
  };
  const freshClient = (): NightjarClient =>
    new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, candidates: 1, fetch: timedFetch });
  return {
    gateway,
    agent,
    client: freshClient(),
    freshClient,
    engine,
    modelId,
    fetches,
    async close() {
      await agent.dispose();
      await gateway.dispose();
      await engine.dispose();
    },
  };
}

async function viaEngine(net: Network, maxTokens: number): Promise<Observed> {
  const deltaTimes: number[] = [];
  const deltaSizes: number[] = [];
  const startedAt = now();
  const r = await net.engine.generate({
    messages: MESSAGES,
    sampling: { maxTokens, temperature: 0 },
    onDelta: (text) => {
      deltaTimes.push(now());
      deltaSizes.push(text.length);
    },
  });
  const call = net.engine.calls.at(-1)!;
  return {
    startedAt,
    deltaTimes,
    deltaSizes,
    endedAt: now(),
    completionTokens: r.usage.completionTokens,
    engine: r,
    engineCalledAt: call.calledAt,
    engineFirstDeltaAt: call.firstDeltaAt ?? Number.NaN,
    candidatesAt: Number.NaN,
    candidatesAnsweredAt: Number.NaN,
    postAt: Number.NaN,
  };
}

async function viaPath(net: Network, maxTokens: number, client = net.client): Promise<Observed> {
  const deltaTimes: number[] = [];
  const deltaSizes: number[] = [];
  const before = net.engine.calls.length;
  const fetchesBefore = net.fetches.length;
  const startedAt = now();
  const stream = client.chat({ model: net.modelId, messages: MESSAGES, maxTokens, temperature: 0 });
  for await (const delta of stream) {
    deltaTimes.push(now());
    deltaSizes.push(delta.length);
  }
  const result = await stream.result;
  const endedAt = now();
  const call = net.engine.calls[before];
  if (!call?.result || net.engine.calls.length !== before + 1) throw new Error('the path run did not reach the engine exactly once');
  const mine = net.fetches.slice(fetchesBefore);
  const get = mine.find((f) => f.method === 'GET');
  const post = mine.find((f) => f.method === 'POST');
  return {
    startedAt,
    deltaTimes,
    deltaSizes,
    endedAt,
    completionTokens: result.usage.completionTokens,
    engine: call.result,
    engineCalledAt: call.calledAt,
    engineFirstDeltaAt: call.firstDeltaAt ?? Number.NaN,
    candidatesAt: get?.sentAt ?? Number.NaN,
    candidatesAnsweredAt: get?.answeredAt ?? Number.NaN,
    postAt: post?.sentAt ?? Number.NaN,
  };
}

async function ensure(ctx: BenchContext, shape: SyntheticShapeName): Promise<{ path: string; modelId: string }> {
  const f = await ensureModel(ctx.modelsDir, shape, ctx.log);
  return { path: f.path, modelId: f.modelId };
}

/** Runs the whole-path area: added TTFT on the tiny model, tokens/s through the network on 1b-q4_0. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const ttftRuns = ctx.quick ? 10 : 40;
  const firstRuns = ctx.quick ? 4 : 10;
  const httpRuns = ctx.quick ? 50 : 200;
  const transports = [
    ['fetch', fetch],
    ['nodeFetch', nodeFetch],
  ] as const;
  const http: Record<(typeof transports)[number][0], number[]> = { fetch: [], nodeFetch: [] };
  const rounds = ctx.quick ? 3 : 6;
  const maxTokens = ctx.quick ? 12 : 20;
  const targets: Target[] = [];

  // --- Time to first token, on the tiny model.
  const tiny = await ensure(ctx, 'tiny');
  const tinyNet = await startNetwork(tiny.path, tiny.modelId);
  const direct: Observed[] = [];
  const path: Observed[] = [];
  const first: Observed[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      await viaEngine(tinyNet, 8);
      await viaPath(tinyNet, 8);
    }
    for (let i = 0; i < ttftRuns; i++) {
      if (i % 2 === 0) {
        direct.push(await viaEngine(tinyNet, 8));
        path.push(await viaPath(tinyNet, 8));
      } else {
        path.push(await viaPath(tinyNet, 8));
        direct.push(await viaEngine(tinyNet, 8));
      }
    }
    // The HTTP transport alone, through Node's global fetch and through the client's node:http
    // fetch, alternating: a POST /v1/jobs of a sealed request's size whose envelope is malformed,
    // so the gateway parses it and answers 400 without a job.
    const malformed = JSON.stringify({ v: 1, envelope: { header: { padding: 'x'.repeat(700) }, body: 'y'.repeat(1400) } });
    for (let i = 0; i < httpRuns; i++) {
      for (const [name, f] of i % 2 === 0 ? transports : [...transports].reverse()) {
        const t0 = now();
        const res = await f(`${tinyNet.gateway.url}/v1/jobs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: malformed,
        });
        await res.arrayBuffer();
        if (res.status !== 400) throw new Error(`the malformed job got HTTP ${res.status}, not 400`);
        http[name].push(now() - t0);
      }
    }
    // A client's first request: it fetches candidates and has no key agreed in advance.
    // (A pause first, so the key the last client agrees after its reply is not in the way.)
    for (let i = 0; i < firstRuns; i++) {
      await sleep(50);
      first.push(await viaPath(tinyNet, 8, tinyNet.freshClient()));
    }
  } finally {
    await tinyNet.close();
  }
  const firstAdded = first.map((o) => o.deltaTimes[0]! - o.startedAt - o.engine.timeToFirstTokenMs);
  const pathTtft = path.map((o) => o.deltaTimes[0]! - o.startedAt);
  const added = path.map((o) => o.deltaTimes[0]! - o.startedAt - o.engine.timeToFirstTokenMs);
  const directTtft = direct.map((o) => o.deltaTimes[0]! - o.startedAt);
  const engineOwn = path.map((o) => o.engine.timeToFirstTokenMs);
  // The SDK reuses candidates for a few seconds (candidatesTtlMs): only some runs fetch them.
  const fetchedCandidates = (o: Observed): boolean => !Number.isNaN(o.candidatesAt);
  const getMs = (o: Observed): number => (fetchedCandidates(o) ? o.candidatesAnsweredAt - o.candidatesAt : 0);
  const fetchedRuns = path.filter(fetchedCandidates).length;
  const addedWhen = (fetched: boolean): number[] =>
    path.filter((o) => fetchedCandidates(o) === fetched).map((o) => o.deltaTimes[0]! - o.startedAt - o.engine.timeToFirstTokenMs);
  // Where the added time goes, per run, from timestamps on one clock (everything is in this process).
  const parts: Record<string, number[]> = {
    // Listed only when some run fetched candidates.
    ...(fetchedRuns > 0
      ? { [`client: GET /v1/candidates round trip (the ${fetchedRuns} runs that fetched them)`]: path.filter(fetchedCandidates).map(getMs) }
      : {}),
    [fetchedRuns > 0
      ? 'client: the rest before the POST (verify fetched bundles, seal)'
      : 'client: before the POST (candidates reused; seal with the key agreed after the last reply)']: path.map(
      (o) => o.postAt - o.startedAt - getMs(o),
    ),
    'POST → engine call (gateway relay, agent opens and checks the envelope, counts prompt tokens)': path.map(
      (o) => o.engineCalledAt - o.postAt,
    ),
    'engine: call to first token (its own TTFT) and first delta': path.map((o) => o.engineFirstDeltaAt - o.engineCalledAt),
    'agent → gateway → client: seal, relay, open': path.map((o) => o.deltaTimes[0]! - o.engineFirstDeltaAt),
  };
  const addedMedian = median(added);
  const shares = Object.entries(parts)
    .filter(([name]) => !name.startsWith('engine'))
    .map(([name, v]) => [name, median(v)] as const)
    .sort((a, b) => b[1] - a[1]);
  targets.push(
    target(
      'whole path: added time to first token on loopback (median, tiny model)',
      `${fmt(addedMedian)} ms`,
      '≤ 10 ms',
      addedMedian <= 10,
      `the path's own parts, largest first (medians): ${shares.map(([name, ms]) => `${name} ${fmt(ms)} ms`).join('; ')}`,
    ),
  );

  // --- Tokens/s, on the 1B Q4_0 shape.
  const big = await ensure(ctx, '1b-q4_0');
  const bigNet = await startNetwork(big.path, big.modelId);
  const engineTp: Observed[] = [];
  const pathTp: Observed[] = [];
  const controlTp: Observed[] = [];
  try {
    await viaEngine(bigNet, 4);
    await viaPath(bigNet, 4);
    // Three parties per round, in each of the six orders in turn: the engine alone, the whole
    // path, and the engine alone again as an A/A control that measures the machine's noise.
    const orders = [
      ['engine', 'path', 'control'],
      ['control', 'path', 'engine'],
      ['path', 'engine', 'control'],
      ['control', 'engine', 'path'],
      ['engine', 'control', 'path'],
      ['path', 'control', 'engine'],
    ] as const;
    for (let r = 0; r < rounds; r++) {
      for (const party of orders[r % orders.length]!) {
        if (party === 'path') pathTp.push(await viaPath(bigNet, maxTokens));
        else (party === 'engine' ? engineTp : controlTp).push(await viaEngine(bigNet, maxTokens));
      }
      ctx.log(
        `1b-q4_0 round ${r + 1}: engine ${fmt(decodeRate(engineTp.at(-1)!))} tok/s, ` +
          `whole path ${fmt(decodeRate(pathTp.at(-1)!))} tok/s, control ${fmt(decodeRate(controlTp.at(-1)!))} tok/s`,
      );
    }
  } finally {
    await bigNet.close();
  }
  const eBest = Math.max(...engineTp.map(decodeRate));
  const pBest = Math.max(...pathTp.map(decodeRate));
  const perRound = pathTp.map((p, i) => decodeRate(p) / decodeRate(engineTp[i]!));
  const tpRatio = median(perRound);
  const spread = range(perRound);
  const controlRatios = controlTp.map((c, i) => decodeRate(c) / decodeRate(engineTp[i]!));
  const controlMedian = median(controlRatios);
  const controlSpread = range(controlRatios);
  const whole = (o: Observed): number => (o.completionTokens * 1000) / (o.endedAt - o.startedAt);
  targets.push(
    target(
      'whole path vs engine alone, 1b-q4_0 (tokens/s at the client, median of rounds)',
      fmtRatio(tpRatio, 3),
      '≥ 0.95×',
      tpRatio >= 0.95,
      `a typical token took ${fmt(1000 / median(pathTp.map(decodeRate)))} ms ` +
        `at the client against ${fmt(1000 / median(engineTp.map(decodeRate)))} ms from the engine alone (medians over rounds); ` +
        `per-round ratios ranged ${spread.min.toFixed(2)}–${spread.max.toFixed(2)}, and the A/A control (the engine alone ` +
        `against itself, same rounds) gave ${fmtRatio(controlMedian)} (${controlSpread.min.toFixed(2)}–${controlSpread.max.toFixed(2)})` +
        (Math.abs(1 - controlMedian) >= Math.abs(1 - tpRatio) || controlSpread.min <= tpRatio
          ? ': the engine drifted from itself as far, so this run cannot tell the gap from the machine’s noise'
          : ': further than the engine drifted from itself, so the gap is more than this run’s noise'),
    ),
  );

  const row = (name: string, v: number[]): string[] => [name, fmt(median(v)), fmt(percentile(v, 90)), fmt(Math.min(...v))];
  return {
    title: 'Whole path: client → gateway → agent → back, against the engine alone',
    method: [
      'Everything in one process on loopback: a real gateway (`Gateway.start`, port 0), a real `Agent` connected over its WebSocket, ' +
        'the SDK (`NightjarClient`, one candidate, trust policy allowing synthetic models) over HTTP. ' +
        'The agent serves the very engine the baseline calls directly (default threads, context 1,024, ' +
        'two slots of which one is used at a time), wrapped only to note when each call arrives and when its first delta leaves.',
      `Time to first token on the tiny model: ${ttftRuns} runs of each side, alternating, after 3 warm-up pairs, 8 greedy tokens. ` +
        'Path TTFT = first delta at the client − the moment `client.chat` was called (it includes fetching ' +
        "candidates when the SDK has none fresh, checking the bundle, sealing, the POST, opening at the agent and the reply's way back). " +
        "Added TTFT = path TTFT − the engine's own TTFT for that same job (`timeToFirstTokenMs`). " +
        "The SDK speaks HTTP through the client's node:http `fetch` (`nodeFetch`, " +
        "what `nightjar chat` and `nightjar proxy` use), wrapped to note when each request left and its answer's headers came back; " +
        `with the engine wrapper's, these timestamps on one clock give the breakdown. After the measured runs, ${firstRuns} requests ` +
        "each from a new client show what a client's first request adds (candidates fetched, its ephemeral key drawn while it waits).",
      `Tokens/s on 1b-q4_0: ${rounds} rounds of ${maxTokens} greedy tokens; each round runs the engine alone, the whole path, ` +
        "and the engine alone again as an A/A control (it measures the machine's noise), back to back, in one of the six orders. Both " +
        'sides are measured the same way, from delta arrival times — at the client for the path, in `onDelta` for the engine alone: ' +
        '1 ÷ the median time per token between deltas (a synthetic greedy token is one character), as in the engine area. The figure ' +
        'is the median over rounds of path ÷ engine within the round; the whole-call column is completion tokens ÷ (result − call).',
    ],
    tables: [
      {
        title: 'Time to first token, tiny model (ms)',
        columns: ['', 'median', 'p90', 'min'],
        rows: [
          row('engine alone, first delta after the call', directTtft),
          row('engine’s own TTFT in path runs', engineOwn),
          row('whole path, first delta at the client', pathTtft),
          row('added by the path (path − engine’s own)', added),
          // Split only when some runs fetched and some reused: otherwise it repeats the row above.
          ...(fetchedRuns > 0 && fetchedRuns < path.length
            ? [
                row(`… in the ${fetchedRuns} runs that fetched candidates`, addedWhen(true)),
                row(`… in the ${path.length - fetchedRuns} runs that reused them`, addedWhen(false)),
              ]
            : []),
          row(`added by the path to a new client’s first request (${firstRuns} runs; not held to the target)`, firstAdded),
        ],
      },
      {
        title:
          "HTTP round trip to the gateway: a POST /v1/jobs of a sealed request's size, " +
          `malformed so it is answered 400 (${httpRuns} each, alternating; ms)`,
        columns: ['transport', 'median', 'p90', 'min'],
        rows: [row('Node’s global fetch (undici)', http.fetch), row('the client’s `nodeFetch` (node:http, keep-alive)', http.nodeFetch)],
      },
      {
        title: 'Where the path’s time to first token goes (ms, per-run medians)',
        columns: ['part', 'median', 'p90', 'min'],
        rows: Object.entries(parts).map(([name, v]) => row(name, v)),
      },
      {
        title: 'Tokens/s, 1b-q4_0',
        columns: [
          '',
          'tok/s (best)',
          'whole call tok/s (best)',
          '÷ engine alone (median of rounds)',
          'per-round range',
          'ratio of the bests',
        ],
        rows: [
          ['engine alone', fmt(eBest), fmt(Math.max(...engineTp.map(whole))), '1.00×', '', ''],
          [
            'whole path',
            fmt(pBest),
            fmt(Math.max(...pathTp.map(whole))),
            fmtRatio(tpRatio),
            `${spread.min.toFixed(2)}–${spread.max.toFixed(2)}`,
            fmtRatio(pBest / eBest),
          ],
          [
            'A/A control: engine alone again',
            fmt(Math.max(...controlTp.map(decodeRate))),
            fmt(Math.max(...controlTp.map(whole))),
            fmtRatio(controlMedian),
            `${controlSpread.min.toFixed(2)}–${controlSpread.max.toFixed(2)}`,
            fmtRatio(Math.max(...controlTp.map(decodeRate)) / eBest),
          ],
        ],
      },
    ],
    targets,
    notes: [
      'The SDK reuses the candidates it fetched, with their verified bundles, for 5 s (`candidatesTtlMs`), as a client sending ' +
        `requests in a row does; here ${fetchedRuns} of ${path.length} path runs fetched them (the warm-up runs fetched them first). ` +
        'The figure held to the target is the median over all runs, so it is the cost of a request in a conversation; a first request ' +
        `after a pause adds the candidates round trip${fetchedRuns > 0 ? ', shown in the breakdown' : ', which no measured run paid'}.`,
      'After each reply the SDK draws the next request’s ephemeral key and agrees it with the agents that replied, ' +
        'in the background (`prepareEphemeral`): each WebCrypto step is a round trip to the thread pool, ' +
        'and a request in a conversation then seals without one. A key is used once; a request to other agents draws its own. ' +
        'A new client’s first request pays both this and the candidates round trip: the last row of the first table.',
      "The gateway routes on the free slots of the agent's last status frame. The agent sends one as each job " +
        'starts generating and as it ends, but a client that asks again the moment its reply ends may get there before the frame does; ' +
        'with one slot that request would get NJ_NO_CAPACITY, so the benchmark gives the engine two slots (one is used at a time).',
    ],
    data: {
      ttftRuns,
      rounds,
      maxTokens,
      ttft: { direct: directTtft, path: pathTtft, added, engineOwn, parts, fetchedRuns, firstAdded },
      http,
      throughput: { engine: engineTp.map(decodeRate), path: pathTp.map(decodeRate), control: controlTp.map(decodeRate) },
    },
  };
}
