/**
 * What the agent commands share: where the files are, the config, the secret store, the running
 * agent's control API.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ControlClient, NightjarError } from '../../shared/index.js';
import {
  KeychainSecretStore,
  PlaintextFileSecretStore,
  loadConfig,
  platformPaths,
  type AgentConfig,
  type AgentPaths,
  type ControlFile,
  type SecretStore,
} from '../../main/agent/index.js';
import type { CommandIo } from '../io.js';

/** The agent's files, for this environment (NIGHTJAR_HOME, XDG_*, HOME). */
export function cliPaths(io: Pick<CommandIo, 'env'>): AgentPaths {
  return platformPaths({ env: io.env, home: io.env.HOME || undefined });
}

/** The config file, validated. */
export function cliConfig(paths: AgentPaths): Promise<AgentConfig> {
  return loadConfig(paths.configFile);
}

/**
 * Where the identity key lives: the OS keychain unless the owner opted in to a plaintext file
 * (`--key-file`, or keys.store "plaintext-file" in config.json).
 */
export function secretStore(io: Pick<CommandIo, 'cwd'>, paths: AgentPaths, config: AgentConfig, keyFile: string | undefined): SecretStore {
  if (keyFile) return new PlaintextFileSecretStore(path.resolve(io.cwd, keyFile));
  if (config.keys.store === 'plaintext-file') return new PlaintextFileSecretStore(config.keys.file ?? paths.defaultKeyFile);
  return new KeychainSecretStore();
}

/** The running agent's control API, or null when no agent is running. */
export async function runningAgent(paths: AgentPaths, fetchFn?: typeof fetch): Promise<ControlClient | null> {
  let file: ControlFile;
  try {
    file = JSON.parse(await readFile(paths.controlFile, 'utf8')) as ControlFile;
  } catch {
    return null;
  }
  const client = new ControlClient({ baseUrl: file.url, token: file.token, fetch: fetchFn });
  try {
    await client.call('status', {});
    return client;
  } catch (err) {
    if (err instanceof NightjarError && err.code === 'NJ_AGENT_NOT_RUNNING') return null;
    throw err;
  }
}

/** The running agent's control API; NJ_AGENT_NOT_RUNNING if there is none. */
export async function requireRunningAgent(paths: AgentPaths, fetchFn?: typeof fetch): Promise<ControlClient> {
  const client = await runningAgent(paths, fetchFn);
  if (!client) throw new NightjarError('NJ_AGENT_NOT_RUNNING', `No agent is running (no answer at the address in ${paths.controlFile}).`);
  return client;
}

/** Prefixes every line of `text` (a block ending in a newline) with `prefix`. */
export function indent(text: string, prefix: string): string {
  return text.replace(/^(?=.)/gm, prefix);
}
