/**
 * CLI startup: how long `nightjar --help` and `nightjar version` take, as a person runs them
 * (a fresh `node bin/nightjar.js` process each time), against a bare `node -e 0`. Each command
 * loads only commander and the command table; a command's layer loads when it runs.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { target, type AreaReport, type BenchContext, type Target } from './report.js';
import { fmt, fmtRatio, median, now, range } from './stats.js';

/** The repository root (this file runs from dist/bench/). */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin', 'nightjar.js');

/** Target: a command's median start-up within this multiple of `node -e 0`'s. */
const TARGET_RATIO = 2;

interface Subject {
  readonly name: string;
  readonly args: readonly string[];
  /** What a correct run prints on stdout. */
  readonly prints: RegExp;
}

const SUBJECTS: readonly Subject[] = [
  { name: 'node -e 0', args: ['-e', '0'], prints: /^$/ },
  { name: 'nightjar --help', args: [BIN, '--help'], prints: /^Usage: nightjar \[options\] \[command\]/ },
  { name: 'nightjar version', args: [BIN, 'version'], prints: /^nightjar \d+\.\d+\.\d+/ },
];

/** One run of `subject` in a fresh process; returns its wall time in ms. */
function timeOnce(subject: Subject): number {
  const started = now();
  const result = spawnSync(process.execPath, subject.args, {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  const ms = now() - started;
  if (result.status !== 0 || !subject.prints.test(result.stdout)) {
    throw new Error(`${subject.name} exited ${result.status} printing ${JSON.stringify(result.stdout.slice(0, 200))} ${result.stderr}`);
  }
  return ms;
}

/** Runs the CLI-startup area: the subjects interleaved round by round, in a rotating order. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const rounds = ctx.quick ? 5 : 15;
  const warmup = 2;
  const samples = new Map<string, number[]>(SUBJECTS.map((s) => [s.name, []]));
  for (let round = 0; round < warmup + rounds; round++) {
    for (let i = 0; i < SUBJECTS.length; i++) {
      const subject = SUBJECTS[(round + i) % SUBJECTS.length]!;
      const ms = timeOnce(subject);
      if (round >= warmup) samples.get(subject.name)!.push(ms);
    }
  }
  const baseline = median(samples.get('node -e 0')!);
  const rows: string[][] = [];
  const targets: Target[] = [];
  for (const subject of SUBJECTS) {
    const values = samples.get(subject.name)!;
    const { min, max } = range(values);
    const ratio = median(values) / baseline;
    rows.push([subject.name, fmt(median(values)), `${fmt(min)}–${fmt(max)}`, subject.name === 'node -e 0' ? '1×' : fmtRatio(ratio)]);
    if (subject.name !== 'node -e 0') {
      targets.push(
        target(
          `${subject.name} vs node -e 0, median start-up`,
          `${fmt(median(values))} ms vs ${fmt(baseline)} ms: ${fmtRatio(ratio)}`,
          `≤ ${TARGET_RATIO}×`,
          ratio <= TARGET_RATIO,
          'what the process loads before it answers: commander and the command table (see the note)',
        ),
      );
    }
    ctx.log(`${subject.name}: median ${fmt(median(values))} ms (${fmt(min)}–${fmt(max)})`);
  }
  return {
    title: 'CLI startup: `nightjar --help` and `nightjar version` against `node -e 0`',
    method: [
      `Each figure is the wall time of a fresh process, from spawn to exit (\`spawnSync\` of ` +
        `\`${path.basename(process.execPath)} bin/nightjar.js …\`, output piped, \`NODE_OPTIONS\` empty), as ` +
        `a person runs the command from a build. ${rounds} rounds after ${warmup} warm-up rounds; in each ` +
        `round the three run once each, in an order that rotates from round to round, so a busy moment of the ` +
        `machine falls on all three alike.`,
      'The baseline is a bare `node -e 0`: Node starting and exiting with nothing to load.',
    ],
    tables: [{ columns: ['command', 'median, ms', 'range, ms', 'median ÷ node -e 0'], rows }],
    targets,
    notes: [
      'Before issue 11 every command loaded every layer (node-llama-cpp, fastify, the gateway, the client, ' +
        'zod) on start, and `nightjar --help` took 1.4 s against 0.11 s for `node -e 0` (NOTES.md). Now ' +
        'run.ts and main.ts load commander and the command table only; each command imports its layer when ' +
        'its action runs, and `version` reads package.json.',
    ],
    data: { rounds, warmup, samples: Object.fromEntries(samples) },
  };
}
