/**
 * The menu-bar shell put together: the tray, the dashboard window and its IPC bridge, control
 * events forwarded to the window, opening at login, a second launch bringing the dashboard up,
 * and quitting only after the agent drained. Every Electron part is handed in; main.ts passes
 * the real ones, tests pass fakes.
 */
import { Resource, silentLogger, type ControlEvent, type Logger, errorMessage } from '../../shared/index.js';

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
  /**
   * Runs on quit once the agent has stopped and the shell is gone, before the app really quits:
   * what main.ts made besides the shell goes here (the power monitor feed, the log file). A hook,
   * awaited, because the app must not quit before it is done. Defaults to nothing.
   */
  onQuit?: () => void | Promise<void>;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** The running menu-bar app. */
export class MenuBarShell extends Resource {
  readonly tray: TrayController;
  readonly window: DashboardWindow;
  readonly loginItem: LoginItem;
  readonly #o: MenuBarShellOptions;
  readonly #quit: { readonly draining: Promise<void> | null };

  constructor(options: MenuBarShellOptions) {
    super();
    this.#o = options;
    const log = options.logger ?? silentLogger;
    const { app } = options;
    const d = this.disposables;
    this.loginItem = new LoginItem(app);
    this.window = new DashboardWindow({ create: options.createWindow, preload: options.preload, devTools: !app.isPackaged, logger: log });
    d.add(
      registerControlIpc({
        ipcMain: options.ipcMain,
        handlers: options.agent.handlers,
        isDashboard: (id) => this.window.owns(id),
        logger: log,
      }),
    );
    d.add(options.agent.onEvent((event: ControlEvent) => this.window.send(EVENT_CHANNEL, event)));
    this.tray = new TrayController({
      tray: options.tray,
      menu: options.menu,
      agent: options.agent,
      logger: log,
      actions: {
        openDashboard: (screen) =>
          void this.window.open(screen).catch((err: unknown) => log.error('could not open the dashboard', { err: errorMessage(err) })),
        launchAtLogin: () => this.loginItem.enabled,
        setLaunchAtLogin: (on) => this.loginItem.set(on),
        quit: () => app.quit(),
      },
    });
    d.add(this.tray);
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

  /**
   * Removes the tray item, the IPC handlers and the event forwarding (its children, last made
   * first), then runs the onQuit hook. The agent was handed in: its owner disposes it (on quit,
   * the graceful-quit handler does, before this).
   */
  protected override async onDispose(): Promise<void> {
    await this.disposables.dispose();
    await this.#o.onQuit?.();
  }
}
