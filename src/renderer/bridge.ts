/**
 * How the dashboard reaches the agent. In the menu-bar app, the preload script exposes
 * `window.nightjar` (IPC, checked by the main process); in a browser, the page talks to the
 * headless agent's loopback control API on its own origin, with a token it got by redeeming the
 * one-time ticket in its URL fragment. Both become the same {@link NightjarBridge}.
 */
import {
  CONTROL_METHODS,
  ControlClient,
  NightjarError,
  errorFromPayload,
  type ControlEvent,
  type ControlMethod,
  type NightjarBridge,
  type PreloadApi,
} from '../shared/index.js';

const METHODS = Object.keys(CONTROL_METHODS) as ControlMethod[];

/** The preload API as a bridge: answers unwrapped, errors thrown as NightjarError. */
export function bridgeFromPreload(api: PreloadApi): NightjarBridge {
  const bridge: Record<string, unknown> = {};
  for (const method of METHODS) {
    const call = api[method] as (input: unknown) => Promise<{ ok: boolean; value?: unknown; error?: { code: string; message: string } }>;
    bridge[method] = async (input: unknown) => {
      const result = await call(input);
      if (result.ok) return result.value;
      throw errorFromPayload(result.error ?? { code: 'NJ_INTERNAL', message: 'The app answered without a result.' });
    };
  }
  bridge.onEvent = (listener: (event: ControlEvent) => void) => api.onEvent(listener);
  return bridge as NightjarBridge;
}

/** Options of {@link httpBridge}. */
export interface HttpBridgeOptions {
  /** The control API's origin, e.g. http://127.0.0.1:49152. Required. */
  baseUrl: string;
  /** The control token. Required. */
  token: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Delay before the event stream is opened again after it ends. Defaults to 1000 ms. */
  reconnectMs?: number;
}

/**
 * The loopback control API as a bridge. Events come from one shared stream (a streamed fetch,
 * so the token travels in a header, never in a URL), opened for the first listener, reopened
 * if it ends, and closed when the last listener leaves.
 */
export function httpBridge(options: HttpBridgeOptions): NightjarBridge {
  const client = new ControlClient({ baseUrl: options.baseUrl, token: options.token, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const listeners = new Set<(event: ControlEvent) => void>();
  let abort: AbortController | null = null;

  const run = async (signal: AbortSignal): Promise<void> => {
    while (!signal.aborted) {
      try {
        for await (const event of client.events(signal)) for (const l of [...listeners]) l(event);
      } catch {
        // The agent stopped or restarted: try again shortly (the status call will say what is wrong).
      }
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, options.reconnectMs ?? 1000));
    }
  };

  const bridge: Record<string, unknown> = {};
  for (const method of METHODS) bridge[method] = (input: never) => client.call(method, input);
  bridge.onEvent = (listener: (event: ControlEvent) => void) => {
    listeners.add(listener);
    if (!abort) {
      abort = new AbortController();
      void run(abort.signal);
    }
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && abort) {
        abort.abort();
        abort = null;
      }
    };
  };
  return bridge as NightjarBridge;
}

/** Where the dashboard page was opened from, and how to clean its URL. */
export interface PageLocation {
  /** location.origin */
  readonly origin: string;
  /** location.hash, e.g. "#ticket=…" */
  readonly hash: string;
  /** Replaces the URL's fragment without navigating (history.replaceState). */
  replaceHash(hash: string): void;
}

/** The ticket in a fragment such as `#ticket=abc`, if any. */
export function ticketFromHash(hash: string): string | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const ticket = params.get('ticket');
  return ticket && /^[A-Za-z0-9_-]{16,128}$/.test(ticket) ? ticket : null;
}

/**
 * In a browser: takes the ticket out of the URL (at once, before any request, so it is not left
 * in the address bar), redeems it for the token, and returns the HTTP bridge. Throws
 * NJ_DASHBOARD_TICKET when there is no ticket or the agent refuses it.
 */
export async function connectFromLocation(location: PageLocation, fetchImpl: typeof fetch): Promise<NightjarBridge> {
  const ticket = ticketFromHash(location.hash);
  if (ticket) location.replaceHash('');
  if (!ticket) {
    throw new NightjarError(
      'NJ_DASHBOARD_TICKET',
      'This page was opened without a dashboard ticket, or reloaded (the key it held lives in memory only).',
    );
  }
  const response = await fetchImpl(new URL('/v1/dashboard/session', location.origin), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ticket }),
    cache: 'no-store',
  }).catch((cause: unknown) => {
    throw new NightjarError('NJ_AGENT_NOT_RUNNING', 'The agent does not answer; it may have stopped.', { cause });
  });
  const body = (await response.json().catch(() => null)) as { token?: unknown; error?: { code: string; message: string } } | null;
  if (!response.ok || typeof body?.token !== 'string') {
    throw body?.error ? errorFromPayload(body.error) : new NightjarError('NJ_DASHBOARD_TICKET', 'The agent refused this dashboard link.');
  }
  return httpBridge({ baseUrl: location.origin, token: body.token, fetch: fetchImpl });
}
