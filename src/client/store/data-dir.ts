/**
 * Where the client keeps its files (pinned agent keys, the receipt log): one folder per user,
 * `client/` inside the machine's Nightjar data folder (src/node's nightjarDirs, the one paths
 * implementation the agent uses too).
 */
import path from 'node:path';
import { nightjarDirs } from '../../node/index.js';

/** Options of {@link clientDataDir}. */
export interface ClientDataDirOptions {
  /**
   * Environment to read NIGHTJAR_CLIENT_DATA_DIR, NIGHTJAR_HOME, HOME, USERPROFILE, XDG_DATA_HOME
   * and APPDATA from. Required.
   */
  env: Readonly<Record<string, string | undefined>>;
  /** Operating system, as process.platform names it. Defaults to process.platform. */
  platform?: NodeJS.Platform;
}

/**
 * The client's data folder: `$NIGHTJAR_CLIENT_DATA_DIR` if set, else `<data>/client` where
 * `<data>` is {@link nightjarDirs}' data folder (`$NIGHTJAR_HOME/data`; on macOS
 * `~/Library/Application Support/Nightjar`; on Windows `%APPDATA%\Nightjar`; elsewhere
 * `$XDG_DATA_HOME/nightjar`, a relative XDG_DATA_HOME ignored, defaulting to ~/.local/share).
 * Null when the environment names no home folder (no HOME, USERPROFILE or NIGHTJAR_HOME): then
 * nothing is kept — the process's own home folder is never guessed.
 */
export function clientDataDir(options: ClientDataDirOptions): string | null {
  const { env } = options;
  if (env.NIGHTJAR_CLIENT_DATA_DIR) return path.resolve(env.NIGHTJAR_CLIENT_DATA_DIR);
  const home = env.HOME || env.USERPROFILE;
  if (!home && !env.NIGHTJAR_HOME) return null;
  // With NIGHTJAR_HOME set the home folder is not read; the placeholder never reaches a path.
  const dirs = nightjarDirs({ platform: options.platform, env, home: home || '' });
  return dirs.path.join(dirs.data, 'client');
}
