/**
 * Electron's powerMonitor feeding the agent's policy: idle time, screen lock, AC or battery,
 * battery charge and thermal state (and, polled beside it, the memory pressure heartbeats report),
 * set on a {@link ManualEnvironmentSource} the agent's runtime reads. Every change re-decides at
 * once (the runtime subscribes to the source), so the agent stops taking jobs the moment the
 * owner touches the keyboard.
 */
import {
  silentLogger,
  systemClock,
  toDisposable,
  withDefaults,
  type Clock,
  type Disposable,
  type Logger,
  type MemoryPressure,
  type ThermalState,
  TimerSlot,
  errorMessage,
} from '../../shared/index.js';
import { type EnvironmentSample, type ManualEnvironmentSource } from '../agent/index.js';
import type { ElectronThermalState, PowerMonitorLike } from './electron-like.js';

/** Electron's thermal state as the policy names it; 'unknown' is no reading. */
export function thermalFromElectron(state: ElectronThermalState): ThermalState | null {
  return state === 'unknown' ? null : state;
}

/** One full reading of powerMonitor (battery charge and memory pressure aside: powerMonitor gives neither). */
export function readPowerMonitor(pm: PowerMonitorLike): Omit<EnvironmentSample, 'batteryPercent' | 'memoryPressure'> {
  return {
    idleSeconds: pm.getSystemIdleTime(),
    // getSystemIdleState answers 'locked' whatever the threshold when the screen is locked.
    screenLocked: pm.getSystemIdleState(1) === 'locked',
    onAc: !pm.isOnBatteryPower(),
    thermal: thermalFromElectron(pm.getCurrentThermalState()),
  };
}

/** Options of {@link PowerMonitorFeed}. */
export interface PowerMonitorFeedOptions {
  /** electron.powerMonitor. Required. */
  powerMonitor: PowerMonitorLike;
  /** The source the agent's runtime reads. Required. */
  source: ManualEnvironmentSource;
  /** Battery charge in percent, null if there is no battery (main.ts: `pmset -g batt`). Defaults to always null. */
  batteryPercent?: () => Promise<number | null>;
  /** Memory pressure, null if unknown (main.ts: `sysctl kern.memorystatus_vm_pressure_level`). Defaults to always null. */
  memoryPressure?: () => Promise<MemoryPressure | null>;
  /** How often the memory pressure is read. Defaults to 10 000 ms. */
  memoryPollMs?: number;
  /** How often idle time is read. Defaults to 1000 ms. */
  idlePollMs?: number;
  /** How often the battery charge is read while on battery. Defaults to 60 000 ms. */
  batteryPollMs?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

type Defaulted = 'memoryPollMs' | 'idlePollMs' | 'batteryPollMs' | 'clock' | 'logger';

const FEED_DEFAULTS: Required<Pick<PowerMonitorFeedOptions, Defaulted>> = {
  memoryPollMs: 10_000,
  idlePollMs: 1000,
  batteryPollMs: 60_000,
  clock: systemClock,
  logger: silentLogger,
};

/** Feeds powerMonitor into the agent's environment source until disposed. */
export class PowerMonitorFeed implements Disposable {
  readonly #o: typeof FEED_DEFAULTS & PowerMonitorFeedOptions;
  readonly #log: Logger;
  /** The powerMonitor listeners, removed on dispose. */
  readonly #off: Disposable[] = [];
  readonly #idleTimer: TimerSlot;
  readonly #batteryTimer: TimerSlot;
  readonly #memoryTimer: TimerSlot;
  #disposed = false;

  constructor(options: PowerMonitorFeedOptions) {
    this.#o = withDefaults(FEED_DEFAULTS, options);
    this.#log = this.#o.logger;
    this.#idleTimer = new TimerSlot(this.#o.clock);
    this.#batteryTimer = new TimerSlot(this.#o.clock);
    this.#memoryTimer = new TimerSlot(this.#o.clock);
    const pm = options.powerMonitor;
    const src = options.source;
    const onLock = (): void => src.set({ screenLocked: true });
    const onUnlock = (): void => src.set({ screenLocked: false, idleSeconds: pm.getSystemIdleTime() });
    const onAc = (): void => {
      src.set({ onAc: true });
      void this.#readBattery();
    };
    const onBattery = (): void => {
      src.set({ onAc: false });
      void this.#readBattery();
    };
    const onThermal = (details: { state: ElectronThermalState }): void => src.set({ thermal: thermalFromElectron(details.state) });
    // After sleep everything may have changed: read it all again.
    const onResume = (): void => this.readAll();
    pm.on('lock-screen', onLock);
    pm.on('unlock-screen', onUnlock);
    pm.on('on-ac', onAc);
    pm.on('on-battery', onBattery);
    pm.on('thermal-state-change', onThermal);
    pm.on('resume', onResume);
    this.#off.push(
      toDisposable(() => void pm.removeListener('lock-screen', onLock)),
      toDisposable(() => void pm.removeListener('unlock-screen', onUnlock)),
      toDisposable(() => void pm.removeListener('on-ac', onAc)),
      toDisposable(() => void pm.removeListener('on-battery', onBattery)),
      toDisposable(() => void pm.removeListener('thermal-state-change', onThermal)),
      toDisposable(() => void pm.removeListener('resume', onResume)),
    );
    this.readAll();
    this.#scheduleIdle();
    void this.#readMemory();
  }

  /** Reads everything now and sets it. */
  readAll(): void {
    if (this.#disposed) return;
    this.#o.source.set(readPowerMonitor(this.#o.powerMonitor));
    void this.#readBattery();
  }

  /** Calls `read`; a failure is logged and counts as unknown (null). */
  async #tryRead<T>(read: () => Promise<T | null>, what: string): Promise<T | null> {
    try {
      return await read();
    } catch (err) {
      this.#log.warn(`could not read ${what}`, { err: errorMessage(err) });
      return null;
    }
  }

  async #readBattery(): Promise<void> {
    if (!this.#o.batteryPercent) return;
    const percent = await this.#tryRead(this.#o.batteryPercent, 'the battery charge');
    if (this.#disposed) return;
    if (percent !== this.#o.source.sample.batteryPercent) this.#o.source.set({ batteryPercent: percent });
    this.#batteryTimer.clear();
    if (this.#o.source.sample.onAc === false) this.#batteryTimer.set(this.#o.batteryPollMs, () => void this.#readBattery());
  }

  async #readMemory(): Promise<void> {
    if (!this.#o.memoryPressure) return;
    const pressure = await this.#tryRead(this.#o.memoryPressure, 'the memory pressure');
    if (this.#disposed) return;
    if (pressure !== this.#o.source.sample.memoryPressure) this.#o.source.set({ memoryPressure: pressure });
    this.#memoryTimer.set(this.#o.memoryPollMs, () => void this.#readMemory());
  }

  #scheduleIdle(): void {
    this.#idleTimer.set(this.#o.idlePollMs, () => {
      if (this.#disposed) return;
      const idle = this.#o.powerMonitor.getSystemIdleTime();
      if (idle !== this.#o.source.sample.idleSeconds) this.#o.source.set({ idleSeconds: idle });
      this.#scheduleIdle();
    });
  }

  /** Stops listening and polling. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const off of this.#off) void off.dispose();
    for (const t of [this.#idleTimer, this.#batteryTimer, this.#memoryTimer]) t.dispose();
  }
}
