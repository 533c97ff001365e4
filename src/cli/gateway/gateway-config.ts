/**
 * `nightjar gateway --config FILE`: the command's settings in a JSON file, for a node that is
 * started by a service manager or is one of many alike. Every field is optional and named as its
 * flag is (camelCase: `--node-id` is `nodeId`); a flag given on the command line wins over the file.
 * Paths in the file are relative to the file's folder. Secrets stay out of it: the file names the
 * files that hold them (`metricsTokenFile`, `natsTokenFile`), as the flags do. The `cluster`
 * section tunes a cluster node (ClusterOptions: heartbeats, TTLs, timeouts, bucket and subject
 * names). An unknown or invalid field is NJ_CONFIG_INVALID naming it.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { CLUSTER_DEFAULTS, type ClusterOptions } from '../../gateway/index.js';
import { NightjarError, describeIssues } from '../../shared/index.js';
import type { GatewayFlags } from './gateway-command.js';

/** The largest config file read. */
const MAX_CONFIG_BYTES = 64 * 1024;

/** Cluster settings a config file may tune: every ClusterOptions default but the node's id, the servers and the secret. */
const TUNABLE = Object.entries(CLUSTER_DEFAULTS).filter(([k]) => k !== 'nats' && k !== 'natsToken');

const clusterSection = z.strictObject(
  Object.fromEntries(
    TUNABLE.map(([k, v]) => [
      k,
      typeof v === 'number'
        ? z
            .int()
            .min(0)
            .max(2 ** 31)
            .optional()
        : z.string().min(1).max(64).optional(),
    ]),
  ) as Record<string, z.ZodOptional<z.ZodInt | z.ZodString>>,
);

const text = z.string().min(1).max(4096);
const configSchema = z.strictObject({
  db: text.optional(),
  memory: z.boolean().optional(),
  open: z.boolean().optional(),
  host: z.string().min(1).max(255).optional(),
  port: z.int().min(0).max(65535).optional(),
  serveUncatalogued: z.boolean().optional(),
  operatorShare: z.union([z.number().min(0).max(100), z.string().max(8)]).optional(),
  pendingHours: z.union([z.number().min(0).max(99_999), z.string().max(12)]).optional(),
  metricsTokenFile: text.optional(),
  auditModels: text.optional(),
  postgres: text.optional(),
  nodeId: z.string().min(1).max(64).optional(),
  nats: text.optional(),
  natsTokenFile: text.optional(),
  postgresPool: z.int().min(1).max(256).optional(),
  secureCookies: z.boolean().optional(),
  cluster: clusterSection.optional(),
});

/** A gateway config file, parsed. */
export type GatewayConfig = z.infer<typeof configSchema>;

/** The fields of a config file that are paths, resolved against the file's folder. */
const PATHS = ['db', 'metricsTokenFile', 'auditModels', 'natsTokenFile'] as const;

/** Reads and checks the config file at `file` (absolute); paths in it come back absolute. */
export async function readGatewayConfig(file: string): Promise<GatewayConfig> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? 'error'})`;
    throw new NightjarError('NJ_USAGE', `--config: ${file} ${why}`);
  }
  if (Buffer.byteLength(raw) > MAX_CONFIG_BYTES) {
    throw new NightjarError('NJ_CONFIG_INVALID', `${file} is larger than ${MAX_CONFIG_BYTES} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new NightjarError('NJ_CONFIG_INVALID', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw new NightjarError('NJ_CONFIG_INVALID', `${file}: ${describeIssues(parsed.error)}`);
  const config = { ...parsed.data };
  for (const k of PATHS) if (config[k] !== undefined) config[k] = path.resolve(path.dirname(file), config[k]);
  return config;
}

/**
 * The flags with the config file under them: a flag the command line gave (`given` says which)
 * wins; a field of the file fills a flag left at its default or out. Also returns the cluster tuning.
 */
export function withConfig(
  flags: GatewayFlags,
  given: (flag: keyof GatewayFlags) => boolean,
  config: GatewayConfig,
): { flags: GatewayFlags; cluster: Omit<ClusterOptions, 'nodeId' | 'nats'> } {
  const { cluster, operatorShare, pendingHours, ...rest } = config;
  const fromFile: Partial<GatewayFlags> = {
    ...rest,
    ...(operatorShare === undefined ? {} : { operatorShare: String(operatorShare) }),
    ...(pendingHours === undefined ? {} : { pendingHours: String(pendingHours) }),
  };
  const merged: GatewayFlags = { ...flags };
  for (const [k, v] of Object.entries(fromFile) as [keyof GatewayFlags, never][]) {
    if (v !== undefined && !given(k)) merged[k] = v;
  }
  return { flags: merged, cluster: (cluster ?? {}) as Omit<ClusterOptions, 'nodeId' | 'nats'> };
}
