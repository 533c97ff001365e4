/**
 * Geometry of the earnings chart: nice axis steps and stacked bars per day. Pure numbers; the
 * screen draws them as SVG.
 */
import type { EarningsDay } from '../../shared/index.js';

/** Axis ticks from 0 to at least `max`: 1, 2 or 5 × 10ⁿ apart, about `count` of them. */
export function niceTicks(max: number, count = 4): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = 0; v < max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

/** One segment of a stacked bar. */
export interface BarSegment {
  date: string;
  model: string;
  /** The value (credits, or tokens when nothing is priced). */
  value: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The chart: bars, ticks and the unit. */
export interface ChartLayout {
  unit: 'credits' | 'tokens';
  ticks: number[];
  segments: BarSegment[];
  models: string[];
  width: number;
  height: number;
  /** Left edge of the plot (room for tick labels). */
  left: number;
  /** Bottom edge of the plot (room for day labels). */
  bottom: number;
}

/**
 * Lays out stacked bars, one per day, segments per model. Credits when any day has credits
 * (micro-credits converted to credits), completion tokens otherwise.
 */
export function layoutChart(
  days: readonly EarningsDay[],
  size: { width: number; height: number } = { width: 640, height: 220 },
): ChartLayout {
  const priced = days.some((d) => Object.values(d.byModel).some((v) => v > 0n));
  const unit = priced ? 'credits' : 'tokens';
  const valueOf = (d: EarningsDay, m: string): number => (priced ? Number(d.byModel[m] ?? 0n) / 1e6 : (d.tokensByModel[m] ?? 0));
  const models = [...new Set(days.flatMap((d) => Object.keys(d.tokensByModel)))].sort();
  const totals = days.map((d) => models.reduce((s, m) => s + valueOf(d, m), 0));
  const ticks = niceTicks(Math.max(0, ...totals));
  const top = ticks[ticks.length - 1]!;
  const left = 48;
  const bottom = size.height - 24;
  const plotTop = 8;
  const slot = (size.width - left - 8) / Math.max(1, days.length);
  const barWidth = Math.max(2, Math.min(28, slot * 0.7));
  const scale = (v: number): number => ((bottom - plotTop) * v) / top;
  const segments: BarSegment[] = [];
  days.forEach((d, i) => {
    let y = bottom;
    const x = left + i * slot + (slot - barWidth) / 2;
    for (const model of models) {
      const value = valueOf(d, model);
      if (value <= 0) continue;
      const height = Math.max(1, scale(value));
      y -= height;
      segments.push({ date: d.date, model, value, x, y, width: barWidth, height });
    }
  });
  return { unit, ticks, segments, models, width: size.width, height: size.height, left, bottom };
}
