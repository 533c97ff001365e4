/**
 * What the agent commands share: where the files are, the config, the secret store, the running
 * agent's control API, and a few formatting helpers.
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
} from '../agent/index.js';
import type { CliIo } from './io.js';

/** The agent's files, for this environment (NIGHTJAR_HOME, XDG_*, HOME). */
export function cliPaths(io: CliIo): AgentPaths {
  return platformPaths({ env: io.env, ...(io.env.HOME ? { home: io.env.HOME } : {}) });
}

/** The config file, validated. */
export function cliConfig(paths: AgentPaths): Promise<AgentConfig> {
  return loadConfig(paths.configFile);
}

/**
 * Where the identity key lives: the OS keychain unless the owner opted in to a plaintext file
 * (`--key-file`, or keys.store "plaintext-file" in config.json).
 */
export function secretStore(io: CliIo, paths: AgentPaths, config: AgentConfig, keyFile: string | undefined): SecretStore {
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
  const client = new ControlClient({ baseUrl: file.url, token: file.token, ...(fetchFn ? { fetch: fetchFn } : {}) });
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

/** Parses a duration such as 90s, 30m, 2h or 1d into milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text.trim());
  if (!m) throw new NightjarError('NJ_USAGE', `${flag} takes a duration such as 30m, 2h or 1d, not "${text}"`);
  const unit = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Math.round(Number(m[1]) * unit);
}

/** A byte count for people: 1.2 GB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A duration for people: 3m 05s. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** A time of day (local) for people. */
export function formatTime(ms: number): string {
  return new Date(ms).toLocaleString('en-GB', { hour12: false });
}

/** Prefixes every line of `text` (a block ending in a newline) with `prefix`. */
export function indent(text: string, prefix: string): string {
  return text.replace(/^(?=.)/gm, prefix);
}

/** Pads cells into aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}
