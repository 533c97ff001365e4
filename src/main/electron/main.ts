/**
 * The menu-bar app's entry (Electron's main process): wires the real `electron` module into the
 * shell's parts. The agent runs here, in the main process (node-llama-cpp's supported place).
 * Everything below is thin glue; the parts are tested with fakes (test/main/electron).
 *
 * Not run on this project's CI: Electron cannot run on the Linux build machines (see README).
 */
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import {
  BrowserWindow,
  Menu,
  Tray,
  app,
  dialog,
  ipcMain,
  nativeImage,
  powerMonitor,
  powerSaveBlocker,
  protocol,
  session,
  utilityProcess,
} from 'electron';
import { createLogger } from '../../node/index.js';
import { NightjarError } from '../../shared/index.js';
import {
  AgentService,
  KeychainSecretStore,
  ManualEnvironmentSource,
  PlaintextFileSecretStore,
  defaultNativeAddon,
  execCommand,
  gatewaySocketUrl,
  loadConfig,
  loadOrCreateIdentity,
  parsePmsetBatt,
  platformPaths,
  readMemoryPressure,
} from '../agent/index.js';
import { DASHBOARD_SCHEME_PRIVILEGES, serveDashboard } from './app-protocol.js';
import { ElectronPowerSaveBlocker } from './power-save.js';
import { PowerMonitorFeed } from './power-monitor.js';
import { utilityProcessTestLoad } from './native-test-load.js';
import { MenuBarShell } from './shell.js';
import { guardSession } from './window.js';

// Before the app is ready: app:// must be a privileged standard scheme, and Chromium's own files
// go in a folder of their own, not among the agent's.
protocol.registerSchemesAsPrivileged([DASHBOARD_SCHEME_PRIVILEGES]);
app.setPath('sessionData', path.join(app.getPath('userData'), 'Chromium'));

async function run(): Promise<void> {
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return;
  }
  await app.whenReady();
  app.dock?.hide();

  const root = app.getAppPath();
  const logFile = createWriteStream(path.join(app.getPath('logs'), 'nightjar.log'), { flags: 'a', mode: 0o600 });
  const logger = createLogger({ write: (line) => logFile.write(line + '\n') });

  guardSession(session.defaultSession);
  serveDashboard(protocol, path.join(root, 'dist/app/renderer'));

  const source = new ManualEnvironmentSource({}, { logger });
  const feed = new PowerMonitorFeed({
    powerMonitor,
    source,
    logger,
    batteryPercent: async () =>
      process.platform === 'darwin' ? parsePmsetBatt(await execCommand('/usr/bin/pmset', ['-g', 'batt'])).batteryPercent : null,
    memoryPressure: () => readMemoryPressure(),
  });

  const paths = platformPaths();
  const config = await loadConfig(paths.configFile);
  const secrets =
    config.keys.store === 'plaintext-file'
      ? new PlaintextFileSecretStore(config.keys.file ?? paths.defaultKeyFile)
      : new KeychainSecretStore();
  const { identity } = await loadOrCreateIdentity(secrets);
  // The native addon (posture, chip), test-loaded in a utility process: the app's binary is no Node
  // runtime with the runAsNode fuse off. Off macOS it is not loaded.
  const native = await defaultNativeAddon(process.platform, {
    testLoad: utilityProcessTestLoad({
      fork: (modulePath, args, options) => utilityProcess.fork(modulePath, args, options),
      probeModule: path.join(root, 'dist/src/main/electron/native-probe.js'),
    }),
    logger,
  });
  const agent = await AgentService.start({
    paths,
    config,
    gatewayUrl: config.gateway.url ? gatewaySocketUrl(config.gateway.url) : null,
    identity,
    environment: source,
    native,
    powerSaveBlocker: new ElectronPowerSaveBlocker(powerSaveBlocker),
    logger,
  });

  const tray = new Tray(nativeImage.createFromPath(path.join(root, 'assets/trayTemplate.png')));
  const shell = new MenuBarShell({
    app,
    menu: Menu,
    tray,
    ipcMain,
    createWindow: (options) => new BrowserWindow(options),
    preload: path.join(root, 'dist/app/preload.cjs'),
    agent,
    logger,
    onQuit: () => {
      feed.dispose();
      logFile.end();
    },
  });
  // First run: nothing to serve with until the Mac is linked and has a model.
  if (agent.runtime.gatewayUrl === null || agent.config.model.selected === null) await shell.window.open('setup');
}

run().catch((err: unknown) => {
  const e = err instanceof NightjarError ? err : new NightjarError('NJ_INTERNAL', err instanceof Error ? err.message : String(err));
  dialog.showErrorBox('Nightjar cannot start', `${e.message}\n\n${e.hint}`);
  app.exit(1);
});
