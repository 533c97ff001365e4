/**
 * Where the agent keeps things: its file names inside the machine's two Nightjar folders, which
 * src/node's nightjarDirs finds (macOS: ~/Library/Application Support/Nightjar; Linux: the XDG
 * config and data folders; Windows: %APPDATA%\Nightjar; NIGHTJAR_HOME puts both under one
 * folder, for a second agent on one machine or for tests).
 */
import path from 'node:path';
import { nightjarDirs, type NightjarDirsOptions } from '../../../node/index.js';

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

/** Options of {@link platformPaths}: those of src/node's {@link nightjarDirs}. */
export type PlatformPathsOptions = NightjarDirsOptions;

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

/** The platform's place for the agent's files: its files in the machine's Nightjar folders. */
export function platformPaths(options: PlatformPathsOptions = {}): AgentPaths {
  const dirs = nightjarDirs(options);
  return pathsIn(dirs.config, dirs.data, dirs.path);
}
