/**
 * What every benchmark area returns, and how a run becomes bench/out/results.json and the
 * markdown table in bench/RESULTS.md.
 */
import type { MachineInfo } from './machine.js';
import { fmt } from './stats.js';

/** The benchmark areas, in the order a full run measures them. */
export const AREA_NAMES = [
  'crypto',
  'relay',
  'accept-burst',
  'engine',
  'warm-cache',
  'batching',
  'whole-path',
  'preemption',
  'cold-start',
  'cli-startup',
  'hostile',
  'honesty',
  'cluster',
] as const;

/** One benchmark area. */
export type AreaName = (typeof AREA_NAMES)[number];

/** True if `name` names an area. */
export function isAreaName(name: string): name is AreaName {
  return (AREA_NAMES as readonly string[]).includes(name);
}

/** What an area is handed. */
export interface BenchContext {
  /** Short settings for developing the suite: fewer rounds, fewer tokens, shorter phases. */
  readonly quick: boolean;
  /** Where synthetic model files are cached between runs. */
  readonly modelsDir: string;
  /** Scratch directory of this run (bench/out). */
  readonly outDir: string;
  /** Progress lines, for the person watching. */
  log(line: string): void;
}

/** Whether a target was met. */
export type TargetStatus = 'met' | 'not met' | 'not measured';

/** One line of the targets table. */
export interface Target {
  /** What is measured, e.g. "engine vs direct node-llama-cpp, 1b-q4_0". */
  readonly name: string;
  /** The measured figure, formatted. */
  readonly figure: string;
  /** The target, formatted, e.g. "≥ 0.95×". */
  readonly target: string;
  readonly status: TargetStatus;
  /** Where not met: what limits it, with the evidence measured in this run. */
  readonly limitedBy?: string;
}

/** A table of formatted cells. */
export interface Table {
  readonly title?: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

/** What an area measured. */
export interface AreaReport {
  readonly title: string;
  /** How it was measured, one markdown paragraph or bullet per entry. */
  readonly method: readonly string[];
  readonly tables: readonly Table[];
  readonly targets: readonly Target[];
  /** Observations worth keeping next to the figures. */
  readonly notes: readonly string[];
  /** Raw figures and samples, for results.json. */
  readonly data: Readonly<Record<string, unknown>>;
}

/** An area's report as the run records it. */
export interface AreaResult extends Partial<AreaReport> {
  readonly area: AreaName;
  readonly durationMs: number;
  /** Set when the area could not finish; its targets are then "not measured". */
  readonly error?: string;
}

/** A whole run. */
export interface SuiteResult {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly wallMs: number;
  readonly quick: boolean;
  readonly areas: readonly AreaName[];
  readonly machine: MachineInfo;
  /** Load average (1 min) when the run started and ended: how busy the machine was. */
  readonly loadAverage: { readonly start: number; readonly end: number };
  /**
   * Shares of the machine's CPU time over the run (Linux /proc/stat): stolen by the hypervisor
   * (a VM's CPUs lent to other guests), and busy; null where unknown. Steal per area too.
   */
  readonly cpu: {
    readonly steal: number | null;
    readonly busy: number | null;
    readonly stealByArea: Readonly<Partial<Record<AreaName, number>>>;
  };
  /** Free text given with --note. */
  readonly note: string | null;
  /** True when vitest's include patterns cover only test/ (so nothing in bench/ runs under npm test). */
  readonly benchOutsideTests: boolean;
  readonly results: readonly AreaResult[];
}

/** The steal line of the machine table: over the run, then per area. */
function describeSteal(suite: SuiteResult): string {
  const { steal, stealByArea } = suite.cpu;
  if (steal === null) return 'unknown on this OS';
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const areas = Object.entries(stealByArea).map(([area, s]) => `${area} ${pct(s)}`);
  return (
    `${pct(steal)} of all CPU time over the run${areas.length ? ` (${areas.join(', ')})` : ''}: time this VM's cores ` +
    "ran other guests' work; the areas' ratios hold their two sides to the same conditions, but absolute figures shrink with it"
  );
}

/** A target line: `status` is met when `ok`. */
export function target(name: string, figure: string, goal: string, ok: boolean, limitedBy?: string): Target {
  return { name, figure, target: goal, status: ok ? 'met' : 'not met', ...(ok || limitedBy === undefined ? {} : { limitedBy }) };
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function renderTable(table: Table): string[] {
  const lines: string[] = [];
  if (table.title) lines.push(`**${table.title}**`, '');
  lines.push(`| ${table.columns.map(cell).join(' | ')} |`);
  lines.push(`|${table.columns.map(() => '---').join('|')}|`);
  for (const row of table.rows) lines.push(`| ${row.map(cell).join(' | ')} |`);
  lines.push('');
  return lines;
}

function minutes(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

/** The markdown of bench/RESULTS.md for a run. */
export function renderMarkdown(suite: SuiteResult): string {
  const m = suite.machine;
  const out: string[] = [];
  out.push('# Nightjar benchmark results', '');
  out.push(
    `Written by \`npm run bench\`${suite.quick ? ' with `--quick` (short settings: figures are indicative only)' : ''} ` +
      `on ${suite.finishedAt.slice(0, 10)}; ` +
      `the suite took ${minutes(suite.wallMs)} of wall time. Raw figures and samples: \`bench/out/results.json\`.`,
    '',
  );
  if (suite.note) out.push(`> **Note:** ${suite.note}`, '');
  out.push('## Machine', '');
  out.push(
    ...renderTable({
      columns: ['', ''],
      rows: [
        ['CPU', `${m.cpuModel}: ${m.logicalCores} logical cores, ${m.availableParallelism} available to this process`],
        ['Memory', `${fmt(m.totalMemoryBytes / 2 ** 30)} GiB`],
        ['OS', m.os],
        ['Node.js', m.node],
        ['node-llama-cpp', `${m.nodeLlamaCpp}${m.llamaCppRelease ? ` (its binary reports llama.cpp release "${m.llamaCppRelease}")` : ''}`],
        ['Commit', m.gitCommit],
        ['Load average (1 min)', `${suite.loadAverage.start.toFixed(2)} at the start, ${suite.loadAverage.end.toFixed(2)} at the end`],
        ['CPU time stolen by the hypervisor', describeSteal(suite)],
      ],
    }),
  );
  out.push(
    'Every figure below is a ratio against a baseline measured in the same run, on the same machine, ' +
      'interleaved with it where the two can alternate, so a busy or slow machine moves both sides together. ' +
      'Absolute figures are listed for context; only the ratios are meant to carry from one machine to another.',
    '',
  );

  out.push('## Targets', '');
  const targetRows: string[][] = [];
  for (const r of suite.results) {
    const targets = r.targets ?? [];
    if (r.error && targets.length === 0) targetRows.push([r.area, '(area failed)', '–', '–', 'not measured', r.error]);
    for (const t of targets)
      targetRows.push([
        r.area,
        t.name,
        t.figure,
        t.target,
        t.status === 'met' ? '**met**' : t.status === 'not met' ? '**not met**' : 'not measured',
        t.limitedBy ?? '',
      ]);
  }
  const complete = !suite.quick && suite.areas.length === AREA_NAMES.length;
  const inTime = suite.wallMs < 10 * 60_000;
  targetRows.push([
    'suite',
    'full suite wall time on this machine',
    minutes(suite.wallMs),
    '< 10 min on 2 cores',
    complete ? (inTime ? '**met**' : '**not met**') : 'not measured (quick or partial run)',
    complete && !inTime
      ? `the slowest areas: ${[...suite.results]
          .sort((a, b) => b.durationMs - a.durationMs)
          .slice(0, 3)
          .map((r) => `${r.area} ${(r.durationMs / 1000).toFixed(0)} s`)
          .join(', ')}`
      : '',
  ]);
  targetRows.push([
    'suite',
    'benchmarks never run in `npm test`',
    suite.benchOutsideTests ? 'vitest includes only test/**' : 'vitest includes more than test/**',
    'never',
    suite.benchOutsideTests ? '**met**' : '**not met**',
    suite.benchOutsideTests ? '' : 'vitest.config.ts includes files outside test/',
  ]);
  out.push(...renderTable({ columns: ['area', 'what', 'figure', 'target', 'status', 'what limits it'], rows: targetRows }));

  for (const r of suite.results) {
    out.push(`## ${r.title ?? r.area}`, '');
    if (r.error) out.push(`**This area did not finish:** ${r.error}`, '');
    if (r.method && r.method.length > 0) {
      out.push('How it was measured:', '');
      for (const line of r.method) out.push(`- ${line}`);
      out.push('');
    }
    for (const t of r.tables ?? []) out.push(...renderTable(t));
    if (r.notes && r.notes.length > 0) {
      for (const line of r.notes) out.push(`- ${line}`);
      out.push('');
    }
    out.push(`_${r.area}: ${(r.durationMs / 1000).toFixed(1)} s._`, '');
  }

  out.push('## Running it', '');
  out.push(
    '`npm run bench` builds and runs the full suite (under 10 minutes on a 2-core machine) and rewrites this file. ' +
      '`npm run bench -- --quick` runs short settings and `--only engine,relay` runs some areas; both write their table to ' +
      '`bench/out/RESULTS.md` instead, so this file always holds a full run. `--note "…"` adds a note to the top. ' +
      'Synthetic models are written once to `bench/out/models/`. Each area runs in its own Node process. ' +
      'Nothing in `bench/` runs under `npm test`.',
    '',
  );
  return out.join('\n');
}
