/**
 * Engine: generation speed of the agent's engine on the ~1B synthetic shapes against
 * node-llama-cpp driven directly, and against this machine's memory-bandwidth ceiling.
 */
import os from 'node:os';
import { defaultThreads, loadEngine, type InferenceEngine, type SyntheticShapeName } from '../src/main/agent/index.js';
import type { ChatMessage } from '../src/shared/index.js';
import { measureBandwidth } from './bandwidth.js';
import { directLlama, openDirect, steadyRate, type RunFigures } from './llama-direct.js';
import { ensureModel, weightTraffic } from './models.js';
import { target, type AreaReport, type BenchContext, type Target } from './report.js';
import { fmt, fmtBytes, fmtRatio, median, now, range } from './stats.js';

const MESSAGES: ChatMessage[] = [{ role: 'user', content: 'Tell me about nightjars.' }];
const SHAPES: readonly SyntheticShapeName[] = ['1b-q8_0', '1b-q4_0'];
/** Context per sequence and batch size, the same on both sides. */
const CONTEXT = 1024;
const BATCH = 512;
/** Rounds every shape gets, however slow the machine. */
const MIN_ROUNDS = 3;
/** The six orders of the three parties of a round. */
const ORDERS = [
  ['engine', 'direct', 'control'],
  ['control', 'direct', 'engine'],
  ['direct', 'engine', 'control'],
  ['control', 'engine', 'direct'],
  ['engine', 'control', 'direct'],
  ['direct', 'control', 'engine'],
] as const;

/**
 * One engine.generate call, timed from outside. TTFT and the first-to-last rate are the engine's
 * own figures; the steady rate comes from when each delta arrived (a synthetic model's greedy
 * tokens are one printable character each, so a delta of n characters carried n tokens).
 */
async function engineRun(engine: InferenceEngine, messages: readonly ChatMessage[], maxTokens: number): Promise<RunFigures> {
  const times: number[] = [];
  const sizes: number[] = [];
  const started = now();
  const r = await engine.generate({
    messages,
    sampling: { maxTokens, temperature: 0 },
    onDelta: (text) => {
      times.push(now());
      sizes.push(text.length);
    },
  });
  return {
    wallMs: now() - started,
    ttftMs: r.timeToFirstTokenMs,
    decodeTokensPerSecond: r.tokensPerSecond,
    steadyTokensPerSecond: steadyRate(times, sizes),
    completionTokens: r.usage.completionTokens,
    text: r.text,
  };
}

interface ShapeFigures {
  shape: SyntheticShapeName;
  engine: RunFigures[];
  direct: RunFigures[];
  /** engine / direct decode tokens/s, per round. */
  ratios: number[];
  /** Median of the per-round ratios: the figure held to the target. */
  ratio: number;
  /** The A/A control: a second direct context ÷ the first, per round. */
  control: RunFigures[];
  controlRatios: number[];
  /** Best engine run / best direct run. */
  ratioOfBests: number;
  promptTokens: { engine: number; direct: number };
  sameText: boolean;
  bytesPerToken: number;
  tiedEmbeddings: boolean;
}

/** Runs the engine area: engine vs direct node-llama-cpp on the 1B shapes, the bandwidth ceiling, 1 vs 2 threads. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const threads = defaultThreads();
  const maxTokens = ctx.quick ? 12 : 20;
  // Each round runs the three parties in one of the six orders, so every party goes first,
  // second and third equally often over six rounds. On a slow machine a shape stops after
  // MIN_ROUNDS once its rounds have taken the budget, so the area ends within the suite's bound.
  const rounds = ctx.quick ? 3 : 6;
  const roundBudgetMs = ctx.quick ? 45_000 : 75_000;

  ctx.log('memory bandwidth');
  const bw = await measureBandwidth(ctx.quick ? 3 : 5);
  const llama = await directLlama();

  const shapes: ShapeFigures[] = [];
  for (const shape of SHAPES) {
    const file = await ensureModel(ctx.modelsDir, shape, ctx.log);
    const traffic = await weightTraffic(file.path);
    ctx.log(`${shape}: loading the engine and the direct baseline (${threads} thread${threads === 1 ? '' : 's'})`);
    const engine = await loadEngine({ modelPath: file.path, threads, slots: 1, contextLength: CONTEXT, batchSize: BATCH });
    const direct = await openDirect({ modelPath: file.path, threads, contextLength: CONTEXT, batchSize: BATCH });
    const control = await openDirect({ modelPath: file.path, threads, contextLength: CONTEXT, batchSize: BATCH });
    try {
      const prompt = direct.prompt(MESSAGES);
      // Warm-up: pages the weights in (both map the same file) and settles the allocators.
      await engineRun(engine, MESSAGES, 4);
      await direct.generate(prompt, 4);
      await control.generate(prompt, 4);
      const figures: ShapeFigures = {
        shape,
        engine: [],
        direct: [],
        ratios: [],
        ratio: 0,
        control: [],
        controlRatios: [],
        ratioOfBests: 0,
        promptTokens: { engine: 0, direct: prompt.length },
        sameText: true,
        bytesPerToken: traffic.bytesPerToken,
        tiedEmbeddings: traffic.tiedEmbeddings,
      };
      const parties = {
        engine: () => engineRun(engine, MESSAGES, maxTokens),
        direct: () => direct.generate(prompt, maxTokens),
        control: () => control.generate(prompt, maxTokens),
      };
      const roundsStarted = now();
      for (let r = 0; r < rounds; r++) {
        if (r >= MIN_ROUNDS && now() - roundsStarted > roundBudgetMs) {
          ctx.log(
            `${shape}: ${r} rounds took ${fmt((now() - roundsStarted) / 1000)} s, ` +
              `over the ${roundBudgetMs / 1000} s budget; stopping there`,
          );
          break;
        }
        const got: Partial<Record<keyof typeof parties, RunFigures>> = {};
        for (const party of ORDERS[r % ORDERS.length]!) got[party] = await parties[party]();
        const e = got.engine!;
        const d = got.direct!;
        const c = got.control!;
        figures.engine.push(e);
        figures.direct.push(d);
        figures.control.push(c);
        figures.ratios.push(e.steadyTokensPerSecond / d.steadyTokensPerSecond);
        figures.controlRatios.push(c.steadyTokensPerSecond / d.steadyTokensPerSecond);
        if (e.text !== d.text || e.completionTokens !== d.completionTokens) figures.sameText = false;
        ctx.log(
          `${shape} round ${r + 1}: engine ${fmt(e.steadyTokensPerSecond)} tok/s, ` +
            `direct ${fmt(d.steadyTokensPerSecond)} tok/s, control ${fmt(c.steadyTokensPerSecond)} tok/s`,
        );
      }
      figures.ratio = median(figures.ratios);
      figures.ratioOfBests =
        Math.max(...figures.engine.map((f) => f.steadyTokensPerSecond)) / Math.max(...figures.direct.map((f) => f.steadyTokensPerSecond));
      const usage = await engine.generate({ messages: MESSAGES, sampling: { maxTokens: 1, temperature: 0 } });
      figures.promptTokens.engine = usage.usage.promptTokens;
      shapes.push(figures);
    } finally {
      await engine.dispose();
      await direct.dispose();
      await control.dispose();
    }
  }

  // Threads: the baseline alone, 1 thread against 2, on the Q4_0 shape.
  const threadCounts = os.availableParallelism() >= 2 ? [1, 2] : [1];
  const threadRuns = new Map<number, number[]>(threadCounts.map((t) => [t, []]));
  {
    const file = await ensureModel(ctx.modelsDir, '1b-q4_0', ctx.log);
    const model = await llama.loadModel({ modelPath: file.path });
    // A short prompt and few tokens: oversubscribed threads can be very slow, and this only
    // needs the decode rate.
    const tokens = 12;
    const short: ChatMessage[] = [{ role: 'user', content: 'Hi.' }];
    for (let r = 0; r < 2; r++) {
      for (const t of r % 2 === 0 ? threadCounts : [...threadCounts].reverse()) {
        const direct = await openDirect({ modelPath: file.path, model, threads: t, contextLength: CONTEXT, batchSize: BATCH });
        try {
          const prompt = direct.prompt(short);
          const f = await direct.generate(prompt, tokens);
          threadRuns.get(t)!.push(f.steadyTokensPerSecond);
          ctx.log(`threads ${t}: ${fmt(f.steadyTokensPerSecond)} tok/s`);
        } finally {
          await direct.dispose();
        }
      }
    }
    await model.dispose();
  }

  const targets: Target[] = [];
  const rows: string[][] = [];
  const ceilingRows: string[][] = [];
  for (const s of shapes) {
    const engineTps = Math.max(...s.engine.map((f) => f.steadyTokensPerSecond));
    const directTps = Math.max(...s.direct.map((f) => f.steadyTokensPerSecond));
    const ratio = s.ratio;
    const spread = range(s.ratios);
    const controlMedian = median(s.controlRatios);
    const controlSpread = range(s.controlRatios);
    rows.push([
      s.shape,
      String(threads),
      String(s.ratios.length),
      fmt(engineTps),
      fmt(directTps),
      fmtRatio(ratio),
      `${spread.min.toFixed(2)}–${spread.max.toFixed(2)}`,
      `${fmtRatio(controlMedian)} (${controlSpread.min.toFixed(2)}–${controlSpread.max.toFixed(2)})`,
      fmtRatio(s.ratioOfBests),
      fmt(median(s.engine.map((f) => f.ttftMs))) + ' / ' + fmt(median(s.direct.map((f) => f.ttftMs))),
      s.sameText && s.promptTokens.engine === s.promptTokens.direct
        ? 'yes'
        : `no (prompt ${s.promptTokens.engine} vs ${s.promptTokens.direct} tokens)`,
    ]);
    // Per-token times at the medians over rounds: what a typical round saw on each side.
    const perTokenEngine = 1000 / median(s.engine.map((f) => f.steadyTokensPerSecond));
    const perTokenDirect = 1000 / median(s.direct.map((f) => f.steadyTokensPerSecond));
    const withinNoise = Math.abs(1 - controlMedian) >= Math.abs(1 - ratio) || controlSpread.min <= ratio;
    targets.push(
      target(
        `engine vs node-llama-cpp direct, ${s.shape} (tokens/s, median of rounds)`,
        fmtRatio(ratio, 3),
        '≥ 0.95×',
        ratio >= 0.95,
        `a typical token took ${fmt(perTokenEngine)} ms through the engine against ${fmt(perTokenDirect)} ms ` +
          `direct (medians over rounds); per-round ratios ranged ${spread.min.toFixed(2)}–${spread.max.toFixed(2)}, ` +
          'and the A/A control (a second direct context against the first, ' +
          `same rounds) gave ${fmtRatio(controlMedian)} (${controlSpread.min.toFixed(2)}–${controlSpread.max.toFixed(2)})` +
          (withinNoise
            ? ': two identical baselines drifted apart as far, so this run cannot tell the gap from the machine’s noise'
            : ': further than two identical baselines drifted apart, so the gap is more than this run’s noise'),
      ),
    );
    const ceilingAll = bw.allThreads / s.bytesPerToken;
    const ceilingOne = bw.singleThread / s.bytesPerToken;
    ceilingRows.push([
      s.shape,
      fmtBytes(s.bytesPerToken) + (s.tiedEmbeddings ? ' (tied embeddings: output reads all of token_embd)' : ''),
      `${fmt(ceilingAll)} (${bw.threads} threads) / ${fmt(ceilingOne)} (1 thread)`,
      fmt(engineTps),
      `${(engineTps / ceilingAll).toFixed(2)} / ${(engineTps / ceilingOne).toFixed(2)}`,
    ]);
  }

  const threadRows = threadCounts.map((t) => {
    const tps = Math.max(...threadRuns.get(t)!);
    const base = Math.max(...threadRuns.get(1)!);
    return [String(t), fmt(tps), fmtRatio(tps / base), t === threads ? 'engine default' : ''];
  });

  const release = llama.llamaCppRelease;
  return {
    title: 'Engine: tokens/s against node-llama-cpp directly and against the memory-bandwidth ceiling',
    method: [
      'Synthetic ~1B shapes (Llama 3.2 1B dimensions: 16 blocks, width 2048, ' +
        '128,256-token vocabulary, tied embeddings) in Q8_0 and Q4_0, written once to the model cache.',
      "The engine (`loadEngine`, 1 slot) and the baseline (node-llama-cpp's `getLlama` → `loadModel` → `createContext` " +
        `→ a tight \`for await\` over \`sequence.evaluate\`) load the same file with the same threads (${threads}, the engine default: ` +
        `available cores − 1), context (${CONTEXT} tokens), batch size (${BATCH}), ` +
        'the same chat-template rendering of the same prompt, and the same greedy sampling options.',
      `Each round generates ${maxTokens} tokens with each of three parties back to back — the engine, ` +
        "the baseline, and an A/A control (a second baseline context, its own model load) that measures the machine's noise — " +
        `in one of the six orders, ${rounds} rounds after one warm-up (at least ${Math.min(MIN_ROUNDS, rounds)}: ` +
        `a shape stops early once its rounds have taken ${roundBudgetMs / 1000} s, so the suite stays within its bound ` +
        "on a slow machine; the table gives each shape's count). Tokens/s of a run = 1 ÷ the median time between consecutive tokens, " +
        'from when each token (direct) or each delta (engine; a synthetic greedy token is one character, ' +
        "so a delta of n characters carried n tokens) arrived: a few tokens slowed by another process's burst do not move it. " +
        'The figure held to the target is the median over rounds of engine ÷ direct within the round: the two runs of a round ' +
        "are back to back, so they share the machine's conditions, and the median sets aside a round that a burst hit on one side. " +
        "The range of the per-round ratios, the A/A control's ratio to the baseline (which would be 1.00× on a quiet machine) " +
        "and the ratio of each side's best run are shown next to it; results.json also holds each run's first-to-last-token rate.",
      'Memory-bandwidth ceiling: read bandwidth from `Buffer.equals` (glibc memcmp, ' +
        `read-only, streaming) over two ${fmtBytes(bw.bytesPerPass / 2)} buffers, best of ${bw.singleThreadPasses.length} passes, ` +
        `on 1 thread and on ${bw.threads} threads at once; measured at the start of this area. Ceiling tokens/s ` +
        '= bandwidth ÷ weight bytes read per token (all tensor data in the file: every matrix is read once per token, and with tied ' +
        'embeddings the output projection reads the whole token embedding; KV-cache reads are left out, a few MB at these contexts).',
      'Threads: the baseline alone on 1b-q4_0, each thread count in a fresh context on one loaded model, ' +
        '12 tokens after a short prompt, alternating order, 2 runs each.',
    ],
    tables: [
      {
        title: 'Engine vs node-llama-cpp directly',
        columns: [
          'shape',
          'threads',
          'rounds',
          'engine tok/s (best)',
          'direct tok/s (best)',
          'engine ÷ direct (median of rounds)',
          'per-round range',
          'A/A control: direct ÷ direct (range)',
          'ratio of the bests',
          'TTFT ms engine / direct',
          'same prompt tokens and text',
        ],
        rows,
      },
      {
        title:
          `Against the memory-bandwidth ceiling (read bandwidth ${fmt(bw.allThreads / 1e9)} GB/s ` +
          `on ${bw.threads} threads, ${fmt(bw.singleThread / 1e9)} GB/s on 1)`,
        columns: ['shape', 'weights read per token', 'ceiling tok/s', 'engine tok/s', 'fraction of ceiling (all threads / 1 thread)'],
        rows: ceilingRows,
      },
      {
        title: 'Threads (node-llama-cpp directly, 1b-q4_0)',
        columns: ['threads', 'tok/s (best of 2)', 'vs 1 thread', ''],
        rows: threadRows,
      },
    ],
    targets,
    notes: [
      `node-llama-cpp's ${llama.buildType} llama.cpp binary (it reports ` +
        `release "${release.release}"), ${String(llama.gpu) === 'false' ? 'CPU only' : String(llama.gpu)}.`,
      `The engine default is ${threads} thread${threads === 1 ? '' : 's'} (available cores − 1): llama.cpp's threads ` +
        'wait for each other at every step, so a thread that shares its core with the event loop or another process stalls all of them. ' +
        "How much that costs depends on how busy the machine is; the threads table is this run's evidence.",
    ],
    data: {
      threads,
      maxTokens,
      rounds,
      bandwidth: bw,
      shapes,
      threadRuns: Object.fromEntries(threadRuns),
      llamaCppRelease: release.release,
    },
  };
}
