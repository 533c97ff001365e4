/**
 * What a command may touch, handed in so tests can drive commands in-process.
 */
import { createLogger } from '../node/index.js';
import type { LogLevel, Logger } from '../shared/index.js';

/** Standard streams, environment and the stop signal of one command run. */
export interface CliIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  stdin: AsyncIterable<string | Uint8Array> & { isTTY?: boolean };
  env: Readonly<Record<string, string | undefined>>;
  /** Working directory relative paths resolve against. */
  cwd: string;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands shut down gracefully. */
  signal: AbortSignal;
  /** Opens a URL in the browser; resolves false if it could not. Defaults to `open` / `xdg-open`. */
  openUrl?: (url: string) => Promise<boolean>;
}

const LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Parses a --log-level value. */
export function logLevel(value: string | undefined, fallback: LogLevel = 'info'): LogLevel {
  if (value === undefined) return fallback;
  if ((LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new Error(`--log-level must be one of ${LEVELS.join(', ')}`);
}

/**
 * A logger for people at a terminal: `HH:MM:SS level message key=value…`; JSON lines when
 * `json` is set (for log collectors).
 */
export function terminalLogger(io: CliIo, options: { level?: LogLevel; json?: boolean; name?: string } = {}): Logger {
  return createLogger({
    level: options.level ?? 'info',
    ...(options.name ? { base: { component: options.name } } : {}),
    write: (line) => {
      if (options.json) {
        io.stderr.write(line + '\n');
        return;
      }
      const { time, level, msg, component, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const fields = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`)
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
