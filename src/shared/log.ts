/**
 * Structured logging, one JSON object per line. Loggers are handed in, never global. Fields are
 * for metadata (ids, sizes, codes, timings): never put prompt text, reply text, keys or tokens in
 * a log line; the privacy tests read every line.
 */

/** Severity, least first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
/** A severity. */
export type LogLevel = (typeof LOG_LEVELS)[number];

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

/** A logger that drops everything. (Lines are written by src/node's pino logger.) */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
