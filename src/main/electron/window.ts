/**
 * The dashboard window, safe by construction: its options (context isolation, sandbox, no Node,
 * no webviews), its content policy (CSP), and the guards that keep it on app://dashboard — no
 * navigation, no new windows, no permissions, no request that leaves the app.
 */
import { PAGE_CSP_DIRECTIVES, cspHeader, silentLogger, withDefaults, type Logger } from '../../shared/index.js';
import type { BrowserWindowLike, SessionLike, WebContentsLike } from './electron-like.js';
import { isDashboardUrl } from './ipc.js';
import { DASHBOARD_SCHEME, DASHBOARD_URL } from './surface.js';

/**
 * The dashboard's Content-Security-Policy in the app: the one page policy (PAGE_CSP, as the
 * control server serves it to a browser), except that it needs no network at all — its data
 * comes over IPC — so connect-src is 'none'.
 */
export const APP_CSP = cspHeader({ ...PAGE_CSP_DIRECTIVES, 'connect-src': ["'none'"] });

/** The BrowserWindow options of the dashboard (a subset of Electron's, checked by main.ts). */
export interface DashboardWindowOptions {
  width: number;
  height: number;
  minWidth: number;
  minHeight: number;
  show: false;
  title: string;
  autoHideMenuBar: true;
  webPreferences: {
    preload: string;
    contextIsolation: true;
    sandbox: true;
    nodeIntegration: false;
    nodeIntegrationInWorker: false;
    nodeIntegrationInSubFrames: false;
    webSecurity: true;
    allowRunningInsecureContent: false;
    webviewTag: false;
    experimentalFeatures: false;
    navigateOnDragDrop: false;
    safeDialogs: true;
    spellcheck: false;
    devTools: boolean;
  };
}

/** The dashboard window's options. DevTools only in development (an unpackaged app). */
export function dashboardWindowOptions(preload: string, options: { devTools: boolean }): DashboardWindowOptions {
  return {
    width: 1040,
    height: 760,
    minWidth: 640,
    minHeight: 480,
    show: false,
    title: 'Nightjar',
    autoHideMenuBar: true,
    webPreferences: {
      preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      experimentalFeatures: false,
      navigateOnDragDrop: false,
      safeDialogs: true,
      spellcheck: false,
      devTools: options.devTools,
    },
  };
}

/**
 * Keeps a dashboard's web contents where they are: every navigation and redirect is refused
 * (in-page route changes do not navigate), window.open is denied, and <webview> cannot attach.
 */
export function guardWebContents(contents: WebContentsLike, logger: Logger = silentLogger): void {
  contents.on('will-navigate', (details) => {
    details.preventDefault();
    logger.warn('blocked a navigation of the dashboard', { to: safeUrl(details.url) });
  });
  contents.on('will-redirect', (details) => {
    details.preventDefault();
    logger.warn('blocked a redirect of the dashboard', { to: safeUrl(details.url) });
  });
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler(({ url }) => {
    logger.warn('blocked a new window from the dashboard', { to: safeUrl(url) });
    return { action: 'deny' };
  });
}

/** A URL for the log: scheme and host only (a path or query could carry anything). */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return 'an invalid URL';
  }
}

/** True if a request from the dashboard's session may proceed: only the app's own scheme (and inline data/devtools). */
export function isAllowedRequest(url: string): boolean {
  const scheme = url.slice(0, url.indexOf(':') + 1);
  return scheme === `${DASHBOARD_SCHEME}:` || scheme === 'data:' || scheme === 'devtools:';
}

/** No permission is ever granted (camera, notifications, geolocation…), and no remote content loads. */
export function guardSession(session: SessionLike): void {
  session.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  session.setPermissionCheckHandler(() => false);
  session.webRequest.onBeforeRequest((details, callback) => callback({ cancel: !isAllowedRequest(details.url) }));
}

/** Options of {@link DashboardWindow}. */
export interface DashboardWindowControllerOptions {
  /** Creates a BrowserWindow with these options (main.ts: `(o) => new BrowserWindow(o)`). Required. */
  create: (options: DashboardWindowOptions) => BrowserWindowLike;
  /** The bundled preload script's path. Required. */
  preload: string;
  /** Allow DevTools. Defaults to false. */
  devTools?: boolean;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

const WINDOW_DEFAULTS: Required<Pick<DashboardWindowControllerOptions, 'devTools' | 'logger'>> = { devTools: false, logger: silentLogger };

/** The one dashboard window: created on demand, brought to front when open, forgotten when closed. */
export class DashboardWindow {
  readonly #o: typeof WINDOW_DEFAULTS & DashboardWindowControllerOptions;
  #window: BrowserWindowLike | null = null;

  constructor(options: DashboardWindowControllerOptions) {
    this.#o = withDefaults(WINDOW_DEFAULTS, options);
  }

  /** The open window, if any. */
  get window(): BrowserWindowLike | null {
    return this.#window && !this.#window.isDestroyed() ? this.#window : null;
  }

  /** True if `webContentsId` is the dashboard's. */
  owns(webContentsId: number): boolean {
    return this.window?.webContents.id === webContentsId;
  }

  /** Opens the dashboard (at `screen`, e.g. 'availability'), or brings it to front. */
  async open(screen?: string): Promise<void> {
    const route = screen ? `#/${screen}` : '';
    const existing = this.window;
    if (existing) {
      if (route) await existing.loadURL(`${DASHBOARD_URL}${route}`);
      existing.show();
      existing.focus();
      return;
    }
    const win = this.#o.create(dashboardWindowOptions(this.#o.preload, { devTools: this.#o.devTools }));
    this.#window = win;
    guardWebContents(win.webContents, this.#o.logger);
    win.once('ready-to-show', () => win.show());
    win.on('closed', () => {
      if (this.#window === win) this.#window = null;
    });
    await win.loadURL(`${DASHBOARD_URL}${route}`);
  }

  /** Sends a control event to the dashboard, if it is open and still showing the dashboard. */
  send(channel: string, data: unknown): void {
    const contents = this.window?.webContents;
    if (!contents || contents.isDestroyed() || !isDashboardUrl(contents.getURL())) return;
    contents.send(channel, data);
  }
}
