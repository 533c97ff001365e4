/**
 * Flag value parsers and choice lists for the command table. The table loads this file for
 * `nightjar --help`, so it imports nothing but commander: the lists the layers own (log levels,
 * trust levels, synthetic shapes) are repeated here, and test/cli/flags.test.ts checks that each
 * equals its layer's.
 */
import { InvalidArgumentError, type Command } from 'commander';

/** The gateway a client command talks to unless told otherwise. */
export const DEFAULT_GATEWAY = 'http://127.0.0.1:8787';

/** The database file of `nightjar gateway`, relative to the working directory. */
export const DEFAULT_DB = 'nightjar-gateway.db';

/** `--log-level` choices: src/shared's LOG_LEVELS. */
export const LOG_LEVEL_CHOICES = ['debug', 'info', 'warn', 'error'] as const;

/** `--min-trust` choices: src/shared's TRUST_LEVELS. */
export const TRUST_LEVEL_CHOICES = ['signed', 'attested'] as const;

/** `models synth --shape` choices: the agent's SYNTHETIC_SHAPES. */
export const SYNTHETIC_SHAPE_CHOICES = ['tiny', 'mini-q8_0', 'mini-q4_0', '1b-q8_0', '1b-q4_0'] as const;

/** A parser of whole numbers from `min` to `max`; a usage error naming the flag otherwise. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`It must be a whole number ${range}.`);
    }
    return n;
  };
}

/** A TCP port: 0 (any free port) to 65535. */
export const port = integer(0, 65_535);

/** A whole number of 1 or more. */
export const positiveInteger = integer(1);

/** A finite number. */
export function decimal(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('It must be a number.');
  return n;
}

/** Collects a repeatable flag's values, in order. */
export function collect(value: string, previous: readonly string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * For a command that runs itself when no subcommand is named (`nightjar keys`, `nightjar
 * gateway`): an operand is a misspelt subcommand, a usage error.
 */
export function noOperands(cmd: Command): void {
  if (cmd.args.length > 0) cmd.error(`unknown command '${cmd.args[0]}'`, { code: 'commander.unknownCommand' });
}

/**
 * Help text after the generated help: a blank line, then `paragraphs` wrapped at 100 columns
 * (lines that start with spaces, such as examples, are kept as they are).
 */
export function helpAfter(...paragraphs: string[]): string {
  const wrap = (text: string): string => {
    if (text.startsWith(' ')) return text;
    const lines: string[] = [];
    let line = '';
    for (const word of text.split(' ')) {
      if (line && line.length + 1 + word.length > 100) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    return [...lines, line].join('\n');
  };
  return '\n' + paragraphs.map((p) => p.split('\n').map(wrap).join('\n')).join('\n\n');
}

/**
 * Commands whose flags come before their subcommands' names (enablePositionalOptions): their
 * flags are not listed as inherited under the subcommands' help.
 */
export const POSITIONAL_OPTIONS = new WeakSet<Command>();
