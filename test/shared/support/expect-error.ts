/**
 * The one way these tests check a failure: class, code and message together (CONVENTIONS.md
 * "Errors carry stable codes"). A test that only checked "it threw" would keep passing if a
 * protection were replaced by some unrelated failure further down.
 */
import { expect } from 'vitest';
import { NightjarError, type ErrorCode } from '../../../src/shared/index.js';

/** A NightjarError subclass (or NightjarError itself). */
export type ErrorClass = abstract new (...args: never[]) => NightjarError;

/**
 * Runs `fn` (sync or async) and asserts that it throws an instance of exactly `cls` with `code`
 * and a message equal to `message` (or matching it, for a RegExp). Returns the error.
 */
export async function expectNjError(fn: () => unknown, cls: ErrorClass, code: ErrorCode, message: string | RegExp): Promise<NightjarError> {
  let thrown: unknown = undefined;
  let threw = false;
  try {
    await fn();
  } catch (error) {
    threw = true;
    thrown = error;
  }
  expect(threw, `expected ${cls.name} ${code}, but nothing was thrown`).toBe(true);
  expect(thrown).toBeInstanceOf(NightjarError);
  const error = thrown as NightjarError;
  expect({ class: error.constructor.name, code: error.code, message: error.message }).toEqual({
    class: cls.name,
    code,
    message: typeof message === 'string' ? message : expect.stringMatching(message),
  });
  return error;
}

/** Every message and cause in an error's chain, for checking that none echoes a value. */
export function errorChainText(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    if (current instanceof Error) {
      parts.push(current.message, current.stack ?? '');
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.join('\n');
}
