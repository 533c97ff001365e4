/**
 * The error registry (src/shared/errors.ts) and the page that documents it (docs/errors.md),
 * walked code by code, in the manner of fastify's error-code table test.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  CryptoError,
  ERROR_CODES,
  NightjarError,
  ProtocolError,
  errorFromPayload,
  isErrorCode,
  type ErrorCode,
} from '../../src/shared/index.js';

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];
const DOC = readFileSync(path.resolve(import.meta.dirname, '../../docs/errors.md'), 'utf8');

/** The rows of the first table in docs/errors.md whose first cell is a code. */
function documentedRows(): { code: string; status: number; when: string; what: string }[] {
  return DOC.split('\n')
    .filter((line) => line.startsWith('| `NJ_'))
    .map((line) => {
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
      expect(cells, line).toHaveLength(4);
      return { code: cells[0]!.replace(/`/g, ''), status: Number(cells[1]), when: cells[2]!, what: cells[3]! };
    });
}

describe('the registry', () => {
  it.each(CODES)('%s has a stable name, an HTTP status and a hint that says what to do', (code) => {
    const info = ERROR_CODES[code];
    expect(code).toMatch(/^NJ_[A-Z_]+$/);
    expect(Number.isInteger(info.status) && info.status >= 400 && info.status <= 599).toBe(true);
    expect(info.hint).toMatch(/^[A-Z`].*\.$/);
    expect(info.hint.length).toBeLessThan(120);
  });

  // Append only: a code that clients and dashboards match on must never disappear or be renamed.
  // Add new codes to this list; never remove one.
  it('still holds every code ever released', () => {
    const released = [
      'NJ_PROTOCOL_VERSION',
      'NJ_FRAME_INVALID',
      'NJ_FRAME_TOO_LARGE',
      'NJ_FRAME_UNEXPECTED',
      'NJ_BAD_REQUEST',
      'NJ_PAYLOAD_TOO_LARGE',
      'NJ_DECRYPT_FAILED',
      'NJ_BAD_SIGNATURE',
      'NJ_BAD_KEY',
      'NJ_BUNDLE_INVALID',
      'NJ_NOT_A_RECIPIENT',
      'NJ_HEADER_MISMATCH',
      'NJ_STALE_REQUEST',
      'NJ_REPLAY',
      'NJ_CHUNK_SEQUENCE',
      'NJ_STREAM_TRUNCATED',
      'NJ_RECEIPT_INVALID',
      'NJ_TRUST_POLICY',
      'NJ_PINNED_KEY_CHANGED',
      'NJ_CATALOG_INVALID',
      'NJ_GATEWAY_KEY_MISMATCH',
      'NJ_DIRECTORY_INVALID',
      'NJ_RELEASES_INVALID',
      'NJ_AUTH_FAILED',
      'NJ_AUTH_TIMEOUT',
      'NJ_AGENT_REPLACED',
      'NJ_MODEL_UNKNOWN',
      'NJ_NO_CAPACITY',
      'NJ_DUPLICATE_JOB',
      'NJ_AGENT_FAILED',
      'NJ_JOB_TIMEOUT',
      'NJ_CANCELLED',
      'NJ_DECLINED',
      'NJ_GATEWAY_UNREACHABLE',
      'NJ_SHUTTING_DOWN',
      'NJ_MODEL_NOT_SERVED',
      'NJ_MODEL_LOAD_FAILED',
      'NJ_MODEL_FILE_INVALID',
      'NJ_CONTEXT_OVERFLOW',
      'NJ_ENGINE_BUSY',
      'NJ_ENGINE_FAILED',
      'NJ_CONFIG_INVALID',
      'NJ_USAGE',
      'NJ_INTERNAL',
      'NJ_PROXY_UNAUTHORIZED',
      'NJ_PROXY_FORBIDDEN',
      'NJ_UNSUPPORTED_FEATURE',
      'NJ_KEYCHAIN_UNAVAILABLE',
      'NJ_KEY_FILE_INSECURE',
      'NJ_MODEL_NOT_INSTALLED',
      'NJ_MODEL_DOES_NOT_FIT',
      'NJ_DISK_FULL',
      'NJ_DOWNLOAD_FAILED',
      'NJ_CONTROL_UNAUTHORIZED',
      'NJ_CONTROL_FORBIDDEN',
      'NJ_AGENT_NOT_RUNNING',
      'NJ_UNAUTHORIZED',
      'NJ_RATE_LIMITED',
      'NJ_INSUFFICIENT_FUNDS',
      'NJ_MODEL_UNPRICED',
      'NJ_ENROLL_INVALID',
      'NJ_NOT_FOUND',
    ];
    for (const code of released) expect(CODES, code).toContain(code);
  });

  it('isErrorCode accepts registered codes only, not inherited property names', () => {
    for (const code of CODES) expect(isErrorCode(code)).toBe(true);
    for (const other of ['NJ_NOPE', 'toString', '__proto__', 'constructor', '', 42, null, undefined])
      expect(isErrorCode(other)).toBe(false);
  });
});

describe('NightjarError', () => {
  it.each(CODES)('carries %s with its hint and status', (code) => {
    const error = new NightjarError(code, 'particulars');
    expect(error).toBeInstanceOf(Error);
    expect({ name: error.name, code: error.code, message: error.message, hint: error.hint, status: error.status }).toEqual({
      name: 'NightjarError',
      code,
      message: 'particulars',
      hint: ERROR_CODES[code].hint,
      status: ERROR_CODES[code].status,
    });
  });

  it('names its subclasses', () => {
    expect(new ProtocolError('NJ_FRAME_INVALID', 'x').name).toBe('ProtocolError');
    expect(new CryptoError('NJ_DECRYPT_FAILED', 'x')).toBeInstanceOf(NightjarError);
    expect(new CryptoError('NJ_DECRYPT_FAILED', 'x').name).toBe('CryptoError');
  });

  // Fails if toJSON (the wire form) starts including the cause, which may hold plaintext.
  it('sends code, message and retryAfterMs, never the cause, the hint or the stack', () => {
    const cause = new Error('CANARY secret key material');
    const error = new CryptoError('NJ_DECRYPT_FAILED', 'the request body does not decrypt', { cause, retryAfterMs: 250 });
    expect(error.cause).toBe(cause);
    expect(error.toJSON()).toEqual({ code: 'NJ_DECRYPT_FAILED', message: 'the request body does not decrypt', retryAfterMs: 250 });
    expect(JSON.stringify(error)).not.toContain('CANARY');
    expect(JSON.stringify({ error })).toBe(
      '{"error":{"code":"NJ_DECRYPT_FAILED","message":"the request body does not decrypt","retryAfterMs":250}}',
    );
    expect(new NightjarError('NJ_REPLAY', 'seen').toJSON()).toEqual({ code: 'NJ_REPLAY', message: 'seen' });
    expect('cause' in new NightjarError('NJ_REPLAY', 'seen')).toBe(false);
  });

  it('is rebuilt from its wire form, and an unknown code becomes NJ_FRAME_INVALID', () => {
    const original = new NightjarError('NJ_NO_CAPACITY', 'all busy', { retryAfterMs: 1500 });
    const rebuilt = errorFromPayload(original.toJSON());
    expect({ code: rebuilt.code, message: rebuilt.message, retryAfterMs: rebuilt.retryAfterMs, status: rebuilt.status }).toEqual({
      code: 'NJ_NO_CAPACITY',
      message: 'all busy',
      retryAfterMs: 1500,
      status: 503,
    });
    const unknown = errorFromPayload({ code: 'NJ_FROM_THE_FUTURE', message: 'new' });
    expect({ code: unknown.code, message: unknown.message, retryAfterMs: unknown.retryAfterMs }).toEqual({
      code: 'NJ_FRAME_INVALID',
      message: 'new',
      retryAfterMs: undefined,
    });
  });
});

describe('docs/errors.md', () => {
  it('lists every code once, in registry order, with its status and, as what to do, its hint', () => {
    const rows = documentedRows();
    expect(rows.map((r) => r.code)).toEqual(CODES);
    for (const row of rows) {
      const info = ERROR_CODES[row.code as ErrorCode];
      expect({ code: row.code, status: row.status, what: row.what }).toEqual({ code: row.code, status: info.status, what: info.hint });
      expect(row.when.length, `${row.code}: say when it happens`).toBeGreaterThan(30);
      expect(row.when, row.code).toMatch(/\.$/);
    }
  });

  it('lists every WebSocket close code', () => {
    for (const code of Object.values(CLOSE_CODES)) expect(DOC).toMatch(new RegExp(`^\\| ${code} \\| `, 'm'));
  });
});
