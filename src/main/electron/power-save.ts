/**
 * Keeping the Mac awake while serving, with Electron's powerSaveBlocker: the agent's runtime
 * acquires it when it starts serving and releases it once its jobs have drained.
 */
import type { PowerSaveBlocker } from '../agent/index.js';
import type { PowerSaveBlockerLike } from './electron-like.js';

/**
 * A {@link PowerSaveBlocker} on electron.powerSaveBlocker, type 'prevent-app-suspension': the
 * system does not idle-sleep while held, the display may still sleep. acquire and release are
 * idempotent.
 */
export class ElectronPowerSaveBlocker implements PowerSaveBlocker {
  readonly #blocker: PowerSaveBlockerLike;
  #id: number | null = null;

  /** @param blocker electron.powerSaveBlocker */
  constructor(blocker: PowerSaveBlockerLike) {
    this.#blocker = blocker;
  }

  get held(): boolean {
    return this.#id !== null && this.#blocker.isStarted(this.#id);
  }

  acquire(): void {
    if (this.held) return;
    this.#id = this.#blocker.start('prevent-app-suspension');
  }

  release(): void {
    const id = this.#id;
    this.#id = null;
    if (id !== null && this.#blocker.isStarted(id)) this.#blocker.stop(id);
  }
}
