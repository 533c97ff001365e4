/**
 * How Nightjar writes numbers, sizes, durations, credits and times for people, and reads the ones
 * people type. One module, so the CLI, the tray and both dashboards say the same thing the same
 * way. Machine formats (CSV exports, JSON) keep ISO 8601 times and integer micro-credits.
 */
import { NightjarError } from './errors.js';

/** Micro-credits in one credit. */
export const MICRO_PER_CREDIT = 1_000_000n;

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * Micro-credits (a bigint or a decimal string) as credits. `exact` (the default) keeps all six
 * decimals without trailing zeros ("0.000051", "12.5", "1,204"); `compact` rounds down to two
 * decimals below 1000 and to whole credits above ("0.00", "12.50", "1,204"). Null (no price
 * configured) is "—".
 */
export function formatCredits(micro: string | bigint | null, style: 'exact' | 'compact' = 'exact'): string {
  if (micro === null) return '—';
  const v = typeof micro === 'bigint' ? micro : BigInt(micro);
  const negative = v < 0n;
  const abs = negative ? -v : v;
  const whole = abs / MICRO_PER_CREDIT;
  const frac = abs % MICRO_PER_CREDIT;
  let text: string;
  if (style === 'compact') {
    text = whole >= 1000n ? groupThousands(whole.toString()) : `${whole}.${(frac / 10_000n).toString().padStart(2, '0')}`;
  } else {
    const decimals = frac.toString().padStart(6, '0').replace(/0+$/, '');
    text = decimals ? `${groupThousands(whole.toString())}.${decimals}` : groupThousands(whole.toString());
  }
  return negative ? `-${text}` : text;
}

/** Parses a credit amount ("12", "0.5", "1.000001") into micro-credits; NJ_USAGE naming `what` otherwise. */
export function parseCredits(text: string, what: string): bigint {
  const m = /^(\d{1,13})(?:\.(\d{1,6}))?$/.exec(text.trim());
  if (!m) throw new NightjarError('NJ_USAGE', `${what} must be a number of credits with at most six decimals, not "${text}"`);
  return BigInt(m[1]!) * MICRO_PER_CREDIT + BigInt((m[2] ?? '').padEnd(6, '0'));
}

/** A token count for people: 950, 12.3k, 4.1M. */
export function formatTokens(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(n < 10_000_000 ? 1 : 0)}M`;
}

/**
 * A byte count for people, in powers of 1024 as memory is sold, so a model's size and the memory
 * it needs read in the same units: 512 B, 7.5 GB, 12 GB.
 */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A duration for people: 45s, 3m 05s, 2h 05m, 1d 4h. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

const DURATION_UNITS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Parses a duration people type: a number and a unit, s, m, h or d (90s, 30m, 1.5h, 7d), into
 * milliseconds. Throws NJ_USAGE naming `what` (a flag or a field) for anything else.
 */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d{1,9}(?:\.\d{1,3})?)(s|m|h|d)$/.exec(text.trim());
  if (!m) throw new NightjarError('NJ_USAGE', `${what} takes a duration such as 90s, 30m, 2h or 7d, not "${text}"`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS]);
}

const dateTimeFormats = new Map<string, Intl.DateTimeFormat>();

/**
 * A moment for people, the same everywhere Nightjar shows one: "2026-12-01 13:31" in `timeZone`
 * (the system's by default), 24-hour, to the minute, or to the second with `seconds`.
 */
export function formatDateTime(ms: number, options: { timeZone?: string; seconds?: boolean } = {}): string {
  const key = `${options.timeZone ?? ''}|${options.seconds ? 's' : ''}`;
  let format = dateTimeFormats.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat('en-CA', {
      ...(options.timeZone ? { timeZone: options.timeZone } : {}),
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      ...(options.seconds ? { second: '2-digit' } : {}),
      hourCycle: 'h23',
    });
    dateTimeFormats.set(key, format);
  }
  const parts = Object.fromEntries(format.formatToParts(ms).map((p) => [p.type, p.value]));
  const time = `${parts.hour}:${parts.minute}${options.seconds ? `:${parts.second}` : ''}`;
  return `${parts.year}-${parts.month}-${parts.day} ${time}`;
}
