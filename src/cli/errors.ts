/**
 * Errors as the command prints them: `error NJ_CODE: message`, then the code's hint on the next
 * line. Loaded only when a command runs or fails, never by `nightjar --help`.
 */
import { NightjarError } from '../shared/index.js';

/** `err` as a NightjarError: itself, or NJ_INTERNAL (a bug) carrying its message. */
export function asNightjarError(err: unknown): NightjarError {
  if (err instanceof NightjarError) return err;
  return new NightjarError('NJ_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}

/** A usage error (exit 2) with commander's message, without its "error: " prefix. */
export function usageError(message: string): NightjarError {
  return new NightjarError('NJ_USAGE', message.replace(/^error: /, ''));
}

/** The lines printed for `e` on stderr. */
export function errorText(e: NightjarError): string {
  return `error ${e.code}: ${e.message}\n  ${e.hint}\n`;
}

/** The exit code of a failed command: 2 for a usage error, 1 otherwise. */
export function exitCodeOf(e: NightjarError): number {
  return e.code === 'NJ_USAGE' ? 2 : 1;
}
