/**
 * The preload bridge's fixed surface: one IPC channel per control method, named here, and one
 * event channel. preload.ts exposes exactly these (plus `onEvent`); ipc.ts answers exactly these.
 * Type-only imports, so the preload bundle carries nothing but this list.
 */
import type { ControlMethod } from '../../shared/index.js';

/**
 * The control methods the dashboard may call, in the contract's order. The type check below
 * fails to compile if the contract gains a method this list lacks (or names one it does not
 * have); a test pins the list itself.
 */
export const BRIDGE_METHODS = [
  'status',
  'pause',
  'resume',
  'serveNow',
  'getPolicy',
  'setPolicy',
  'listModels',
  'downloadModel',
  'selectModel',
  'removeModel',
  'earnings',
  'receipts',
  'link',
] as const satisfies readonly ControlMethod[];

type Missing = Exclude<ControlMethod, (typeof BRIDGE_METHODS)[number]>;
/** Compile-time proof that every control method is bridged. */
export const EVERY_METHOD_BRIDGED: [Missing] extends [never] ? true : { missing: Missing } = true;

/** The IPC channel of a method. */
export function ipcChannel(method: ControlMethod): `nightjar:${ControlMethod}` {
  return `nightjar:${method}`;
}

/** The channel control events reach the dashboard on (main → renderer only). */
export const EVENT_CHANNEL = 'nightjar:event';

/** The dashboard's origin: a privileged standard scheme, so origin checks are exact. */
export const DASHBOARD_SCHEME = 'app';
/** The dashboard's host under {@link DASHBOARD_SCHEME}. */
export const DASHBOARD_HOST = 'dashboard';
/** The URL the dashboard window loads. */
export const DASHBOARD_URL = `${DASHBOARD_SCHEME}://${DASHBOARD_HOST}/index.html`;
