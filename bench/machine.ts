/**
 * What the suite ran on: CPU, cores, memory, OS, Node, node-llama-cpp, the commit.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The machine and software a run measured. */
export interface MachineInfo {
  readonly cpuModel: string;
  readonly logicalCores: number;
  /** os.availableParallelism(): what this process may use (cgroup and affinity limits apply). */
  readonly availableParallelism: number;
  readonly totalMemoryBytes: number;
  readonly os: string;
  readonly node: string;
  readonly nodeLlamaCpp: string;
  /** The llama.cpp release node-llama-cpp loaded, when an area loaded it. */
  llamaCppRelease: string | null;
  /** `git rev-parse --short HEAD`, with "+ uncommitted changes" when the tree is dirty. */
  readonly gitCommit: string;
}

/** Version of an installed package, found by walking up from its resolved entry point. */
function packageVersion(name: string): string {
  try {
    let dir = path.dirname(fileURLToPath(import.meta.resolve(name)));
    for (let i = 0; i < 6; i++) {
      try {
        const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && pkg.version) return pkg.version;
      } catch {
        // not here; keep walking up
      }
      dir = path.dirname(dir);
    }
  } catch {
    // fall through
  }
  return 'unknown';
}

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** Reads what can be known about this machine without loading a model. */
export function machineInfo(): MachineInfo {
  const commit = git(['rev-parse', '--short', 'HEAD']) ?? 'unknown';
  const dirty = (git(['status', '--porcelain', '--untracked-files=no']) ?? '') !== '';
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    logicalCores: os.cpus().length,
    availableParallelism: os.availableParallelism(),
    totalMemoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} (${process.platform}-${process.arch})`,
    node: process.version,
    nodeLlamaCpp: packageVersion('node-llama-cpp'),
    llamaCppRelease: null,
    gitCommit: dirty ? `${commit} + uncommitted changes` : commit,
  };
}

/** The 1-minute load average (0 where the OS has none, e.g. Windows). */
export function loadAverage(): number {
  return os.loadavg()[0] ?? 0;
}

/** Resident memory of this process, split where the OS tells (Linux: /proc/self/status). */
export interface ResidentMemory {
  rss: number;
  /** Anonymous memory (heap, malloc, copies); null where unknown. */
  anon: number | null;
  /** File-backed memory (memory-mapped files); null where unknown. */
  file: number | null;
}

/** This process's resident memory now (after a full GC when --expose-gc is on). */
export function residentMemory(): ResidentMemory {
  (globalThis as { gc?: () => void }).gc?.();
  const rss = process.memoryUsage.rss();
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string): number | null => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) * 1024 : null;
    };
    return { rss, anon: kb('RssAnon'), file: kb('RssFile') };
  } catch {
    return { rss, anon: null, file: null };
  }
}

/** CPU time counters of the whole machine (Linux /proc/stat, in clock ticks); null elsewhere. */
export interface CpuTimes {
  readonly total: number;
  /** Time the hypervisor gave this VM's CPUs to someone else. */
  readonly steal: number;
  readonly idle: number;
}

/** Reads the machine's CPU counters now. */
export function cpuTimes(): CpuTimes | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    if (f.length < 8 || f.some((n) => !Number.isFinite(n))) return null;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { total, steal: f[7]!, idle: f[3]! + f[4]! };
  } catch {
    return null;
  }
}

/** Share of CPU time between two readings that was stolen by the hypervisor, and that was busy; null if unknown. */
export function cpuShares(from: CpuTimes | null, to: CpuTimes | null): { steal: number; busy: number } | null {
  if (!from || !to || to.total <= from.total) return null;
  const total = to.total - from.total;
  return { steal: (to.steal - from.steal) / total, busy: (total - (to.idle - from.idle) - (to.steal - from.steal)) / total };
}
