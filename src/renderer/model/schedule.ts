/**
 * The schedule editor's logic: how a window reads, whether it runs overnight, and a draft of
 * windows checked before it is sent. Pure.
 */
import { WEEKDAYS, type ScheduleWindow, type Weekday } from '../../shared/index.js';

/** Short day names as the editor shows them. */
export const DAY_LABELS: Readonly<Record<Weekday, string>> = {
  mon: 'Mon',
  tue: 'Tue',
  wed: 'Wed',
  thu: 'Thu',
  fri: 'Fri',
  sat: 'Sat',
  sun: 'Sun',
};

/** True if the window runs past midnight into the next day (end not after start; equal is a whole day). */
export function isOvernight(w: Pick<ScheduleWindow, 'start' | 'end'>): boolean {
  return w.end < w.start;
}

/** Days as a person writes them: "Every day", "Mon–Fri", "Sat, Sun", "Mon, Wed–Fri". */
export function describeDays(days: readonly Weekday[]): string {
  const set = new Set(days);
  if (set.size === 7) return 'Every day';
  const idx = WEEKDAYS.map((d, i) => (set.has(d) ? i : -1)).filter((i) => i >= 0);
  const runs: string[] = [];
  for (let k = 0; k < idx.length;) {
    let j = k;
    while (j + 1 < idx.length && idx[j + 1] === idx[j]! + 1) j++;
    const a = DAY_LABELS[WEEKDAYS[idx[k]!]!];
    const b = DAY_LABELS[WEEKDAYS[idx[j]!]!];
    runs.push(j - k >= 2 ? `${a}–${b}` : j > k ? `${a}, ${b}` : a);
    k = j + 1;
  }
  return runs.join(', ');
}

/** A window as a sentence: "Mon–Fri 22:00 → 07:00 the next day". */
export function describeWindow(w: ScheduleWindow): string {
  if (w.start === w.end) return `${describeDays(w.days)}, all day`;
  return `${describeDays(w.days)} ${w.start} → ${w.end}${isOvernight(w) ? ' the next day' : ''}`;
}

/** A window being edited: like {@link ScheduleWindow} but possibly incomplete. */
export interface WindowDraft {
  days: Weekday[];
  start: string;
  end: string;
}

const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;

/** Checks a draft schedule; the problems are addressed to the person editing (row numbers from 1). */
export function checkSchedule(
  drafts: readonly WindowDraft[],
): { ok: true; schedule: ScheduleWindow[] } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  drafts.forEach((d, i) => {
    if (d.days.length === 0) problems.push(`Window ${i + 1}: pick at least one day.`);
    if (!HHMM.test(d.start)) problems.push(`Window ${i + 1}: the start must be a time such as 22:00.`);
    if (!HHMM.test(d.end)) problems.push(`Window ${i + 1}: the end must be a time such as 07:00.`);
  });
  if (drafts.length > 28) problems.push('At most 28 windows.');
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, schedule: drafts.map((d) => ({ days: WEEKDAYS.filter((x) => d.days.includes(x)), start: d.start, end: d.end })) };
}
