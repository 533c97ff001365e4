/**
 * The gateway's signed word (src/shared/crypto/gateway-word.ts): directory answers, the
 * released-versions list and rotation statements. Each is judged by its encoding under its own
 * domain, agreement of the WebCrypto and tweetnacl backends, a tamper matrix (every field altered
 * → refused), another key (→ NJ_GATEWAY_KEY_MISMATCH) and its own checks (a replayed or stale
 * answer, an unsorted list, a rotation past its grace period). Frozen vectors of all three are in
 * test/vectors/nightjar-gateway-word.json (vectors.test.ts).
 *
 * Each "Fails without …" below was shown: the protection removed once, the test watched failing
 * (2026-12-01; no signature check: 29 failed; no expected key: 2; no nonce: 1; no request fields: 1;
 * no time check: 2), then put back.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CryptoError,
  DIRECTORY_DOMAIN,
  LIMITS,
  RELEASES_DOMAIN,
  ROTATION_DOMAIN,
  canonicalJson,
  createDirectoryAnswer,
  createRotation,
  createSignedReleases,
  createWebCryptoBackend,
  decodeDirectoryAnswer,
  decodeSignedReleases,
  followRotations,
  fromBase64Url,
  gatewayKeyFingerprint,
  gatewayKeyFromSeed,
  gatewayKeyMatches,
  naclBackend,
  parseGatewayKey,
  signingBytes,
  toBase64Url,
  utf8,
  verifyDirectoryAnswer,
  verifyRotation,
  verifySignedReleases,
  type CandidatesResponse,
  type DirectoryRequest,
  type GatewayKeyPair,
  type SignedGatewayRotation,
  type SignedReleasesList,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';
import { NOW, clone, makeAgent, testBytes, type TestAgent } from './support/fixtures.js';

let K: GatewayKeyPair;
let K2: GatewayKeyPair;
let K3: GatewayKeyPair;
let M: GatewayKeyPair;
let A: TestAgent;
let B: TestAgent;
let answer: CandidatesResponse;
let releases: SignedReleasesList;
let rotation: SignedGatewayRotation;

const REQUEST: DirectoryRequest = { nonce: toBase64Url(testBytes('directory/nonce', 16)), model: 'llama-3.2-1b', k: 3, minTrust: 'signed' };
const RELEASES = [
  { version: '1.4.2', appHash: 'cd'.repeat(32) },
  { version: '1.4.1', appHash: 'ab'.repeat(32) },
];
const GRACE = 30 * 86_400_000;

beforeAll(async () => {
  const key = (n: string): Promise<GatewayKeyPair> => gatewayKeyFromSeed(testBytes(`gateway-word/${n}`, 32));
  [K, K2, K3, M] = await Promise.all([key('gateway'), key('gateway-2'), key('gateway-3'), key('mallory')]);
  [A, B] = await Promise.all([makeAgent('gateway-word/a'), makeAgent('gateway-word/b')]);
  const candidates = [
    { bundle: A.signed, trust: 'signed' as const },
    { bundle: B.signed, trust: 'attested' as const },
  ];
  answer = await createDirectoryAnswer({ key: K, request: { ...REQUEST, model: A.signed.bundle.models[0]!.id }, candidates, now: NOW });
  releases = await createSignedReleases({ key: K, releases: RELEASES, now: NOW });
  rotation = await createRotation({ oldKey: K, newKey: K2.publicKey, rotatedAt: NOW, graceUntil: NOW + GRACE });
});

const req = (): DirectoryRequest => answer.request;
const verifyAnswer = (input: unknown, over: Partial<Parameters<typeof verifyDirectoryAnswer>[1]> = {}) =>
  verifyDirectoryAnswer(input, { gatewayKey: K.publicKey, request: req(), now: NOW, ...over });
const verifyReleases = (input: unknown) => verifySignedReleases(input, { gatewayKey: K.publicKey, now: NOW });
const flipB64 = (text: string, bit = 0): string => {
  const bytes = fromBase64Url(text);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toBase64Url(bytes);
};
const flipHex = (text: string): string => (parseInt(text[0]!, 16) ^ 1).toString(16) + text.slice(1);

describe('a directory answer', () => {
  it('keeps the old fields (v, model, candidates) and adds the key, the time and the request, signed under directory/v1', async () => {
    expect(Object.keys(answer).sort()).toEqual(['candidates', 'gatewayKey', 'issuedAt', 'model', 'request', 'signature', 'v']);
    expect(answer.gatewayKey).toBe(toBase64Url(K.publicKey));
    const { signature, ...body } = answer;
    expect(signingBytes(DIRECTORY_DOMAIN, body)).toEqual(utf8(`nightjar/directory/v1\n${canonicalJson(body)}`));
    const web = createWebCryptoBackend(globalThis.crypto.subtle);
    const bytes = signingBytes(DIRECTORY_DOMAIN, body);
    expect(toBase64Url(await web.sign(K.seed, bytes))).toBe(signature);
    expect(toBase64Url(await naclBackend.sign(K.seed, bytes))).toBe(signature);
    expect(await verifyAnswer(answer)).toEqual(answer);
  });

  // Fails without the signature check in verifyDirectoryAnswer: each altered field would be accepted.
  describe('tamper matrix: every field altered is refused', () => {
    const SIGNATURE = "the directory answer's signature does not verify";
    const cases: [string, (a: CandidatesResponse) => void][] = [
      ['issuedAt', (a) => void (a.issuedAt -= 1)],
      ['model', (a) => void (a.model = 'other-model')],
      ['candidates[0].trust', (a) => void (a.candidates[0]!.trust = 'attested')],
      ['candidates[1].trust', (a) => void (a.candidates[1]!.trust = 'signed')],
      ['candidates order', (a) => void a.candidates.reverse()],
      ['a candidate removed', (a) => void a.candidates.pop()],
      ['a candidate added', (a) => void a.candidates.push(clone(a.candidates[0]!))],
      ['candidates[0].bundle.signature', (a) => void (a.candidates[0]!.bundle.signature = flipB64(a.candidates[0]!.bundle.signature))],
      ['request.nonce', (a) => void (a.request.nonce = flipB64(a.request.nonce!))],
      ['request.model', (a) => void (a.request.model = 'other-model')],
      ['request.k', (a) => void (a.request.k = 4)],
      ['request.minTrust', (a) => void (a.request.minTrust = 'attested')],
      ['signature, bit 0 flipped', (a) => void (a.signature = flipB64(a.signature, 0))],
      ['signature, bit 511 flipped', (a) => void (a.signature = flipB64(a.signature, 511))],
    ];
    it.each(cases)('%s', async (_name, mutate) => {
      const tampered = clone(answer);
      mutate(tampered);
      await expectNjError(() => verifyAnswer(tampered, { request: tampered.request }), CryptoError, 'NJ_DIRECTORY_INVALID', SIGNATURE);
    });
  });

  // Fails without the expected-key check: Mallory's answer, validly signed by Mallory, would pass.
  it('signed by another key is refused with NJ_GATEWAY_KEY_MISMATCH; a key swapped in fails the signature', async () => {
    const forged = await createDirectoryAnswer({ key: M, request: req(), candidates: answer.candidates, now: NOW });
    await expectNjError(
      () => verifyAnswer(forged),
      CryptoError,
      'NJ_GATEWAY_KEY_MISMATCH',
      /is signed by gateway key [0-9a-f]{16}, not the expected/,
    );
    const swapped = { ...clone(answer), gatewayKey: toBase64Url(M.publicKey) };
    await expectNjError(
      () => verifyAnswer(swapped, { gatewayKey: M.publicKey }),
      CryptoError,
      'NJ_DIRECTORY_INVALID',
      /signature does not verify/,
    );
    const weak = { ...clone(answer), gatewayKey: toBase64Url(new Uint8Array(32)) };
    await expectNjError(() => verifyAnswer(weak, { gatewayKey: new Uint8Array(32) }), CryptoError, 'NJ_DIRECTORY_INVALID', /weak/);
  });

  // Fails without the nonce comparison: an answer recorded for one request would serve another.
  it('replayed from an earlier request (another nonce), or with no nonce at all, is refused', async () => {
    const other = { ...req(), nonce: toBase64Url(testBytes('directory/other-nonce', 16)) };
    await expectNjError(
      () => verifyAnswer(answer, { request: other }),
      CryptoError,
      'NJ_DIRECTORY_INVALID',
      /its nonce is not the one sent\): a replay/,
    );
    const unnonced = await createDirectoryAnswer({ key: K, request: { ...req(), nonce: null }, candidates: answer.candidates, now: NOW });
    await expectNjError(() => verifyAnswer(unnonced), CryptoError, 'NJ_DIRECTORY_INVALID', /a replay/);
  });

  // Fails without the request-field comparison: an answer for `signed` would pass a request for `attested`.
  it('answering another model, k or minTrust is refused, and so are more candidates than k', async () => {
    for (const change of [{ model: 'other-model' }, { k: 2 }, { minTrust: 'attested' as const }]) {
      await expectNjError(
        () => verifyAnswer(answer, { request: { ...req(), ...change } }),
        CryptoError,
        'NJ_DIRECTORY_INVALID',
        /model, k or minTrust differ/,
      );
    }
    const many = await createDirectoryAnswer({ key: K, request: { ...req(), k: 1 }, candidates: answer.candidates, now: NOW });
    await expectNjError(
      () => verifyAnswer(many, { request: many.request }),
      CryptoError,
      'NJ_DIRECTORY_INVALID',
      /more than the 1 candidates/,
    );
  });

  // Fails without the time check: an answer signed long ago (stale trust) would pass.
  it('outside the window either way is refused; at its edges it is accepted', async () => {
    await expect(verifyAnswer(answer, { now: NOW + 30_000 })).resolves.toBeDefined();
    await expect(verifyAnswer(answer, { now: NOW - 30_000 })).resolves.toBeDefined();
    await expectNjError(
      () => verifyAnswer(answer, { now: NOW + 30_001 }),
      CryptoError,
      'NJ_DIRECTORY_INVALID',
      /is stale: issued 30001 ms ago/,
    );
    await expectNjError(() => verifyAnswer(answer, { now: NOW - 30_001 }), CryptoError, 'NJ_DIRECTORY_INVALID', /issued in the future/);
    await expectNjError(() => verifyAnswer(answer, { now: NOW + 5001, windowMs: 5000 }), CryptoError, 'NJ_DIRECTORY_INVALID', /stale/);
  });

  it(`is decoded from text, refused above ${LIMITS.maxSignedAnswerBytes} bytes before parsing; not JSON is refused`, async () => {
    const opts = { gatewayKey: K.publicKey, request: req(), now: NOW };
    expect(await decodeDirectoryAnswer(JSON.stringify(answer), opts)).toEqual(answer);
    await expectNjError(
      () => decodeDirectoryAnswer(' '.repeat(LIMITS.maxSignedAnswerBytes + 1), opts),
      CryptoError,
      'NJ_DIRECTORY_INVALID',
      /directory answer is 1048577 bytes; the limit is 1048576/,
    );
    await expectNjError(() => decodeDirectoryAnswer('{', opts), CryptoError, 'NJ_DIRECTORY_INVALID', /JSON|invalid/);
    await expectNjError(() => verifyAnswer({ ...answer, extra: 1 }), CryptoError, 'NJ_DIRECTORY_INVALID', /directory answer is invalid/);
  });
});

describe('the released-versions list', () => {
  it('is sorted by appHash, names its key, is signed under releases/v1, and verifies on both backends', async () => {
    expect(releases.releases.releases.map((r) => r.version)).toEqual(['1.4.1', '1.4.2']);
    const bytes = signingBytes(RELEASES_DOMAIN, releases.releases);
    expect(bytes).toEqual(utf8(`nightjar/releases/v1\n${canonicalJson(releases.releases)}`));
    expect(toBase64Url(await naclBackend.sign(K.seed, bytes))).toBe(releases.signature);
    const verified = await verifyReleases(releases);
    expect(verified.release('cd'.repeat(32))).toEqual(RELEASES[0]);
    expect(verified.release('ef'.repeat(32))).toBeUndefined();
    expect((await verifyReleases(await createSignedReleases({ key: K, releases: [], now: NOW }))).list.releases).toEqual([]);
  });

  // Fails without the signature check in verifySignedReleases.
  describe('tamper matrix: every field altered is refused', () => {
    const SIGNATURE = "the releases list's signature does not verify";
    const cases: [string, (s: SignedReleasesList) => void][] = [
      ['issuedAt', (s) => void (s.releases.issuedAt += 1)],
      ['releases[0].version', (s) => void (s.releases.releases[0]!.version = '1.4.3')],
      ['releases[1].appHash', (s) => void (s.releases.releases[1]!.appHash = flipHex(s.releases.releases[1]!.appHash))],
      ['a release removed', (s) => void s.releases.releases.splice(0, 1)],
      ['a release added', (s) => void s.releases.releases.push({ version: '9.9.9', appHash: 'ff'.repeat(32) })],
      ['signature, bit 0 flipped', (s) => void (s.signature = flipB64(s.signature, 0))],
      ['signature, bit 511 flipped', (s) => void (s.signature = flipB64(s.signature, 511))],
    ];
    it.each(cases)('%s', async (_name, mutate) => {
      const tampered = clone(releases);
      mutate(tampered);
      await expectNjError(() => verifyReleases(tampered), CryptoError, 'NJ_RELEASES_INVALID', SIGNATURE);
    });
  });

  // Fails without the expected-key check: Mallory's list would name her builds releases.
  it('signed by another key is refused with NJ_GATEWAY_KEY_MISMATCH', async () => {
    const forged = await createSignedReleases({
      key: M,
      releases: [...RELEASES, { version: '6.6.6', appHash: 'ee'.repeat(32) }],
      now: NOW,
    });
    await expectNjError(() => verifyReleases(forged), CryptoError, 'NJ_GATEWAY_KEY_MISMATCH', /releases list is signed by gateway key/);
  });

  it('unsorted or repeated, from the future, too old, malformed or too large is refused', async () => {
    const unsorted = clone(releases);
    unsorted.releases.releases.reverse();
    await expectNjError(
      () => verifySignedReleases(unsorted, { gatewayKey: K.publicKey }),
      CryptoError,
      'NJ_RELEASES_INVALID',
      SIGNATURE_OR_ORDER,
    );
    await expectNjError(
      () => createSignedReleases({ key: K, releases: [RELEASES[0]!, RELEASES[0]!], now: NOW }),
      CryptoError,
      'NJ_RELEASES_INVALID',
      /sorted by appHash without repeats/,
    );
    await expectNjError(
      () => verifySignedReleases(releases, { gatewayKey: K.publicKey, now: NOW - 60_001 }),
      CryptoError,
      'NJ_RELEASES_INVALID',
      /future/,
    );
    await expectNjError(
      () => verifySignedReleases(releases, { gatewayKey: K.publicKey, now: NOW + 10, maxAgeMs: 5 }),
      CryptoError,
      'NJ_RELEASES_INVALID',
      /stale/,
    );
    await expectNjError(
      () => createSignedReleases({ key: K, releases: [{ version: '1 2', appHash: 'ab'.repeat(32) }], now: NOW }),
      CryptoError,
      'NJ_RELEASES_INVALID',
      /version/,
    );
    await expectNjError(
      () => decodeSignedReleases(' '.repeat(LIMITS.maxSignedAnswerBytes + 1), { gatewayKey: K.publicKey }),
      CryptoError,
      'NJ_RELEASES_INVALID',
      /./,
    );
    const many = Array.from({ length: LIMITS.maxReleases + 1 }, (_, i) => ({
      version: '1.0.0',
      appHash: i.toString(16).padStart(64, '0'),
    }));
    await expectNjError(() => createSignedReleases({ key: K, releases: many, now: NOW }), CryptoError, 'NJ_RELEASES_INVALID', /releases/);
  });
});
const SIGNATURE_OR_ORDER = /signature does not verify|sorted by appHash/;

describe('a rotation statement', () => {
  it('is signed by the old key under gateway-rotation/v1 and names the new one', async () => {
    const bytes = signingBytes(ROTATION_DOMAIN, rotation.rotation);
    expect(bytes).toEqual(utf8(`nightjar/gateway-rotation/v1\n${canonicalJson(rotation.rotation)}`));
    expect(toBase64Url(await naclBackend.sign(K.seed, bytes))).toBe(rotation.signature);
    expect(await verifyRotation(rotation, { now: NOW })).toEqual(rotation.rotation);
  });

  // Fails without the signature check in verifyRotation: anyone could name the pinned key's successor.
  describe('tamper matrix: every field altered is refused', () => {
    const cases: [string, (s: SignedGatewayRotation) => void][] = [
      ['oldKey', (s) => void (s.rotation.oldKey = toBase64Url(K3.publicKey))],
      ['newKey', (s) => void (s.rotation.newKey = toBase64Url(M.publicKey))],
      ['rotatedAt', (s) => void (s.rotation.rotatedAt += 1)],
      ['graceUntil', (s) => void (s.rotation.graceUntil += 1)],
      ['signature, bit 0 flipped', (s) => void (s.signature = flipB64(s.signature, 0))],
      ['signature, bit 511 flipped', (s) => void (s.signature = flipB64(s.signature, 511))],
    ];
    it.each(cases)('%s', async (_name, mutate) => {
      const tampered = clone(rotation);
      mutate(tampered);
      await expectNjError(
        () => verifyRotation(tampered),
        CryptoError,
        'NJ_GATEWAY_KEY_MISMATCH',
        /rotation statement's signature does not verify/,
      );
    });
  });

  it('past its grace period, naming the same key twice, or a weak new key is refused', async () => {
    await expectNjError(
      () => verifyRotation(rotation, { now: NOW + GRACE + 1 }),
      CryptoError,
      'NJ_GATEWAY_KEY_MISMATCH',
      /grace period is over/,
    );
    const same = await createRotation({ oldKey: K, newKey: K.publicKey, rotatedAt: NOW, graceUntil: NOW + GRACE });
    await expectNjError(() => verifyRotation(same), CryptoError, 'NJ_GATEWAY_KEY_MISMATCH', /same key twice/);
    const weak = await createRotation({ oldKey: K, newKey: new Uint8Array(32), rotatedAt: NOW, graceUntil: NOW + GRACE });
    await expectNjError(() => verifyRotation(weak), CryptoError, 'NJ_GATEWAY_KEY_MISMATCH', /weak/);
  });

  it('chains are followed step by step from the pinned key; a forged, expired or missing step stops them', async () => {
    const second = await createRotation({ oldKey: K2, newKey: K3.publicKey, rotatedAt: NOW + 1, graceUntil: NOW + GRACE });
    expect(await followRotations(K.publicKey, K.publicKey, [])).toEqual([]);
    expect(await followRotations(K.publicKey, K2.publicKey, [rotation], { now: NOW })).toEqual([K2.publicKey]);
    expect(await followRotations(K.publicKey, K3.publicKey, [second, rotation], { now: NOW })).toEqual([K2.publicKey, K3.publicKey]);
    // Mallory signs "K2 → M" with her own key: not signed by K2, it moves no one.
    const forged = clone(await createRotation({ oldKey: M, newKey: M.publicKey, rotatedAt: NOW, graceUntil: NOW + GRACE }));
    forged.rotation.oldKey = toBase64Url(K2.publicKey);
    expect(await followRotations(K.publicKey, M.publicKey, [rotation, forged], { now: NOW })).toBeNull();
    // Mallory's own statement from her key leads nowhere from K.
    const hers = await createRotation({ oldKey: M, newKey: K3.publicKey, rotatedAt: NOW, graceUntil: NOW + GRACE });
    expect(await followRotations(K.publicKey, K3.publicKey, [hers], { now: NOW })).toBeNull();
    expect(await followRotations(K.publicKey, K3.publicKey, [second], { now: NOW })).toBeNull();
    expect(await followRotations(K.publicKey, K2.publicKey, [rotation], { now: NOW + GRACE + 1 })).toBeNull();
    expect(await followRotations(K.publicKey, K2.publicKey, ['garbage', { rotation: 1 }, rotation], { now: NOW })).toEqual([K2.publicKey]);
  });
});

describe('a gateway key as people give it', () => {
  it('is its base64url key, its fingerprint (spaces allowed) or its id; anything else is NJ_CONFIG_INVALID', async () => {
    const fp = gatewayKeyFingerprint(K.publicKey);
    expect(fp).toMatch(/^([0-9a-f]{4} ){7}[0-9a-f]{4}$/);
    expect(fp.replace(/ /g, '').slice(0, 16)).toBe(K.keyId);
    for (const text of [toBase64Url(K.publicKey), fp, fp.replace(/ /g, ''), K.keyId, ` ${K.keyId.toUpperCase()} `]) {
      const expected = parseGatewayKey(text);
      expect(gatewayKeyMatches(expected, K.publicKey)).toBe(true);
      expect(gatewayKeyMatches(expected, M.publicKey)).toBe(false);
    }
    for (const bad of ['', 'abc', K.keyId.slice(1), toBase64Url(new Uint8Array(32)), toBase64Url(K.publicKey).slice(1) + '!']) {
      await expectNjError(() => parseGatewayKey(bad), CryptoError, 'NJ_CONFIG_INVALID', /a gateway key is its base64url public key/);
    }
  });
});
