/**
 * `nightjar gateway` and its administration commands in the command table. Only commander and
 * tiny helpers load with it; each action imports its body (and so the gateway) when it runs.
 */
import { Option, type Command } from 'commander';
import { DEFAULT_DB, POSITIONAL_OPTIONS, helpAfter, integer, noOperands, port, positiveInteger } from '../flags.js';
import type { Launch } from '../program.js';
import type { AdminCommand, AdminFlags } from './admin-commands.js';
import type { GatewayFlags } from './gateway-command.js';

const DB_HELP = `the database file (default ${DEFAULT_DB})`;

/** An admin command's action: its arguments and the flags of it and its parents. */
function admin(launch: Launch, name: AdminCommand): (...args: unknown[]) => Promise<void> {
  return (...args) => {
    const cmd = args.at(-1) as Command;
    return launch(cmd, async (ctx) =>
      (await import('./admin-commands.js')).adminCommand(name, cmd.args, cmd.optsWithGlobals<AdminFlags>(), ctx),
    );
  };
}

/** A group of admin commands (keys, operators, …), each taking --db. */
function group(gateway: Command, name: string, summary: string): Command {
  return gateway
    .command(name)
    .description(summary)
    .option('--db <path>', DB_HELP)
    .option('--postgres <url>', 'a cluster’s PostgreSQL instead of the file');
}

function defineKeys(gateway: Command, launch: Launch): void {
  const keys = group(gateway, 'keys', 'client API keys: issue (shown once), list, top up, revoke');
  keys
    .command('create')
    .description('issue a client API key (shown once)')
    .requiredOption('--name <name>', 'who the key is for')
    .option('--credit <amount>', 'credits to start with (default 0)')
    .action(admin(launch, 'keys create'));
  keys.command('list').description('keys, balances and holds').action(admin(launch, 'keys list'));
  keys
    .command('topup')
    .description('add credits to a key')
    .argument('<key-id>')
    .argument('<amount>', 'credits')
    .action(admin(launch, 'keys topup'));
  keys.command('revoke').description('stop a key working').argument('<key-id>').action(admin(launch, 'keys revoke'));
}

function defineOperators(gateway: Command, launch: Launch): void {
  const operators = group(gateway, 'operators', 'operator accounts: dashboard tokens (shown once), balances, payouts');
  operators
    .command('create')
    .description('add an operator; prints its dashboard token (once)')
    .requiredOption('--name <name>', 'the operator’s name')
    .action(admin(launch, 'operators create'));
  operators.command('list').description('operators and their balances').action(admin(launch, 'operators list'));
  operators
    .command('token')
    .description('replace an operator’s dashboard token')
    .argument('<operator-id>')
    .action(admin(launch, 'operators token'));
  operators
    .command('payout')
    .description('record a payout to an operator')
    .argument('<operator-id>')
    .argument('<amount>', 'credits')
    .action(admin(launch, 'operators payout'));
}

function defineEnroll(gateway: Command, launch: Launch): void {
  const enroll = group(gateway, 'enroll', 'single-use enrollment tokens that bind agents to operators');
  enroll
    .command('create', { isDefault: true })
    .description('issue a single-use enrollment token (shown once); the default')
    .requiredOption('--operator <operator-id>', 'the operator the agent is bound to')
    .option('--ttl <duration>', 'how long it is valid, like 2h or 7d (default 7d)')
    .action(admin(launch, 'enroll create'));
  enroll
    .command('list')
    .description('enrollment tokens and who used them')
    .option('--operator <operator-id>', 'only this operator’s')
    .action(admin(launch, 'enroll list'));
  enroll.command('unbind').description('remove an agent’s operator binding').argument('<agent-id>').action(admin(launch, 'enroll unbind'));
}

function definePrices(gateway: Command, launch: Launch): void {
  const prices = group(gateway, 'prices', 'price per million tokens of each model, in credits (0 = free)');
  prices
    .command('set')
    .description('price a model per million tokens, in credits (0 = free)')
    .argument('<model>')
    .requiredOption('--prompt <credits>', 'per million prompt tokens')
    .requiredOption('--completion <credits>', 'per million completion tokens')
    .action(admin(launch, 'prices set'));
  prices.command('list').description('the prices').action(admin(launch, 'prices list'));
  prices
    .command('remove')
    .description('the model is refused until priced again')
    .argument('<model>')
    .action(admin(launch, 'prices remove'));
}

function defineLedger(gateway: Command, launch: Launch): void {
  const ledger = group(gateway, 'ledger', 'check the ledger’s invariants');
  ledger.command('check').description('verify the ledger’s invariants').action(admin(launch, 'ledger check'));
}

function defineStrikes(gateway: Command, launch: Launch): void {
  const strikes = group(gateway, 'strikes', 'what the honesty checks caught of each agent, and its score (docs/honesty.md)');
  strikes
    .command('list')
    .description('strikes that still weigh, newest first, with each agent’s score')
    .option('--agent <agent-id>', 'only this agent’s')
    .action(admin(launch, 'strikes list'));
  strikes
    .command('clear')
    .description('delete an agent’s strikes (or everyone’s, with --all): its score is 1 again')
    .argument('[agent-id]')
    .option('--all', 'every agent’s strikes')
    .action(admin(launch, 'strikes clear'));
}

function defineCatalog(gateway: Command, launch: Launch): void {
  const catalog = group(gateway, 'catalog', 'which files (by sha256) each model id is priced and routed for');
  catalog
    .command('add')
    .description('list a file as model ID: only agents serving a listed file are priced and routed for ID')
    .argument('<model>')
    .option(
      '--hf <repo>',
      'a Hugging Face repository (owner/name) holding --file-name: its size, sha256 and URL come from the Hub (HF_ENDPOINT, HF_TOKEN)',
    )
    .option('--revision <rev>', 'with --hf: the branch, tag or commit (default main)')
    .option('--from <file>', 'a local copy of the file: its sha256, size and name are read from it')
    .option('--sha256 <hex>', 'the file’s sha256 (64 hex digits)')
    .addOption(new Option('--bytes <n>', 'the file’s size in bytes').argParser(positiveInteger))
    .option('--file-name <name>', 'the file’s name, as people know it (with --hf, its path in the repository)')
    .option('--quantization <q>', 'its quantization, like Q4_K_M or Q8_0 (with --hf, read from the file name unless given)')
    .addOption(new Option('--context <n>', 'its context length in tokens').argParser(integer(1, 2 ** 24)).makeOptionMandatory())
    .option('--url <url>', 'where the file can be downloaded (http or https)')
    .action(admin(launch, 'catalog add'));
  catalog.command('list').description('the catalogued files').action(admin(launch, 'catalog list'));
  catalog
    .command('remove')
    .description('remove a model’s files (or one, with --sha256) from the catalog')
    .argument('<model>')
    .option('--sha256 <hex>', 'only this file')
    .action(admin(launch, 'catalog remove'));
  const key = group(gateway, 'key', 'the gateway’s signing key (its public half): show, rotate');
  key
    .command('show', { isDefault: true })
    .description('print the key’s id, public key, creation time and fingerprint (made now if the gateway never started); the default')
    .action(admin(launch, 'key show'));
  key
    .command('rotate')
    .description('make a new signing key; the old one, retired, signs a rotation statement clients follow during the grace period')
    .option('--grace <duration>', 'how long clients that pinned the old key may follow it to the new one (default 30d)')
    .action(admin(launch, 'key rotate'));
  const releases = group(gateway, 'releases', 'the released-versions list: which app hashes are releases (served signed)');
  releases
    .command('add')
    .description('list an app hash (64 hex digits) as a release of VERSION')
    .argument('<version>')
    .argument('<app-hash>')
    .action(admin(launch, 'releases add'));
  releases.command('list').description('the releases').action(admin(launch, 'releases list'));
  releases
    .command('remove')
    .description('remove an app hash from the releases')
    .argument('<app-hash>')
    .action(admin(launch, 'releases remove'));
}

/** Adds `nightjar gateway` and its administration commands to `program`. */
export function defineGatewayCommands(program: Command, launch: Launch): void {
  const gateway = program
    .command('gateway')
    .summary('run a gateway (keys, operators, enroll, prices, catalog, key, releases, ledger, strikes: administer its database)')
    .description(
      'Runs a Nightjar gateway: agents connect to it over WebSocket, clients send it sealed requests. It ' +
        'relays ciphertext and never sees a prompt or a reply. Accounts and the ledger live in one SQLite ' +
        'file; operators watch their agents and earnings at /dashboard/. The administration commands are safe ' +
        'to run while it runs.',
    )
    // Its flags come before an administration command's name; each of those takes its own --db.
    .enablePositionalOptions()
    .option('--db <path>', `${DB_HELP}; created if missing`)
    .option('--memory', 'keep everything in memory instead (development: lost on exit)')
    .option('--open', 'let clients without an API key run free jobs (uncatalogued or zero-priced models); default with --memory')
    .option('--host <addr>', 'interface to listen on', '127.0.0.1')
    .addOption(new Option('--port <n>', 'TCP port').argParser(port).default(8787))
    .option('--serve-uncatalogued', 'offer, free, models the catalog does not list (a development model); default with --memory')
    .addOption(new Option('--allow-synthetic', 'deprecated: same as --serve-uncatalogued').hideHelp())
    .option('--operator-share <pct>', 'operators’ share of each charge, in percent (default 95)')
    .option(
      '--pending-hours <h>',
      'hours each share stays pending (a client countersignature can still dispute it) before payouts may take it (default 24)',
    )
    .option('--metrics-token-file <file>', 'require the token in FILE (mode 0600) at /metrics (or set env NIGHTJAR_METRICS_TOKEN)')
    .option(
      '--audit-models <dir>',
      're-check jobs clients reveal (nightjar dispute) against the .gguf files in DIR (each hashed once at start)',
    )
    .option(
      '--postgres <url>',
      'run as one node of a cluster, the ledger in PostgreSQL at URL (postgres://user@host:5432/db) instead of --db',
    )
    .option('--node-id <id>', 'this node’s id in the cluster, unique among its nodes (default: a random one)')
    .option(
      '--nats <url>',
      'with --postgres: NATS with JetStream (nats://host:4222, comma-separated for several) routes jobs between nodes',
    )
    .addOption(new Option('--postgres-pool <n>', 'with --postgres: connections in this node’s pool (default 4)').argParser(integer(1, 256)))
    .option('--secure-cookies', 'mark the dashboard’s session cookie Secure (TLS is terminated in front of the gateway)')
    .option('--nats-token-file <file>', 'the token NATS requires, in FILE (mode 0600) (or set env NIGHTJAR_NATS_TOKEN)')
    .option('--config <file>', 'read these settings from a JSON file (flag names in camelCase; flags given here win)')
    .addHelpText(
      'after',
      helpAfter(
        'Amounts are in credits with up to six decimals (1 credit = 1 000 000 micro-credits). Secrets (API ' +
          'keys, operator tokens, enrollment tokens) are printed once, when they are made; only their hashes ' +
          'are stored.',
      ),
    )
    .action((flags: GatewayFlags, cmd: Command) => {
      noOperands(cmd);
      return launch(cmd, async (ctx) => {
        const [{ gatewayCommand }, { chatPageSites }] = await Promise.all([import('./gateway-command.js'), import('../web-pages.js')]);
        const given = (flag: keyof GatewayFlags): boolean => {
          const source = cmd.getOptionValueSource(flag);
          return source !== undefined && source !== 'default';
        };
        return gatewayCommand(flags, ctx, await chatPageSites(ctx.logger(undefined, 'warn')), given);
      });
    });
  POSITIONAL_OPTIONS.add(gateway);
  gateway.commandsGroup('Administration:');
  defineKeys(gateway, launch);
  defineOperators(gateway, launch);
  defineEnroll(gateway, launch);
  definePrices(gateway, launch);
  defineLedger(gateway, launch);
  defineStrikes(gateway, launch);
  defineCatalog(gateway, launch);
  // Set after the subcommands (they would inherit it): an operand is then noOperands' to name.
  gateway.allowExcessArguments();
}
