/**
 * Structured logging, one JSON object per line. Loggers are handed in, never global. Fields are
 * for metadata (ids, sizes, codes, timings): never put prompt text, reply text, keys or tokens in
 * a log line; the privacy tests read every line.
 */

/** Severity, least first. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Metadata attached to a line. */
export type LogFields = Readonly<Record<string, string | number | boolean | null | undefined>>;

/** A structured logger. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Receives each line, without a trailing newline. */
  write: (line: string) => void;
  /** Lowest level written. Defaults to 'info'. */
  level?: LogLevel;
  /** Fields on every line. Defaults to none. */
  base?: LogFields;
  /** Time source in milliseconds. Defaults to Date.now. */
  now?: () => number;
}

/** A logger that writes JSON lines through `options.write`. */
export function createLogger(options: LoggerOptions): Logger {
  const min = ORDER[options.level ?? 'info'];
  const now = options.now ?? Date.now;
  const make = (base: LogFields): Logger => {
    const emit = (level: LogLevel, message: string, fields?: LogFields): void => {
      if (ORDER[level] < min) return;
      options.write(JSON.stringify({ time: new Date(now()).toISOString(), level, msg: message, ...base, ...fields }));
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(options.base ?? {});
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger({ write: () => undefined, level: 'error' });
