/**
 * `npm run bench`: runs the benchmark areas, each in its own Node process, and writes
 * bench/out/results.json and the markdown table (bench/RESULTS.md for a full run).
 *
 *   node dist/bench/run.js [--quick] [--only engine,relay] [--note "text"]
 *
 * Benchmarks are not tests: nothing here runs under `npm test`.
 */
import { fork } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuShares, cpuTimes, loadAverage, machineInfo } from './machine.js';
import {
  AREA_NAMES,
  isAreaName,
  renderMarkdown,
  type AreaName,
  type AreaReport,
  type AreaResult,
  type BenchContext,
  type SuiteResult,
} from './report.js';
import { now } from './stats.js';

/** The repository root (this file runs from dist/bench/). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'bench', 'out');

/** Longest one area may run before it is stopped and recorded as failed. */
const AREA_TIMEOUT_MS = { quick: 4 * 60_000, full: 6 * 60_000 };

interface Args {
  quick: boolean;
  only: AreaName[] | null;
  note: string | null;
  /** Set in a child process: the one area it runs. */
  area: AreaName | null;
}

const USAGE = 'usage: node dist/bench/run.js [--quick] [--only <area>[,<area>…]] [--note "text"]\nareas: ' + AREA_NAMES.join(', ');

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, only: null, note: null, area: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--quick') args.quick = true;
    else if (a === '--only') {
      const names = value()
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const n of names) if (!isAreaName(n)) throw new Error(`unknown area "${n}"\n${USAGE}`);
      args.only = names as AreaName[];
    } else if (a === '--note') args.note = value();
    else if (a === '--area') {
      const n = value();
      if (!isAreaName(n)) throw new Error(`unknown area "${n}"`);
      args.area = n;
    } else if (a === '--help' || a === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument "${a}"\n${USAGE}`);
  }
  return args;
}

type AreaModule = { run(ctx: BenchContext): Promise<AreaReport> };

const AREAS: Record<AreaName, () => Promise<AreaModule>> = {
  engine: () => import('./engine.js'),
  'warm-cache': () => import('./warm-cache.js'),
  batching: () => import('./batching.js'),
  'whole-path': () => import('./whole-path.js'),
  relay: () => import('./relay.js'),
  'accept-burst': () => import('./accept-burst.js'),
  crypto: () => import('./crypto.js'),
  preemption: () => import('./preemption.js'),
  'cold-start': () => import('./cold-start.js'),
  'cli-startup': () => import('./cli-startup.js'),
  hostile: () => import('./hostile.js'),
  honesty: () => import('./honesty.js'),
  cluster: () => import('./cluster.js'),
};

function messageOf(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

/** Child process: run one area and hand its report to the parent. */
async function runArea(area: AreaName, quick: boolean): Promise<void> {
  const ctx: BenchContext = {
    quick,
    modelsDir: path.join(OUT, 'models'),
    outDir: OUT,
    log: (line) => console.log(`[${area}] ${line}`),
  };
  const started = now();
  let result: AreaResult;
  try {
    const report = await (await AREAS[area]()).run(ctx);
    result = { area, durationMs: now() - started, ...report };
  } catch (error) {
    console.error(`[${area}] failed: ${messageOf(error)}`);
    result = { area, durationMs: now() - started, error: error instanceof Error ? error.message : String(error) };
  }
  await new Promise<void>((resolve) => process.send!(result, () => resolve()));
  // Areas dispose what they open; exit anyway so a stray handle cannot hold the suite.
  process.exit(0);
}

/** Parent: run `area` in a fresh Node process (with --expose-gc for memory figures). */
function spawnArea(area: AreaName, quick: boolean): Promise<AreaResult> {
  const started = now();
  return new Promise((resolve) => {
    const child = fork(fileURLToPath(import.meta.url), ['--area', area, ...(quick ? ['--quick'] : [])], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let result: AreaResult | null = null;
    const limit = quick ? AREA_TIMEOUT_MS.quick : AREA_TIMEOUT_MS.full;
    const timer = setTimeout(() => {
      result ??= { area, durationMs: now() - started, error: `stopped after ${limit / 60_000} minutes` };
      child.kill('SIGKILL');
    }, limit);
    child.on('message', (message) => {
      result = message as AreaResult;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(
        result ?? { area, durationMs: now() - started, error: `the area's process exited (${signal ?? `code ${code}`}) without a report` },
      );
    });
  });
}

/** True if vitest.config.ts includes only files under test/: bench/ then never runs in npm test. */
async function benchOutsideTests(): Promise<boolean> {
  try {
    const config = await readFile(path.join(ROOT, 'vitest.config.ts'), 'utf8');
    const include = /include:\s*\[([^\]]*)\]/.exec(config)?.[1];
    if (include === undefined) return false;
    const patterns = [...include.matchAll(/['"]([^'"]+)['"]/g)].map((m) => m[1]!);
    return patterns.length > 0 && patterns.every((p) => p.startsWith('test/'));
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.area) {
    await runArea(args.area, args.quick);
    return;
  }
  const areas = args.only ?? [...AREA_NAMES];
  const startedAt = new Date();
  const started = now();
  const loadStart = loadAverage();
  const cpuStart = cpuTimes();
  const machine = machineInfo();
  console.log(`Nightjar benchmarks${args.quick ? ' (quick)' : ''}: ${areas.join(', ')}`);
  console.log(`${machine.cpuModel}, ${machine.availableParallelism} cores available, load average ${loadStart.toFixed(2)}`);
  const results: AreaResult[] = [];
  const stealByArea: Partial<Record<AreaName, number>> = {};
  for (const area of areas) {
    const t = now();
    const cpuBefore = cpuTimes();
    console.log(`\n== ${area}`);
    const result = await spawnArea(area, args.quick);
    results.push(result);
    const shares = cpuShares(cpuBefore, cpuTimes());
    if (shares) stealByArea[area] = shares.steal;
    const release = result.data?.['llamaCppRelease'];
    if (typeof release === 'string') machine.llamaCppRelease = release;
    const stolen = stealByArea[area] === undefined ? '' : `, ${(stealByArea[area] * 100).toFixed(1)}% of CPU time stolen by the hypervisor`;
    console.log(`== ${area}: ${result.error ? `FAILED (${result.error})` : 'done'} in ${((now() - t) / 1000).toFixed(1)} s${stolen}`);
    for (const tg of result.targets ?? []) console.log(`   ${tg.status.padEnd(8)} ${tg.name}: ${tg.figure} (target ${tg.target})`);
  }
  const suite: SuiteResult = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    wallMs: now() - started,
    quick: args.quick,
    areas,
    machine,
    loadAverage: { start: loadStart, end: loadAverage() },
    cpu: { ...(cpuShares(cpuStart, cpuTimes()) ?? { steal: null, busy: null }), stealByArea },
    note: args.note,
    benchOutsideTests: await benchOutsideTests(),
    results,
  };
  const full = !args.quick && args.only === null;
  await mkdir(OUT, { recursive: true });
  await writeFile(path.join(OUT, 'results.json'), JSON.stringify(suite, null, 2) + '\n');
  const md = full ? path.join(ROOT, 'bench', 'RESULTS.md') : path.join(OUT, 'RESULTS.md');
  await writeFile(md, renderMarkdown(suite));
  console.log(
    `\nWall time ${(suite.wallMs / 1000).toFixed(1)} s. ` +
      `Wrote ${path.relative(ROOT, path.join(OUT, 'results.json'))} and ${path.relative(ROOT, md)}.`,
  );
  if (!full) console.log('(A quick or partial run leaves bench/RESULTS.md alone: it always holds a full run.)');
}

main().catch((error: unknown) => {
  console.error(messageOf(error));
  process.exit(1);
});
