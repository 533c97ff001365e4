/**
 * The menu-bar item: keeps its title, tooltip and menu in step with the agent (its events, and
 * a slow refresh so today's earnings roll over at midnight), and runs what the owner picks.
 */
import {
  earningsPeriods,
  silentLogger,
  systemClock,
  withDefaults,
  type AgentStatusSnapshot,
  type Clock,
  type ControlEvent,
  type Disposable,
  type EarningsTotal,
  type Logger,
  TimerSlot,
  errorMessage,
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

const TRAY_DEFAULTS: Required<Pick<TrayControllerOptions, 'refreshMs' | 'clock' | 'logger'>> = {
  refreshMs: 60_000,
  clock: systemClock,
  logger: silentLogger,
};

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
          checked: item.checked,
          accelerator: item.accelerator,
          click: item.action ? () => run(item.action!) : undefined,
        },
  );
}

/** The menu-bar item, kept up to date. */
export class TrayController implements Disposable {
  readonly #o: typeof TRAY_DEFAULTS & TrayControllerOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #subscription: Disposable;
  readonly #timer: TimerSlot;
  #status: AgentStatusSnapshot | null = null;
  #today: EarningsTotal | null = null;
  #refreshing: Promise<void> | null = null;
  #again = false;
  #disposed = false;
  /** The items last shown (tests read them). */
  items: TrayMenuItem[] = [];

  constructor(options: TrayControllerOptions) {
    this.#o = withDefaults(TRAY_DEFAULTS, options);
    this.#clock = this.#o.clock;
    this.#log = this.#o.logger;
    this.#timer = new TimerSlot(this.#clock);
    this.#subscription = options.agent.onEvent((e) => this.#onEvent(e));
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
          this.#log.warn('could not read the agent for the tray', { err: errorMessage(err) });
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
    this.#timer.set(this.#o.refreshMs, () => {
      if (this.#disposed) return;
      void this.refresh().finally(() => {
        if (!this.#disposed) this.#schedule();
      });
    });
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
        .catch((err: unknown) => this.#log.warn('tray action failed', { action, err: errorMessage(err) }))
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
    void this.#subscription.dispose();
    this.#timer.dispose();
    this.#o.tray.destroy();
  }
}
