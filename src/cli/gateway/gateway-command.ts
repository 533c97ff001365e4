/**
 * `nightjar gateway`: runs a gateway until stopped: the embedded default (one process, one SQLite
 * file), or with --postgres one node of a cluster on PostgreSQL; `nightjar gateway
 * keys|operators|enroll|prices|catalog|key|ledger` administers its (SQLite) database.
 */
import path from 'node:path';
import { NightjarError, type ReplyChecker } from '../../shared/index.js';
import { Gateway, openPostgresStore, openSqliteStore, type ClusterOptions, type StaticSite } from '../../gateway/index.js';
import { untilAborted, type CommandContext } from '../io.js';
import { DEFAULT_DB } from '../flags.js';
import { SECRETS, readSecret } from '../secrets.js';

/** Flags of `nightjar gateway`. */
export interface GatewayFlags {
  db?: string;
  memory?: boolean;
  open?: boolean;
  host: string;
  port: number;
  /** Offer, free, models the catalog does not list (default with --memory). */
  serveUncatalogued?: boolean;
  /** Deprecated alias of serveUncatalogued. */
  allowSynthetic?: boolean;
  /** Operators' share of each charge, in percent ("95", "97.5"). */
  operatorShare?: string;
  /** Hours an operator's share stays pending before it is payable ("24", "0.5"). */
  pendingHours?: string;
  /** A file holding the bearer token /metrics requires (mode 0600). */
  metricsTokenFile?: string;
  /** A directory of .gguf files: the gateway re-checks revealed jobs against them. */
  auditModels?: string;
  /** PostgreSQL connection string: run as one node of a cluster on it instead of a SQLite file. */
  postgres?: string;
  /** This node's id in the cluster (with --postgres). */
  nodeId?: string;
  /** NATS server URL(s) (with --postgres): presence and routing between nodes. */
  nats?: string;
  /** A file holding the token NATS requires (mode 0600). */
  natsTokenFile?: string;
  /** A JSON file with these settings (gateway-config.ts); flags given win over it. */
  config?: string;
  /** Mark the dashboard's session cookie Secure (TLS terminated in front of the gateway). */
  secureCookies?: boolean;
  /** With --postgres: connections in this node's pool. */
  postgresPool?: number;
}

/** The reply checker of --audit-models: the files in `dir` hashed once, a checker on them, and its disposal. */
async function auditChecker(dir: string, ctx: CommandContext): Promise<{ check: ReplyChecker; dispose(): Promise<void>; files: number }> {
  const { indexModelFiles } = await import('./audit-models.js');
  ctx.io.stderr.write(`Hashing the model files in ${dir} (once, at start)…\n`);
  const index = await indexModelFiles(path.resolve(ctx.io.cwd, dir), {
    signal: ctx.signal,
    onProgress: (file, done, total) => ctx.io.stderr.write(`  ${file}: ${Math.floor((done / total) * 100)} %\n`),
  });
  const { createReplyChecker } = await import('../../main/agent/index.js');
  const handle = createReplyChecker({ modelPath: (sha256) => index.get(sha256) ?? null, logger: ctx.logger() });
  return { check: handle.check, dispose: () => handle.dispose(), files: index.size };
}

/** Parses "95" or "97.5" percent into basis points. */
function shareBps(text: string): number {
  const m = /^(\d{1,3})(?:\.(\d{1,2}))?$/.exec(text);
  const bps = m ? Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0')) : NaN;
  if (!(bps >= 0 && bps <= 10_000))
    throw new NightjarError('NJ_USAGE', `--operator-share must be a percentage from 0 to 100, not "${text}"`);
  return bps;
}

/** Parses "24" or "0.5" hours into milliseconds. */
function pendingMs(text: string): number {
  if (!/^\d{1,5}(?:\.\d{1,3})?$/.test(text))
    throw new NightjarError('NJ_USAGE', `--pending-hours must be a number of hours, not "${text}"`);
  return Math.round(Number(text) * 3_600_000);
}

/** Where the ledger is, as the start line says it (never the PostgreSQL URL: it may hold a password). */
function where(dbPath: string | null, nodeId: string | null): string {
  if (nodeId !== null) return `cluster node ${nodeId}, ledger in PostgreSQL`;
  return dbPath ? `ledger in ${dbPath}` : 'in memory (nothing is kept)';
}

/**
 * Runs `nightjar gateway` until the context's signal; resolves with the exit code after a
 * graceful shutdown. `sites` are static pages to serve besides the dashboard (the chat page).
 */
export async function gatewayCommand(
  flags: GatewayFlags,
  ctx: CommandContext,
  sites: readonly StaticSite[],
  given: (flag: keyof GatewayFlags) => boolean = () => true,
): Promise<number> {
  let values = flags;
  let tuning: Omit<ClusterOptions, 'nodeId' | 'nats'> = {};
  if (flags.config !== undefined) {
    const { readGatewayConfig, withConfig } = await import('./gateway-config.js');
    ({ flags: values, cluster: tuning } = withConfig(flags, given, await readGatewayConfig(path.resolve(ctx.io.cwd, flags.config))));
  }
  const port = values.port;
  if (values.memory && values.db !== undefined) throw new NightjarError('NJ_USAGE', '--memory and --db exclude each other');
  if (values.postgres !== undefined && (values.memory || values.db !== undefined))
    throw new NightjarError('NJ_USAGE', '--postgres excludes --db and --memory');
  if ((values.nodeId !== undefined || values.nats !== undefined) && values.postgres === undefined)
    throw new NightjarError(
      'NJ_USAGE',
      `${values.nodeId !== undefined ? '--node-id names a cluster node' : '--nats routes between cluster nodes'}: it needs --postgres`,
    );
  if (values.natsTokenFile !== undefined && values.nats === undefined)
    throw new NightjarError('NJ_USAGE', '--nats-token-file needs --nats');
  const metricsToken = await readSecret(SECRETS.metricsToken, { file: values.metricsTokenFile }, ctx.io);
  const natsToken = values.nats === undefined ? undefined : await readSecret(SECRETS.natsToken, { file: values.natsTokenFile }, ctx.io);
  const logger = ctx.logger();
  const dbPath = values.memory || values.postgres !== undefined ? null : path.resolve(ctx.io.cwd, values.db ?? DEFAULT_DB);
  const checker = values.auditModels === undefined ? null : await auditChecker(values.auditModels, ctx);
  if (checker) ctx.io.stderr.write(`Reveals are re-checked against ${checker.files} model ${checker.files === 1 ? 'file' : 'files'}.\n`);
  const store =
    values.postgres !== undefined
      ? await openPostgresStore({ connectionString: values.postgres, now: ctx.clock.now(), maxConnections: values.postgresPool })
      : dbPath
        ? await openSqliteStore({ path: dbPath, now: ctx.clock.now() })
        : undefined;
  let gateway: Gateway;
  try {
    gateway = await Gateway.start({
      host: values.host,
      port,
      serveUncatalogued: values.serveUncatalogued ?? values.allowSynthetic ?? values.memory ?? false,
      allowAnonymous: values.open ?? values.memory ?? false,
      operatorShareBps: values.operatorShare === undefined ? undefined : shareBps(values.operatorShare),
      pendingEarningsMs: values.pendingHours === undefined ? undefined : pendingMs(values.pendingHours),
      metricsToken,
      secureCookies: values.secureCookies,
      store,
      ...(checker ? { honesty: { checker: checker.check } } : {}),
      cluster:
        values.postgres !== undefined
          ? { ...tuning, nodeId: values.nodeId, nats: values.nats ?? null, natsToken: natsToken ?? null }
          : null,
      clock: ctx.clock,
      sites,
      logger,
    });
  } catch (err) {
    await store?.dispose();
    await checker?.dispose();
    throw err;
  }
  ctx.io.stdout.write(
    `Nightjar gateway on ${gateway.url} (agents connect to ${gateway.agentUrl}); ` +
      `${where(dbPath, gateway.nodeId)}; operator dashboard at ${gateway.url}/dashboard/` +
      `${sites.some((site) => site.prefix === '/chat/') ? `; chat page at ${gateway.url}/chat/` : ''}. Ctrl-C stops it.\n`,
  );
  await untilAborted(ctx.signal);
  logger.info('shutting down: letting running streams finish');
  await gateway.dispose();
  await store?.dispose();
  await checker?.dispose();
  return 0;
}
