/**
 * The client's commands in the command table: `chat`, `dispute`, `proxy`, `audit`, `trust reset` and `models offered`. Only
 * commander and tiny helpers load with it; each action imports its body (and so the client SDK)
 * when it runs.
 */
import { Option, type Command } from 'commander';
import { DEFAULT_GATEWAY, TRUST_LEVEL_CHOICES, collect, decimal, integer, port, positiveInteger, helpAfter } from '../flags.js';
import type { Launch } from '../program.js';
import type { AuditFlags } from './audit.js';
import type { ChatFlags } from './chat.js';
import type { DisputeFlags } from './dispute.js';
import type { ModelsOfferedFlags } from './models-offered.js';
import type { ProxyFlags } from './proxy-command.js';
import type { TrustResetFlags } from './trust.js';

const GATEWAY_HELP = `gateway address (env NIGHTJAR_GATEWAY; default ${DEFAULT_GATEWAY})`;
const API_KEY_FILE_HELP = 'client API key for the gateway, read from FILE (mode 0600; or env NIGHTJAR_API_KEY)';
const API_KEY_HELP = 'the same on the command line, where other users of this machine can see it (ps)';

/** The flags every client command takes: which gateway, and which agents to trust. */
function clientOptions(cmd: Command): Command {
  return cmd
    .option('--gateway <url>', GATEWAY_HELP)
    .option('--api-key-file <file>', API_KEY_FILE_HELP)
    .option('--api-key <key>', API_KEY_HELP)
    .option('--allow-synthetic', 'accept synthetic development models (random weights)')
    .addOption(new Option('--min-trust <level>', 'lowest agent trust accepted (default signed)').choices(TRUST_LEVEL_CHOICES))
    .option('--only-pinned', 'use only agents pinned before (refuse agents never seen)')
    .option('--gateway-key <key>', 'the gateway’s signing key (base64url, fingerprint or id), instead of pinning it on first use')
    .option('--no-pin', 'neither read nor write pins (agents’ and the gateway’s) and the receipt log')
    .option('--data-dir <dir>', 'client data folder: pins.json, gateway-keys.json, receipts.jsonl (env NIGHTJAR_CLIENT_DATA_DIR)');
}

function defineChat(program: Command, launch: Launch): void {
  const chat = program
    .command('chat')
    .summary('send an end-to-end encrypted prompt and stream the reply (or talk, interactively)')
    .description(
      'Sends an end-to-end encrypted prompt through a Nightjar gateway and streams the reply. With a prompt ' +
        '(or "-" for standard input), answers once. With no prompt on a terminal, or with --interactive, ' +
        'holds a conversation: /reset starts over, /exit (or Ctrl-D) quits, Ctrl-C stops the reply being ' +
        'written and a second Ctrl-C quits.',
    )
    .argument('[prompt...]', 'the prompt; "-" or none reads it from standard input')
    .option('--model <id>', 'model to use (default: the first model the gateway offers)')
    .option('--system <text>', 'a system message to send first')
    .addOption(new Option('--max-tokens <n>', 'most tokens to generate per reply').argParser(positiveInteger).default(256))
    .addOption(new Option('--temperature <t>', 'sampling temperature, 0 for greedy').argParser(decimal))
    .addOption(new Option('--top-p <p>', 'nucleus sampling: the smallest set of tokens whose probabilities add up to P').argParser(decimal))
    .addOption(new Option('--top-k <k>', 'sample from the K likeliest tokens').argParser(integer(0)))
    .addOption(new Option('--seed <n>', 'random seed of the sampling').argParser(integer(0)))
    .addOption(new Option('--stop <text>', 'stop generating at this text (repeatable)').argParser(collect))
    .option('-i, --interactive', 'hold a conversation even when standard input is not a terminal')
    .option('--json', 'print the verified result as JSON instead of streaming text (one-shot)')
    .option('--quiet', 'do not print the summary line')
    .option(
      '--keep-evidence <file>',
      'write the job’s evidence to FILE (mode 0600) for `nightjar dispute`; it holds the conversation’s key (one-shot)',
    );
  clientOptions(chat)
    .addHelpText(
      'after',
      helpAfter(
        'Examples:\n  nightjar chat --allow-synthetic "Hello, Nightjar"\n  echo "Tell me a story" | nightjar ' +
          'chat --model llama-3.2-1b-instruct-q4_k_m\n  nightjar chat -i --system "Be brief."',
      ),
    )
    .action((prompt: string[], flags: ChatFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./chat.js')).chatCommand(flags, prompt, ctx)),
    );
}

function defineDispute(program: Command, launch: Launch): void {
  const dispute = program
    .command('dispute')
    .summary('reveal one job to the gateway’s auditor, which re-checks its reply')
    .description(
      'Reveals one job to the gateway: FILE is its evidence, as `nightjar chat --keep-evidence FILE` wrote it. The ' +
        'gateway re-checks the reply against the model file the agent’s receipt names; a failed check strikes the ' +
        'agent and, while the job’s earnings are still pending, gives its charge back to this key. Revealing gives ' +
        'the gateway’s operator that conversation. Exits 0 when the reply passed, 1 when it failed.',
    )
    .argument('<file>', 'the job’s evidence (JSON)')
    .option('--json', 'print the verdict as JSON');
  clientOptions(dispute)
    .addHelpText('after', helpAfter('Example:\n  nightjar chat --keep-evidence job.json "Hello"\n  nightjar dispute job.json'))
    .action((file: string, flags: DisputeFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./dispute.js')).disputeCommand(flags, file, ctx)),
    );
}

function defineProxy(program: Command, launch: Launch): void {
  const proxy = program
    .command('proxy')
    .summary('a local OpenAI-, Anthropic- and Ollama-compatible endpoint that encrypts end to end')
    .description(
      'Serves the OpenAI Chat Completions API (/v1/chat/completions, /v1/models), the Anthropic Messages ' +
        "API (/v1/messages) and Ollama's API (/api/chat, /api/generate, /api/tags) on a loopback port, for " +
        'any unmodified client. Every request is sealed end to end ' +
        'here, for agents this machine verified; replies are opened and their receipts checked here. The ' +
        'gateway sees ciphertext only; no prompt or reply is ever logged.',
    )
    .addOption(new Option('--port <n>', 'port to listen on (0 picks a free one)').argParser(port).default(8788))
    .option('--host <addr>', 'address to listen on (default 127.0.0.1; anything else needs a token)')
    .option('--token-file <file>', 'require the token in FILE (mode 0600; or env NIGHTJAR_PROXY_TOKEN) from callers, as their API key')
    .option('--token <token>', 'the same on the command line, where other users of this machine can see it (ps)')
    .addOption(new Option('--allow-origin <url>', 'let web pages from this origin call the proxy (repeatable)').argParser(collect))
    .addOption(
      new Option('--default-max-tokens <n>', 'max tokens when an OpenAI request names none (default 1024)').argParser(positiveInteger),
    );
  clientOptions(proxy)
    .addHelpText(
      'after',
      helpAfter('Then point a client at it:\n  OPENAI_BASE_URL=http://127.0.0.1:8788/v1      ANTHROPIC_BASE_URL=http://127.0.0.1:8788'),
    )
    .action((flags: ProxyFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./proxy-command.js')).proxyCommand(flags, ctx)));
}

function defineAudit(program: Command, launch: Launch): void {
  const audit = program
    .command('audit')
    .summary('send audit jobs like real traffic and check each reply against the model file here')
    .description(
      'Runs an auditor: sealed jobs from a prompt set, sent through the gateway as any client sends them ' +
        '(same envelope, padding and countersignature), at random gaps around --rate, greedy and sampled at ' +
        'several temperatures. Each reply is checked on this machine against --model-file (greedy replies ' +
        'against a reference run, every reply token by token), then revealed to the gateway, which re-checks ' +
        'it, records the verdict and strikes a cheating agent. No prompt or reply is printed. Exits 3 when an ' +
        'audit failed.',
    )
    .requiredOption('--model <id>', 'the model id to audit')
    .requiredOption('--model-file <path>', 'the GGUF file the gateway’s catalog lists for the model (its sha256 is checked)')
    .addOption(new Option('--rate <per-minute>', 'mean audits a minute (gaps are random around it)').argParser(decimal).default(2))
    .addOption(new Option('--jobs <n>', 'audits to send, then stop (default: until Ctrl-C)').argParser(positiveInteger))
    .option('--prompts <file>', 'prompts to draw from, JSON lines of {"prompt": …} or {"messages": […]} (default: a built-in set)')
    .addOption(new Option('--reveal <which>', 'which audits to reveal to the gateway').choices(['all', 'failed']).default('all'))
    .addOption(new Option('--threads <n>', 'CPU threads of the local check').argParser(positiveInteger))
    .option('--json', 'print one JSON line per audit and a summary line, instead of progress text');
  clientOptions(audit)
    .addHelpText(
      'after',
      helpAfter(
        'Example:\n  nightjar audit --gateway https://gw.example --api-key-file auditor.key --model llama-3.2-1b-instruct-q4_k_m \\\n' +
          '    --model-file ~/models/llama-3.2-1b-instruct-q4_k_m.gguf --rate 4 --jobs 100',
      ),
    )
    .action((flags: AuditFlags, cmd: Command) => launch(cmd, async (ctx) => (await import('./audit.js')).auditCommand(flags, ctx)));
}

function defineTrust(program: Command, launch: Launch): void {
  const trust = program
    .command('trust')
    .summary('the gateway keys this client pinned')
    .description('What this client trusts: the signing key of each gateway it used, pinned on first use.');
  trust
    .command('reset')
    .summary('forget a gateway’s pinned key, so the next use pins the key it signs with then')
    .description(
      'Forgets the pinned signing key of one gateway. Do this only once you trust the gateway’s new key: compare ' +
        'its fingerprint with `nightjar gateway key` on the gateway, or pass --gateway-key instead.',
    )
    .requiredOption('--gateway <url>', 'the gateway whose key to forget')
    .option('--data-dir <dir>', 'client data folder (env NIGHTJAR_CLIENT_DATA_DIR)')
    .action((flags: TrustResetFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./trust.js')).trustResetCommand(flags, ctx)),
    );
}

/** Adds the client's commands to `program`, and `offered` to the `models` command. */
export function defineClientCommands(program: Command, launch: Launch, models: Command): void {
  defineChat(program, launch);
  defineDispute(program, launch);
  defineProxy(program, launch);
  defineAudit(program, launch);
  defineTrust(program, launch);
  models
    .command('offered')
    // `models` takes an operand to name in its error (allowExcessArguments), which subcommands inherit.
    .allowExcessArguments(false)
    .summary('the models a gateway offers clients right now')
    .description(
      'Lists the models a gateway offers clients, with how many agents serve each and their free slots. ' +
        'Synthetic development models (random weights) are marked; clients refuse them unless allowed.',
    )
    .option('--gateway <url>', GATEWAY_HELP)
    .option('--api-key-file <file>', API_KEY_FILE_HELP)
    .option('--api-key <key>', API_KEY_HELP)
    .option('--json', 'print the list as JSON')
    .action((flags: ModelsOfferedFlags, cmd: Command) =>
      launch(cmd, async (ctx) => (await import('./models-offered.js')).modelsOfferedCommand(flags, ctx)),
    );
}
