/**
 * The serving policy as a pure function: from what the machine reports, the owner's policy and
 * override, and the time, to a decision — serve, wait (stay connected, take no jobs) or off
 * (disconnect). The runtime applies decisions; this file only decides.
 *
 * Order of the rules, first match wins:
 * 1. A manual pause → off (paused).
 * 2. Serve-now → serve, unless too hot for the hardware ('serious' or worse) or on a battery below
 *    the minimum: an override of the owner's presence and schedule, never of the machine's safety.
 * 3. Outside every schedule window → off (outside-schedule).
 * 4. No reading, or one older than `maxReadingAgeMs` (or from the future, after the clock was
 *    set back) → wait (no-reading): the agent never serves on stale facts, e.g. just after the
 *    Mac wakes from sleep.
 * 5. Hotter than the policy's maximum → wait (too-hot).
 * 6. On battery: with `requireAc` → wait (on-battery); below `minBatteryPercent` → wait (battery-low).
 * 7. Screen locked (when it counts) → serve (screen-locked); idle time unknown → serve
 *    (idle-unknown; only sources with no idle signal at all report that); idle at least
 *    `idleSeconds` → serve (idle); otherwise wait (owner-active).
 */
import {
  THERMAL_STATES,
  type Decision,
  type EnvironmentReading,
  type Manual,
  type Policy,
  type ThermalState,
} from '../../../shared/index.js';
import { inSchedule } from './schedule.js';

/** What one decision is made from. */
export interface DecisionInput {
  /** The latest reading, or null if none has arrived. */
  reading: EnvironmentReading | null;
  policy: Policy;
  manual: Manual;
  /** Milliseconds since the epoch. */
  now: number;
  /** The schedule's time zone, resolved (the policy's, or the system's when it says null). */
  timeZone: string;
  /** A reading older than this (or this far in the future) is ignored. */
  maxReadingAgeMs: number;
}

/** The manual override in force at `now`: an expired pause or serve-now is back to auto. */
export function effectiveManual(manual: Manual, now: number): Manual['mode'] {
  if (manual.mode === 'auto') return 'auto';
  return manual.until !== null && now >= manual.until ? 'auto' : manual.mode;
}

function hotter(a: ThermalState, b: ThermalState): boolean {
  return THERMAL_STATES.indexOf(a) > THERMAL_STATES.indexOf(b);
}

/** Decides whether the agent may serve now. Pure. */
export function decide(input: DecisionInput): Decision {
  const { reading, policy, now } = input;
  const manual = effectiveManual(input.manual, now);
  if (manual === 'paused') return { action: 'off', reason: 'paused' };

  const thermal = reading?.thermal ?? 'nominal';
  const onBattery = reading?.onAc === false;
  const batteryLow = onBattery && reading.batteryPercent !== null && reading.batteryPercent < policy.minBatteryPercent;
  if (manual === 'serve-now') {
    if (hotter(thermal, 'fair')) return { action: 'wait', reason: 'too-hot' };
    if (batteryLow) return { action: 'wait', reason: 'battery-low' };
    return { action: 'serve', reason: 'serve-now' };
  }

  if (!inSchedule(policy.schedule, now, input.timeZone)) return { action: 'off', reason: 'outside-schedule' };
  if (reading === null || Math.abs(now - reading.at) > input.maxReadingAgeMs) return { action: 'wait', reason: 'no-reading' };
  if (hotter(thermal, policy.maxThermal)) return { action: 'wait', reason: 'too-hot' };
  if (onBattery && policy.requireAc) return { action: 'wait', reason: 'on-battery' };
  if (batteryLow) return { action: 'wait', reason: 'battery-low' };
  if (policy.lockedCountsAsIdle && reading.screenLocked === true) return { action: 'serve', reason: 'screen-locked' };
  if (reading.idleSeconds === null) return { action: 'serve', reason: 'idle-unknown' };
  if (reading.idleSeconds >= policy.idleSeconds) return { action: 'serve', reason: 'idle' };
  return { action: 'wait', reason: 'owner-active' };
}

/** One line for people about a decision. */
export function describeDecision(decision: Decision): { message: string; hint: string | null } {
  switch (decision.reason) {
    case 'idle':
      return { message: 'The owner is away; serving.', hint: null };
    case 'screen-locked':
      return { message: 'The screen is locked; serving.', hint: null };
    case 'idle-unknown':
      return { message: 'This machine reports no idle time; serving whenever power, heat and schedule allow.', hint: null };
    case 'serve-now':
      return { message: 'Serving now, as the owner asked.', hint: 'Run `nightjar resume` to go back to the policy.' };
    case 'owner-active':
      return { message: 'The owner is using this machine; waiting until they are away.', hint: null };
    case 'on-battery':
      return {
        message: 'On battery power; waiting for AC power.',
        hint: 'Plug in, or allow serving on battery (policy.requireAc: false).',
      };
    case 'battery-low':
      return { message: 'The battery is below the policy minimum; waiting.', hint: 'Plug in, or lower policy.minBatteryPercent.' };
    case 'too-hot':
      return { message: 'The machine is too hot; waiting for it to cool down.', hint: null };
    case 'no-reading':
      return { message: 'No fresh reading of idle time, power and heat; waiting for one.', hint: 'If this lasts, run `nightjar doctor`.' };
    case 'paused':
      return { message: 'Paused by the owner.', hint: 'Run `nightjar resume` to serve again.' };
    case 'outside-schedule':
      return { message: 'Outside the serving schedule; disconnected.', hint: 'Change policy.schedule to serve at other times.' };
  }
}
