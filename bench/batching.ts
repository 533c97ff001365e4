/**
 * Batching: aggregate tokens/s with 1, 2, 4 and 8 jobs at once on one loaded model. The engine
 * gives each job its own sequence in one context, so node-llama-cpp decodes the running jobs
 * together, one batch per step: the weights are read once per step for all of them.
 */
import { defaultThreads, loadEngine, type GenerateResult } from '../src/main/agent/index.js';
import type { ChatMessage } from '../src/shared/index.js';
import { ensureModel } from './models.js';
import type { AreaReport, BenchContext } from './report.js';
import { fmt, fmtRatio, median, now } from './stats.js';

const SHAPE = '1b-q4_0';
const LEVELS = [1, 2, 4, 8] as const;

/** Distinct prompts of equal length, so every job has the same prompt cost. */
function messagesFor(i: number): ChatMessage[] {
  return [{ role: 'user', content: `Bird ${String(i).padStart(2, '0')}?` }];
}

interface LevelRun {
  jobs: number;
  wallMs: number;
  completionTokens: number;
  aggregateTokensPerSecond: number;
  perJobDecode: number[];
  ttftMs: number[];
}

/** Runs the batching area: aggregate tokens/s with 1, 2, 4 and 8 jobs at once. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const threads = defaultThreads();
  const maxTokens = ctx.quick ? 8 : 16;
  const rounds = ctx.quick ? 1 : 2;
  const file = await ensureModel(ctx.modelsDir, SHAPE, ctx.log);
  const engine = await loadEngine({ modelPath: file.path, threads, slots: 8, contextLength: 1024, batchSize: 512 });
  const runs = new Map<number, LevelRun[]>(LEVELS.map((c) => [c, []]));
  try {
    await engine.generate({ messages: messagesFor(0), sampling: { maxTokens: 4, temperature: 0 } });
    for (let r = 0; r < rounds; r++) {
      // Ascending, then descending: a trend in the machine's load hits every level alike.
      for (const c of r % 2 === 0 ? LEVELS : [...LEVELS].reverse()) {
        const started = now();
        const results: GenerateResult[] = await Promise.all(
          Array.from({ length: c }, (_, i) => engine.generate({ messages: messagesFor(i + 1), sampling: { maxTokens, temperature: 0 } })),
        );
        const wallMs = now() - started;
        const completionTokens = results.reduce((n, x) => n + x.usage.completionTokens, 0);
        const levelRun: LevelRun = {
          jobs: c,
          wallMs,
          completionTokens,
          aggregateTokensPerSecond: (completionTokens * 1000) / wallMs,
          perJobDecode: results.map((x) => x.tokensPerSecond),
          ttftMs: results.map((x) => x.timeToFirstTokenMs),
        };
        runs.get(c)!.push(levelRun);
        ctx.log(`${c} job${c === 1 ? '' : 's'}: ${fmt(levelRun.aggregateTokensPerSecond)} tok/s aggregate`);
      }
    }
  } finally {
    await engine.dispose();
  }

  const decodeSum = (r: LevelRun): number => r.perJobDecode.reduce((x, y) => x + y, 0);
  const best = (c: number): LevelRun => runs.get(c)!.reduce((a, b) => (b.aggregateTokensPerSecond > a.aggregateTokensPerSecond ? b : a));
  const base = best(1).aggregateTokensPerSecond;
  const rows = LEVELS.map((c) => {
    const b = best(c);
    return [
      String(c),
      fmt(b.aggregateTokensPerSecond),
      fmtRatio(b.aggregateTokensPerSecond / base),
      fmt(median(b.perJobDecode)),
      fmt(decodeSum(b)),
      fmt(median(b.ttftMs)),
      fmt(b.wallMs / 1000),
    ];
  });
  return {
    title: 'Batching: aggregate tokens/s with 1, 2, 4 and 8 jobs at once',
    method: [
      `One engine on ${SHAPE} with 8 slots (sequences), ${threads} thread${threads === 1 ? '' : 's'} (the default), ` +
        'context 1,024 per sequence, batch 512. For each level, that many `engine.generate` calls start together, ' +
        `each with its own prompt of equal length and ${maxTokens} greedy tokens.`,
      'Aggregate tokens/s = completion tokens of all jobs ÷ wall time from the first call to the last result (prompt processing ' +
        "included: it is part of serving the jobs). The sum of the jobs' own decode rates (each job's (tokens − 1) ÷ its generation " +
        'time) is the aggregate of the generation phase alone, since the jobs decode side by side. Baseline: 1 job, in the same run. ' +
        `Levels run ascending then descending, ${rounds} round${rounds === 1 ? '' : 's'}; each level's best round is shown.`,
    ],
    tables: [
      {
        columns: [
          'jobs at once',
          'aggregate tok/s',
          'vs 1 job',
          'per-job decode tok/s (median)',
          'Σ per-job decode tok/s',
          'TTFT ms (median)',
          'wall s',
        ],
        rows,
      },
    ],
    targets: [],
    notes: [
      'No target is set for batching; the figure shows how far one loaded model stretches across concurrent jobs on this machine. ' +
        'A decoding step reads the weights once for every job in the batch, so while a step is bound by memory bandwidth, ' +
        'more jobs add tokens almost for free; once it is bound by arithmetic, each job adds its own cost.',
      `In this run the generation phase gave ${fmt(decodeSum(best(8)))} tokens/s ` +
        `in all with 8 jobs against ${fmt(decodeSum(best(1)))} with 1 (${fmtRatio(decodeSum(best(8)) / decodeSum(best(1)))})` +
        (decodeSum(best(8)) < 1.5 * decodeSum(best(1))
          ? `: the step's cost grew with the number of jobs, so with ${threads} CPU thread${threads === 1 ? '' : 's'} it is ` +
            "bound by arithmetic already at one job, and batching shares the model's memory here but not its compute. On a Mac's GPU, " +
            'where decoding is bound by memory bandwidth, batching should pay; this table is the one to re-measure there.'
          : '.'),
    ],
    data: { shape: SHAPE, threads, maxTokens, rounds, runs: Object.fromEntries(runs) },
  };
}
