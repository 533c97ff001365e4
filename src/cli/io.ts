/**
 * What a command may touch — the command context — handed in so tests can drive commands
 * in-process. This file loads src/node (pino), so only a command's action loads it, never
 * `nightjar --help`.
 */
import { createLogger } from '../node/index.js';
import { systemClock, type Clock, type LogLevel, type Logger } from '../shared/index.js';

/** The standard streams, environment and working directory of one command run. */
export interface CommandIo {
  stdout: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  stderr: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  stdin: AsyncIterable<string | Uint8Array> & { isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  /** Working directory relative paths resolve against. */
  cwd: string;
  /** Opens a URL in the browser; resolves false if it could not. Defaults to `open` / `xdg-open`. */
  openUrl?: (url: string) => Promise<boolean>;
  /** fetch of the client commands. Defaults to the client's nodeFetch (node:http). */
  fetch?: typeof fetch;
}

/** What the process (run.ts) or a test hands main(): the io, the stop signal and the clock. */
export interface CliIo extends CommandIo {
  /** Aborted on Ctrl-C / SIGTERM: long-running commands shut down gracefully. */
  signal: AbortSignal;
  /** Time source. Defaults to the system clock. */
  clock?: Clock;
}

/** The one context every command is handed. */
export interface CommandContext {
  readonly io: CommandIo;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands shut down gracefully. */
  readonly signal: AbortSignal;
  readonly clock: Clock;
  /**
   * A logger for the terminal, its lines tagged `name`, at `level` (by default the run's
   * `--log-level`), JSON lines under `--log-json`.
   */
  logger(name?: string, level?: LogLevel): Logger;
}

/** The run-wide logging flags. */
export interface LogFlags {
  /** Defaults to 'info'. */
  logLevel?: LogLevel;
  /** JSON lines instead of text. Defaults to false. */
  logJson?: boolean;
}

/** The context of one run: `io`, its signal and clock, and loggers as the flags ask. */
export function commandContext(io: CliIo, flags: LogFlags = {}): CommandContext {
  const clock = io.clock ?? systemClock;
  return {
    io,
    signal: io.signal,
    clock,
    logger: (name, level) => terminalLogger(io, { level: level ?? flags.logLevel, json: flags.logJson, name, now: () => clock.now() }),
  };
}

/** Options of {@link terminalLogger}. */
export interface TerminalLoggerOptions {
  /** Lowest level written. Defaults to 'info'. */
  level?: LogLevel | undefined;
  /** JSON lines (for log collectors) instead of text for people. Defaults to false. */
  json?: boolean | undefined;
  /** Component tag of every line. Defaults to none. */
  name?: string | undefined;
  /** Time source in milliseconds. Defaults to Date.now. */
  now?: () => number;
}

function fieldText(value: unknown): string {
  const text = typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
  return /\s/.test(text) ? JSON.stringify(text) : text;
}

/**
 * A logger for people at a terminal, on stderr: `HH:MM:SS level component: message key=value…`
 * (UTC); JSON lines when `json` is set. Both are written by src/node's pino logger, so secrets are
 * redacted by field name in both.
 */
export function terminalLogger(io: Pick<CommandIo, 'stderr'>, options: TerminalLoggerOptions = {}): Logger {
  return createLogger({
    level: options.level ?? 'info',
    base: options.name === undefined ? undefined : { component: options.name },
    now: options.now,
    write: (line) => {
      if (options.json) {
        io.stderr.write(line + '\n');
        return;
      }
      const { time, level, msg, component, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${fieldText(v)}`)
        .join(' ');
      const clock = String(time).slice(11, 19);
      const tag = component ? `${String(component)}: ` : '';
      io.stderr.write(`${clock} ${String(level).padEnd(5)} ${tag}${String(msg)}${fields ? '  ' + fields : ''}\n`);
    },
  });
}

/** Resolves once `signal` aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
