/**
 * Keeping the Mac awake only while serving. The runtime holds a {@link PowerSaveBlocker} while it
 * serves or drains jobs and releases it otherwise. The app implements it with Electron's
 * powerSaveBlocker ('prevent-app-suspension'); a headless Mac runs `caffeinate -i -w <pid>`,
 * which holds an idle-sleep assertion until it is killed or this process exits.
 */
import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { silentLogger, withDefaults, type Logger } from '../../../shared/index.js';

/** Something that can keep the machine from sleeping. acquire and release are idempotent. */
export interface PowerSaveBlocker {
  acquire(): void;
  release(): void;
  /** True while acquired. */
  readonly held: boolean;
}

/** A blocker that does nothing (Linux servers, tests). */
export class NoopPowerSaveBlocker implements PowerSaveBlocker {
  held = false;
  acquire(): void {
    this.held = true;
  }
  release(): void {
    this.held = false;
  }
}

/** Options of {@link CaffeinateBlocker}. */
export interface CaffeinateBlockerOptions {
  /** Starts caffeinate. Defaults to child_process.spawn. */
  spawn?: (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;
  /** The process whose lifetime bounds the assertion. Defaults to this process. */
  pid?: number;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

const CAFFEINATE_DEFAULTS: Required<Pick<CaffeinateBlockerOptions, 'spawn' | 'pid' | 'logger'>> = {
  pid: process.pid,
  spawn: (command, args, options) => nodeSpawn(command, [...args], options),
  logger: silentLogger,
};

/**
 * `caffeinate -i -w <pid>` while held: prevents idle sleep (not display sleep), and because of
 * `-w` the assertion ends with this process even if it is killed without a chance to release.
 */
export class CaffeinateBlocker implements PowerSaveBlocker, Disposable {
  readonly #spawn: NonNullable<CaffeinateBlockerOptions['spawn']>;
  readonly #pid: number;
  readonly #log: Logger;
  #child: ChildProcess | null = null;

  constructor(options: CaffeinateBlockerOptions = {}) {
    const o = withDefaults(CAFFEINATE_DEFAULTS, options);
    this.#spawn = o.spawn;
    this.#pid = o.pid;
    this.#log = o.logger;
  }

  get held(): boolean {
    return this.#child !== null;
  }

  acquire(): void {
    if (this.#child) return;
    const child = this.#spawn('/usr/bin/caffeinate', ['-i', '-w', String(this.#pid)], { stdio: 'ignore' });
    this.#child = child;
    child.on('error', (err) => this.#log.warn('caffeinate could not run; the Mac may sleep while serving', { err: err.message }));
    child.on('exit', () => {
      if (this.#child === child) this.#child = null;
    });
  }

  release(): void {
    const child = this.#child;
    this.#child = null;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }

  /** Releases the assertion (the child is stopped). */
  dispose(): void {
    this.release();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** caffeinate on macOS; nothing elsewhere (a Linux server is not expected to sleep). */
export function defaultPowerSaveBlocker(platform: NodeJS.Platform = process.platform, logger?: Logger): PowerSaveBlocker {
  return platform === 'darwin' ? new CaffeinateBlocker({ logger }) : new NoopPowerSaveBlocker();
}
