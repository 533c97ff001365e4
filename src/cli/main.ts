/**
 * The `nightjar` command: the composition root. It parses the command line with commander against
 * the command table (program.ts) and runs one command. It loads nothing but commander and the
 * table: each command's action imports its body, and so its layer, when it runs, so
 * `nightjar --help` and `nightjar version` load no layer at all.
 */
import { CommanderError, type Command } from 'commander';
import type { CliIo, LogFlags } from './io.js';
import { nightjarProgram } from './program.js';

/** Commander's outcomes that are not errors: help or the version, as asked. */
const ANSWERED = new Set(['commander.helpDisplayed', 'commander.version']);

/**
 * Runs the command line `argv` (without the node and script paths) with `io`; resolves with the
 * exit code: 0, 1 for a failure (a NightjarError's code and hint on stderr), 2 for a usage error.
 * Never throws, never exits the process, and writes only to `io`.
 */
export async function main(argv: string[], io: CliIo): Promise<number> {
  let code = 0;
  const program = nightjarProgram(io, async (command: Command, body) => {
    const { commandContext } = await import('./io.js');
    code = await body(commandContext(io, command.optsWithGlobals<LogFlags>()));
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (ANSWERED.has(err.code)) return 0;
      // `nightjar help` is an answer; help printed for a missing command (`nightjar`) is not.
      if (err.code === 'commander.help') return err.exitCode === 0 ? 0 : 2;
    }
    const { asNightjarError, errorText, exitCodeOf, usageError } = await import('./errors.js');
    const e = err instanceof CommanderError ? usageError(err.message) : asNightjarError(err);
    io.stderr.write(errorText(e));
    return exitCodeOf(e);
  }
}
