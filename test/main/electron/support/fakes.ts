/**
 * Small fakes of the Electron parts the shell takes (src/main/electron/electron-like.ts): each
 * records what it was asked and lets a test emit what Electron would. Electron itself cannot run
 * here; these are as small as the interfaces.
 */
import { EventEmitter } from 'node:events';
import type {
  AppLike,
  BrowserWindowLike,
  ElectronThermalState,
  IpcInvokeEventLike,
  IpcMainLike,
  MenuFactoryLike,
  MenuItemTemplate,
  NavigationEventLike,
  PowerMonitorLike,
  PowerSaveBlockerLike,
  PreventableEvent,
  SessionLike,
  TrayLike,
  WebContentsLike,
} from '../../../../src/main/electron/index.js';

type Listener = (...args: never[]) => void;

/** An event that remembers whether preventDefault was called. */
export class FakeEvent implements PreventableEvent {
  prevented = false;
  constructor(readonly url = '') {}
  preventDefault(): void {
    this.prevented = true;
  }
}

/** electron.app */
export class FakeApp extends EventEmitter implements AppLike {
  quits = 0;
  openAtLogin = false;
  isPackaged = true;
  readonly dock = { hidden: false, hide: () => void (this.dock.hidden = true) };
  requestSingleInstanceLock(): boolean {
    return true;
  }
  override on(event: string, listener: Listener): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }
  quit(): void {
    this.quits++;
    const event = new FakeEvent();
    this.emit('before-quit', event);
    if (!event.prevented) this.emit('will-quit');
  }
  getLoginItemSettings(): { openAtLogin: boolean } {
    return { openAtLogin: this.openAtLogin };
  }
  setLoginItemSettings(settings: { openAtLogin: boolean }): void {
    this.openAtLogin = settings.openAtLogin;
  }
}

/** A built menu: the template it was built from. */
export interface FakeMenu {
  readonly template: MenuItemTemplate[];
}

/** electron.Menu */
export class FakeMenuFactory implements MenuFactoryLike {
  readonly built: FakeMenu[] = [];
  buildFromTemplate(template: MenuItemTemplate[]): FakeMenu {
    const menu = { template };
    this.built.push(menu);
    return menu;
  }
  /** The last menu's item with this id. */
  item(id: string): MenuItemTemplate {
    const found = this.built.at(-1)?.template.find((i) => i.id === id);
    if (!found) throw new Error(`no menu item ${id}`);
    return found;
  }
}

/** An electron.Tray */
export class FakeTray implements TrayLike {
  title = '';
  toolTip = '';
  menu: FakeMenu | null = null;
  destroyed = false;
  setTitle(title: string): void {
    this.title = title;
  }
  setToolTip(toolTip: string): void {
    this.toolTip = toolTip;
  }
  setContextMenu(menu: object | null): void {
    this.menu = menu as FakeMenu | null;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

/** electron.powerMonitor, whose readings a test sets. */
export class FakePowerMonitor extends EventEmitter implements PowerMonitorLike {
  idleTime = 0;
  idleState: 'active' | 'idle' | 'locked' | 'unknown' = 'active';
  onBattery = false;
  thermal: ElectronThermalState = 'nominal';
  override on(event: string, listener: Listener): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }
  override removeListener(event: string, listener: Listener): this {
    return super.removeListener(event, listener as (...args: unknown[]) => void);
  }
  getSystemIdleTime(): number {
    return this.idleTime;
  }
  getSystemIdleState(): 'active' | 'idle' | 'locked' | 'unknown' {
    return this.idleState;
  }
  isOnBatteryPower(): boolean {
    return this.onBattery;
  }
  getCurrentThermalState(): ElectronThermalState {
    return this.thermal;
  }
}

/** electron.powerSaveBlocker */
export class FakePowerSaveBlocker implements PowerSaveBlockerLike {
  readonly started = new Map<number, string>();
  readonly log: string[] = [];
  #next = 1;
  start(type: 'prevent-app-suspension' | 'prevent-display-sleep'): number {
    const id = this.#next++;
    this.started.set(id, type);
    this.log.push(`start ${type}`);
    return id;
  }
  stop(id: number): boolean {
    this.log.push(`stop ${id}`);
    return this.started.delete(id);
  }
  isStarted(id: number): boolean {
    return this.started.has(id);
  }
}

/** electron.ipcMain: handlers by channel, and a way to call them as a renderer would. */
export class FakeIpcMain implements IpcMainLike {
  readonly handlers = new Map<string, (event: IpcInvokeEventLike, ...args: unknown[]) => unknown>();
  handle(channel: string, listener: (event: IpcInvokeEventLike, ...args: unknown[]) => unknown): void {
    if (this.handlers.has(channel)) throw new Error(`second handler for ${channel}`);
    this.handlers.set(channel, listener);
  }
  removeHandler(channel: string): void {
    this.handlers.delete(channel);
  }
  /** What ipcRenderer.invoke(channel, ...args) from `event`'s sender would get. */
  async invoke(channel: string, event: IpcInvokeEventLike, ...args: unknown[]): Promise<unknown> {
    const h = this.handlers.get(channel);
    if (!h) throw new Error(`No handler registered for '${channel}'`);
    return h(event, ...args);
  }
}

/** An IPC event from a frame at `url` of web contents `id` (top frame unless `parent` is given). */
export function ipcEvent(id: number, url: string | null, parent: unknown = null): IpcInvokeEventLike {
  return { sender: { id }, senderFrame: url === null ? null : { url, parent } };
}

/** An electron.WebContents */
export class FakeWebContents extends EventEmitter implements WebContentsLike {
  url = '';
  destroyed = false;
  readonly sent: { channel: string; args: unknown[] }[] = [];
  openHandler: ((details: { url: string }) => { action: 'deny' }) | null = null;
  constructor(readonly id: number) {
    super();
  }
  override on(event: string, listener: Listener): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void {
    this.openHandler = handler;
  }
  send(channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args });
  }
  getURL(): string {
    return this.url;
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  /** Emits a navigation-like event as Electron would; returns the event (was it prevented?). */
  navigate(kind: 'will-navigate' | 'will-redirect', url: string): NavigationEventLike & { prevented: boolean } {
    const event = new FakeEvent(url);
    this.emit(kind, event);
    return event;
  }
}

/** An electron.BrowserWindow */
export class FakeBrowserWindow extends EventEmitter implements BrowserWindowLike {
  readonly webContents: FakeWebContents;
  readonly loaded: string[] = [];
  shown = 0;
  focused = 0;
  destroyed = false;
  constructor(
    readonly options: unknown,
    id: number,
  ) {
    super();
    this.webContents = new FakeWebContents(id);
  }
  override on(event: string, listener: Listener): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }
  override once(event: string, listener: Listener): this {
    return super.once(event, listener as (...args: unknown[]) => void);
  }
  async loadURL(url: string): Promise<void> {
    this.loaded.push(url);
    this.webContents.url = url;
    this.emit('ready-to-show');
  }
  show(): void {
    this.shown++;
  }
  focus(): void {
    this.focused++;
  }
  isDestroyed(): boolean {
    return this.destroyed;
  }
  /** The owner closes it. */
  close(): void {
    this.destroyed = true;
    this.webContents.destroyed = true;
    this.emit('closed');
  }
}

/** electron.Session */
export class FakeSession implements SessionLike {
  requestHandler: ((webContents: unknown, permission: string, callback: (granted: boolean) => void) => void) | null = null;
  checkHandler: ((webContents: unknown, permission: string) => boolean) | null = null;
  beforeRequest: ((details: { url: string }, callback: (response: { cancel?: boolean }) => void) => void) | null = null;
  readonly webRequest = {
    onBeforeRequest: (listener: ((details: { url: string }, callback: (response: { cancel?: boolean }) => void) => void) | null): void => {
      this.beforeRequest = listener;
    },
  };
  setPermissionRequestHandler(
    handler: ((webContents: unknown, permission: string, callback: (granted: boolean) => void) => void) | null,
  ): void {
    this.requestHandler = handler;
  }
  setPermissionCheckHandler(handler: ((webContents: unknown, permission: string) => boolean) | null): void {
    this.checkHandler = handler;
  }
}
