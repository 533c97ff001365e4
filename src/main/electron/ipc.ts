/**
 * The main-process end of the preload bridge: one handler per control method on its own channel.
 * Every call is checked before the agent hears of it (Electron's security checklist, item 17):
 * - the sender is one of the app's own dashboard windows (by webContents id), and
 * - the sending frame is that window's top frame, showing app://dashboard — not a subframe, not a
 *   page it navigated to (navigation is blocked too, see window.ts), not a destroyed frame;
 * - the payload is exactly one value that the method's zod schema accepts.
 * Answers are {@link BridgeResult}s: errors cross as `{code, message}`, and an unexpected failure
 * says NJ_INTERNAL without its details.
 */
import {
  CONTROL_METHODS,
  NightjarError,
  describeIssues,
  silentLogger,
  type BridgeResult,
  type ControlMethod,
  type Logger,
} from '../../shared/index.js';
import type { ControlHandlers } from '../agent/index.js';
import type { IpcInvokeEventLike, IpcMainLike } from './electron-like.js';
import { BRIDGE_METHODS, DASHBOARD_HOST, DASHBOARD_SCHEME, ipcChannel } from './surface.js';

/** Options of {@link registerControlIpc}. */
export interface ControlIpcOptions {
  /** Electron's ipcMain. Required. */
  ipcMain: IpcMainLike;
  /** The agent's control methods. Required. */
  handlers: ControlHandlers;
  /** True if `webContentsId` belongs to one of the app's dashboard windows. Required. */
  isDashboard: (webContentsId: number) => boolean;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** True if `url` is a page of the dashboard's own origin (app://dashboard). */
export function isDashboardUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === `${DASHBOARD_SCHEME}:` && u.host === DASHBOARD_HOST && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

/** Why a sender is refused, or null if it may call. */
export function senderProblem(event: IpcInvokeEventLike, isDashboard: (id: number) => boolean): string | null {
  if (!isDashboard(event.sender.id)) return 'not a dashboard window';
  const frame = event.senderFrame;
  if (frame === null) return 'the frame is gone (navigated or destroyed)';
  if (frame.parent !== null) return 'a subframe';
  if (!isDashboardUrl(frame.url)) return 'a page of another origin';
  return null;
}

function failure(error: NightjarError): BridgeResult<never> {
  return { ok: false, error: { code: error.code, message: error.message } };
}

/** Answers one bridged call: sender check, payload validation, the handler, the result envelope. */
export async function answerCall(
  method: ControlMethod,
  event: IpcInvokeEventLike,
  args: readonly unknown[],
  options: Pick<ControlIpcOptions, 'handlers' | 'isDashboard' | 'logger'>,
): Promise<BridgeResult<unknown>> {
  const log = options.logger ?? silentLogger;
  const problem = senderProblem(event, options.isDashboard);
  if (problem) {
    log.warn('refused an IPC call', { method, why: problem });
    return failure(new NightjarError('NJ_IPC_FORBIDDEN', `Refused ${method}: the caller is ${problem}.`));
  }
  if (args.length !== 1) return failure(new NightjarError('NJ_BAD_REQUEST', `${method} takes one argument.`));
  const parsed = CONTROL_METHODS[method].input.safeParse(args[0]);
  if (!parsed.success) return failure(new NightjarError('NJ_BAD_REQUEST', `${method}: ${describeIssues(parsed.error)}`));
  try {
    const handler = options.handlers[method] as (input: unknown) => unknown;
    return { ok: true, value: await handler(parsed.data) };
  } catch (err) {
    if (err instanceof NightjarError) return failure(err);
    log.error('control method failed', { method, err: err instanceof Error ? err.message : String(err) });
    return failure(new NightjarError('NJ_INTERNAL', 'The control method failed; see the agent log.'));
  }
}

/** Registers a handler per bridged method; dispose() removes them. */
export function registerControlIpc(options: ControlIpcOptions): { dispose(): void } & Disposable {
  for (const method of BRIDGE_METHODS) {
    options.ipcMain.handle(ipcChannel(method), (event, ...args) => answerCall(method, event, args, options));
  }
  const dispose = (): void => {
    for (const method of BRIDGE_METHODS) options.ipcMain.removeHandler(ipcChannel(method));
  };
  return { dispose, [Symbol.dispose]: dispose };
}
