/**
 * src/main/electron: the menu-bar shell, the only code that imports 'electron' (main.ts, at run
 * time; preload.ts, in its own bundle). Everything else here takes Electron's parts as narrow
 * interfaces (electron-like.ts), so it runs and is tested without Electron.
 */
export type * from './electron-like.js';
export type { AgentLike } from './agent-like.js';
export { BRIDGE_METHODS, EVENT_CHANNEL, DASHBOARD_HOST, DASHBOARD_SCHEME, DASHBOARD_URL, ipcChannel } from './surface.js';
export { answerCall, isDashboardUrl, registerControlIpc, senderProblem, type ControlIpcOptions } from './ipc.js';
export {
  APP_CSP,
  DashboardWindow,
  dashboardWindowOptions,
  guardSession,
  guardWebContents,
  isAllowedRequest,
  type DashboardWindowControllerOptions,
  type DashboardWindowOptions,
} from './window.js';
export { DASHBOARD_SCHEME_PRIVILEGES, dashboardFile, dashboardResponse, serveDashboard } from './app-protocol.js';
export {
  STATE_MARKS,
  todayText,
  trayMenu,
  trayTitle,
  trayToolTip,
  type TrayAction,
  type TrayInput,
  type TrayMenuItem,
} from './tray-menu.js';
export { TrayController, menuTemplate, type TrayActions, type TrayControllerOptions } from './tray.js';
export { PowerMonitorFeed, readPowerMonitor, thermalFromElectron, type PowerMonitorFeedOptions } from './power-monitor.js';
export { ElectronPowerSaveBlocker } from './power-save.js';
export {
  utilityProcessTestLoad,
  type UtilityForkLike,
  type UtilityProcessLike,
  type UtilityProcessTestLoadOptions,
} from './native-test-load.js';
export { LoginItem } from './login-item.js';
export { installGracefulQuit, type GracefulQuitOptions } from './quit.js';
export { MenuBarShell, type MenuBarShellOptions } from './shell.js';
