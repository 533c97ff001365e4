/**
 * Byte encodings that run unchanged in Node, Electron and the browser: base64url, hex, UTF-8,
 * big-endian integers, and the canonical JSON used for everything that is signed or digested.
 */
import { ProtocolError } from './errors.js';

const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < B64_ALPHABET.length; i++) B64_LOOKUP[B64_ALPHABET.charCodeAt(i)] = i;

/** Unpadded base64url (RFC 4648 §5). */
export function toBase64Url(bytes: Uint8Array): string {
  let out = '';
  const n = bytes.length;
  let i = 0;
  for (; i + 2 < n; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64_ALPHABET[v >>> 18]! + B64_ALPHABET[(v >>> 12) & 63]! + B64_ALPHABET[(v >>> 6) & 63]! + B64_ALPHABET[v & 63]!;
  }
  if (i < n) {
    const rest = n - i;
    const v = (bytes[i]! << 16) | (rest === 2 ? bytes[i + 1]! << 8 : 0);
    out += B64_ALPHABET[v >>> 18]! + B64_ALPHABET[(v >>> 12) & 63]!;
    if (rest === 2) out += B64_ALPHABET[(v >>> 6) & 63]!;
  }
  return out;
}

/**
 * Decodes unpadded base64url. Rejects padding, other alphabets and non-canonical trailing bits,
 * so every byte string has exactly one encoding.
 */
export function fromBase64Url(text: string): Uint8Array {
  const n = text.length;
  if (n % 4 === 1) throw new ProtocolError('NJ_FRAME_INVALID', 'base64url text has an impossible length');
  const out = new Uint8Array(Math.floor((n * 3) / 4));
  let o = 0;
  let i = 0;
  const at = (k: number): number => {
    const c = text.charCodeAt(k);
    const v = c < 128 ? B64_LOOKUP[c]! : -1;
    if (v < 0) throw new ProtocolError('NJ_FRAME_INVALID', 'base64url text has a character outside its alphabet');
    return v;
  };
  for (; i + 3 < n; i += 4) {
    const v = (at(i) << 18) | (at(i + 1) << 12) | (at(i + 2) << 6) | at(i + 3);
    out[o++] = v >>> 16;
    out[o++] = (v >>> 8) & 255;
    out[o++] = v & 255;
  }
  const rest = n - i;
  if (rest === 2) {
    const a = at(i);
    const b = at(i + 1);
    if (b & 15) throw new ProtocolError('NJ_FRAME_INVALID', 'base64url text is not canonical');
    out[o] = (a << 2) | (b >>> 4);
  } else if (rest === 3) {
    const a = at(i);
    const b = at(i + 1);
    const c = at(i + 2);
    if (c & 3) throw new ProtocolError('NJ_FRAME_INVALID', 'base64url text is not canonical');
    out[o] = (a << 2) | (b >>> 4);
    out[o + 1] = ((b & 15) << 4) | (c >>> 2);
  }
  return out;
}

/** Lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += (bytes[i]! < 16 ? '0' : '') + bytes[i]!.toString(16);
  return out;
}

/** Decodes lower- or upper-case hex of even length. */
export function fromHex(text: string): Uint8Array {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new ProtocolError('NJ_FRAME_INVALID', 'hex text is malformed');
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

const textEncoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return textEncoder.encode(text);
}

/** Decodes UTF-8, rejecting malformed input. */
export function fromUtf8(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch (cause) {
    throw new ProtocolError('NJ_FRAME_INVALID', 'text is not valid UTF-8', { cause });
  }
}

/** Concatenates byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time comparison of two byte arrays of public length. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Writes `value` as an unsigned 32-bit big-endian integer. */
export function u32be(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, false);
  return out;
}

/** A JSON value that has exactly one canonical encoding: no floats, no undefined. */
export type CanonicalValue =
  string | number | boolean | null | readonly CanonicalValue[] | { readonly [key: string]: CanonicalValue | undefined };

/**
 * Canonical JSON: object keys sorted by UTF-16 code unit (as RFC 8785 does), no whitespace,
 * only safe integers as numbers, `undefined` members omitted. Signed data never contains floats,
 * so the number rules of RFC 8785 reduce to integer printing.
 */
export function canonicalJson(value: CanonicalValue): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value)) {
        throw new ProtocolError('NJ_BAD_REQUEST', 'canonical JSON holds only safe integers, not ' + String(value));
      }
      return Object.is(value, -0) ? '0' : String(value);
    case 'object': {
      if (Array.isArray(value)) return '[' + value.map((v: CanonicalValue) => canonicalJson(v)).join(',') + ']';
      const obj = value as { readonly [key: string]: CanonicalValue | undefined };
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(obj[k]!)).join(',') + '}';
    }
    default:
      throw new ProtocolError('NJ_BAD_REQUEST', `canonical JSON cannot hold a ${typeof value}`);
  }
}

/** Domain-separated canonical bytes: `nightjar/<domain>\n` followed by canonical JSON. */
export function signingBytes(domain: string, value: CanonicalValue): Uint8Array {
  return utf8(`nightjar/${domain}\n${canonicalJson(value)}`);
}
