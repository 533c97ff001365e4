/**
 * The preload script of the dashboard window (sandboxed, context-isolated; bundled into one
 * CommonJS file, as sandboxed preloads must be). It exposes `window.nightjar`: one function per
 * control method, each invoking its own fixed channel — never a generic send or invoke — and one
 * event subscription whose listener receives the event data only (never the IpcRendererEvent,
 * which would hand the page `sender`). The main process checks the sender and validates every
 * payload anyway (ipc.ts).
 */
import { contextBridge, ipcRenderer } from 'electron';
import type { ControlEvent } from '../../shared/index.js';
import { BRIDGE_METHODS, EVENT_CHANNEL, ipcChannel } from './surface.js';

const api: Record<string, unknown> = {};
for (const method of BRIDGE_METHODS) {
  const channel = ipcChannel(method);
  api[method] = (input: unknown) => ipcRenderer.invoke(channel, input);
}
api.onEvent = (listener: (event: ControlEvent) => void) => {
  if (typeof listener !== 'function') throw new TypeError('onEvent takes a function');
  const relay = (_event: unknown, data: ControlEvent): void => listener(data);
  ipcRenderer.on(EVENT_CHANNEL, relay);
  return () => {
    ipcRenderer.removeListener(EVENT_CHANNEL, relay);
  };
};

contextBridge.exposeInMainWorld('nightjar', Object.freeze(api));
