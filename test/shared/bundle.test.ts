/**
 * Key bundles (DESIGN.md "Key bundle"): what a client checks before it encrypts. Every field is
 * covered by the identity key's signature; the ids are derived from the keys; the validity window
 * is bounded; a pinned identity key must not change.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BUNDLE_DOMAIN,
  CryptoError,
  MAX_BUNDLE_VALIDITY_MS,
  agentIdFor,
  boxKeyIdFor,
  canonicalJson,
  createBundle,
  fromBase64Url,
  signBundle,
  signingBytes,
  toBase64Url,
  utf8,
  verifyBundle,
  type SignedBundle,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';
import { MODEL, NOW, PLATFORM, POSTURE, clone, makeAgent, type TestAgent } from './support/fixtures.js';

const MSG = {
  signature: 'bundle signature does not verify',
  agentId: 'bundle agentId does not match its identity key',
  boxKeyId: 'bundle boxKeyId does not match its box key',
  window: 'bundle validity window is empty or longer than 7 days',
  notYet: 'bundle is not valid yet',
  expired: 'bundle has expired',
} as const;

let A: TestAgent;
let M: TestAgent;

beforeAll(async () => {
  [A, M] = await Promise.all([makeAgent('bundle-agent'), makeAgent('bundle-mallory')]);
});

const verify = (input: unknown, now = NOW) => verifyBundle(input, { now });
const flipB64 = (text: string, bit = 0): string => {
  const bytes = fromBase64Url(text);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toBase64Url(bytes);
};
const flipHex = (text: string): string => (parseInt(text[0]!, 16) ^ 1).toString(16) + text.slice(1);

describe('a well-formed bundle', () => {
  it('verifies, and is signed over its canonical encoding under the bundle domain', async () => {
    const verified = await verify(A.signed);
    expect(verified.bundle).toEqual(A.signed.bundle);
    expect(verified.identityKey).toEqual(A.identity.publicKey);
    expect(verified.boxKey).toEqual(A.boxKey.publicKey);
    expect(signingBytes(BUNDLE_DOMAIN, A.signed.bundle)).toEqual(utf8(`nightjar/bundle/v1\n${canonicalJson(A.signed.bundle)}`));
  });

  it('holds what DESIGN.md lists: version, ids, keys, window, models, capacity, platform, posture', () => {
    const b = A.signed.bundle;
    expect(b).toEqual({
      v: 1,
      agentId: A.identity.agentId,
      identityKey: toBase64Url(A.identity.publicKey),
      boxKey: toBase64Url(A.boxKey.publicKey),
      boxKeyId: A.boxKey.keyId,
      notBefore: NOW,
      notAfter: NOW + 25 * 3600_000,
      models: [MODEL],
      capacity: { slots: 2 },
      platform: PLATFORM,
      posture: POSTURE,
    });
    expect(b.agentId).toBe(agentIdFor(A.identity.publicKey));
    expect(b.boxKeyId).toBe(boxKeyIdFor(A.boxKey.publicKey));
  });
});

describe('tamper matrix: every field altered', () => {
  // Fails if verifyBundle stops checking the signature over the whole bundle.
  it.each<[string, (s: SignedBundle) => void]>([
    ['notBefore', (s) => void (s.bundle.notBefore -= 1)],
    ['notAfter', (s) => void (s.bundle.notAfter += 1)],
    ['models[0].id', (s) => void (s.bundle.models[0]!.id = 'llama-3.2-3b-instruct-q4_0')],
    ['models[0].sha256', (s) => void (s.bundle.models[0]!.sha256 = flipHex(s.bundle.models[0]!.sha256))],
    ['models[0].synthetic', (s) => void (s.bundle.models[0]!.synthetic = !s.bundle.models[0]!.synthetic)],
    ['models[0].contextLength', (s) => void (s.bundle.models[0]!.contextLength += 1)],
    ['models, one added', (s) => void s.bundle.models.push({ ...MODEL, id: 'another-model' })],
    ['capacity.slots', (s) => void (s.bundle.capacity.slots += 1)],
    ['platform.os', (s) => void (s.bundle.platform.os = 'Linux')],
    ['platform.osVersion', (s) => void (s.bundle.platform.osVersion += '.1')],
    ['platform.arch', (s) => void (s.bundle.platform.arch = 'x64')],
    ['platform.chip', (s) => void (s.bundle.platform.chip = 'Apple M2 Ultra')],
    ['platform.memoryBytes', (s) => void (s.bundle.platform.memoryBytes *= 2)],
    ['posture.sip', (s) => void (s.bundle.posture.sip = null)],
    ['posture.hardenedRuntime', (s) => void (s.bundle.posture.hardenedRuntime = false)],
    ['posture.debuggerDenied', (s) => void (s.bundle.posture.debuggerDenied = false)],
    ['posture.secureEnclave', (s) => void (s.bundle.posture.secureEnclave = false)],
    ['posture.appVersion', (s) => void (s.bundle.posture.appVersion = '0.1.1')],
    ['posture.appHash', (s) => void (s.bundle.posture.appHash = 'ab'.repeat(32))],
    [
      'attestation, added',
      (s) =>
        void (s.bundle.attestation = { enclaveKey: toBase64Url(new Uint8Array(65).fill(4)), signature: toBase64Url(new Uint8Array(70)) }),
    ],
    ['signature, bit 0 flipped', (s) => void (s.signature = flipB64(s.signature, 0))],
    ['signature, bit 511 flipped', (s) => void (s.signature = flipB64(s.signature, 511))],
    // The attack the signature exists for: the gateway substitutes its own keys, with ids derived
    // correctly so every other check passes.
    [
      'identityKey and agentId, both swapped for the attacker’s',
      (s) => void Object.assign(s.bundle, { identityKey: toBase64Url(M.identity.publicKey), agentId: M.identity.agentId }),
    ],
    [
      'boxKey and boxKeyId, both swapped for the attacker’s',
      (s) => void Object.assign(s.bundle, { boxKey: toBase64Url(M.boxKey.publicKey), boxKeyId: M.boxKey.keyId }),
    ],
  ])('%s → NJ_BUNDLE_INVALID (signature)', async (_what, mutate) => {
    const tampered = clone(A.signed);
    mutate(tampered);
    await expectNjError(() => verify(tampered), CryptoError, 'NJ_BUNDLE_INVALID', MSG.signature);
  });

  // Fails if verifyBundle stops deriving agentId and boxKeyId from the keys.
  it.each<[string, (s: SignedBundle) => void, string]>([
    ['agentId', (s) => void (s.bundle.agentId = flipHex(s.bundle.agentId)), MSG.agentId],
    ['identityKey', (s) => void (s.bundle.identityKey = flipB64(s.bundle.identityKey, 9)), MSG.agentId],
    ['boxKeyId', (s) => void (s.bundle.boxKeyId = flipHex(s.bundle.boxKeyId)), MSG.boxKeyId],
    ['boxKey', (s) => void (s.bundle.boxKey = flipB64(s.bundle.boxKey, 9)), MSG.boxKeyId],
  ])('%s → NJ_BUNDLE_INVALID (ids)', async (_what, mutate, message) => {
    const tampered = clone(A.signed);
    mutate(tampered);
    await expectNjError(() => verify(tampered), CryptoError, 'NJ_BUNDLE_INVALID', message);
  });

  it.each<[string, (s: SignedBundle) => void, string]>([
    ['v', (s) => void ((s.bundle as { v: number }).v = 2), 'bundle is invalid at bundle.v: Invalid input: expected 1'],
    [
      'signature, truncated',
      (s) => void (s.signature = toBase64Url(fromBase64Url(s.signature).subarray(0, 63))),
      'bundle is invalid at signature: expected 64 bytes of base64url',
    ],
    ['an extra field', (s) => void Object.assign(s.bundle, { region: 'eu' }), 'bundle is invalid at bundle: Unrecognized key: "region"'],
    [
      'models, emptied',
      (s) => void (s.bundle.models = []),
      'bundle is invalid at bundle.models: Too small: expected array to have >=1 items',
    ],
  ])('%s → NJ_BUNDLE_INVALID (schema)', async (_what, mutate, message) => {
    const tampered = clone(A.signed);
    mutate(tampered);
    await expectNjError(() => verify(tampered), CryptoError, 'NJ_BUNDLE_INVALID', message);
  });

  it('something that is not a bundle at all → NJ_BUNDLE_INVALID', async () => {
    await expectNjError(
      () => verify('bundle'),
      CryptoError,
      'NJ_BUNDLE_INVALID',
      'bundle is invalid at (root): Invalid input: expected object, received string',
    );
  });
});

describe('ids signed correctly but not matching the keys', () => {
  // The agent's own signature is valid here, so only the id derivation catches the lie.
  // Fails if verifyBundle stops deriving agentId from identityKey (or boxKeyId from boxKey).
  it('a bundle naming another agent id → NJ_BUNDLE_INVALID', async () => {
    const lying = await signBundle({ ...A.signed.bundle, agentId: M.identity.agentId }, A.identity);
    await expectNjError(() => verify(lying), CryptoError, 'NJ_BUNDLE_INVALID', MSG.agentId);
  });

  it('a bundle naming another box key id → NJ_BUNDLE_INVALID', async () => {
    const lying = await signBundle({ ...A.signed.bundle, boxKeyId: M.boxKey.keyId }, A.identity);
    await expectNjError(() => verify(lying), CryptoError, 'NJ_BUNDLE_INVALID', MSG.boxKeyId);
  });
});

describe('weak identity keys', () => {
  // A small-order identity key lets anyone sign "for" it: with A the neutral point, R = [S]B and
  // any S verifies on every message, under both backends (RFC 8032 does not check the key).
  // Fails if verifyBundle stops refusing weak identity keys (isWeakEd25519Key).
  const hex = (h: string): Uint8Array => Uint8Array.from(h.match(/../g)!.map((b) => parseInt(b, 16)));
  const neutral = hex('0100000000000000000000000000000000000000000000000000000000000000');
  const basePoint = hex('5866666666666666666666666666666666666666666666666666666666666666');

  it('a forged bundle under the neutral point verifies as a signature but is refused → NJ_BUNDLE_INVALID', async () => {
    const bundle = { ...A.signed.bundle, identityKey: toBase64Url(neutral), agentId: agentIdFor(neutral) };
    const scalarOne = new Uint8Array(32);
    scalarOne[0] = 1;
    const forged: SignedBundle = { bundle, signature: toBase64Url(new Uint8Array([...basePoint, ...scalarOne])) };
    const { naclBackend } = await import('../../src/shared/index.js');
    expect(await naclBackend.verify(neutral, signingBytes(BUNDLE_DOMAIN, bundle), fromBase64Url(forged.signature))).toBe(true);
    await expectNjError(
      () => verify(forged),
      CryptoError,
      'NJ_BUNDLE_INVALID',
      'bundle identity key is a weak (small-order or non-canonical) point',
    );
  });

  it.each([
    ['order 2', 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'],
    ['order 4', '0000000000000000000000000000000000000000000000000000000000000000'],
    ['order 8', '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05'],
    ['order 8', 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a'],
    ['not canonical (y = p)', 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f'],
  ])('refuses an identity key of %s', async (_what, key) => {
    const weak = hex(key);
    const signed = await signBundle({ ...A.signed.bundle, identityKey: toBase64Url(weak), agentId: agentIdFor(weak) }, A.identity);
    await expectNjError(
      () => verify(signed),
      CryptoError,
      'NJ_BUNDLE_INVALID',
      'bundle identity key is a weak (small-order or non-canonical) point',
    );
  });
});

describe('the validity window', () => {
  const make = (validityMs: number, now = NOW) =>
    createBundle({
      identity: A.identity,
      boxKey: A.boxKey,
      models: [MODEL],
      slots: 1,
      platform: PLATFORM,
      posture: POSTURE,
      now,
      validityMs,
    });

  // Fails if verifyBundle stops checking notAfter.
  it('is valid up to notAfter and expired one millisecond later', async () => {
    const { notAfter } = A.signed.bundle;
    await expect(verify(A.signed, notAfter)).resolves.toBeDefined();
    await expectNjError(() => verify(A.signed, notAfter + 1), CryptoError, 'NJ_BUNDLE_INVALID', MSG.expired);
  });

  // Fails if verifyBundle stops checking notBefore (with its skew allowance).
  it('is valid from notBefore minus the skew allowance, not before', async () => {
    await expect(verify(A.signed, NOW - 60_000)).resolves.toBeDefined();
    await expectNjError(() => verify(A.signed, NOW - 60_001), CryptoError, 'NJ_BUNDLE_INVALID', MSG.notYet);
    await expectNjError(() => verifyBundle(A.signed, { now: NOW - 1, skewMs: 0 }), CryptoError, 'NJ_BUNDLE_INVALID', MSG.notYet);
  });

  // Fails if verifyBundle stops bounding the window: a long-lived bundle outlives key rotation.
  it(`accepts exactly ${MAX_BUNDLE_VALIDITY_MS / 86_400_000} days, refuses longer and empty windows`, async () => {
    await expect(verify(await make(MAX_BUNDLE_VALIDITY_MS))).resolves.toBeDefined();
    await expectNjError(async () => verify(await make(MAX_BUNDLE_VALIDITY_MS + 1)), CryptoError, 'NJ_BUNDLE_INVALID', MSG.window);
    await expectNjError(async () => verify(await make(0)), CryptoError, 'NJ_BUNDLE_INVALID', MSG.window);
    await expectNjError(async () => verify(await make(-1000)), CryptoError, 'NJ_BUNDLE_INVALID', MSG.window);
  });
});

describe('pinning', () => {
  it('accepts the pinned identity key', async () => {
    await expect(verifyBundle(A.signed, { now: NOW, pinnedIdentityKey: A.identity.publicKey })).resolves.toBeDefined();
  });

  // Fails if verifyBundle stops comparing the bundle's identity key with the pinned one.
  it('a pinned agent presenting another identity key → NJ_PINNED_KEY_CHANGED', async () => {
    await expectNjError(
      () => verifyBundle(M.signed, { now: NOW, pinnedIdentityKey: A.identity.publicKey }),
      CryptoError,
      'NJ_PINNED_KEY_CHANGED',
      `agent ${M.identity.agentId} presented an identity key other than the pinned one`,
    );
  });
});
