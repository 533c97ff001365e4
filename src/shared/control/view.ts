/**
 * Pure helpers that turn control-API answers into what people read: state names, credits,
 * earnings per period and per day, whether a model fits this machine. Shared by the menu-bar
 * tray (main process) and the dashboard (renderer), so both say the same thing.
 */
import type { AgentState } from '../protocol/schemas.js';
import type { EarningsSummary } from './contract.js';

/** A state as a person reads it. */
export const STATE_LABELS: Readonly<Record<AgentState, string>> = {
  stopped: 'Stopped',
  waiting: 'Waiting',
  loading: 'Loading model',
  serving: 'Serving',
  draining: 'Finishing jobs',
  paused: 'Paused',
  error: 'Needs attention',
};

/** YYYY-MM-DD of `ms` in `timeZone` (as the agent counts earnings days). */
export function dayIn(ms: number, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(ms);
}

/** The calendar day `n` days before `day` (YYYY-MM-DD), whatever the time zone's offsets do. */
export function daysBefore(day: string, n: number): string {
  const t = Date.parse(`${day}T00:00:00Z`) - n * 86_400_000;
  return new Date(t).toISOString().slice(0, 10);
}

/** Sums over some days. */
export interface EarningsTotal {
  jobs: number;
  promptTokens: number;
  completionTokens: number;
  /** Null when some row in the period has no price. */
  microCredits: string | null;
}

function total(rows: EarningsSummary['rows']): EarningsTotal {
  let credits: bigint | null = 0n;
  const t = { jobs: 0, promptTokens: 0, completionTokens: 0 };
  for (const r of rows) {
    t.jobs += r.jobs;
    t.promptTokens += r.promptTokens;
    t.completionTokens += r.completionTokens;
    credits = credits === null || r.microCredits === null ? null : credits + BigInt(r.microCredits);
  }
  return { ...t, microCredits: credits === null ? null : credits.toString() };
}

/** Today, the last 7 days and the last 30 days (today included), in the summary's time zone. */
export function earningsPeriods(
  summary: EarningsSummary,
  now: number,
): { today: EarningsTotal; week: EarningsTotal; month: EarningsTotal } {
  const today = dayIn(now, summary.timeZone);
  const since = (n: number): EarningsSummary['rows'] => summary.rows.filter((r) => r.date >= daysBefore(today, n - 1) && r.date <= today);
  return { today: total(since(1)), week: total(since(7)), month: total(since(30)) };
}

/** One day of the chart: credits (or tokens, when unpriced) per model. */
export interface EarningsDay {
  date: string;
  /** Micro-credits per model; a model without a price counts 0 here. */
  byModel: Record<string, bigint>;
  /** Completion tokens per model. */
  tokensByModel: Record<string, number>;
}

/** The last `days` days (oldest first, today last), each with its models; days without jobs are empty. */
export function earningsByDay(summary: EarningsSummary, days: number, now: number): EarningsDay[] {
  const today = dayIn(now, summary.timeZone);
  const out: EarningsDay[] = [];
  for (let i = days - 1; i >= 0; i--) out.push({ date: daysBefore(today, i), byModel: {}, tokensByModel: {} });
  const index = new Map(out.map((d) => [d.date, d]));
  for (const r of summary.rows) {
    const d = index.get(r.date);
    if (!d) continue;
    d.byModel[r.model] = (d.byModel[r.model] ?? 0n) + (r.microCredits === null ? 0n : BigInt(r.microCredits));
    d.tokensByModel[r.model] = (d.tokensByModel[r.model] ?? 0) + r.completionTokens;
  }
  return out;
}

/** Totals per model over the whole summary, most jobs first. */
export function earningsByModel(summary: EarningsSummary): (EarningsTotal & { model: string })[] {
  const models = [...new Set(summary.rows.map((r) => r.model))];
  return models
    .map((model) => ({ model, ...total(summary.rows.filter((r) => r.model === model)) }))
    .sort((a, b) => b.jobs - a.jobs || a.model.localeCompare(b.model));
}

/** Whether a model fits this machine: by its stated minimum, or its file size plus a fifth. */
export type ModelFit = 'fits' | 'tight' | 'too-big' | 'unknown';

/**
 * Whether a model of `minMemoryBytes` (or, if that is unknown, `fileBytes` + 20 %) fits a machine
 * with `memory`: 'too-big' if it needs more than the machine has, 'tight' if more than is free
 * now (it may load once other apps give memory back), 'fits' otherwise.
 */
export function modelFit(
  minMemoryBytes: number | null,
  fileBytes: number | null,
  memory: { totalBytes: number; availableBytes: number } | null,
): ModelFit {
  const need = minMemoryBytes ?? (fileBytes === null ? null : Math.ceil(fileBytes * 1.2));
  if (memory === null || need === null) return 'unknown';
  if (need > memory.totalBytes) return 'too-big';
  if (need > memory.availableBytes) return 'tight';
  return 'fits';
}
