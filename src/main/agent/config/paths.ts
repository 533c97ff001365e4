/**
 * Where the agent keeps things. macOS: everything under ~/Library/Application Support/Nightjar.
 * Linux and others: the config under $XDG_CONFIG_HOME/nightjar (default ~/.config/nightjar), data
 * (models, receipts) under $XDG_DATA_HOME/nightjar (default ~/.local/share/nightjar). Windows:
 * %APPDATA%\Nightjar. NIGHTJAR_HOME puts both under one directory (config/ and data/), for a
 * second agent on one machine or for tests.
 */
import os from 'node:os';
import path from 'node:path';

/** The agent's files. */
export interface AgentPaths {
  /** Holds config.json, state.json and control.json. */
  readonly configDir: string;
  /** Holds models/ and receipts.jsonl. */
  readonly dataDir: string;
  readonly configFile: string;
  /** Machine-written state: the owner's pause / serve-now override. */
  readonly stateFile: string;
  /** Address and token of the running agent's control API (mode 0600). */
  readonly controlFile: string;
  readonly modelsDir: string;
  /** Every receipt this agent signed, one JSON line each. */
  readonly receiptsFile: string;
  /** Where the identity key goes when the owner opts in to a plaintext key file and names none. */
  readonly defaultKeyFile: string;
}

/** Options of {@link platformPaths}. */
export interface PlatformPathsOptions {
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Defaults to process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Defaults to os.homedir(). */
  home?: string;
}

/** The paths of an agent whose config and data live in the two directories given. */
export function pathsIn(configDir: string, dataDir: string, p: path.PlatformPath = path): AgentPaths {
  return {
    configDir,
    dataDir,
    configFile: p.join(configDir, 'config.json'),
    stateFile: p.join(configDir, 'state.json'),
    controlFile: p.join(configDir, 'control.json'),
    modelsDir: p.join(dataDir, 'models'),
    receiptsFile: p.join(dataDir, 'receipts.jsonl'),
    defaultKeyFile: p.join(configDir, 'identity-key.plaintext'),
  };
}

/** The platform's place for the agent's files. */
export function platformPaths(options: PlatformPathsOptions = {}): AgentPaths {
  const platform = options.platform ?? process.platform;
  const env = options.env ?? process.env;
  const home = options.home ?? os.homedir();
  const p = platform === 'win32' ? path.win32 : path.posix;
  const nightjarHome = env.NIGHTJAR_HOME;
  if (nightjarHome) return pathsIn(p.join(nightjarHome, 'config'), p.join(nightjarHome, 'data'), p);
  if (platform === 'darwin') {
    const dir = p.join(home, 'Library', 'Application Support', 'Nightjar');
    return pathsIn(dir, dir, p);
  }
  if (platform === 'win32') {
    const dir = p.join(env.APPDATA ?? p.join(home, 'AppData', 'Roaming'), 'Nightjar');
    return pathsIn(dir, dir, p);
  }
  const absolute = (v: string | undefined): string | undefined => (v && p.isAbsolute(v) ? v : undefined);
  const config = absolute(env.XDG_CONFIG_HOME) ?? p.join(home, '.config');
  const data = absolute(env.XDG_DATA_HOME) ?? p.join(home, '.local', 'share');
  return pathsIn(p.join(config, 'nightjar'), p.join(data, 'nightjar'), p);
}
