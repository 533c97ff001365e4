/**
 * The menu-bar shell put together: the tray, the dashboard window and its IPC bridge, control
 * events forwarded to the window, opening at login, a second launch bringing the dashboard up,
 * and quitting only after the agent drained. Every Electron part is handed in; main.ts passes
 * the real ones, tests pass fakes.
 */
import { silentLogger, type ControlEvent, type Logger } from '../../shared/index.js';
import type { AgentLike } from './agent-like.js';
import type { AppLike, BrowserWindowLike, IpcMainLike, MenuFactoryLike, TrayLike } from './electron-like.js';
import { registerControlIpc } from './ipc.js';
import { LoginItem } from './login-item.js';
import { installGracefulQuit } from './quit.js';
import { EVENT_CHANNEL } from './surface.js';
import { TrayController } from './tray.js';
import { DashboardWindow, type DashboardWindowOptions } from './window.js';

/** Options of {@link MenuBarShell}. */
export interface MenuBarShellOptions {
  /** electron.app. Required. */
  app: AppLike;
  /** electron.Menu. Required. */
  menu: MenuFactoryLike;
  /** The tray item, already created with its template image. Required. */
  tray: TrayLike;
  /** electron.ipcMain. Required. */
  ipcMain: IpcMainLike;
  /** Creates the dashboard's BrowserWindow. Required. */
  createWindow: (options: DashboardWindowOptions) => BrowserWindowLike;
  /** The bundled preload script. Required. */
  preload: string;
  /** The running agent. Required. */
  agent: AgentLike;
  /** Runs after the agent stopped on quit (the power monitor feed's dispose…). Defaults to nothing. */
  onQuit?: () => void | Promise<void>;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** The running menu-bar app. */
export class MenuBarShell {
  readonly tray: TrayController;
  readonly window: DashboardWindow;
  readonly loginItem: LoginItem;
  readonly #o: MenuBarShellOptions;
  readonly #ipc: { dispose(): void };
  readonly #unsubscribe: () => void;
  readonly #quit: { readonly draining: Promise<void> | null };
  #disposed = false;

  constructor(options: MenuBarShellOptions) {
    this.#o = options;
    const log = options.logger ?? silentLogger;
    const { app } = options;
    this.loginItem = new LoginItem(app);
    this.window = new DashboardWindow({ create: options.createWindow, preload: options.preload, devTools: !app.isPackaged, logger: log });
    this.#ipc = registerControlIpc({
      ipcMain: options.ipcMain,
      handlers: options.agent.handlers,
      isDashboard: (id) => this.window.owns(id),
      logger: log,
    });
    this.#unsubscribe = options.agent.onEvent((event: ControlEvent) => this.window.send(EVENT_CHANNEL, event));
    this.tray = new TrayController({
      tray: options.tray,
      menu: options.menu,
      agent: options.agent,
      logger: log,
      actions: {
        openDashboard: (screen) =>
          void this.window
            .open(screen)
            .catch((err: unknown) => log.error('could not open the dashboard', { err: err instanceof Error ? err.message : String(err) })),
        launchAtLogin: () => this.loginItem.enabled,
        setLaunchAtLogin: (on) => this.loginItem.set(on),
        quit: () => app.quit(),
      },
    });
    // A menu-bar app keeps running with no window open.
    app.on('window-all-closed', () => undefined);
    app.on('second-instance', () => void this.window.open());
    this.#quit = installGracefulQuit({ app, agent: options.agent, logger: log, beforeQuit: () => this.dispose() });
    void this.tray.refresh();
  }

  /** The agent's drain, once a quit has started it. */
  get quitting(): Promise<void> | null {
    return this.#quit.draining;
  }

  /** Removes the tray item, the IPC handlers and the event forwarding. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#unsubscribe();
    this.#ipc.dispose();
    this.tray.dispose();
    await this.#o.onQuit?.();
  }
}
