/**
 * Small statistics and timing helpers shared by the benchmark areas.
 */

/** Milliseconds on the monotonic clock (performance.now()). */
export function now(): number {
  return performance.now();
}

/** The p-th percentile (0–100) of `values`, linearly interpolated between closest ranks. NaN if empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** The median of `values`. NaN if empty. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** The arithmetic mean of `values`. NaN if empty. */
export function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Smallest and largest of `values`. */
export function range(values: readonly number[]): { min: number; max: number } {
  return { min: Math.min(...values), max: Math.max(...values) };
}

/** Formats a number with `digits` significant figures, grouping thousands (1 234 567). */
export function fmt(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return '–';
  if (value === 0) return '0';
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const decimals = Math.max(0, digits - 1 - magnitude);
  const fixed = value.toFixed(decimals);
  const [int, frac] = fixed.split('.');
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

/** Formats a count: 1,000. */
export function fmtInt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** Formats a ratio as `0.97×` (or with more `decimals`, where a verdict hangs on the third). */
export function fmtRatio(value: number, decimals = 2): string {
  return Number.isFinite(value) ? `${value.toFixed(decimals)}×` : '–';
}

/** Formats bytes as MB (10^6) or GB (10^9). */
export function fmtBytes(bytes: number): string {
  return bytes >= 1e9
    ? `${(bytes / 1e9).toFixed(2)} GB`
    : bytes >= 1e6
      ? `${(bytes / 1e6).toFixed(1)} MB`
      : `${(bytes / 1e3).toFixed(1)} kB`;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` every `everyMs` until it holds; throws after `timeoutMs` naming `what`. */
export async function waitUntil(predicate: () => boolean, timeoutMs: number, what: string, everyMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Runs `op` back to back (each call awaited before the next) for about `durationMs` after
 * `warmupMs` of warm-up, and returns operations per second. Stops early after `maxCalls` calls
 * in all (warm-up included), for operations that consume a finite pool of inputs.
 */
export async function opsPerSecond(
  op: () => unknown,
  durationMs: number,
  warmupMs = Math.min(200, durationMs / 4),
  maxCalls = Number.POSITIVE_INFINITY,
): Promise<{ opsPerSecond: number; ops: number; ms: number }> {
  const warmEnd = now() + warmupMs;
  let calls = 0;
  while (now() < warmEnd && calls < maxCalls / 4) {
    calls++;
    const r = op();
    if (r instanceof Promise) await r;
  }
  let ops = 0;
  const start = now();
  let elapsed: number;
  // At least 5 operations, so a slow operation (tweetnacl verify) still gives a figure. A
  // synchronous operation is not awaited, so the figure carries no microtask overhead.
  while (((elapsed = now() - start) < durationMs && calls < maxCalls) || ops < 5) {
    calls++;
    const r = op();
    if (r instanceof Promise) await r;
    ops++;
  }
  return { opsPerSecond: (ops * 1000) / elapsed, ops, ms: elapsed };
}

/**
 * Gateway options for benchmarks: the per-client and per-address protections (request rate,
 * streams per key, handshakes and connections per address) raised out of the way, because every
 * simulated client and agent here shares one loopback address and no API key. They guard a real
 * gateway against floods; the benchmark measures the relay path, which they do not slow.
 */
export const BENCH_GATEWAY_LIMITS = {
  rateLimit: { perSecond: 1_000_000, burst: 1_000_000 },
  maxStreamsPerKey: 100_000,
  maxPendingHandshakes: 100_000,
  maxPendingHandshakesPerIp: 100_000,
  maxAgentConnectionsPerIp: 100_000,
  maxQueuePerModel: 100_000,
} as const;
