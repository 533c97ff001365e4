/**
 * Does a model fit? Before loading, the agent compares an estimate of what the model needs
 * (weights plus every slot's context) with the memory the machine has free now, and its free
 * swap. Free memory is read the way each OS means it: Linux's MemAvailable, and on macOS the
 * free, inactive, speculative and purgeable pages of `vm_stat` (memory macOS hands out at once),
 * not `os.freemem()`, which on a Mac counts free pages only.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { execCommand, type CommandRunner } from '../environment/command.js';

/** The machine's memory now. */
export interface MemoryInfo {
  totalBytes: number;
  /** Memory that can be handed to a new process without swapping. */
  availableBytes: number;
  swapFreeBytes: number;
}

/** Reads the machine's memory. */
export type MemoryProbe = () => Promise<MemoryInfo>;

/** Parses Linux /proc/meminfo (values in kB). */
export function parseMeminfo(text: string): MemoryInfo {
  const kb = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb('MemTotal') ?? 0;
  return { totalBytes: total, availableBytes: kb('MemAvailable') ?? kb('MemFree') ?? 0, swapFreeBytes: kb('SwapFree') ?? 0 };
}

/** Parses macOS `vm_stat` and `sysctl vm.swapusage`. */
export function parseVmStat(vmStat: string, swapUsage: string, totalBytes: number): MemoryInfo {
  const pageSize = Number(/page size of (\d+) bytes/.exec(vmStat)?.[1] ?? 4096);
  const pages = (label: string): number => Number(new RegExp(`^${label}:\\s+(\\d+)\\.`, 'm').exec(vmStat)?.[1] ?? 0);
  const available = (pages('Pages free') + pages('Pages inactive') + pages('Pages speculative') + pages('Pages purgeable')) * pageSize;
  const free = /free = ([\d.]+)([KMGT])/.exec(swapUsage);
  const unit = { K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 } as const;
  const swapFree = free ? Math.round(Number(free[1]) * unit[free[2] as keyof typeof unit]) : 0;
  return { totalBytes, availableBytes: Math.min(available, totalBytes), swapFreeBytes: swapFree };
}

/** Options of {@link defaultMemoryProbe}. */
export interface MemoryProbeOptions {
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Runs vm_stat and sysctl on macOS. Defaults to execFile. */
  run?: CommandRunner;
  /** Reads /proc/meminfo on Linux. Defaults to fs.readFile. */
  readMeminfo?: () => Promise<string>;
}

/** The memory probe for this platform (os.freemem() where neither vm_stat nor /proc/meminfo exists). */
export function defaultMemoryProbe(options: MemoryProbeOptions = {}): MemoryProbe {
  const platform = options.platform ?? process.platform;
  const run = options.run ?? execCommand;
  if (platform === 'darwin') {
    return async () =>
      parseVmStat(await run('/usr/bin/vm_stat', []), await run('/usr/sbin/sysctl', ['vm.swapusage']).catch(() => ''), os.totalmem());
  }
  if (platform === 'linux') {
    const read = options.readMeminfo ?? (() => readFile('/proc/meminfo', 'utf8'));
    return async () => parseMeminfo(await read());
  }
  return async () => ({ totalBytes: os.totalmem(), availableBytes: os.freemem(), swapFreeBytes: 0 });
}

/** The verdict of {@link checkMemoryFit}. */
export interface MemoryFit {
  verdict: 'fits' | 'needs-swap' | 'does-not-fit';
  requiredBytes: number;
  info: MemoryInfo;
  /** For people, with the figures. */
  message: string;
}

/** What {@link checkMemoryFit} compares. */
export interface MemoryFitInput {
  /** Estimated bytes the loaded model and its contexts take. */
  requiredBytes: number;
  /** The catalog's minimum total memory for the model, if any. */
  minMemoryBytes: number | null;
  info: MemoryInfo;
}

const gib = (n: number): string => `${(n / 1024 ** 3).toFixed(1)} GiB`;

/**
 * Compares need and supply. 'does-not-fit': the machine has less total memory than the catalog's
 * minimum, or the model needs more than free memory plus free swap. 'needs-swap': it fits only
 * by swapping (loaded only when the owner allows it: a model that swaps makes the whole Mac
 * crawl). 'fits' otherwise. Pure.
 */
export function checkMemoryFit(input: MemoryFitInput): MemoryFit {
  const { requiredBytes, info } = input;
  const figures =
    `needs about ${gib(requiredBytes)}; ` +
    `${gib(info.availableBytes)} of ${gib(info.totalBytes)} memory is free, ${gib(info.swapFreeBytes)} swap`;
  if (input.minMemoryBytes !== null && info.totalBytes < input.minMemoryBytes) {
    return {
      verdict: 'does-not-fit',
      requiredBytes,
      info,
      message: `This machine has ${gib(info.totalBytes)} of memory; the model asks for at least ${gib(input.minMemoryBytes)}.`,
    };
  }
  if (requiredBytes <= info.availableBytes) return { verdict: 'fits', requiredBytes, info, message: `The model fits: it ${figures}.` };
  if (requiredBytes <= info.availableBytes + info.swapFreeBytes) {
    return { verdict: 'needs-swap', requiredBytes, info, message: `The model fits only with swap: it ${figures}.` };
  }
  return { verdict: 'does-not-fit', requiredBytes, info, message: `The model does not fit: it ${figures}.` };
}
