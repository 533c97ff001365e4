/**
 * The command table's root: the `nightjar` program with its run-wide flags, generated help and
 * usage errors, and the areas' commands. Loading it loads commander and the tables only; each
 * command's action imports its body (and so its layer) when it runs.
 */
import { Command, Option, type Help } from 'commander';
import { defineAgentCommands } from './agent/commands.js';
import { defineClientCommands } from './client/commands.js';
import { LOG_LEVEL_CHOICES, POSITIONAL_OPTIONS, helpAfter } from './flags.js';
import { defineGatewayCommands } from './gateway/commands.js';
import type { CommandContext, CommandIo } from './io.js';
import { packageVersion } from './package-info.js';

/**
 * Runs a command's body in the run's context and records its exit code; every action of the
 * table hands its body to it.
 */
export type Launch = (command: Command, body: (ctx: CommandContext) => Promise<number>) => Promise<void>;

/** The width help is wrapped to: the terminal's, or 100 columns when writing to a file or pipe. */
function helpWidth(stream: CommandIo['stdout']): number {
  return stream.isTTY && stream.columns ? Math.min(stream.columns, 120) : 100;
}

/**
 * The flags a command takes from its parents, listed under its help: theirs but --version,
 * except those of a parent whose flags come before its subcommands' names.
 */
function inheritedOptions(cmd: Command): Option[] {
  const options: Option[] = [];
  for (let parent = cmd.parent; parent; parent = parent.parent) {
    if (!POSITIONAL_OPTIONS.has(parent)) options.push(...parent.options.filter((o) => !o.hidden && o.long !== '--version'));
  }
  return options;
}

/** The `nightjar` program for one run, writing to `io`, its actions running through `launch`. */
export function nightjarProgram(io: Pick<CommandIo, 'stdout' | 'stderr'>, launch: Launch): Command {
  const program = new Command('nightjar')
    .description(
      'Nightjar: a private inference network on idle Macs. Requests are sealed for the Mac that serves ' +
        'them; the gateway relays ciphertext.',
    )
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void io.stdout.write(text),
      writeErr: (text) => void io.stderr.write(text),
      // main() prints usage errors in the NJ_ format.
      outputError: () => undefined,
      getOutHelpWidth: () => helpWidth(io.stdout),
      getErrHelpWidth: () => helpWidth(io.stderr),
    })
    .configureHelp({ showGlobalOptions: true, visibleGlobalOptions: inheritedOptions } satisfies Partial<Help>)
    .showSuggestionAfterError()
    .addOption(new Option('--log-level <level>', 'lowest level of log lines written').choices(LOG_LEVEL_CHOICES).default('info'))
    .option('--log-json', 'log JSON lines (for log collectors) instead of text')
    .version(`nightjar ${packageVersion()}`, '-V, --version', 'print the version')
    .addHelpText('after', helpAfter('Run nightjar <command> --help for a command’s options.'));
  program.commandsGroup('Provider (this machine serves):');
  const { models } = defineAgentCommands(program, launch);
  program.commandsGroup('Client:');
  defineClientCommands(program, launch, models);
  program.commandsGroup('Gateway:');
  defineGatewayCommands(program, launch);
  program.commandsGroup('Other:').helpCommand('help [command]', 'show a command’s help');
  program
    .command('version')
    .description('print the version')
    .action(() => void io.stdout.write(`nightjar ${packageVersion()}\n`));
  return program;
}
