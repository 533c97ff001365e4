/**
 * Where the policy's inputs come from: idle time, screen lock, power and heat (and the memory
 * pressure heartbeats report), read through an {@link EnvironmentSource} handed to the runtime.
 * The menu-bar app feeds Electron's powerMonitor into a {@link ManualEnvironmentSource}; a
 * headless Mac asks `ioreg`, `pmset` and `sysctl` ({@link MacEnvironmentSource}); Linux reads
 * sysfs and procfs and has no idle signal ({@link LinuxEnvironmentSource}).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  silentLogger,
  type Emitter,
  type EnvironmentReading,
  type Event,
  type Logger,
  type ThermalState,
  loggedEmitter,
} from '../../../shared/index.js';
import { execCommand, type CommandRunner } from './command.js';
import { readMemoryPressure } from './memory-pressure.js';
import type { NativeAddon } from '../native/native.js';

/** One reading without its time (the runtime stamps it with its clock). */
export type EnvironmentSample = Omit<EnvironmentReading, 'at'>;

/** A source of readings. */
export interface EnvironmentSource {
  /** Reads the machine now. Throws if it cannot; the runtime then treats the reading as missing. */
  read(): Promise<EnvironmentSample>;
  /** Fires when the source knows something changed (a lock, a power change). Optional. */
  readonly onChange?: Event<void>;
}

/** What a source reports before anything is known. */
export const UNKNOWN_SAMPLE: EnvironmentSample = {
  idleSeconds: null,
  screenLocked: null,
  onAc: null,
  batteryPercent: null,
  thermal: null,
  memoryPressure: null,
};

/**
 * A source whose values are set from outside: the Electron app sets them from powerMonitor
 * events (`lock-screen`, `on-battery`, `thermal-state-change`, `getSystemIdleTime()`), tests set
 * them directly. Every `set` fires {@link ManualEnvironmentSource.onChange}, so the runtime
 * re-decides at once.
 */
export class ManualEnvironmentSource implements EnvironmentSource {
  #sample: EnvironmentSample;
  readonly #changes: Emitter<void>;
  /** When set, read() throws it (a source that fails). */
  failWith: Error | null = null;

  /**
   * @param initial Starting values. Defaults to {@link UNKNOWN_SAMPLE}.
   * @param options.logger Where a throwing listener is logged. Defaults to a silent logger.
   */
  constructor(initial: Partial<EnvironmentSample> = {}, options: { logger?: Logger } = {}) {
    this.#sample = { ...UNKNOWN_SAMPLE, ...initial };
    this.#changes = loggedEmitter(options.logger ?? silentLogger, 'environment change');
    this.onChange = this.#changes.event;
  }

  /** The values read() returns. */
  get sample(): EnvironmentSample {
    return this.#sample;
  }

  /** Changes some values and tells subscribers. */
  set(values: Partial<EnvironmentSample>): void {
    this.#sample = { ...this.#sample, ...values };
    this.#changes.fire();
  }

  /** Fires after every {@link ManualEnvironmentSource.set}. */
  readonly onChange: Event<void>;

  async read(): Promise<EnvironmentSample> {
    if (this.failWith) throw this.failWith;
    return this.#sample;
  }

  /** Drops every listener. */
  dispose(): void {
    this.#changes.dispose();
  }
}

// ---- macOS -----------------------------------------------------------------------------------

/** Seconds since the last keyboard or mouse input, from `ioreg -c IOHIDSystem` (HIDIdleTime is in ns). */
export function parseHidIdleTime(output: string): number | null {
  const m = /"HIDIdleTime"\s*=\s*(\d+)/.exec(output);
  return m ? Number(BigInt(m[1]!) / 1_000_000n) / 1000 : null;
}

/** Whether the console session's screen is locked, from `ioreg -n Root -d1`. */
export function parseScreenLocked(output: string): boolean {
  return /"CGSSessionScreenIsLocked"\s*=\s*Yes/.test(output);
}

/** Power source and charge from `pmset -g batt`. A Mac without a battery reports AC and null. */
export function parsePmsetBatt(output: string): { onAc: boolean | null; batteryPercent: number | null } {
  const source = /Now drawing from '([^']+)'/.exec(output)?.[1];
  const percent = /(\d{1,3})%/.exec(output)?.[1];
  return {
    onAc: source === undefined ? null : source !== 'Battery Power',
    batteryPercent: percent === undefined ? null : Math.min(100, Number(percent)),
  };
}

/**
 * Thermal state from `pmset -g therm`: the CPU speed limit macOS applies when hot (100 = none).
 * 100 → nominal, 80–99 → fair, 50–79 → serious, below 50 → critical; a recorded thermal warning
 * level counts as at least serious. "No … has been recorded" (a cool Mac) → nominal. This is an
 * approximation of NSProcessInfo.thermalState, which the app (Electron's powerMonitor) or the
 * native addon report exactly.
 */
export function parsePmsetTherm(output: string): ThermalState {
  const limit = /CPU_Speed_Limit\s*=\s*(\d+)/.exec(output);
  let state: ThermalState = 'nominal';
  if (limit) {
    const n = Number(limit[1]);
    state = n >= 100 ? 'nominal' : n >= 80 ? 'fair' : n >= 50 ? 'serious' : 'critical';
  }
  if (/thermal warning level/i.test(output) && !/No thermal warning level/i.test(output) && state !== 'critical') state = 'serious';
  return state;
}

/** Options of {@link MacEnvironmentSource}. */
export interface MacEnvironmentSourceOptions {
  /** Runs ioreg, pmset and sysctl. Defaults to {@link execCommand}. */
  run?: CommandRunner;
  /**
   * The native addon: when its calls answer, idle time comes from IOHIDSystem's HIDIdleTime and
   * heat from NSProcessInfo.thermalState without running ioreg or pmset; when they answer
   * unsupported (or fail), the commands are asked as before. Defaults to none (commands only).
   */
  native?: NativeAddon | null;
}

/**
 * A headless Mac: idle time and heat from the native addon when it answers, else
 * `ioreg -c IOHIDSystem` for idle time and `pmset -g therm` for heat; `ioreg -n Root -d1` for the
 * screen lock, `pmset -g batt` for power and `sysctl` for memory pressure. Idle time is required:
 * if neither the addon nor ioreg gives it, read() throws and the runtime waits rather than serve on
 * a guess.
 */
export class MacEnvironmentSource implements EnvironmentSource {
  readonly #run: CommandRunner;
  readonly #native: NativeAddon | null;

  constructor(options: MacEnvironmentSourceOptions = {}) {
    this.#run = options.run ?? execCommand;
    this.#native = options.native ?? null;
  }

  async read(): Promise<EnvironmentSample> {
    const nativeIdle = this.#native?.hidIdleTime();
    const nativeThermal = this.#native?.thermalState();
    const idleFromAddon = nativeIdle?.supported && nativeIdle.ok ? nativeIdle.idleSeconds : null;
    const thermalFromAddon = nativeThermal?.supported && nativeThermal.ok ? nativeThermal.state : null;
    const [hid, root, batt, therm, memoryPressure] = await Promise.all([
      idleFromAddon === null ? this.#run('/usr/sbin/ioreg', ['-c', 'IOHIDSystem', '-d', '4', '-r', '-k', 'HIDIdleTime']) : null,
      this.#run('/usr/sbin/ioreg', ['-n', 'Root', '-d1']).catch(() => null),
      this.#run('/usr/bin/pmset', ['-g', 'batt']).catch(() => null),
      thermalFromAddon === null ? this.#run('/usr/bin/pmset', ['-g', 'therm']).catch(() => null) : null,
      readMemoryPressure({ platform: 'darwin', run: this.#run }),
    ]);
    const idleSeconds = idleFromAddon ?? (hid === null ? null : parseHidIdleTime(hid));
    if (idleSeconds === null) throw new Error('ioreg reported no HIDIdleTime');
    const power = batt === null ? { onAc: null, batteryPercent: null } : parsePmsetBatt(batt);
    return {
      idleSeconds,
      screenLocked: root === null ? null : parseScreenLocked(root),
      ...power,
      thermal: thermalFromAddon ?? (therm === null ? null : parsePmsetTherm(therm)),
      memoryPressure,
    };
  }
}

// ---- Linux -----------------------------------------------------------------------------------

/** Options of {@link LinuxEnvironmentSource}. */
export interface LinuxEnvironmentSourceOptions {
  /** Root of sysfs. Defaults to /sys. */
  sysRoot?: string;
  /** Root of procfs (memory pressure). Defaults to /proc. */
  procRoot?: string;
}

/** Thermal state from the hottest zone, in °C: < 80 nominal, < 90 fair, < 100 serious, else critical. */
export function thermalFromCelsius(celsius: number | null): ThermalState | null {
  if (celsius === null) return null;
  return celsius < 80 ? 'nominal' : celsius < 90 ? 'fair' : celsius < 100 ? 'serious' : 'critical';
}

/**
 * Linux fallback. Power from /sys/class/power_supply (a `Mains` supply that is online means AC; a
 * battery's `capacity` and `status`), heat from the hottest /sys/class/thermal zone, memory
 * pressure from /proc (see memory-pressure.ts). Linux has no
 * idle signal a headless process can read (X11 and Wayland keep it to the session), so idle time
 * is reported as unknown (null), which the policy counts as away: a Linux agent serves whenever
 * power, heat and schedule allow. Use the schedule and `nightjar pause` to keep it off a machine
 * someone is using.
 */
export class LinuxEnvironmentSource implements EnvironmentSource {
  readonly #sys: string;
  readonly #proc: string;

  constructor(options: LinuxEnvironmentSourceOptions = {}) {
    this.#sys = options.sysRoot ?? '/sys';
    this.#proc = options.procRoot ?? '/proc';
  }

  async read(): Promise<EnvironmentSample> {
    const [power, thermal, memoryPressure] = await Promise.all([
      this.#power(),
      this.#thermal(),
      readMemoryPressure({ platform: 'linux', procRoot: this.#proc }),
    ]);
    return { idleSeconds: null, screenLocked: null, ...power, thermal, memoryPressure };
  }

  async #power(): Promise<{ onAc: boolean | null; batteryPercent: number | null }> {
    const dir = path.join(this.#sys, 'class/power_supply');
    const names = await readdir(dir).catch(() => [] as string[]);
    let mains: boolean | null = null;
    let batteryPercent: number | null = null;
    let discharging = false;
    for (const name of names) {
      const read = (f: string): Promise<string | null> =>
        readFile(path.join(dir, name, f), 'utf8').then(
          (t) => t.trim(),
          () => null,
        );
      const type = await read('type');
      if (type === 'Mains') mains = (mains ?? false) || (await read('online')) === '1';
      else if (type === 'Battery') {
        const capacity = Number(await read('capacity'));
        if (Number.isFinite(capacity)) batteryPercent = Math.min(batteryPercent ?? 100, Math.max(0, Math.min(100, capacity)));
        if ((await read('status')) === 'Discharging') discharging = true;
      }
    }
    const onAc = mains ?? (batteryPercent === null ? null : !discharging);
    return { onAc, batteryPercent };
  }

  async #thermal(): Promise<ThermalState | null> {
    const dir = path.join(this.#sys, 'class/thermal');
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith('thermal_zone'));
    let hottest: number | null = null;
    for (const name of names) {
      const milli = Number(await readFile(path.join(dir, name, 'temp'), 'utf8').catch(() => 'x'));
      if (Number.isFinite(milli)) hottest = Math.max(hottest ?? -Infinity, milli / 1000);
    }
    return thermalFromCelsius(hottest);
  }
}

/**
 * The source for this platform: the native addon (when it answers) and ioreg/pmset on macOS,
 * sysfs elsewhere (the addon has nothing to add there, so it is not consulted).
 */
export function defaultEnvironmentSource(platform: NodeJS.Platform = process.platform, native?: NativeAddon | null): EnvironmentSource {
  return platform === 'darwin' ? new MacEnvironmentSource({ native }) : new LinuxEnvironmentSource();
}
