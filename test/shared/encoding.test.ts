/**
 * Byte encodings: base64url, hex, UTF-8 and the canonical JSON that every signature and digest is
 * computed over. Expected strings are written out by hand (RFC 4648 §10, RFC 8785 §3.2.3), not
 * produced by the code under test.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ProtocolError,
  bytesEqual,
  canonicalJson,
  concatBytes,
  fromBase64Url,
  fromHex,
  fromUtf8,
  signingBytes,
  toBase64Url,
  toHex,
  u32be,
  utf8,
  type CanonicalValue,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

describe('base64url', () => {
  // RFC 4648 §10 test vectors, unpadded (§3.2 allows omitting padding; we always do).
  it.each([
    ['', ''],
    ['f', 'Zg'],
    ['fo', 'Zm8'],
    ['foo', 'Zm9v'],
    ['foob', 'Zm9vYg'],
    ['fooba', 'Zm9vYmE'],
    ['foobar', 'Zm9vYmFy'],
  ])('encodes %j as %j and back (RFC 4648 §10)', (plain, encoded) => {
    expect(toBase64Url(ascii(plain))).toBe(encoded);
    expect(fromBase64Url(encoded)).toEqual(ascii(plain));
  });

  it('uses the URL alphabet: - and _ where base64 has + and /', () => {
    expect(toBase64Url(new Uint8Array([0xfb, 0xff, 0xbf]))).toBe('-_-_');
    expect(toBase64Url(new Uint8Array([0xff]))).toBe('_w');
    expect(toBase64Url(new Uint8Array([0xff, 0xff]))).toBe('__8');
    expect(fromBase64Url('-_-_')).toEqual(new Uint8Array([0xfb, 0xff, 0xbf]));
  });

  it('agrees with Node’s independent encoder on random bytes, and round-trips', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const text = toBase64Url(bytes);
        expect(text).toBe(Buffer.from(bytes).toString('base64url'));
        expect(fromBase64Url(text)).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it.each([
    ['Zg==', 'padding'],
    ['Zm8=', 'padding'],
    ['+/+/', 'the standard alphabet'],
    ['Zm 9', 'a space'],
    ['Zm\n9', 'a newline'],
    ['Zm\u00e99', 'a non-ASCII letter'],
    ['Zm\u01009', 'a character above U+00FF'],
  ])('rejects %j (%s) as outside the alphabet', async (text) => {
    await expectNjError(
      () => fromBase64Url(text),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'base64url text has a character outside its alphabet',
    );
  });

  it.each(['Z', 'Zm9vY', 'Zm9v=', 'Zm9vYmFy\n'])('rejects %j: no byte string encodes to that length', async (text) => {
    await expectNjError(() => fromBase64Url(text), ProtocolError, 'NJ_FRAME_INVALID', 'base64url text has an impossible length');
  });

  // Each byte string has exactly one encoding: stray low bits in the last character are refused,
  // so an attacker cannot make two different strings that name the same key or id.
  it.each([
    ['Zh', 'Zg'],
    ['Zm9', 'Zm8'],
    ['Zm9vYh', 'Zm9vYg'],
    ['AB', 'AA'],
    ['AAB', 'AAA'],
  ])('rejects non-canonical %j (the canonical form is %j)', async (text, canonical) => {
    expect(() => fromBase64Url(canonical)).not.toThrow();
    await expectNjError(() => fromBase64Url(text), ProtocolError, 'NJ_FRAME_INVALID', 'base64url text is not canonical');
  });

  it('accepts a string if and only if it is the encoding of what it decodes to', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('');
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 40 }), (chars) => {
        const text = chars.join('');
        let decoded: Uint8Array | undefined;
        try {
          decoded = fromBase64Url(text);
        } catch (error) {
          expect((error as ProtocolError).code).toBe('NJ_FRAME_INVALID');
          return;
        }
        expect(toBase64Url(decoded)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });
});

describe('hex', () => {
  it('writes lower case and reads either case', () => {
    expect(toHex(new Uint8Array([0, 1, 0x0f, 0xab, 0xff]))).toBe('00010fabff');
    expect(fromHex('00010FabFF')).toEqual(new Uint8Array([0, 1, 0x0f, 0xab, 0xff]));
    expect(fromHex('')).toEqual(new Uint8Array(0));
  });

  it('round-trips random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(toHex(bytes)).toBe(Buffer.from(bytes).toString('hex'));
        expect(fromHex(toHex(bytes))).toEqual(bytes);
      }),
    );
  });

  it.each(['abc', 'zz', '0x00', 'ab cd', '\u0660\u0661'])('rejects %j', async (text) => {
    await expectNjError(() => fromHex(text), ProtocolError, 'NJ_FRAME_INVALID', 'hex text is malformed');
  });
});

describe('UTF-8 and bytes', () => {
  it('encodes and strictly decodes UTF-8', () => {
    expect(utf8('é€😀')).toEqual(new Uint8Array([0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80]));
    expect(fromUtf8(utf8('é€😀'))).toBe('é€😀');
  });

  it.each([
    ['a truncated sequence', [0xc3]],
    ['an overlong encoding of "/"', [0xc0, 0xaf]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a stray continuation byte', [0x80]],
  ])('rejects %s', async (_what, bytes) => {
    await expectNjError(() => fromUtf8(new Uint8Array(bytes)), ProtocolError, 'NJ_FRAME_INVALID', 'text is not valid UTF-8');
  });

  it('concatenates, compares and writes big-endian integers', () => {
    expect(concatBytes(new Uint8Array([1]), new Uint8Array(0), new Uint8Array([2, 3]))).toEqual(new Uint8Array([1, 2, 3]));
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).toBe(false);
    expect(u32be(0x01020304)).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(u32be(0xffffffff)).toEqual(new Uint8Array([255, 255, 255, 255]));
  });
});

describe('canonical JSON', () => {
  it.each<[string, CanonicalValue, string]>([
    ['sorts keys', { b: 1, a: 2 }, '{"a":2,"b":1}'],
    ['sorts by code unit, not locale: upper case before "_" before lower case', { b: 1, _: 2, B: 3 }, '{"B":3,"_":2,"b":1}'],
    [
      'sorts nested objects and keeps array order',
      { z: { y: 1, x: [3, { b: true, a: null }] }, a: 's' },
      '{"a":"s","z":{"x":[3,{"a":null,"b":true}],"y":1}}',
    ],
    ['omits undefined members at every depth', { a: undefined, b: [1, 2], c: { d: undefined } }, '{"b":[1,2],"c":{}}'],
    [
      'prints integers plainly, including the largest safe one',
      [0, -12, 9007199254740991, -9007199254740991],
      '[0,-12,9007199254740991,-9007199254740991]',
    ],
    ['writes -0 as 0', -0, '0'],
    ['writes literals and empties', [null, true, false, [], {}], '[null,true,false,[],{}]'],
    [
      'escapes quote, backslash and control characters, and nothing else',
      'a"b\\c\n\t\u0001\u001f\u007f/é',
      '"a\\"b\\\\c\\n\\t\\u0001\\u001f\u007f/é"',
    ],
    ['escapes a lone surrogate rather than writing invalid UTF-8', '\ud800x', '"\\ud800x"'],
    [
      // RFC 8785 §3.2.3: property names sort by their UTF-16 code units, so the emoji (D83D)
      // lands before the Hebrew letter (FB33) although its code point is larger.
      'sorts non-ASCII keys by UTF-16 code units (the RFC 8785 §3.2.3 example)',
      {
        '\u20ac': 'Euro Sign',
        '\r': 'Carriage Return',
        '\ufb33': 'Hebrew Letter Dalet With Dagesh',
        '1': 'One',
        '\ud83d\ude00': 'Emoji: Grinning Face',
        '\u0080': 'Control',
        '\u00f6': 'Latin Small Letter O With Diaeresis',
      },
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ],
  ])('%s', (_what, value, expected) => {
    expect(canonicalJson(value)).toBe(expected);
  });

  it.each([
    [1.5, 'canonical JSON holds only safe integers, not 1.5'],
    [Number.NaN, 'canonical JSON holds only safe integers, not NaN'],
    [Number.POSITIVE_INFINITY, 'canonical JSON holds only safe integers, not Infinity'],
    [2 ** 53, 'canonical JSON holds only safe integers, not 9007199254740992'],
    [1e21, 'canonical JSON holds only safe integers, not 1e+21'],
  ])('refuses the number %s: it has no single encoding', async (value, message) => {
    await expectNjError(() => canonicalJson({ nested: [value] }), ProtocolError, 'NJ_BAD_REQUEST', message);
  });

  it.each([
    [10n, 'bigint'],
    [() => 1, 'function'],
    [Symbol('s'), 'symbol'],
    [undefined, 'undefined'],
  ])('refuses a %s value', async (value, type) => {
    await expectNjError(
      () => canonicalJson([value as unknown as CanonicalValue]),
      ProtocolError,
      'NJ_BAD_REQUEST',
      `canonical JSON cannot hold a ${type}`,
    );
  });

  it('does not depend on the order keys were inserted in', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.integer(), fc.string({ maxLength: 6 }), fc.boolean(), fc.constant(null))),
        (obj) => {
          const reversed = Object.fromEntries(Object.entries(obj).reverse());
          expect(canonicalJson(reversed)).toBe(canonicalJson(obj));
          // Canonical JSON is still JSON: parsing it gives the same members back.
          expect(JSON.parse(canonicalJson(obj))).toEqual(obj);
        },
      ),
    );
  });

  it('prefixes signed bytes with the domain tag', () => {
    expect(signingBytes('bundle/v1', { b: 1, a: 'é' })).toEqual(utf8('nightjar/bundle/v1\n{"a":"é","b":1}'));
  });
});
