/**
 * Quitting gracefully: the first quit (menu, Cmd-Q, log out) is held until the agent has stopped
 * taking jobs, let running ones finish within the policy's grace (then aborted them, each still
 * with a signed receipt), said goodbye and unloaded its model; then the app really quits.
 */
import { silentLogger, type Logger, errorMessage } from '../../shared/index.js';

import type { AgentLike } from './agent-like.js';
import type { AppLike } from './electron-like.js';

/** Options of {@link installGracefulQuit}. */
export interface GracefulQuitOptions {
  /** electron.app. Required. */
  app: Pick<AppLike, 'on' | 'quit'>;
  /** The agent to drain. Required. */
  agent: Pick<AgentLike, 'dispose'>;
  /** Runs after the agent stopped, before quitting (dispose the tray, the feed…). Defaults to nothing. */
  beforeQuit?: () => void | Promise<void>;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** Holds the first quit until the agent has drained; returns the promise of that drain once it starts. */
export function installGracefulQuit(options: GracefulQuitOptions): { readonly draining: Promise<void> | null } {
  const log = options.logger ?? silentLogger;
  const state: { draining: Promise<void> | null; done: boolean } = { draining: null, done: false };
  options.app.on('before-quit', (event) => {
    if (state.done) return;
    event.preventDefault();
    if (state.draining) return;
    log.info('quitting: draining the agent first');
    state.draining = (async () => {
      try {
        await options.agent.dispose();
      } catch (err) {
        log.error('the agent did not stop cleanly', { err: errorMessage(err) });
      }
      try {
        await options.beforeQuit?.();
      } finally {
        state.done = true;
        options.app.quit();
      }
    })();
  });
  return {
    get draining() {
      return state.draining;
    },
  };
}
