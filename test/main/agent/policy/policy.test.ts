/**
 * The serving policy as a pure function, over a table of situations: idle thresholds, screen
 * lock, AC and battery, heat, schedules, the owner's overrides, stale readings after a sleep or a
 * clock jump. Then the schedule windows across midnight and both daylight-saving changes of
 * America/New_York, counted minute by minute.
 */
import { describe, expect, it } from 'vitest';
import { decide, effectiveManual } from '../../../../src/main/agent/policy/policy.js';
import { inSchedule, inWindow, wallClock } from '../../../../src/main/agent/policy/schedule.js';
import {
  DEFAULT_POLICY,
  type Decision,
  type EnvironmentReading,
  type Manual,
  type Policy,
  type ScheduleWindow,
} from '../../../../src/shared/index.js';

const NOW = Date.UTC(2026, 10, 18, 15, 0, 0); // Wednesday 10:00 in New York
const TZ = 'America/New_York';
const MAX_AGE = 10_000;
const AUTO: Manual = { mode: 'auto', until: null };

const away: EnvironmentReading = {
  at: NOW,
  idleSeconds: 600,
  screenLocked: false,
  onAc: true,
  batteryPercent: 100,
  thermal: 'nominal',
  memoryPressure: null,
};

interface Row {
  name: string;
  reading?: Partial<EnvironmentReading> | null;
  policy?: Partial<Policy>;
  manual?: Manual;
  now?: number;
  expect: Decision;
}

const weekdaysNineToFive: ScheduleWindow[] = [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '09:00', end: '17:00' }];
const nightsOnly: ScheduleWindow[] = [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '22:00', end: '07:00' }];

const rows: Row[] = [
  // idle
  { name: 'owner typing a moment ago', reading: { idleSeconds: 3 }, expect: { action: 'wait', reason: 'owner-active' } },
  { name: 'idle one tick short of the threshold', reading: { idleSeconds: 299.9 }, expect: { action: 'wait', reason: 'owner-active' } },
  { name: 'idle exactly the threshold', reading: { idleSeconds: 300 }, expect: { action: 'serve', reason: 'idle' } },
  { name: 'idle long past the threshold', expect: { action: 'serve', reason: 'idle' } },
  {
    name: 'a threshold of 0 serves at once',
    reading: { idleSeconds: 0 },
    policy: { idleSeconds: 0 },
    expect: { action: 'serve', reason: 'idle' },
  },
  {
    name: 'screen locked, input a second ago',
    reading: { idleSeconds: 1, screenLocked: true },
    expect: { action: 'serve', reason: 'screen-locked' },
  },
  {
    name: 'screen locked, but a lock does not count',
    reading: { idleSeconds: 1, screenLocked: true },
    policy: { lockedCountsAsIdle: false },
    expect: { action: 'wait', reason: 'owner-active' },
  },
  {
    name: 'no idle signal (headless Linux)',
    reading: { idleSeconds: null, screenLocked: null },
    expect: { action: 'serve', reason: 'idle-unknown' },
  },
  // power
  { name: 'on battery with AC required', reading: { onAc: false, batteryPercent: 95 }, expect: { action: 'wait', reason: 'on-battery' } },
  {
    name: 'on battery allowed, charge above the minimum',
    reading: { onAc: false, batteryPercent: 80 },
    policy: { requireAc: false },
    expect: { action: 'serve', reason: 'idle' },
  },
  {
    name: 'on battery allowed, charge at the minimum',
    reading: { onAc: false, batteryPercent: 50 },
    policy: { requireAc: false },
    expect: { action: 'serve', reason: 'idle' },
  },
  {
    name: 'on battery allowed, charge below the minimum',
    reading: { onAc: false, batteryPercent: 49 },
    policy: { requireAc: false },
    expect: { action: 'wait', reason: 'battery-low' },
  },
  { name: 'low battery but charging on AC', reading: { onAc: true, batteryPercent: 10 }, expect: { action: 'serve', reason: 'idle' } },
  {
    name: 'a desktop: no power source reported',
    reading: { onAc: null, batteryPercent: null },
    expect: { action: 'serve', reason: 'idle' },
  },
  {
    name: 'on battery with an unknown charge, battery allowed',
    reading: { onAc: false, batteryPercent: null },
    policy: { requireAc: false },
    expect: { action: 'serve', reason: 'idle' },
  },
  // heat
  { name: 'fair with the default maximum (fair)', reading: { thermal: 'fair' }, expect: { action: 'serve', reason: 'idle' } },
  { name: 'serious with the default maximum', reading: { thermal: 'serious' }, expect: { action: 'wait', reason: 'too-hot' } },
  { name: 'critical', reading: { thermal: 'critical' }, policy: { maxThermal: 'serious' }, expect: { action: 'wait', reason: 'too-hot' } },
  {
    name: 'fair when only nominal is allowed',
    reading: { thermal: 'fair' },
    policy: { maxThermal: 'nominal' },
    expect: { action: 'wait', reason: 'too-hot' },
  },
  {
    name: 'unknown heat counts as nominal',
    reading: { thermal: null },
    policy: { maxThermal: 'nominal' },
    expect: { action: 'serve', reason: 'idle' },
  },
  {
    name: 'too hot and on battery: heat is named first',
    reading: { thermal: 'critical', onAc: false },
    expect: { action: 'wait', reason: 'too-hot' },
  },
  // readings
  { name: 'no reading yet', reading: null, expect: { action: 'wait', reason: 'no-reading' } },
  { name: 'a reading exactly at the age limit', reading: { at: NOW - MAX_AGE }, expect: { action: 'serve', reason: 'idle' } },
  { name: 'a reading just past the age limit', reading: { at: NOW - MAX_AGE - 1 }, expect: { action: 'wait', reason: 'no-reading' } },
  {
    name: 'woke from an 8-hour sleep: the last reading is from before it',
    reading: { at: NOW - 8 * 3600_000 },
    expect: { action: 'wait', reason: 'no-reading' },
  },
  {
    name: 'clock set back an hour: the reading is from the future',
    reading: { at: NOW + 3600_000 },
    expect: { action: 'wait', reason: 'no-reading' },
  },
  // schedule
  { name: 'inside the weekday window', policy: { schedule: weekdaysNineToFive }, expect: { action: 'serve', reason: 'idle' } },
  { name: 'outside every window, even when idle', policy: { schedule: nightsOnly }, expect: { action: 'off', reason: 'outside-schedule' } },
  {
    name: 'outside the window and the owner active: off wins',
    reading: { idleSeconds: 1 },
    policy: { schedule: nightsOnly },
    expect: { action: 'off', reason: 'outside-schedule' },
  },
  {
    name: 'inside a night window at 03:00',
    now: Date.UTC(2026, 10, 18, 8, 0, 0),
    reading: { at: Date.UTC(2026, 10, 18, 8, 0, 0) },
    policy: { schedule: nightsOnly },
    expect: { action: 'serve', reason: 'idle' },
  },
  {
    name: 'the schedule is read in the policy time zone, not UTC',
    policy: { schedule: [{ days: ['wed'], start: '15:00', end: '16:00' }] },
    expect: { action: 'off', reason: 'outside-schedule' },
  },
  // manual overrides
  { name: 'paused while idle', manual: { mode: 'paused', until: null }, expect: { action: 'off', reason: 'paused' } },
  {
    name: 'paused outside the schedule: the pause is named',
    manual: { mode: 'paused', until: null },
    policy: { schedule: nightsOnly },
    expect: { action: 'off', reason: 'paused' },
  },
  { name: 'a pause until later still holds', manual: { mode: 'paused', until: NOW + 1 }, expect: { action: 'off', reason: 'paused' } },
  { name: 'a pause that has ended', manual: { mode: 'paused', until: NOW }, expect: { action: 'serve', reason: 'idle' } },
  {
    name: 'serve-now while the owner types',
    reading: { idleSeconds: 0 },
    manual: { mode: 'serve-now', until: null },
    expect: { action: 'serve', reason: 'serve-now' },
  },
  {
    name: 'serve-now outside the schedule',
    policy: { schedule: nightsOnly },
    manual: { mode: 'serve-now', until: null },
    expect: { action: 'serve', reason: 'serve-now' },
  },
  {
    name: 'serve-now on battery with AC required and a good charge',
    reading: { onAc: false, batteryPercent: 90 },
    manual: { mode: 'serve-now', until: null },
    expect: { action: 'serve', reason: 'serve-now' },
  },
  {
    name: 'serve-now with no reading at all',
    reading: null,
    manual: { mode: 'serve-now', until: null },
    expect: { action: 'serve', reason: 'serve-now' },
  },
  {
    name: 'serve-now does not override serious heat',
    reading: { thermal: 'serious' },
    manual: { mode: 'serve-now', until: null },
    expect: { action: 'wait', reason: 'too-hot' },
  },
  {
    name: 'serve-now does not override a low battery',
    reading: { onAc: false, batteryPercent: 20 },
    manual: { mode: 'serve-now', until: null },
    expect: { action: 'wait', reason: 'battery-low' },
  },
  {
    name: 'serve-now that has ended',
    reading: { idleSeconds: 0 },
    manual: { mode: 'serve-now', until: NOW - 1 },
    expect: { action: 'wait', reason: 'owner-active' },
  },
];

describe('decide', () => {
  it.each(rows)('$name', (row) => {
    const now = row.now ?? NOW;
    const reading = row.reading === null ? null : { ...away, ...row.reading };
    expect(
      decide({
        reading,
        policy: { ...DEFAULT_POLICY, ...row.policy },
        manual: row.manual ?? AUTO,
        now,
        timeZone: TZ,
        maxReadingAgeMs: MAX_AGE,
      }),
    ).toEqual(row.expect);
  });

  it('ends an override exactly at its until time', () => {
    expect(effectiveManual({ mode: 'paused', until: 1000 }, 999)).toBe('paused');
    expect(effectiveManual({ mode: 'paused', until: 1000 }, 1000)).toBe('auto');
    expect(effectiveManual({ mode: 'serve-now', until: null }, 1e15)).toBe('serve-now');
  });
});

/** Minutes of [fromUtc, toUtc) that fall inside `windows` in `zone`. */
function minutesInside(windows: ScheduleWindow[], fromUtc: number, toUtc: number, zone = TZ): number {
  let n = 0;
  for (let t = fromUtc; t < toUtc; t += 60_000) if (inSchedule(windows, t, zone)) n++;
  return n;
}

describe('schedules', () => {
  it('reads the wall clock of the zone', () => {
    expect(wallClock(NOW, TZ)).toEqual({ weekday: 'wed', minutes: 600 });
    expect(wallClock(NOW, 'Asia/Tokyo')).toEqual({ weekday: 'thu', minutes: 0 });
    expect(wallClock(Date.UTC(2026, 10, 19, 4, 59), TZ)).toEqual({ weekday: 'wed', minutes: 23 * 60 + 59 });
  });

  it('treats the start as inside and the end as outside', () => {
    const w: ScheduleWindow = { days: ['mon'], start: '09:00', end: '17:00' };
    expect(inWindow(w, { weekday: 'mon', minutes: 9 * 60 })).toBe(true);
    expect(inWindow(w, { weekday: 'mon', minutes: 9 * 60 - 1 })).toBe(false);
    expect(inWindow(w, { weekday: 'mon', minutes: 17 * 60 - 1 })).toBe(true);
    expect(inWindow(w, { weekday: 'mon', minutes: 17 * 60 })).toBe(false);
    expect(inWindow(w, { weekday: 'tue', minutes: 12 * 60 })).toBe(false);
  });

  it('runs an overnight window into the next day, keyed by the day it starts', () => {
    const friNight: ScheduleWindow = { days: ['fri'], start: '22:00', end: '07:00' };
    expect(inWindow(friNight, { weekday: 'fri', minutes: 21 * 60 + 59 })).toBe(false);
    expect(inWindow(friNight, { weekday: 'fri', minutes: 23 * 60 })).toBe(true);
    expect(inWindow(friNight, { weekday: 'sat', minutes: 3 * 60 })).toBe(true);
    expect(inWindow(friNight, { weekday: 'sat', minutes: 7 * 60 })).toBe(false);
    expect(inWindow(friNight, { weekday: 'sat', minutes: 23 * 60 })).toBe(false);
    expect(inWindow(friNight, { weekday: 'fri', minutes: 3 * 60 })).toBe(false); // that belongs to Thursday night
    // Sunday night runs into Monday morning: the week wraps.
    expect(inWindow({ days: ['sun'], start: '23:00', end: '01:00' }, { weekday: 'mon', minutes: 30 })).toBe(true);
  });

  it('reads equal start and end as a whole day from that time', () => {
    const w: ScheduleWindow = { days: ['mon'], start: '06:00', end: '06:00' };
    expect(inWindow(w, { weekday: 'mon', minutes: 6 * 60 })).toBe(true);
    expect(inWindow(w, { weekday: 'tue', minutes: 5 * 60 + 59 })).toBe(true);
    expect(inWindow(w, { weekday: 'tue', minutes: 6 * 60 })).toBe(false);
  });

  it('an empty schedule means any time', () => {
    expect(inSchedule([], NOW, TZ)).toBe(true);
  });

  it('keeps wall-clock hours across midnight on an ordinary night: 22:00–07:00 is 9 hours', () => {
    // Tuesday 17 November 2026, New York is UTC−5.
    const from = Date.UTC(2026, 10, 17, 20, 0); // 15:00 local
    expect(minutesInside([{ days: ['tue'], start: '22:00', end: '07:00' }], from, from + 24 * 3600_000)).toBe(9 * 60);
  });

  it('the night clocks go forward (8 March 2026) a 22:00–07:00 window lasts 8 real hours', () => {
    const from = Date.UTC(2026, 2, 7, 20, 0); // Saturday 15:00 EST
    const windows: ScheduleWindow[] = [{ days: ['sat'], start: '22:00', end: '07:00' }];
    expect(minutesInside(windows, from, from + 24 * 3600_000)).toBe(8 * 60);
    // Around the change: 01:59 EST is inside, and the next minute is 03:00 EDT, still inside.
    expect(wallClock(Date.UTC(2026, 2, 8, 6, 59), TZ)).toEqual({ weekday: 'sun', minutes: 60 + 59 });
    expect(wallClock(Date.UTC(2026, 2, 8, 7, 0), TZ)).toEqual({ weekday: 'sun', minutes: 180 });
    expect(inSchedule(windows, Date.UTC(2026, 2, 8, 7, 0), TZ)).toBe(true);
    // The window ends at 07:00 EDT = 11:00 UTC.
    expect(inSchedule(windows, Date.UTC(2026, 2, 8, 10, 59), TZ)).toBe(true);
    expect(inSchedule(windows, Date.UTC(2026, 2, 8, 11, 0), TZ)).toBe(false);
  });

  it('a window inside the skipped hour does not occur that night', () => {
    const from = Date.UTC(2026, 2, 8, 5, 0); // Sunday 00:00 EST
    expect(minutesInside([{ days: ['sun'], start: '02:00', end: '03:00' }], from, from + 6 * 3600_000)).toBe(0);
  });

  it('the night clocks go back (1 November 2026) a 22:00–07:00 window lasts 10 real hours', () => {
    const from = Date.UTC(2026, 9, 31, 19, 0); // Saturday 15:00 EDT
    const windows: ScheduleWindow[] = [{ days: ['sat'], start: '22:00', end: '07:00' }];
    expect(minutesInside(windows, from, from + 25 * 3600_000)).toBe(10 * 60);
    // The window ends at 07:00 EST = 12:00 UTC.
    expect(inSchedule(windows, Date.UTC(2026, 10, 1, 11, 59), TZ)).toBe(true);
    expect(inSchedule(windows, Date.UTC(2026, 10, 1, 12, 0), TZ)).toBe(false);
  });

  it('a window inside the repeated hour occurs twice that night', () => {
    const from = Date.UTC(2026, 10, 1, 4, 0); // Sunday 00:00 EDT
    expect(minutesInside([{ days: ['sun'], start: '01:00', end: '02:00' }], from, from + 6 * 3600_000)).toBe(120);
  });

  it('follows each zone’s own change date: Paris goes forward on 29 March 2026', () => {
    const windows: ScheduleWindow[] = [{ days: ['sat'], start: '22:00', end: '07:00' }];
    const from = Date.UTC(2026, 2, 28, 14, 0); // Saturday 15:00 CET
    expect(minutesInside(windows, from, from + 24 * 3600_000, 'Europe/Paris')).toBe(8 * 60);
    // New York, already on summer time that weekend, keeps 9 hours.
    expect(minutesInside(windows, Date.UTC(2026, 2, 28, 19, 0), Date.UTC(2026, 2, 29, 19, 0))).toBe(9 * 60);
  });
});
