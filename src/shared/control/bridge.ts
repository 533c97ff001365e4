/**
 * The dashboard's view of the control API, whatever carries it: in the menu-bar app the preload
 * script's IPC bridge (`window.nightjar`), in a browser the loopback HTTP API. Types only, so
 * the preload script can name them without bundling the schemas.
 */
import type { ControlEvent, ControlInput, ControlMethod, ControlOutput } from './contract.js';

/** What one bridged call answers: the method's output, or the agent's error (code and message). */
export type BridgeResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } };

/**
 * What the preload script exposes as `window.nightjar`: one function per control method, each
 * answering a {@link BridgeResult} (errors cross the context bridge as plain data, since an
 * Error's own properties do not), and one event subscription.
 */
export type PreloadApi = {
  readonly [M in ControlMethod]: (input: ControlInput<M>) => Promise<BridgeResult<ControlOutput<M>>>;
} & {
  /** Calls `listener` with every control event; returns the unsubscribe. */
  readonly onEvent: (listener: (event: ControlEvent) => void) => () => void;
};

/**
 * The control API as the dashboard uses it: one function per method, resolving with its output
 * or rejecting with a NightjarError, and one event subscription.
 */
export type NightjarBridge = {
  readonly [M in ControlMethod]: (input: ControlInput<M>) => Promise<ControlOutput<M>>;
} & {
  /** Calls `listener` with every control event; returns the unsubscribe. */
  readonly onEvent: (listener: (event: ControlEvent) => void) => () => void;
};
