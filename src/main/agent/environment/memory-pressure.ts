/**
 * How hard the machine is pressed for memory, as heartbeats report it to the gateway (which ranks
 * an agent under critical pressure last) and the dashboards show it to the owner.
 *
 * - macOS: `sysctl -n kern.memorystatus_vm_pressure_level`, the level the kernel's memory status
 *   uses for its own warnings (1 normal, 2 warn, 4 critical), the same one Activity Monitor's
 *   memory pressure graph colours.
 * - Linux: pressure stall information (/proc/pressure/memory, kernels 4.20+): the share of the
 *   last 10 s in which tasks waited for memory. Where PSI is missing, the share of memory still
 *   available (/proc/meminfo's MemAvailable).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { MemoryPressure } from '../../../shared/index.js';
import { execCommand, type CommandRunner } from './command.js';

/** macOS's `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical; null if unreadable. */
export function parseVmPressureLevel(output: string): MemoryPressure | null {
  const level = Number(output.trim());
  if (!Number.isInteger(level) || output.trim() === '') return null;
  return level >= 4 ? 'critical' : level >= 2 ? 'warn' : level >= 1 ? 'normal' : null;
}

/**
 * Linux PSI for memory. `some` is the share of time at least one task stalled on memory, `full`
 * the share in which all did (the machine thrashes). Over the last 10 s: full ≥ 10% or some ≥ 40%
 * → critical; some ≥ 10% → warn; else normal. Null if the text has no `some avg10`.
 */
export function pressureFromPsi(text: string): MemoryPressure | null {
  const avg10 = (kind: 'some' | 'full'): number | null => {
    const m = new RegExp(`^${kind}\\s+avg10=([0-9.]+)`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const some = avg10('some');
  if (some === null || !Number.isFinite(some)) return null;
  const full = avg10('full') ?? 0;
  if (full >= 10 || some >= 40) return 'critical';
  return some >= 10 ? 'warn' : 'normal';
}

/** Linux without PSI: MemAvailable below 5% of MemTotal → critical, below 15% → warn. Null if unreadable. */
export function pressureFromMeminfo(text: string): MemoryPressure | null {
  const kib = (key: string): number | null => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const total = kib('MemTotal');
  const available = kib('MemAvailable');
  if (!total || available === null) return null;
  const share = available / total;
  return share < 0.05 ? 'critical' : share < 0.15 ? 'warn' : 'normal';
}

/** Options of {@link readMemoryPressure}. */
export interface MemoryPressureOptions {
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Runs sysctl on macOS. Defaults to {@link execCommand}. */
  run?: CommandRunner;
  /** Root of procfs on Linux. Defaults to /proc. */
  procRoot?: string;
}

/** Reads the memory pressure now; null where the platform gives no reading (it is then reported as normal). */
export async function readMemoryPressure(options: MemoryPressureOptions = {}): Promise<MemoryPressure | null> {
  const platform = options.platform ?? process.platform;
  if (platform === 'darwin') {
    const out = await (options.run ?? execCommand)('/usr/sbin/sysctl', ['-n', 'kern.memorystatus_vm_pressure_level']).catch(() => null);
    return out === null ? null : parseVmPressureLevel(out);
  }
  if (platform !== 'linux') return null;
  const proc = options.procRoot ?? '/proc';
  const read = (f: string): Promise<string | null> => readFile(path.join(proc, f), 'utf8').catch(() => null);
  const psi = await read('pressure/memory');
  const fromPsi = psi === null ? null : pressureFromPsi(psi);
  if (fromPsi !== null) return fromPsi;
  const meminfo = await read('meminfo');
  return meminfo === null ? null : pressureFromMeminfo(meminfo);
}
