/**
 * Warm cache: time to first token of a conversation's tenth turn against its first, on one engine
 * (the same agent, growing history), with the conversation's cache key and without it, on the
 * 1B Q4_0 synthetic shape.
 */
import { randomBytes } from 'node:crypto';
import { defaultThreads, loadEngine, type GenerateResult, type InferenceEngine } from '../src/main/agent/index.js';
import type { ChatMessage } from '../src/shared/index.js';
import { ensureModel } from './models.js';
import { target, type AreaReport, type BenchContext } from './report.js';
import { fmt, fmtRatio, median } from './stats.js';

const SHAPE = '1b-q4_0';
const CONTEXT = 2048;
/** Turns of each conversation; the target compares the last with the first. */
const TURNS = 10;
/** The target: the tenth turn's time to first token at most this many times the first's, with the cache. */
const GOAL = 1.5;

/** The nth user message: a few sentences, as a person types them (the synthetic vocabulary is one token per byte). */
function userMessage(n: number): string {
  return `Turn ${n}: what else do nightjars do at dusk, and where do they nest?`;
}

/** One conversation of TURNS turns; the time to first token of each. */
async function conversation(
  engine: InferenceEngine,
  maxTokens: number,
  cacheKey: string | undefined,
): Promise<{ ttft: number[]; promptTokens: number[]; cached: number[] }> {
  const messages: ChatMessage[] = [];
  const ttft: number[] = [];
  const promptTokens: number[] = [];
  const cached: number[] = [];
  for (let t = 1; t <= TURNS; t++) {
    messages.push({ role: 'user', content: userMessage(t) });
    const r: GenerateResult = await engine.generate({
      messages: [...messages],
      sampling: { maxTokens, temperature: 0 },
      ...(cacheKey === undefined ? {} : { cacheKey }),
    });
    ttft.push(r.timeToFirstTokenMs);
    promptTokens.push(r.usage.promptTokens);
    cached.push(r.cachedPromptTokens ?? 0);
    messages.push({ role: 'assistant', content: r.text });
  }
  return { ttft, promptTokens, cached };
}

/** Runs the warm-cache area. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const rounds = ctx.quick ? 1 : 3;
  const maxTokens = ctx.quick ? 8 : 16;
  const threads = defaultThreads();
  const file = await ensureModel(ctx.modelsDir, SHAPE, ctx.log);
  const engine = await loadEngine({ modelPath: file.path, threads, slots: 2, contextLength: CONTEXT });
  const runs: { cache: boolean; ttft: number[]; promptTokens: number[]; cached: number[] }[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so a machine that slows over the run does not favour one.
      for (const cache of r % 2 === 0 ? [true, false] : [false, true]) {
        const c = await conversation(engine, maxTokens, cache ? randomBytes(32).toString('base64url') : undefined);
        runs.push({ cache, ...c });
        ctx.log(
          `${cache ? 'cache' : 'no cache'}: TTFT ms by turn ${c.ttft.map((x) => fmt(x)).join(', ')}; ` +
            `turn ${TURNS}: ${c.promptTokens[TURNS - 1]} prompt tokens, ${c.cached[TURNS - 1]} reused`,
        );
      }
    }
  } finally {
    await engine.dispose();
  }
  const ratios = (cache: boolean): number[] => runs.filter((x) => x.cache === cache).map((x) => x.ttft[TURNS - 1]! / x.ttft[0]!);
  const med = (cache: boolean, turn: number): number => median(runs.filter((x) => x.cache === cache).map((x) => x.ttft[turn - 1]!));
  const withCache = median(ratios(true));
  const without = median(ratios(false));
  const sample = runs.find((x) => x.cache)!;
  const rows = [true, false].map((cache) => [
    cache ? 'with cache key' : 'without',
    fmt(med(cache, 1)),
    fmt(med(cache, TURNS)),
    `${fmtRatio(median(ratios(cache)))}× (${ratios(cache)
      .map((x) => fmtRatio(x))
      .join(', ')})`,
    String(runs.find((x) => x.cache === cache)!.promptTokens[TURNS - 1]),
    String(runs.find((x) => x.cache === cache)!.cached[TURNS - 1]),
  ]);
  return {
    title: `Warm cache: time to first token of the ${TURNS}th turn against the first, ${SHAPE}`,
    method: [
      `One engine (${SHAPE} synthetic shape, ${threads} thread(s), 2 slots, context ${CONTEXT}), greedy. ` +
        `A conversation of ${TURNS} turns: each turn adds a user message of about 70 characters (one token per byte ` +
        `in the synthetic vocabulary) and the reply to it (${maxTokens} tokens), so turn ${TURNS}'s prompt holds the whole history.`,
      'With the cache: every turn carries the same random cache key (the engine keeps the sequence warm between turns). ' +
        `Without: no key (each turn evaluates its whole prompt). ${rounds} round(s), each with both conversations, in alternating ` +
        "order; time to first token is the engine's own figure (from the call to the first generated token).",
    ],
    tables: [
      {
        columns: [
          'conversation',
          'turn 1 TTFT, ms (median)',
          `turn ${TURNS} TTFT, ms (median)`,
          `turn ${TURNS} ÷ turn 1 (median; per round)`,
          `turn ${TURNS} prompt tokens`,
          'of them reused from the warm sequence',
        ],
        rows,
      },
    ],
    targets: [
      target(
        `turn ${TURNS} vs turn 1 time to first token, with the cache, ${SHAPE}`,
        `${fmtRatio(withCache)}× (without: ${fmtRatio(without)}×)`,
        `≤ ${GOAL}×`,
        withCache <= GOAL,
      ),
    ],
    notes: [`Turn-by-turn TTFT of one conversation with the cache, ms: ${sample.ttft.map((x) => fmt(x)).join(', ')}.`],
    data: { runs, withCache, without },
  };
}
