/**
 * Length-hiding padding: a 4-byte big-endian length, the message, zeros to the bucket size.
 */
import { describe, expect, it } from 'vitest';
import { CryptoError, pad, powerOfTwoBucket, unpad } from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';

describe('padding', () => {
  it.each([
    [0, 1024, 1024],
    [1024, 1024, 1024],
    [1025, 1024, 2048],
    [5000, 64, 8192],
  ])('powerOfTwoBucket(%s, %s) = %s', (n, min, bucket) => {
    expect(powerOfTwoBucket(n, min)).toBe(bucket);
  });

  it('writes the length big-endian, then the message, then zeros', () => {
    expect(pad(new Uint8Array([7, 8, 9]), 10)).toEqual(new Uint8Array([0, 0, 0, 3, 7, 8, 9, 0, 0, 0]));
    expect(pad(new Uint8Array(0), 4)).toEqual(new Uint8Array(4));
  });

  it('round-trips, also from a view into a larger buffer', () => {
    const message = new Uint8Array([1, 2, 3, 4, 5]);
    expect(unpad(pad(message, 16))).toEqual(message);
    const outer = new Uint8Array(40);
    outer.set(pad(message, 16), 7);
    expect(unpad(outer.subarray(7, 23))).toEqual(message);
  });

  it('refuses a message that does not fit', async () => {
    await expectNjError(() => pad(new Uint8Array(13), 16), CryptoError, 'NJ_BAD_REQUEST', 'message does not fit its padding bucket');
  });

  it('refuses a padded buffer that is too short or claims more than it holds', async () => {
    await expectNjError(() => unpad(new Uint8Array(3)), CryptoError, 'NJ_DECRYPT_FAILED', 'padded message is too short');
    await expectNjError(
      () => unpad(new Uint8Array([0, 0, 0, 13, ...new Uint8Array(12)])),
      CryptoError,
      'NJ_DECRYPT_FAILED',
      'padded message has an impossible length',
    );
    expect(unpad(new Uint8Array([0, 0, 0, 12, ...new Uint8Array(12)]))).toHaveLength(12);
    await expectNjError(
      () => unpad(new Uint8Array([255, 255, 255, 255, 0, 0])),
      CryptoError,
      'NJ_DECRYPT_FAILED',
      'padded message has an impossible length',
    );
  });
});
