/**
 * Where Nightjar keeps its files on this machine, for the agent and the client alike.
 *
 * - macOS: config and data in ~/Library/Application Support/Nightjar.
 * - Windows: %APPDATA%\Nightjar.
 * - Linux and others: config in $XDG_CONFIG_HOME/nightjar (default ~/.config/nightjar), data in
 *   $XDG_DATA_HOME/nightjar (default ~/.local/share/nightjar); a relative XDG path is ignored, as
 *   the XDG Base Directory spec requires.
 * - NIGHTJAR_HOME puts both under one folder (config/ and data/): a second agent on one machine,
 *   or a test.
 *
 * Not env-paths: it reads the process's platform, environment and home folder itself (at import
 * time, in part), so commands driven in-process with their own environment could not use it; it
 * does not ignore relative XDG paths; and it puts macOS config in ~/Library/Preferences, which is
 * for NSUserDefaults property lists.
 */
import os from 'node:os';
import path from 'node:path';

/** Options of {@link nightjarDirs}. */
export interface NightjarDirsOptions {
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Defaults to process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Defaults to $HOME (or %USERPROFILE%) from `env`, then os.homedir(). */
  home?: string;
}

/** Nightjar's two folders on this machine. */
export interface NightjarDirs {
  /** Settings people may edit, and the running agent's control file. */
  readonly config: string;
  /** Models, receipts, the client's pins and receipt log. */
  readonly data: string;
  /** The path module of the platform (posix or win32). */
  readonly path: path.PlatformPath;
}

/** The folders of this platform (or of `NIGHTJAR_HOME`). */
export function nightjarDirs(options: NightjarDirsOptions = {}): NightjarDirs {
  const platform = options.platform ?? process.platform;
  const env = options.env ?? process.env;
  const home = options.home ?? (env.HOME || env.USERPROFILE || os.homedir());
  const p = platform === 'win32' ? path.win32 : path.posix;
  const nightjarHome = env.NIGHTJAR_HOME;
  if (nightjarHome) return { config: p.join(nightjarHome, 'config'), data: p.join(nightjarHome, 'data'), path: p };
  if (platform === 'darwin') {
    const dir = p.join(home, 'Library', 'Application Support', 'Nightjar');
    return { config: dir, data: dir, path: p };
  }
  if (platform === 'win32') {
    const dir = p.join(env.APPDATA ?? p.join(home, 'AppData', 'Roaming'), 'Nightjar');
    return { config: dir, data: dir, path: p };
  }
  const absolute = (v: string | undefined): string | undefined => (v && p.isAbsolute(v) ? v : undefined);
  const config = absolute(env.XDG_CONFIG_HOME) ?? p.join(home, '.config');
  const data = absolute(env.XDG_DATA_HOME) ?? p.join(home, '.local', 'share');
  return { config: p.join(config, 'nightjar'), data: p.join(data, 'nightjar'), path: p };
}
