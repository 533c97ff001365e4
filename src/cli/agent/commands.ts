/**
 * The provider's commands in the command table: their flags, help and actions. Only commander and
 * tiny helpers load with it; each action imports its body (and so the agent) when it runs.
 */
import { Option, type Command } from 'commander';
import { SYNTHETIC_SHAPE_CHOICES, integer, noOperands, port, positiveInteger, helpAfter } from '../flags.js';
import type { ClientReceiptsFlags } from '../client/client-receipts.js';
import type { Launch } from '../program.js';
import type { EarningsFlags, ManualFlags, ReceiptsFlags, StatusFlags } from './agent-commands.js';
import type { DoctorFlags } from './doctor.js';
import type { KeysFlags } from './keys.js';
import type { ModelsListFlags, ModelsPullFlags, ModelsSynthFlags } from './models.js';
import type { ServeFlags } from './serve.js';
import type { UpFlags } from './up.js';

const DURATIONS = 'DURATION is like 30m, 2h or 1d.';

function defineUp(program: Command, launch: Launch): void {
  program
    .command('up')
    .summary('run a local network: gateway + agent on a synthetic model (what npm start runs)')
    .description(
      'Starts a local Nightjar network: a gateway and one agent serving a synthetic model (random weights, ' +
        'written on first run), then prints how to chat through it. Ctrl-C stops everything.',
    )
    .addOption(new Option('--port <n>', 'gateway port').argParser(port).default(8787))
    .option('--dir <dir>', 'where the synthetic model is kept', '.nightjar-dev')
    .addOption(new Option('--slots <n>', 'jobs the agent serves at once').argParser(positiveInteger).default(4))
    .action((flags: UpFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./up.js')).upCommand(flags, ctx)));
}

function defineServe(program: Command, launch: Launch): void {
  program
    .command('serve')
    .summary('run the provider agent: serve the selected model while this machine is idle')
    .description(
      'Runs the provider agent headless, for months: it serves the selected model through the gateway while ' +
        'this machine is idle, on AC power and cool enough (the policy in config.json), stops taking jobs the ' +
        'moment the owner is back, and unloads the model after a delay. Ctrl-C drains running jobs, says ' +
        'goodbye and stops.',
    )
    .option('--gateway <url>', 'gateway address, http(s):// or ws(s):// (env NIGHTJAR_GATEWAY, or gateway.url in config.json)')
    .option(
      '--enroll-token-file <file>',
      'link this agent to an operator account on the gateway, once, with the enrollment token in FILE (mode 0600; or env ' +
        'NIGHTJAR_ENROLL_TOKEN, or gateway.enrollToken in config.json)',
    )
    .option('--enroll-token <token>', 'the same on the command line, where other users of this machine can see it (ps)')
    .option('--model <id|file>', 'serve this installed model, or this GGUF file, instead of the selected one')
    .option('--model-id <id>', 'model id to publish a --model FILE under (default: the file name)')
    .addOption(new Option('--slots <n>', 'jobs served at once, one sequence each (default: model.slots, 4)').argParser(positiveInteger))
    .addOption(new Option('--context <n>', 'context length per sequence, in tokens (default min(model, 4096))').argParser(positiveInteger))
    .addOption(new Option('--threads <n>', 'CPU threads (default: the cores available less one)').argParser(positiveInteger))
    .option(
      '--key-file <file>',
      'keep the identity key in this plaintext file (mode 0600) instead of the OS keychain; only for machines without a keychain',
    )
    .option('--no-control', 'do not serve the control API (nightjar status/pause/resume need it)')
    .option(
      '--dashboard',
      'serve the dashboard on the control API’s address and open it in your browser (again later with `nightjar dashboard`)',
    )
    .addHelpText(
      'after',
      helpAfter(
        'Files: config.json, the models and the receipt log live in the platform’s place (run `nightjar ' +
          'doctor` to see where), or under NIGHTJAR_HOME when it is set.',
      ),
    )
    .action((flags: ServeFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./serve.js')).serveCommand(flags, ctx)));
}

function defineControl(program: Command, launch: Launch): void {
  program
    .command('status')
    .description('what the running agent is doing, and why')
    .option('--json', 'print the status as JSON')
    .action((flags: StatusFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./agent-commands.js')).statusCommand(flags, ctx)),
    );
  program
    .command('dashboard')
    .summary('open the running agent’s dashboard in your browser')
    .description(
      'Opens the running agent’s dashboard in your browser, signed in through a one-time link (the agent ' +
        'must run with its control API and a dashboard: `nightjar serve` from a build, or `nightjar serve ' +
        '--dashboard`).',
    )
    .action((_flags: object, cmd: Command) => launch(cmd, async (ctx) => (await import('./dashboard.js')).dashboardCommand(ctx)));
  const note = 'Works with no agent running too: it sets what the next `nightjar serve` does.';
  program
    .command('pause')
    .summary('stop serving until resumed (--for 2h to pause for a while)')
    .description(`Stops serving (drain, goodbye, disconnect) until resumed. ${note}`)
    .option('--for <duration>', 'pause for this long, then resume')
    .addHelpText('after', helpAfter(DURATIONS))
    .action((flags: ManualFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./agent-commands.js')).manualCommand('paused', flags, ctx)),
    );
  program
    .command('resume')
    .summary('back to the policy')
    .description(`Back to the policy: serve when the machine is idle. ${note}`)
    .action((_flags: object, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./agent-commands.js')).manualCommand('auto', {}, ctx)),
    );
  program
    .command('serve-now')
    .description('serve now, whatever idle time and schedule say')
    .option('--for <duration>', 'serve now for this long, then back to the policy')
    .addHelpText('after', helpAfter(DURATIONS))
    .action((flags: ManualFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./agent-commands.js')).manualCommand('serve-now', flags, ctx)),
    );
}

function defineRecords(program: Command, launch: Launch): void {
  program
    .command('earnings')
    .description('tokens (and credits, where priced) per day and model, from the receipt log')
    .addOption(new Option('--days <n>', 'the last N days only').argParser(positiveInteger))
    .option('--json', 'print the summary as JSON')
    .option('--key-file <file>', 'the identity key’s plaintext file, to check signatures when no agent runs')
    .action((flags: EarningsFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./agent-commands.js')).earningsCommand(flags, ctx)),
    );
  program
    .command('receipts')
    .summary('the receipts this agent signed (--client: those this machine verified as a client)')
    .description(
      'Lists the receipts this agent signed, newest first. With --client, the receipts this machine ' +
        'verified as a client (newest last), from receipts.jsonl in the client data folder. A receipt is the ' +
        'agent’s signed statement of one job: tokens, model file, digests of the request and reply ' +
        'ciphertexts — never their text.',
    )
    .option('--client', 'the receipts this machine verified as a client')
    .addOption(new Option('--limit <n>', 'show N receipts (with --client, 0 for all)').argParser(integer(0)).default(20))
    .option('--json', 'print the receipts as JSON (JSON lines with --client)')
    .option('--key-file <file>', 'the identity key’s plaintext file, to check signatures when no agent runs')
    .option('--verify', 'with --client: check each receipt’s signature again')
    .option('--data-dir <dir>', 'with --client: the client data folder (env NIGHTJAR_CLIENT_DATA_DIR)')
    .action((flags: ReceiptsFlags & ClientReceiptsFlags & { client?: boolean }, cmd: Command) => {
      if (flags.client && flags.keyFile !== undefined) cmd.error("option '--key-file' is for the agent's receipts, not --client");
      if (!flags.client && flags.verify) cmd.error("option '--verify' needs --client");
      if (!flags.client && flags.dataDir !== undefined) cmd.error("option '--data-dir' needs --client");
      return launch(cmd, async (ctx) =>
        flags.client
          ? (await import('../client/client-receipts.js')).clientReceiptsCommand(flags, ctx)
          : (await import('./agent-commands.js')).receiptsCommand(flags, ctx),
      );
    });
}

function defineKeys(program: Command, launch: Launch): void {
  const keys = program
    .command('keys')
    .summary('the agent’s identity key')
    .description(
      'The agent’s identity key: where it lives, the agent id and public key (show, the default); create ' +
        'it, or delete it. The key lives in the OS keychain (service Nightjar, account agent-identity). ' +
        '--key-file FILE, or keys.store "plaintext-file" in config.json, keeps it in a plaintext file (mode ' +
        '0600) instead, for machines without a keychain.',
    )
    .option('--key-file <file>', 'keep the identity key in this plaintext file instead of the OS keychain');
  const run = (sub: 'show' | 'create' | 'delete') => (_flags: KeysFlags, cmd: Command) =>
    launch(cmd, async (ctx) => (await import('./keys.js')).keysCommand(sub, cmd.optsWithGlobals<KeysFlags>(), ctx));
  keys.command('show').description('where the identity key lives, the agent id and public key').action(run('show'));
  keys.command('create').description('create the identity now (serve does it on first start)').action(run('create'));
  keys
    .command('delete')
    .description('delete the identity: the gateway knows and credits this agent by it, so a new one starts from nothing')
    .option('--yes', 'yes, delete it')
    .action(run('delete'));
  // Set after the subcommands, which would inherit it.
  keys.allowExcessArguments().action((flags: KeysFlags, cmd: Command) => {
    noOperands(cmd);
    return run('show')(flags, cmd);
  });
}

function defineModels(program: Command, launch: Launch): Command {
  const models = program
    .command('models')
    .summary('list, pull, rm, select, synth (this machine); offered (what a gateway offers)')
    .description(
      'The models on this machine and the catalog. Downloads check the file’s sha256 while it streams and ' +
        'install nothing that does not match.',
    )
    .action((_flags: object, cmd: Command) => {
      noOperands(cmd);
      cmd.outputHelp();
    });
  models
    .command('list')
    .alias('ls')
    .description('installed models, partial downloads, the catalog')
    .option('--json', 'print them as JSON')
    .action((flags: ModelsListFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./models.js')).listModels(flags, ctx)));
  models
    .command('pull')
    .description('download a catalog model (resumes a partial one)')
    .argument('<id>', 'the catalog model (see nightjar models list)')
    .option('--sha256 <hex>', 'the file’s sha256, for a catalog entry that is not verified (from the file’s download page)')
    .action((id: string, flags: ModelsPullFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./models.js')).pullModel(id, flags, ctx)),
    );
  models
    .command('rm')
    .alias('remove')
    .description('delete an installed model')
    .argument('<id>', 'the installed model')
    .action((id: string, _flags: object, cmd: Command) => launch(cmd, async (ctx) => (await import('./models.js')).removeModel(id, ctx)));
  models
    .command('select')
    .description('serve this installed model (the running agent drains, unloads and loads it)')
    .argument('<id>', 'the installed model')
    .action((id: string, _flags: object, cmd: Command) => launch(cmd, async (ctx) => (await import('./models.js')).selectModel(id, ctx)));
  models
    .command('synth')
    .description('write a synthetic model (random weights, for development) into the models directory, or to FILE')
    .addOption(new Option('--shape <name>', 'the shape').choices(SYNTHETIC_SHAPE_CHOICES).default('tiny'))
    .addOption(new Option('--seed <n>', 'the weights’ random seed').argParser(integer(0)).default(0))
    .option('--out <file>', 'write it to FILE instead of installing it')
    .action((flags: ModelsSynthFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./models.js')).synthModel(flags, ctx)));
  // Set after the subcommands (they would inherit it): an operand is then noOperands' to name.
  models.allowExcessArguments();
  return models;
}

/** Adds the provider's commands to `program`; returns `models`, which the client adds to. */
export function defineAgentCommands(program: Command, launch: Launch): { models: Command } {
  defineUp(program, launch);
  defineServe(program, launch);
  defineControl(program, launch);
  const models = defineModels(program, launch);
  defineRecords(program, launch);
  defineKeys(program, launch);
  program
    .command('doctor')
    .summary('check everything the agent needs, and say what to fix')
    .description(
      'Checks what the agent needs, and says what to do about each problem: the config, llama.cpp, the ' +
        'selected model (present, sha256 intact, fits in memory), disk space, the keychain, the idle and ' +
        'power readings, the gateway (reachable, and whether the clocks agree). Exits 1 if a check failed.',
    )
    .option('--gateway <url>', 'the gateway to check (default: NIGHTJAR_GATEWAY, or gateway.url in config.json)')
    .option('--key-file <file>', 'the identity key’s plaintext file, if it is kept in one')
    .action((flags: DoctorFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./doctor.js')).doctorCommand(flags, ctx)));
  return { models };
}
