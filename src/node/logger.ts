/**
 * The Logger of src/shared, written by pino: one JSON object per line, `time` (ISO 8601), `level`
 * (its name), `msg`, then the fields. Secrets are redacted by field name before a line is written,
 * whatever code logged them — a safety net under the rule that no secret, prompt or reply text is
 * ever put in a log line (the privacy tests read every line).
 */
import pino from 'pino';
import type { LogFields, LogLevel, Logger } from '../shared/index.js';

/** Field names whose values never reach a log line. */
export const REDACTED_FIELDS: readonly string[] = [
  'authorization',
  'apiKey',
  'token',
  'enrollToken',
  'ticket',
  'secret',
  'secretKey',
  'password',
  'cookie',
  'prompt',
  'messages',
];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Receives each line, without its trailing newline. Required. */
  write: (line: string) => void;
  /** Lowest level written. Defaults to 'info'. */
  level?: LogLevel;
  /** Fields on every line. Defaults to none. */
  base?: LogFields;
  /** Time source in milliseconds. Defaults to Date.now. */
  now?: () => number;
  /** Field names redacted on every line, besides {@link REDACTED_FIELDS}. Defaults to none. */
  redact?: readonly string[];
}

/** The censor that replaces a redacted value. */
export const REDACTED = '[redacted]';

function adapt(p: pino.Logger): Logger {
  const at =
    (level: LogLevel) =>
    (message: string, fields?: LogFields): void => {
      if (fields) p[level](fields, message);
      else p[level](message);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => adapt(p.child(fields)),
  };
}

/** A logger that writes JSON lines through `options.write`, on pino. */
export function createLogger(options: LoggerOptions): Logger {
  const now = options.now ?? Date.now;
  const fields = [...REDACTED_FIELDS, ...(options.redact ?? [])];
  const destination = {
    write(chunk: string): void {
      options.write(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk);
    },
  };
  const p = pino(
    {
      level: options.level ?? 'info',
      base: options.base ? { ...options.base } : null,
      timestamp: () => `,"time":"${new Date(now()).toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      // Top-level fields and the same names one level down (an error's or a request's fields).
      redact: { paths: [...fields, ...fields.map((f) => `*.${f}`)], censor: REDACTED },
    },
    destination,
  );
  return adapt(p);
}
