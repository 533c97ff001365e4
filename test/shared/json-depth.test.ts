/**
 * The JSON depth scan that runs before JSON.parse (src/shared/protocol/json-depth.ts): it agrees
 * with the real depth of any value JSON.stringify writes, as a string and as UTF-8 bytes, stops
 * early past its bound, and never throws on text that is not JSON. decodeMessage refuses a frame
 * nested too deep before it parses it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LIMITS, ProtocolError, agentFrameSchema, decodeMessage, jsonDepth, jsonTooDeep, utf8 } from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';

/** The depth of a parsed value: scalars 0, each array or object one more than its deepest child. */
function realDepth(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  const children = Array.isArray(value) ? value : Object.values(value as Record<string, unknown>);
  return 1 + children.reduce<number>((max, child) => Math.max(max, realDepth(child)), 0);
}

/** Random JSON values, strings full of quotes, backslashes and brackets included. */
const tricky = fc.string({ unit: fc.constantFrom('"', '\\', '[', ']', '{', '}', 'a', 'é', '😀', '\n', '\u0000') });
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string(),
    tricky,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.string(), tricky), tie('value'), { maxKeys: 4 }),
  ),
})).value;

describe('jsonDepth', () => {
  it('agrees with the real depth of every JSON.stringify output, as text and as UTF-8 bytes', () => {
    fc.assert(
      fc.property(json, (value) => {
        const text = JSON.stringify(value);
        const depth = realDepth(JSON.parse(text));
        expect(jsonDepth(text)).toBe(depth);
        expect(jsonDepth(utf8(text))).toBe(depth);
        expect(jsonTooDeep(text, depth)).toBe(false);
        if (depth > 0) expect(jsonTooDeep(text, depth - 1)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('agrees on values nested far deeper than the bound', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), fc.constantFrom('[', '{"k":'), (n, open) => {
        const close = open === '[' ? ']' : '}';
        const text = open.repeat(n) + '1' + close.repeat(n);
        expect(jsonDepth(text)).toBe(n);
        expect(jsonTooDeep(text, LIMITS.maxJsonDepth)).toBe(n > LIMITS.maxJsonDepth);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws on random strings and bytes, and never answers below 0', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), tricky), fc.uint8Array(), (text, bytes) => {
        expect(jsonDepth(text)).toBeGreaterThanOrEqual(0);
        expect(jsonDepth(bytes)).toBeGreaterThanOrEqual(0);
        expect(typeof jsonTooDeep(text, 3)).toBe('boolean');
      }),
      { numRuns: 5000 },
    );
  });

  it('stops reading once past its bound', () => {
    // 5 MiB of `[`: the scan stops at level 65, long before the end.
    const text = '['.repeat(5 * 1024 * 1024);
    expect(jsonDepth(text, 64)).toBe(65);
  });
});

describe('decodeMessage and depth', () => {
  it('refuses a frame nested deeper than the bound before parsing it (NJ_FRAME_INVALID)', async () => {
    // Fails without the depth scan in decodeMessage: JSON.parse reads the frame and the schema
    // answers "agent frame is invalid at …" instead.
    const deep = `{"v":1,"type":"hello","bundle":${'['.repeat(20)}${']'.repeat(20)}}`;
    const nested = `{"v":1,"type":"hello","bundle":${'['.repeat(LIMITS.maxJsonDepth)}${']'.repeat(LIMITS.maxJsonDepth)}}`;
    await expectNjError(
      () => decodeMessage(agentFrameSchema, nested, 1 << 20, 'agent frame'),
      ProtocolError,
      'NJ_FRAME_INVALID',
      `agent frame nests deeper than ${LIMITS.maxJsonDepth} levels`,
    );
    await expectNjError(
      () => decodeMessage(agentFrameSchema, utf8(deep), 1 << 20, 'agent frame', 8),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'agent frame nests deeper than 8 levels',
    );
  });
});
