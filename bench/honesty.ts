/**
 * Honesty (issue 13, "Must show"): the harness of cheating agents (test/helpers/cheating-agents.ts)
 * through a real gateway, many jobs each. Per cheat: a fresh gateway on SQLite with a reply checker
 * of its own (the dispute re-check), the honest agent and that cheat, both on real node-llama-cpp
 * engines with one slot each; then rounds of two jobs at once (so both agents are offered work
 * while both are eligible), each job a real client's (SDK, countersigned) or, one in
 * `AUDIT_EVERY`, an audit through the Auditor (its own checker, then revealed to the gateway).
 *
 * Figures per cheat: jobs it served until its first strike (counting the job the strike names),
 * until it got no more jobs (the score fell below minScore, or the router stopped choosing it for
 * the rest of the run), which check struck it, and the strikes on the honest agent (false
 * positives: must be 0). Detection is a count of jobs, not a time, so the figures do not depend on
 * this machine's speed — only the gateway's measured speeds (for claim-gap) do.
 *
 * Synthetic models never end a reply by themselves (greedy, they never draw EOS), so the jobs here
 * use single-character stop sequences that synthetic text contains; without them every reply ends
 * at maxTokens and an inflated count has no room below the gateway's own maxTokens cap.
 */
import { Auditor, BUILT_IN_PROMPTS, NightjarClient, type AuditResult, type ChatResult } from '../src/client/index.js';
import { createReplyChecker } from '../src/main/agent/index.js';
import { NightjarError } from '../src/shared/index.js';
import type { Strike } from '../src/gateway/index.js';
import {
  CHEATS,
  HARNESS_MODEL_ID,
  seededRandom,
  startHonestyNetwork,
  writeHarnessModels,
  type CheatName,
  type HarnessModels,
} from '../test/helpers/cheating-agents.js';
import { target, type AreaReport, type BenchContext, type Target } from './report.js';
import { now } from './stats.js';

/** One job in `AUDIT_EVERY` is an audit. */
const AUDIT_EVERY = 5;
/** Engines, checkers, gateway and clients share the machine: a keepalive read late must not break a job. */
const STREAM_IDLE_MS = 10_000;
/** Stop sequences synthetic text contains (see the file's comment). */
const STOPS = ['K', 'Q', '2', 'W', '~', 'd'];
const MAX_TOKENS = [16, 24, 32, 48];
const TEMPERATURES = [0.3, 0.7, 1];

interface CheatRun {
  cheat: CheatName;
  jobs: number;
  servedByCheat: number;
  servedByHonest: number;
  firstStrikeAt: number | null;
  firstStrikeReason: string | null;
  /** Cheat-served jobs when it served its last one, if it then got none for the rest of the run. */
  lastJobAt: number | null;
  barred: boolean;
  cheatStrikes: Record<string, number>;
  honestStrikes: Record<string, number>;
  audits: { ofCheat: number; failedOfCheat: number; ofHonest: number; failedOfHonest: number; reasons: Record<string, number> };
  failedJobs: number;
  /** Codes of the jobs that failed outright. */
  failedCodes: Record<string, number>;
  wallMs: number;
}

function countBy(strikes: readonly Strike[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of strikes) out[s.reason] = (out[s.reason] ?? 0) + 1;
  return out;
}

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

async function runCheat(cheat: CheatName, models: HarnessModels, jobs: number, ctx: BenchContext): Promise<CheatRun> {
  const started = now();
  const gatewayChecker = createReplyChecker({ modelPath: models.modelPath, threads: 1 });
  const auditorChecker = createReplyChecker({ modelPath: models.modelPath, threads: 1 });
  const net = await startHonestyNetwork({ models, gateway: { honesty: { checker: gatewayChecker.check } } });
  const random = seededRandom(CHEATS.indexOf(cheat) + 11);
  const run: CheatRun = {
    cheat,
    jobs: 0,
    servedByCheat: 0,
    servedByHonest: 0,
    firstStrikeAt: null,
    firstStrikeReason: null,
    lastJobAt: null,
    barred: false,
    cheatStrikes: {},
    honestStrikes: {},
    audits: { ofCheat: 0, failedOfCheat: 0, ofHonest: 0, failedOfHonest: 0, reasons: {} },
    failedJobs: 0,
    failedCodes: {},
    wallMs: 0,
  };
  try {
    // The speed cheat is timed by the gateway, which times decodes of 250 ms and more: both agents
    // stream at 12 ms a token (a Mac's pace), where the synthetic model alone is far faster.
    const pace = cheat === 'faked-speed' ? { paceMs: 12 } : {};
    const honest = await net.startAgent('honest', pace);
    const cheater = await net.startAgent(cheat, pace);
    const client = new NightjarClient({
      gatewayUrl: net.gateway.url,
      apiKey: net.clientKey.key,
      trust: { allowSynthetic: true },
      streamIdleMs: STREAM_IDLE_MS,
    });
    const auditClient = new NightjarClient({
      gatewayUrl: net.gateway.url,
      apiKey: net.auditorKey.key,
      trust: { allowSynthetic: true },
      streamIdleMs: STREAM_IDLE_MS,
    });
    const auditor = new Auditor({
      client: auditClient,
      checker: auditorChecker.check,
      model: HARNESS_MODEL_ID,
      random,
      sampling: { maxTokens: MAX_TOKENS, stops: STOPS, stopShare: 0.6 },
    });
    /** The cheat's served jobs, in order, by job id → its count then. */
    const cheatJobIndex = new Map<string, number>();
    const servedBy = (agentId: string | null, jobId: string | null): void => {
      if (agentId === cheater.agentId) {
        run.servedByCheat++;
        if (jobId) cheatJobIndex.set(jobId, run.servedByCheat);
      } else if (agentId === honest.agentId) run.servedByHonest++;
    };
    const failed = (code: string): void => {
      run.failedJobs++;
      run.failedCodes[code] = (run.failedCodes[code] ?? 0) + 1;
    };
    const realJob = async (): Promise<void> => {
      const prompt = pick(BUILT_IN_PROMPTS, random);
      const greedy = random() < 0.3;
      const stop = random() < 0.6 ? [pick(STOPS, random)] : undefined;
      let result: ChatResult;
      try {
        result = await client.complete({
          model: HARNESS_MODEL_ID,
          messages: [...prompt.messages],
          maxTokens: pick(MAX_TOKENS, random),
          temperature: greedy ? 0 : pick(TEMPERATURES, random),
          ...(random() < 0.5 ? { seed: Math.floor(random() * 2 ** 32) } : {}),
          ...(stop ? { stop } : {}),
        });
      } catch (error) {
        failed(error instanceof NightjarError ? error.code : 'NJ_INTERNAL');
        return;
      }
      servedBy(result.agentId, result.jobId);
    };
    const audit = async (): Promise<void> => {
      const r: AuditResult = await auditor.audit();
      if (r.error?.stage === 'job') failed(r.error.code);
      servedBy(r.agentId, r.jobId);
      const mine = r.agentId === cheater.agentId ? 'Cheat' : 'Honest';
      run.audits[`of${mine}`]++;
      if (r.pass === false) {
        run.audits[`failedOf${mine}`]++;
        for (const reason of r.reasons) run.audits.reasons[reason] = (run.audits.reasons[reason] ?? 0) + 1;
      }
    };
    let sent = 0;
    let lastCheatCount = 0;
    let roundsWithout = 0;
    while (sent < jobs) {
      const round: Promise<void>[] = [];
      for (let i = 0; i < 2 && sent < jobs; i++, sent++) round.push(sent % AUDIT_EVERY === AUDIT_EVERY - 1 ? audit() : realJob());
      await Promise.all(round);
      // Countersignatures and reveals are in: the strikes of this round are recorded.
      await client.countersigned();
      await auditClient.countersigned();
      run.jobs = sent;
      if (run.servedByCheat === lastCheatCount) roundsWithout++;
      else {
        lastCheatCount = run.servedByCheat;
        roundsWithout = 0;
      }
      // Barred and given nothing for 5 rounds: what the run is for is measured; the rest would be the honest agent's.
      if (roundsWithout >= 5 && net.gateway.honesty.barred(cheater.agentId)) break;
    }
    await net.gateway.honesty.reload();
    const cheatStrikes = await net.store.strikes.list({ agentId: cheater.agentId });
    const honestStrikes = await net.store.strikes.list({ agentId: honest.agentId });
    run.cheatStrikes = countBy(cheatStrikes);
    run.honestStrikes = countBy(honestStrikes);
    const oldestFirst = [...cheatStrikes].sort((a, b) => a.at - b.at);
    const first = oldestFirst.find((s) => s.jobId !== null && cheatJobIndex.has(s.jobId)) ?? oldestFirst[0];
    if (first) {
      run.firstStrikeAt = (first.jobId && cheatJobIndex.get(first.jobId)) || null;
      run.firstStrikeReason = first.reason;
    }
    run.barred = net.gateway.honesty.barred(cheater.agentId);
    // "No more jobs": it served none in the last rounds of the run (at least 5 rounds, 10 jobs).
    if (run.barred || roundsWithout >= 5) run.lastJobAt = lastCheatCount;
    await auditor.dispose();
    ctx.log(
      `${cheat}: ${run.servedByCheat} of ${run.jobs} jobs, first strike at its job ${run.firstStrikeAt ?? '–'} ` +
        `(${run.firstStrikeReason ?? 'none'}), no more jobs after ${run.lastJobAt ?? '–'}, ` +
        `honest strikes ${JSON.stringify(run.honestStrikes)}`,
    );
  } finally {
    await net.close();
    await gatewayChecker.dispose();
    await auditorChecker.dispose();
  }
  run.wallMs = now() - started;
  return run;
}

function mergeCounts(all: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const counts of all) for (const [k, n] of Object.entries(counts)) out[k] = (out[k] ?? 0) + n;
  return out;
}

function fmtCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? '0' : entries.map(([k, n]) => `${k} ×${n}`).join(', ');
}

/** The honesty area. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  // A bound, not a length: each cheat's run ends once it is barred and given nothing for 5 rounds.
  const jobs = ctx.quick ? 20 : 200;
  const models = await writeHarnessModels(ctx.outDir);
  const runs: CheatRun[] = [];
  try {
    for (const cheat of CHEATS.filter((c) => c !== 'honest')) runs.push(await runCheat(cheat, models, jobs, ctx));
  } finally {
    await models.remove();
  }
  const sum = (f: (r: CheatRun) => number): number => runs.reduce((n, r) => n + f(r), 0);
  const honestStrikes = runs.reduce((n, r) => n + Object.values(r.honestStrikes).reduce((a, b) => a + b, 0), 0);
  const caught = runs.filter((r) => r.firstStrikeAt !== null || Object.keys(r.cheatStrikes).length > 0);
  const targets: Target[] = [
    target(
      'cheats struck within the run (5 cheats beside an honest agent)',
      `${caught.length} of ${runs.length}`,
      'every cheat',
      caught.length === runs.length,
      runs
        .filter((r) => !caught.includes(r))
        .map((r) => r.cheat)
        .join(', ') || undefined,
    ),
    target(
      'cheats barred within the run (no more jobs)',
      `${runs.filter((r) => r.barred).length} of ${runs.length}`,
      'every cheat',
      runs.every((r) => r.barred),
      runs
        .filter((r) => !r.barred)
        .map((r) => r.cheat)
        .join(', ') || undefined,
    ),
    target('strikes on the honest agent (false positives)', String(honestStrikes), '0', honestStrikes === 0),
  ];
  return {
    title: 'Honesty: cheating agents against audits, countersignatures and measured speed',
    method: [
      `Per cheat a fresh gateway (SQLite, a reply checker of its own for revealed jobs), the honest agent and the cheat, each the real ` +
        `Agent on a real node-llama-cpp engine (1 slot, 1 thread) on the synthetic mini-q8_0 model (the small-model cheat runs tiny ` +
        `under mini-q8_0's sha256). Up to ${jobs} jobs in rounds of two at once; one in ${AUDIT_EVERY} is an audit (the Auditor: ` +
        `greedy or sampled, its own check, then revealed), the rest real client jobs through the SDK with countersignatures.`,
      `maxTokens from ${MAX_TOKENS.join('/')}, temperatures 0 (30%) or ${TEMPERATURES.join('/')}, single-character stop sequences on 60% ` +
        `of jobs (synthetic replies never end by themselves). Default gateway honesty options (claim-gap ×3 after 3 timed jobs, ` +
        `minScore 0.25).`,
      'A cheat barred (score below minScore) that then got no job for 5 rounds ends its run early. ' +
        '"Jobs until the first strike" counts the cheat\'s own jobs up to the one the strike names; "until no more jobs" is its job ' +
        'count when its score fell below minScore (or when it served its last job, if the router gave it none for the last 5 rounds).',
    ],
    tables: [
      {
        columns: [
          'cheat',
          'jobs served by it / honest',
          'jobs until its first strike',
          'first caught by',
          'jobs until no more jobs',
          'its strikes',
          'audits of it failed',
          'audit findings',
          'strikes on the honest agent',
        ],
        rows: runs.map((r) => [
          r.cheat,
          `${r.servedByCheat} / ${r.servedByHonest}`,
          r.firstStrikeAt === null
            ? Object.keys(r.cheatStrikes).length
              ? 'yes (job not matched)'
              : 'not struck'
            : String(r.firstStrikeAt),
          r.firstStrikeReason ?? '–',
          r.lastJobAt === null
            ? `still served at the end (${r.barred ? 'barred' : 'not barred'})`
            : `${r.lastJobAt}${r.barred ? ' (barred)' : ''}`,
          fmtCounts(r.cheatStrikes),
          `${r.audits.failedOfCheat} of ${r.audits.ofCheat}`,
          fmtCounts(r.audits.reasons),
          fmtCounts(r.honestStrikes),
        ]),
      },
    ],
    targets,
    notes: [
      `Audits of the honest agent: ${sum((r) => r.audits.failedOfHonest)} failed of ${sum((r) => r.audits.ofHonest)}. ` +
        `Jobs that failed outright: ${sum((r) => r.failedJobs)}` +
        `${sum((r) => r.failedJobs) ? ` (${fmtCounts(mergeCounts(runs.map((r) => r.failedCodes)))})` : ''}.`,
      `Wall time per cheat: ${runs.map((r) => `${r.cheat} ${(r.wallMs / 1000).toFixed(1)} s`).join(', ')}.`,
    ],
    data: { runs },
  };
}
