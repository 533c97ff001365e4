/** Opening at login, through the OS's login items (app.setLoginItemSettings). */
import type { AppLike } from './electron-like.js';

/** Whether the app opens at login, and turning it on or off. */
export class LoginItem {
  readonly #app: Pick<AppLike, 'getLoginItemSettings' | 'setLoginItemSettings'>;

  /** @param app electron.app */
  constructor(app: Pick<AppLike, 'getLoginItemSettings' | 'setLoginItemSettings'>) {
    this.#app = app;
  }

  /** True if the app is set to open at login. */
  get enabled(): boolean {
    return this.#app.getLoginItemSettings().openAtLogin;
  }

  /** Sets whether the app opens at login. */
  set(on: boolean): void {
    this.#app.setLoginItemSettings({ openAtLogin: on });
  }
}
