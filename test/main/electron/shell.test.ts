/**
 * The menu-bar shell put together with fakes: the IPC bridge answers only its own window, agent
 * events reach the dashboard, a second launch brings the dashboard up, closing every window does
 * not quit, and quitting waits for the agent to drain before the app really quits. Also the
 * login item and the power-save blocker on their own.
 */
import { describe, expect, it } from 'vitest';
import type { ControlHandlers } from '../../../src/main/agent/index.js';
import { ElectronPowerSaveBlocker, LoginItem, MenuBarShell, type AgentLike } from '../../../src/main/electron/index.js';
import { Emitter, type ControlEvent } from '../../../src/shared/index.js';
import {
  FakeApp,
  FakeBrowserWindow,
  FakeEvent,
  FakeIpcMain,
  FakeMenuFactory,
  FakePowerSaveBlocker,
  FakeTray,
  ipcEvent,
} from './support/fakes.js';

/** An agent whose dispose() the test finishes by hand. */
class SlowAgent implements AgentLike {
  readonly events = new Emitter<ControlEvent>();
  readonly onEvent = this.events.event;
  stops = 0;
  finishStop: () => void = () => undefined;
  readonly handlers = {
    status: async () => {
      throw new Error('not needed');
    },
    earnings: async () => {
      throw new Error('not needed');
    },
    pause: async () => ({ paused: true }),
  } as unknown as ControlHandlers;
  #disposed: Promise<void> | null = null;
  dispose(): Promise<void> {
    this.stops++;
    return (this.#disposed ??= new Promise((resolve) => (this.finishStop = resolve)));
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

function setup(): {
  app: FakeApp;
  ipc: FakeIpcMain;
  tray: FakeTray;
  agent: SlowAgent;
  windows: FakeBrowserWindow[];
  shell: MenuBarShell;
  quitHooks: string[];
} {
  const app = new FakeApp();
  const ipc = new FakeIpcMain();
  const tray = new FakeTray();
  const agent = new SlowAgent();
  const windows: FakeBrowserWindow[] = [];
  const quitHooks: string[] = [];
  const shell = new MenuBarShell({
    app,
    menu: new FakeMenuFactory(),
    tray,
    ipcMain: ipc,
    createWindow: (o) => (windows.push(new FakeBrowserWindow(o, 100 + windows.length)), windows.at(-1)!),
    preload: '/app/dist/app/preload.cjs',
    agent,
    onQuit: () => void quitHooks.push('onQuit'),
  });
  return { app, ipc, tray, agent, windows, shell, quitHooks };
}

describe('the shell', () => {
  it('bridges its own dashboard window only, and forwards agent events to it', async () => {
    const { ipc, agent, windows, shell } = setup();
    await shell.window.open();
    const win = windows[0]!;
    expect(await ipc.invoke('nightjar:pause', ipcEvent(win.webContents.id, 'app://dashboard/index.html'), {})).toEqual({
      ok: true,
      value: { paused: true },
    });
    expect(await ipc.invoke('nightjar:pause', ipcEvent(999, 'app://dashboard/index.html'), {})).toMatchObject({
      ok: false,
      error: { code: 'NJ_IPC_FORBIDDEN' },
    });
    agent.events.fire({ type: 'link', link: 'connected' });
    expect(win.webContents.sent).toEqual([{ channel: 'nightjar:event', args: [{ type: 'link', link: 'connected' }] }]);
    // Closed: its id no longer calls.
    win.close();
    expect(await ipc.invoke('nightjar:pause', ipcEvent(win.webContents.id, 'app://dashboard/index.html'), {})).toMatchObject({ ok: false });
  });

  it('a second launch opens the dashboard; closing every window keeps the app in the menu bar', async () => {
    const { app, windows } = setup();
    app.emit('second-instance');
    await Promise.resolve();
    expect(windows).toHaveLength(1);
    windows[0]!.close();
    app.emit('window-all-closed');
    expect(app.quits).toBe(0);
  });

  it('quitting waits for the agent to drain, then quits for real, once', async () => {
    const { app, agent, tray, ipc, shell, quitHooks } = setup();
    const first = new FakeEvent();
    app.emit('before-quit', first);
    expect(first.prevented).toBe(true);
    expect(agent.stops).toBe(1);
    // Another Cmd-Q while draining: still held, no second drain.
    const second = new FakeEvent();
    app.emit('before-quit', second);
    expect(second.prevented).toBe(true);
    expect(agent.stops).toBe(1);
    expect(app.quits).toBe(0);

    agent.finishStop();
    await shell.quitting;
    expect(app.quits).toBe(1); // the real quit, which is not held again
    expect(tray.destroyed).toBe(true);
    expect(ipc.handlers.size).toBe(0);
    expect(agent.events.listenerCount).toBe(0);
    expect(quitHooks).toEqual(['onQuit']);
  });
});

describe('the login item', () => {
  it('reads and sets open-at-login', () => {
    const app = new FakeApp();
    const item = new LoginItem(app);
    expect(item.enabled).toBe(false);
    item.set(true);
    expect(app.openAtLogin).toBe(true);
    expect(item.enabled).toBe(true);
  });
});

describe('the power-save blocker', () => {
  it('starts one prevent-app-suspension blocker while held, idempotently, and stops it on release', () => {
    const fake = new FakePowerSaveBlocker();
    const blocker = new ElectronPowerSaveBlocker(fake);
    expect(blocker.held).toBe(false);
    blocker.acquire();
    blocker.acquire();
    expect(blocker.held).toBe(true);
    expect(fake.log).toEqual(['start prevent-app-suspension']);
    blocker.release();
    blocker.release();
    expect(blocker.held).toBe(false);
    expect(fake.log).toEqual(['start prevent-app-suspension', 'stop 1']);
    // If the OS dropped it, acquire starts a new one.
    blocker.acquire();
    fake.started.clear();
    blocker.acquire();
    expect(fake.log.filter((l) => l.startsWith('start'))).toHaveLength(3);
  });
});
