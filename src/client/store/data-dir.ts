/**
 * Where the client keeps its files (pinned agent keys, the receipt log): one folder per user.
 */
import path from 'node:path';

/** Options of {@link clientDataDir}. */
export interface ClientDataDirOptions {
  /** Environment to read HOME, XDG_DATA_HOME, APPDATA and NIGHTJAR_CLIENT_DATA_DIR from. Required. */
  env: Readonly<Record<string, string | undefined>>;
  /** Operating system, as process.platform names it. Defaults to process.platform. */
  platform?: NodeJS.Platform;
}

/**
 * The client's data folder: `$NIGHTJAR_CLIENT_DATA_DIR` if set; on macOS
 * `~/Library/Application Support/Nightjar/client`; on Windows `%APPDATA%\Nightjar\client`;
 * elsewhere `$XDG_DATA_HOME/nightjar/client` (XDG_DATA_HOME defaulting to ~/.local/share).
 * Null when the environment names no home folder: then nothing is kept.
 */
export function clientDataDir(options: ClientDataDirOptions): string | null {
  const { env } = options;
  const platform = options.platform ?? process.platform;
  if (env.NIGHTJAR_CLIENT_DATA_DIR) return path.resolve(env.NIGHTJAR_CLIENT_DATA_DIR);
  const home = env.HOME || env.USERPROFILE;
  if (platform === 'darwin') return home ? path.join(home, 'Library', 'Application Support', 'Nightjar', 'client') : null;
  if (platform === 'win32') return env.APPDATA ? path.join(env.APPDATA, 'Nightjar', 'client') : null;
  // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
  const xdg = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : null;
  const data = xdg ?? (home ? path.join(home, '.local', 'share') : null);
  return data ? path.join(data, 'nightjar', 'client') : null;
}
