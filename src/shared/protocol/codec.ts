/**
 * Decoding at the boundary: size first, then JSON, then version, then schema. Errors name the
 * offending field but never echo its value (values may be ciphertext or, on a client, a prompt).
 */
import type { z } from 'zod';
import { ProtocolError } from '../errors.js';
import { jsonTooDeep } from './json-depth.js';
import { LIMITS, PROTOCOL_VERSION } from './limits.js';

/** Longest description {@link describeIssues} returns: well inside an error frame's message limit. */
const MAX_DESCRIPTION = 256;

/**
 * A short description of the first schema violation: path and rule, no values. An unknown field
 * is named, and since the peer chose that name, the description is cut to a bounded length.
 */
export function describeIssues(error: z.ZodError): string {
  const first = error.issues[0];
  if (!first) return 'invalid';
  const where = first.path.length ? first.path.join('.') : '(root)';
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more)` : '';
  const text = `${where}: ${first.message}${more}`;
  if (text.length <= MAX_DESCRIPTION) return text;
  // Never cut between the halves of a surrogate pair.
  let cut = MAX_DESCRIPTION - 1;
  const last = text.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--;
  return text.slice(0, cut) + '…';
}

/** Validates an already-parsed value against a schema, throwing NJ_FRAME_INVALID. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new ProtocolError('NJ_FRAME_INVALID', `${what} is invalid at ${describeIssues(result.error)}`);
  }
  return result.data;
}

/**
 * Parses one JSON message: rejects it if longer than `maxBytes` (NJ_FRAME_TOO_LARGE), if it
 * nests deeper than `maxDepth` (NJ_FRAME_INVALID, found by a byte scan before JSON.parse runs),
 * if not JSON or not matching `schema` (NJ_FRAME_INVALID), or if its `v` is not this protocol's
 * version (NJ_PROTOCOL_VERSION). `maxDepth` defaults to LIMITS.maxJsonDepth (64).
 */
export function decodeMessage<S extends z.ZodType>(
  schema: S,
  data: string | Uint8Array,
  maxBytes: number,
  what: string,
  maxDepth: number = LIMITS.maxJsonDepth,
): z.output<S> {
  const size = typeof data === 'string' ? byteLengthUtf8(data) : data.byteLength;
  if (size > maxBytes) {
    throw new ProtocolError('NJ_FRAME_TOO_LARGE', `${what} is ${size} bytes; the limit is ${maxBytes}`);
  }
  if (jsonTooDeep(data, maxDepth)) {
    throw new ProtocolError('NJ_FRAME_INVALID', `${what} nests deeper than ${maxDepth} levels`);
  }
  let value: unknown;
  try {
    // Bytes that are not UTF-8 are not JSON text (RFC 8259 §8.1); never repair them silently.
    value = JSON.parse(typeof data === 'string' ? data : strictUtf8.decode(data));
  } catch {
    throw new ProtocolError('NJ_FRAME_INVALID', `${what} is not JSON`);
  }
  if (typeof value === 'object' && value !== null && 'v' in value && value.v !== PROTOCOL_VERSION) {
    const got = (value as { v: unknown }).v;
    throw new ProtocolError(
      'NJ_PROTOCOL_VERSION',
      `${what} speaks protocol ${typeof got === 'number' ? got : '?'}; this side speaks ${PROTOCOL_VERSION}`,
    );
  }
  return validate(schema, value, what);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * UTF-8 byte length of a string without allocating, as TextEncoder would encode it: a surrogate
 * pair is 4 bytes, a lone surrogate becomes U+FFFD (3 bytes).
 */
export function byteLengthUtf8(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isLowSurrogate(text.charCodeAt(i + 1))) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}
