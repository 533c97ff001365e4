/**
 * The agent's config file (config.json in the config directory) and its state file. The config
 * is the owner's: every section and field may be left out (the defaults below fill it in), an
 * unknown or invalid field is an NJ_CONFIG_INVALID error that names it. The state file holds what
 * the agent writes itself: the owner's pause / serve-now override, kept across restarts.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import {
  DEFAULT_POLICY,
  KEY_STORES,
  NightjarError,
  describeIssues,
  manualSchema,
  modelIdSchema,
  policySchema,
  type Manual,
} from '../../../shared/index.js';
import { errnoCode, writeFileAtomic } from '../fs-util.js';

const gatewaySection = z.strictObject({
  /** The gateway, http(s):// or ws(s)://. */
  url: z
    .string()
    .max(2048)
    .regex(/^(https?|wss?):\/\/[^\s]+$/, 'expected an http(s):// or ws(s):// URL')
    .nullable(),
  /** One-time enrollment token binding this agent to an operator account. */
  enrollToken: z.string().min(1).max(256).nullable(),
});

const modelSection = z.strictObject({
  /** Id of the installed model to serve. */
  selected: modelIdSchema.nullable(),
  /** Jobs served at once, one sequence each. */
  slots: z.int().min(1).max(64),
  /** Context length per sequence in tokens; null for min(the model's, 4096). */
  contextLength: z
    .int()
    .min(256)
    .max(1 << 20)
    .nullable(),
  /** CPU threads; null for the cores available less one. */
  threads: z.int().min(1).max(256).nullable(),
  /** Load a model that fits only with swap. */
  allowSwap: z.boolean(),
});

const keysSection = z.strictObject({
  /** Where the identity key lives: the OS keychain, or a plaintext file the owner opted in to. */
  store: z.enum(KEY_STORES),
  /** The plaintext key file; null for identity-key.plaintext in the config directory. */
  file: z.string().min(1).max(4096).nullable(),
});

const controlSection = z.strictObject({
  /** Serve the control API on loopback. */
  enabled: z.boolean(),
  /** Its port; 0 picks a free one (written to control.json). */
  port: z.int().min(0).max(65535),
});

/** An integer count of micro-credits as a decimal string (amounts beyond 2^53 survive JSON). */
const microCredits = z.string().regex(/^(0|[1-9][0-9]{0,18})$/, 'expected an integer count of micro-credits, as a string');

const priceSchema = z.strictObject({
  /** Micro-credits per million prompt tokens. */
  promptPerMTok: microCredits,
  /** Micro-credits per million completion tokens. */
  completionPerMTok: microCredits,
});

const earningsSection = z.strictObject({
  /** The operator's share of what clients pay. */
  operatorShare: z.number().min(0).max(1),
  /** Prices per model, as the gateway's operator publishes them (the protocol does not carry them yet). */
  prices: z.record(modelIdSchema, priceSchema),
});

/** The whole config, defaults applied. */
export const agentConfigSchema = z.strictObject({
  gateway: gatewaySection,
  model: modelSection,
  policy: policySchema,
  keys: keysSection,
  control: controlSection,
  /** Hours between box key rotations. */
  boxKeyRotationHours: z.int().min(1).max(144),
  earnings: earningsSection,
  /** A catalog file whose entries add to (and override, by id) the built-in catalog. */
  catalogFile: z.string().min(1).max(4096).nullable(),
});
/** The agent's configuration. */
export type AgentConfig = z.infer<typeof agentConfigSchema>;

/** What config.json may hold: every section and every field optional. */
const configFileSchema = z.strictObject({
  gateway: gatewaySection.partial().optional(),
  model: modelSection.partial().optional(),
  policy: policySchema.partial().optional(),
  keys: keysSection.partial().optional(),
  control: controlSection.partial().optional(),
  boxKeyRotationHours: agentConfigSchema.shape.boxKeyRotationHours.optional(),
  earnings: earningsSection.partial().optional(),
  catalogFile: agentConfigSchema.shape.catalogFile.optional(),
});

/** The config of an agent with no config file. */
export const DEFAULT_CONFIG: AgentConfig = {
  gateway: { url: null, enrollToken: null },
  model: { selected: null, slots: 4, contextLength: null, threads: null, allowSwap: false },
  policy: DEFAULT_POLICY,
  keys: { store: 'keychain', file: null },
  control: { enabled: true, port: 0 },
  boxKeyRotationHours: 24,
  earnings: { operatorShare: 0.95, prices: {} },
  catalogFile: null,
};

/** Validates a parsed config value, filling in defaults. `where` names it in errors (a file name). */
export function parseConfig(value: unknown, where: string): AgentConfig {
  const parsed = configFileSchema.safeParse(value);
  if (!parsed.success) throw new NightjarError('NJ_CONFIG_INVALID', `${where}: ${describeIssues(parsed.error)}`);
  const f = parsed.data;
  return {
    gateway: { ...DEFAULT_CONFIG.gateway, ...f.gateway },
    model: { ...DEFAULT_CONFIG.model, ...f.model },
    policy: { ...DEFAULT_CONFIG.policy, ...f.policy },
    keys: { ...DEFAULT_CONFIG.keys, ...f.keys },
    control: { ...DEFAULT_CONFIG.control, ...f.control },
    boxKeyRotationHours: f.boxKeyRotationHours ?? DEFAULT_CONFIG.boxKeyRotationHours,
    earnings: { ...DEFAULT_CONFIG.earnings, ...f.earnings },
    catalogFile: f.catalogFile ?? DEFAULT_CONFIG.catalogFile,
  };
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new NightjarError('NJ_CONFIG_INVALID', `${file} cannot be read (${errnoCode(err) ?? 'error'})`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new NightjarError('NJ_CONFIG_INVALID', `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Reads the config file; a missing file is the default config. Throws NJ_CONFIG_INVALID naming the field. */
export async function loadConfig(file: string): Promise<AgentConfig> {
  const value = await readJson(file);
  return value === undefined ? structuredClone(DEFAULT_CONFIG) : parseConfig(value, file);
}

/** Writes the config file atomically (mode 0600), after validating it. */
export async function saveConfig(file: string, config: AgentConfig): Promise<void> {
  const checked = agentConfigSchema.safeParse(config);
  if (!checked.success) throw new NightjarError('NJ_CONFIG_INVALID', `config: ${describeIssues(checked.error)}`);
  await writeFileAtomic(file, JSON.stringify(checked.data, null, 2) + '\n');
}

/** Reads the config file, changes it with `change`, and writes it back. */
export async function updateConfig(file: string, change: (config: AgentConfig) => AgentConfig): Promise<AgentConfig> {
  const next = change(await loadConfig(file));
  await saveConfig(file, next);
  return next;
}

const stateFileSchema = z.strictObject({ v: z.literal(1), manual: manualSchema });

/** What the agent remembers across restarts. */
export interface AgentStateFile {
  manual: Manual;
}

/** Reads the state file; missing or unreadable means no override. */
export async function loadStateFile(file: string): Promise<AgentStateFile> {
  const value = await readJson(file).catch(() => undefined);
  const parsed = stateFileSchema.safeParse(value);
  return { manual: parsed.success ? parsed.data.manual : { mode: 'auto', until: null } };
}

/** Writes the state file atomically. */
export async function saveStateFile(file: string, state: AgentStateFile): Promise<void> {
  await writeFileAtomic(file, JSON.stringify({ v: 1, manual: state.manual }, null, 2) + '\n');
}
