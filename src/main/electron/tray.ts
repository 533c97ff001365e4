/**
 * The menu-bar item: keeps its title, tooltip and menu in step with the agent (its events, and
 * a slow refresh so today's earnings roll over at midnight), and runs what the owner picks.
 */
import {
  earningsPeriods,
  silentLogger,
  systemClock,
  type AgentStatusSnapshot,
  type Clock,
  type ControlEvent,
  type EarningsTotal,
  type Logger,
  type TimerHandle,
} from '../../shared/index.js';
import type { MenuFactoryLike, MenuItemTemplate, TrayLike } from './electron-like.js';
import type { AgentLike } from './agent-like.js';
import { trayMenu, trayTitle, trayToolTip, type TrayAction, type TrayMenuItem } from './tray-menu.js';

/** What the menu's actions do outside the agent. */
export interface TrayActions {
  /** Opens the dashboard, at a screen if given. */
  openDashboard(screen?: string): void;
  /** Whether the app opens at login. */
  launchAtLogin(): boolean;
  /** Turns opening at login on or off. */
  setLaunchAtLogin(on: boolean): void;
  /** Quits the app (gracefully). */
  quit(): void;
}

/** Options of {@link TrayController}. */
export interface TrayControllerOptions {
  /** The tray item (main.ts: `new Tray(templateImage)`). Required. */
  tray: TrayLike;
  /** electron.Menu. Required. */
  menu: MenuFactoryLike;
  /** The agent. Required. */
  agent: AgentLike;
  /** What the non-agent items do. Required. */
  actions: TrayActions;
  /** How often status and earnings are read besides events. Defaults to 60 000 ms. */
  refreshMs?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** Turns a menu model into an Electron template, wiring each action. */
export function menuTemplate(items: readonly TrayMenuItem[], run: (action: TrayAction) => void): MenuItemTemplate[] {
  return items.map((item) =>
    item.type === 'separator'
      ? { id: item.id, type: 'separator' }
      : {
          id: item.id,
          type: item.type,
          label: item.label,
          enabled: item.enabled,
          ...(item.checked === undefined ? {} : { checked: item.checked }),
          ...(item.accelerator ? { accelerator: item.accelerator } : {}),
          ...(item.action ? { click: () => run(item.action!) } : {}),
        },
  );
}

/** The menu-bar item, kept up to date. */
export class TrayController {
  readonly #o: TrayControllerOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  #status: AgentStatusSnapshot | null = null;
  #today: EarningsTotal | null = null;
  #unsubscribe: (() => void) | null = null;
  #timer: TimerHandle | null = null;
  #refreshing: Promise<void> | null = null;
  #again = false;
  #disposed = false;
  /** The items last shown (tests read them). */
  items: TrayMenuItem[] = [];

  constructor(options: TrayControllerOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger ?? silentLogger;
    this.#unsubscribe = options.agent.onEvent((e) => this.#onEvent(e));
    this.#render();
    this.#schedule();
  }

  /** Reads status and today's earnings, then redraws. Concurrent calls coalesce. */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      do {
        this.#again = false;
        try {
          const h = this.#o.agent.handlers;
          this.#status = await h.status({});
          this.#today = earningsPeriods(await h.earnings({ days: 2 }), this.#clock.now()).today;
        } catch (err) {
          this.#log.warn('could not read the agent for the tray', { err: err instanceof Error ? err.message : String(err) });
        }
        if (!this.#disposed) this.#render();
      } while (this.#again && !this.#disposed);
      this.#refreshing = null;
    })();
    return this.#refreshing;
  }

  #onEvent(e: ControlEvent): void {
    if (e.type === 'state' || e.type === 'link' || e.type === 'receipt') void this.refresh();
    else if (e.type === 'jobs' && this.#status) {
      Object.assign(this.#status, {
        activeJobs: e.activeJobs,
        tokensPerSecond: e.tokensPerSecond,
        freeSlots: e.freeSlots,
        totalSlots: e.totalSlots,
        jobsServed: e.jobsServed,
      });
      this.#render();
    }
  }

  #schedule(): void {
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      if (this.#disposed) return;
      void this.refresh().finally(() => {
        if (!this.#disposed) this.#schedule();
      });
    }, this.#o.refreshMs ?? 60_000);
  }

  #render(): void {
    const input = { status: this.#status, today: this.#today, launchAtLogin: this.#o.actions.launchAtLogin() };
    this.items = trayMenu(input);
    const { tray, menu } = this.#o;
    tray.setTitle(trayTitle(input), { fontType: 'monospacedDigit' });
    tray.setToolTip(trayToolTip(this.#status));
    tray.setContextMenu(menu.buildFromTemplate(menuTemplate(this.items, (action) => this.run(action))));
  }

  /** Runs a menu action (what clicking its item does). */
  run(action: TrayAction): void {
    const h = this.#o.agent.handlers;
    const a = this.#o.actions;
    const call = (p: Promise<unknown> | unknown): void => {
      void Promise.resolve(p)
        .catch((err: unknown) => this.#log.warn('tray action failed', { action, err: err instanceof Error ? err.message : String(err) }))
        .then(() => this.refresh());
    };
    switch (action) {
      case 'pause':
        return call(h.pause({}));
      case 'resume':
        return call(h.resume({}));
      case 'serve-now':
        return call(h.serveNow({}));
      case 'open-dashboard':
        return a.openDashboard(this.#status?.gatewayUrl === null ? 'setup' : undefined);
      case 'preferences':
        return a.openDashboard('availability');
      case 'toggle-login':
        a.setLaunchAtLogin(!a.launchAtLogin());
        return this.#render();
      case 'quit':
        return a.quit();
    }
  }

  /** Stops listening and refreshing, and removes the item. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#unsubscribe?.();
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#o.tray.destroy();
  }
}
