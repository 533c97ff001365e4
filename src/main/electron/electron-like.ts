/**
 * The parts of Electron the menu-bar shell uses, as narrow interfaces. main.ts hands in the real
 * `electron` module's objects (they satisfy these types as they are); tests hand in small fakes.
 * Each member mirrors Electron 45's own signature, so the compiler checks that the real objects
 * fit. Nothing here imports 'electron' at run time.
 */
/* eslint-disable @typescript-eslint/unified-signatures -- Electron declares one overload per event;
   an interface taking a union of events would not accept the real objects. */

/** What a listener may be given by Electron (an Event with preventDefault). */
export interface PreventableEvent {
  preventDefault(): void;
}

/** electron.app */
export interface AppLike {
  requestSingleInstanceLock(): boolean;
  on(event: 'second-instance', listener: () => void): unknown;
  on(event: 'before-quit', listener: (event: PreventableEvent) => void): unknown;
  on(event: 'window-all-closed', listener: () => void): unknown;
  quit(): void;
  /** Hides the dock icon (macOS; absent elsewhere). */
  readonly dock?: { hide(): void } | undefined;
  getLoginItemSettings(): { openAtLogin: boolean };
  setLoginItemSettings(settings: { openAtLogin: boolean }): void;
  readonly isPackaged: boolean;
}

/** A menu built by {@link MenuFactoryLike}; opaque to the shell. */
export type MenuLike = object;

/** One item of a menu template (a subset of Electron's MenuItemConstructorOptions). */
export interface MenuItemTemplate {
  id?: string;
  label?: string;
  type?: 'normal' | 'separator' | 'checkbox';
  enabled?: boolean;
  checked?: boolean;
  accelerator?: string;
  click?: () => void;
}

/** electron.Menu (its static builder). */
export interface MenuFactoryLike {
  buildFromTemplate(template: MenuItemTemplate[]): MenuLike;
}

/** An electron.Tray. */
export interface TrayLike {
  setTitle(title: string, options?: { fontType?: 'monospaced' | 'monospacedDigit' }): void;
  setToolTip(toolTip: string): void;
  setContextMenu(menu: MenuLike | null): void;
  destroy(): void;
}

/** electron.powerMonitor */
export interface PowerMonitorLike {
  on(event: 'lock-screen', listener: () => void): unknown;
  on(event: 'unlock-screen', listener: () => void): unknown;
  on(event: 'on-ac', listener: () => void): unknown;
  on(event: 'on-battery', listener: () => void): unknown;
  on(event: 'suspend', listener: () => void): unknown;
  on(event: 'resume', listener: () => void): unknown;
  on(event: 'thermal-state-change', listener: (details: { state: ElectronThermalState }) => void): unknown;
  removeListener(event: 'lock-screen', listener: () => void): unknown;
  removeListener(event: 'unlock-screen', listener: () => void): unknown;
  removeListener(event: 'on-ac', listener: () => void): unknown;
  removeListener(event: 'on-battery', listener: () => void): unknown;
  removeListener(event: 'suspend', listener: () => void): unknown;
  removeListener(event: 'resume', listener: () => void): unknown;
  removeListener(event: 'thermal-state-change', listener: (details: { state: ElectronThermalState }) => void): unknown;
  getSystemIdleTime(): number;
  getSystemIdleState(idleThreshold: number): 'active' | 'idle' | 'locked' | 'unknown';
  isOnBatteryPower(): boolean;
  getCurrentThermalState(): ElectronThermalState;
}

/** Thermal states as Electron names them. */
export type ElectronThermalState = 'unknown' | 'nominal' | 'fair' | 'serious' | 'critical';

/** electron.powerSaveBlocker */
export interface PowerSaveBlockerLike {
  start(type: 'prevent-app-suspension' | 'prevent-display-sleep'): number;
  stop(id: number): boolean;
  isStarted(id: number): boolean;
}

/** The frame that sent an IPC message (electron.WebFrameMain, the members checked). */
export interface SenderFrameLike {
  readonly url: string;
  readonly parent: unknown;
}

/** An IPC invoke event (electron.IpcMainInvokeEvent, the members checked). */
export interface IpcInvokeEventLike {
  readonly sender: { readonly id: number };
  readonly senderFrame: SenderFrameLike | null;
}

/** electron.ipcMain */
export interface IpcMainLike {
  handle(channel: string, listener: (event: IpcInvokeEventLike, ...args: unknown[]) => unknown): void;
  removeHandler(channel: string): void;
}

/** The navigation details Electron passes to will-navigate and will-redirect. */
export interface NavigationEventLike extends PreventableEvent {
  readonly url: string;
}

/** An electron.WebContents (the members the shell uses). */
export interface WebContentsLike {
  readonly id: number;
  on(event: 'will-navigate', listener: (details: NavigationEventLike) => void): unknown;
  on(event: 'will-redirect', listener: (details: NavigationEventLike) => void): unknown;
  on(event: 'will-attach-webview', listener: (event: PreventableEvent) => void): unknown;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void;
  send(channel: string, ...args: unknown[]): void;
  getURL(): string;
  isDestroyed(): boolean;
}

/** An electron.BrowserWindow (the members the shell uses). */
export interface BrowserWindowLike {
  readonly webContents: WebContentsLike;
  loadURL(url: string): Promise<void>;
  show(): void;
  focus(): void;
  isDestroyed(): boolean;
  once(event: 'ready-to-show', listener: () => void): unknown;
  on(event: 'closed', listener: () => void): unknown;
}

/** The electron.Session members the shell uses to refuse permissions and remote content. */
export interface SessionLike {
  setPermissionRequestHandler(
    handler: ((webContents: unknown, permission: string, callback: (granted: boolean) => void) => void) | null,
  ): void;
  setPermissionCheckHandler(handler: ((webContents: unknown, permission: string) => boolean) | null): void;
  readonly webRequest: {
    onBeforeRequest(listener: ((details: { url: string }, callback: (response: { cancel?: boolean }) => void) => void) | null): void;
  };
}

/** electron.protocol (the members used to serve app://dashboard). */
export interface ProtocolLike {
  handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void;
  unhandle(scheme: string): void;
}
