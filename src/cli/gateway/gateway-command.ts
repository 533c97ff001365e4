/**
 * `nightjar gateway`: runs the embedded-default gateway (one process, one SQLite file) until
 * stopped; `nightjar gateway keys|operators|enroll|prices|ledger` administers its database.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NightjarError, type Clock, type Logger } from '../../shared/index.js';
import { Gateway, openSqliteStore, type StaticSite } from '../../gateway/index.js';
import { ADMIN_COMMANDS, ADMIN_USAGE, DEFAULT_DB, adminCommand } from './admin-commands.js';

/** Usage text of `nightjar gateway`. */
export const GATEWAY_USAGE = `Usage: nightjar gateway [options]
       nightjar gateway keys|operators|enroll|prices|ledger …

Runs a Nightjar gateway: agents connect to it over WebSocket, clients send it sealed requests.
It relays ciphertext and never sees a prompt or a reply. Accounts and the ledger live in one
SQLite file; operators watch their agents and earnings at /dashboard/.

Options:
  --db PATH              the database file (default ${DEFAULT_DB}; created if missing)
  --memory               keep everything in memory instead (development: lost on exit)
  --open                 let clients without an API key run free jobs (synthetic or zero-priced
                         models); default with --memory, off otherwise
  --host ADDR            interface to listen on (default 127.0.0.1)
  --port N               TCP port (default 8787)
  --allow-synthetic      offer synthetic development models to clients (always free)
  --operator-share PCT   operators' share of each charge, in percent (default 95)
  --log-level LEVEL      debug, info, warn or error (default info)
  --log-json             log JSON lines instead of text
  -h, --help             show this help

${ADMIN_USAGE}`;

/** What the gateway command needs from its caller. */
export interface GatewayCommandContext {
  stdout: { write(text: string): unknown };
  /** Builds the logger once the log options are known. */
  logger(options: { level: string | undefined; json: boolean }): Logger;
  /** Resolves when the command should shut down. */
  stopped: Promise<void>;
  /** Called once listening, with the running gateway. */
  onListening?(gateway: Gateway): void;
  /** Time source. Defaults to the system clock. */
  clock?: Clock;
  /** Static pages to serve besides the dashboard (the browser chat page). Defaults to none. */
  sites?: readonly StaticSite[];
}

/** Parses "95" or "97.5" percent into basis points. */
function shareBps(text: string): number {
  const m = /^(\d{1,3})(?:\.(\d{1,2}))?$/.exec(text);
  const bps = m ? Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0')) : NaN;
  if (!(bps >= 0 && bps <= 10_000))
    throw new NightjarError('NJ_USAGE', `--operator-share must be a percentage from 0 to 100, not "${text}"`);
  return bps;
}

/** Runs `nightjar gateway …`; resolves with the exit code after a graceful shutdown. */
export async function gatewayCommand(argv: string[], ctx: GatewayCommandContext): Promise<number> {
  if ((ADMIN_COMMANDS as readonly string[]).includes(argv[0] ?? '')) {
    if (argv.includes('--help') || argv.includes('-h')) {
      ctx.stdout.write(ADMIN_USAGE);
      return 0;
    }
    return adminCommand(argv, { stdout: ctx.stdout, ...(ctx.clock ? { clock: ctx.clock } : {}) });
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      db: { type: 'string' },
      memory: { type: 'boolean' },
      open: { type: 'boolean' },
      host: { type: 'string' },
      port: { type: 'string' },
      'allow-synthetic': { type: 'boolean' },
      'operator-share': { type: 'string' },
      'log-level': { type: 'string' },
      'log-json': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    ctx.stdout.write(GATEWAY_USAGE);
    return 0;
  }
  const port = values.port === undefined ? 8787 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new NightjarError('NJ_USAGE', `--port must be 0–65535, not "${values.port}"`);
  if (values.memory && values.db !== undefined) throw new NightjarError('NJ_USAGE', '--memory and --db exclude each other');
  const logger = ctx.logger({ level: values['log-level'], json: values['log-json'] ?? false });
  const dbPath = values.memory ? null : path.resolve(values.db ?? DEFAULT_DB);
  const store = dbPath ? await openSqliteStore({ path: dbPath, ...(ctx.clock ? { now: ctx.clock.now() } : {}) }) : undefined;
  let gateway: Gateway;
  try {
    gateway = await Gateway.start({
      host: values.host ?? '127.0.0.1',
      port,
      allowSynthetic: values['allow-synthetic'] ?? false,
      allowAnonymous: values.open ?? values.memory ?? false,
      ...(values['operator-share'] === undefined ? {} : { operatorShareBps: shareBps(values['operator-share']) }),
      ...(store ? { store } : {}),
      ...(ctx.clock ? { clock: ctx.clock } : {}),
      ...(ctx.sites ? { sites: ctx.sites } : {}),
      logger,
    });
  } catch (err) {
    await store?.dispose();
    throw err;
  }
  ctx.stdout.write(
    `Nightjar gateway on ${gateway.url} (agents connect to ${gateway.agentUrl}); ` +
      `${dbPath ? `ledger in ${dbPath}` : 'in memory (nothing is kept)'}; operator dashboard at ${gateway.url}/dashboard/` +
      `${ctx.sites?.some((site) => site.prefix === '/chat/') ? `; chat page at ${gateway.url}/chat/` : ''}. Ctrl-C stops it.\n`,
  );
  ctx.onListening?.(gateway);
  await ctx.stopped;
  logger.info('shutting down: letting running streams finish');
  await gateway.dispose();
  await store?.dispose();
  return 0;
}
