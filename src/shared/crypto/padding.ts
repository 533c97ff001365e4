/**
 * Length-hiding padding: a 4-byte big-endian length, the message, then zeros up to the bucket.
 */
import { CryptoError } from '../errors.js';

/** Smallest power of two ≥ max(n, min). */
export function powerOfTwoBucket(n: number, min: number): number {
  let size = min;
  while (size < n) size *= 2;
  return size;
}

/** Pads `message` into a buffer of exactly `size` bytes. */
export function pad(message: Uint8Array, size: number): Uint8Array {
  if (message.length + 4 > size) throw new CryptoError('NJ_BAD_REQUEST', 'message does not fit its padding bucket');
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, message.length, false);
  out.set(message, 4);
  return out;
}

/** Removes padding; throws NJ_DECRYPT_FAILED if the length prefix is impossible. */
export function unpad(padded: Uint8Array): Uint8Array {
  if (padded.length < 4) throw new CryptoError('NJ_DECRYPT_FAILED', 'padded message is too short');
  const length = new DataView(padded.buffer, padded.byteOffset, padded.byteLength).getUint32(0, false);
  if (length > padded.length - 4) throw new CryptoError('NJ_DECRYPT_FAILED', 'padded message has an impossible length');
  return padded.subarray(4, 4 + length);
}
