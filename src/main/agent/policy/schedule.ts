/**
 * Schedule windows in wall-clock time of a named time zone. Times are compared as the clock on
 * the wall shows them, so a window keeps its hours across daylight-saving changes: 22:00–07:00
 * lasts 8 hours on the night clocks go forward and 10 on the night they go back, and a window
 * inside the skipped hour (02:00–03:00 in New York on the March change) does not occur that day.
 */
import { WEEKDAYS, type ScheduleWindow, type Weekday } from '../../../shared/index.js';

/** A moment as the wall clock of a time zone shows it. */
export interface WallClock {
  weekday: Weekday;
  /** Minutes since local midnight, 0–1439. */
  minutes: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The time zone this process runs in (IANA name). */
export function systemTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** `now` (ms since the epoch) on the wall clock of `timeZone`. */
export function wallClock(now: number, timeZone: string): WallClock {
  let weekday: Weekday = 'mon';
  let hour = 0;
  let minute = 0;
  for (const part of formatter(timeZone).formatToParts(now)) {
    if (part.type === 'weekday') weekday = part.value.slice(0, 3).toLowerCase() as Weekday;
    else if (part.type === 'hour') hour = Number(part.value) % 24;
    else if (part.type === 'minute') minute = Number(part.value);
  }
  return { weekday, minutes: hour * 60 + minute };
}

/** Minutes since midnight of an HH:MM string. */
export function minutesOf(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}

function previousDay(day: Weekday): Weekday {
  return WEEKDAYS[(WEEKDAYS.indexOf(day) + 6) % 7]!;
}

/** True if `clock` falls inside `window`. */
export function inWindow(window: ScheduleWindow, clock: WallClock): boolean {
  const start = minutesOf(window.start);
  const end = minutesOf(window.end);
  const today = window.days.includes(clock.weekday);
  if (start < end) return today && clock.minutes >= start && clock.minutes < end;
  // Overnight (or a whole day when start equals end): the part after the start today, and the
  // part before the end that belongs to a window that started yesterday.
  return (today && clock.minutes >= start) || (window.days.includes(previousDay(clock.weekday)) && clock.minutes < end);
}

/** True if `now` is inside any window; an empty schedule means any time. */
export function inSchedule(windows: readonly ScheduleWindow[], now: number, timeZone: string): boolean {
  if (windows.length === 0) return true;
  const clock = wallClock(now, timeZone);
  return windows.some((w) => inWindow(w, clock));
}
