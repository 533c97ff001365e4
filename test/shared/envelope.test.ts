/**
 * The envelope (DESIGN.md "Envelope"): sealing for several agents, opening by each, and a tamper
 * matrix over every field of the visible header and the body. Each tampered envelope must be
 * refused with the class, code and message of the check that catches it; the comment on each
 * group names the check whose removal would make it fail.
 */
import nacl from 'tweetnacl';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CryptoError,
  LIMITS,
  NightjarError,
  ProtocolError,
  ReplayGuard,
  boxSeal,
  fromBase64Url,
  headerDigest,
  openRequest,
  pad,
  prepareEphemeral,
  sealRequest,
  secretSeal,
  sha256,
  toBase64Url,
  utf8,
  type Envelope,
  type EnvelopeHeader,
  type ErrorCode,
  type OpenRequestOptions,
  type SealedRequest,
} from '../../src/shared/index.js';
import { errorChainText, expectNjError, type ErrorClass } from './support/expect-error.js';
import { MESSAGES, MODEL, NOW, SAMPLING, clone, labelledRandom, makeAgent, testBytes, type TestAgent } from './support/fixtures.js';

const MSG = {
  notRecipient: 'this envelope has no entry for this agent',
  oldBoxKey: 'this envelope was sealed for a box key this agent no longer holds',
  wrapped: 'the wrapped content key does not decrypt: altered, truncated or sealed for another key',
  body: 'the request body does not decrypt: altered, truncated or sealed for another key',
  altered: 'the visible header was altered after sealing',
  bodyLength: 'the body length differs from the header',
  disagrees: 'the sealed request disagrees with its header',
  stale: 'the request was created outside the accepted time window',
  notJson: 'the request body is not JSON',
} as const;
const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const schema = (path: string): RegExp => new RegExp(`^envelope is invalid at ${escapeRegExp(path)}: `);

let A: TestAgent;
let B: TestAgent;
let C: TestAgent;
let sealed: SealedRequest;

beforeAll(async () => {
  [A, B, C] = await Promise.all([makeAgent('agent-a'), makeAgent('agent-b'), makeAgent('agent-c')]);
  sealed = await sealRequest({
    model: MODEL.id,
    messages: MESSAGES,
    sampling: SAMPLING,
    recipients: [A.verified, B.verified],
    now: NOW,
    random: labelledRandom('envelope.test'),
  });
});

function openAs(agent: TestAgent, envelope: unknown, options: Partial<OpenRequestOptions> = {}) {
  return openRequest(envelope, { agentId: agent.identity.agentId, boxKeys: [agent.boxKey], now: NOW, ...options });
}

// ---- byte-level mutations of base64url fields ----
const flipB64 = (text: string, bit: number): string => {
  const bytes = fromBase64Url(text);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toBase64Url(bytes);
};
const truncB64 = (text: string): string => toBase64Url(fromBase64Url(text).subarray(0, -1));
const extendB64 = (text: string): string => toBase64Url(new Uint8Array([...fromBase64Url(text), 0]));
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Sets an unused low bit of the last character: decodes to the same bytes, but is not canonical. */
const nonCanonical = (text: string): string => text.slice(0, -1) + B64[B64.indexOf(text.at(-1)!) | 1]!;
/** Toggles the low bit of the hex digit at `i` (stays valid hex of the same length). */
const flipHex = (text: string, i: number): string => text.slice(0, i) + (parseInt(text[i]!, 16) ^ 1).toString(16) + text.slice(i + 1);
/** Toggles bit `bit` of the character at `i`. */
const flipChar = (text: string, i: number, bit: number): string =>
  text.slice(0, i) + String.fromCharCode(text.charCodeAt(i) ^ (1 << bit)) + text.slice(i + 1);

type Mutation = (e: Envelope) => void;
type Expectation = [ErrorClass, ErrorCode, string | RegExp];

const FRAME = (path: string): Expectation => [ProtocolError, 'NJ_FRAME_INVALID', schema(path)];
const ALTERED: Expectation = [CryptoError, 'NJ_HEADER_MISMATCH', MSG.altered];
const WRAPPED: Expectation = [CryptoError, 'NJ_DECRYPT_FAILED', MSG.wrapped];
const BODY: Expectation = [CryptoError, 'NJ_DECRYPT_FAILED', MSG.body];
const LENGTH: Expectation = [CryptoError, 'NJ_HEADER_MISMATCH', MSG.bodyLength];

async function expectTamperRefused(mutate: Mutation, [cls, code, message]: Expectation, opener: TestAgent = A): Promise<void> {
  const envelope = clone(sealed.envelope);
  mutate(envelope);
  await expectNjError(() => openAs(opener, envelope), cls, code, message);
}

describe('sealing and opening', () => {
  it('opens for each recipient, to the same content key and request', async () => {
    const [byA, byB] = await Promise.all([openAs(A, sealed.envelope), openAs(B, sealed.envelope)]);
    for (const opened of [byA, byB]) {
      expect(opened.contentKey).toEqual(sealed.contentKey);
      expect(opened.requestDigest).toEqual(sealed.requestDigest);
      expect(opened.payload).toMatchObject({
        v: 1,
        jobId: sealed.jobId,
        model: MODEL.id,
        created: NOW,
        messages: MESSAGES,
        sampling: SAMPLING,
      });
      expect(opened.payload.headerDigest).toBe(headerDigest(sealed.envelope.header));
    }
    expect(sealed.requestDigest).toEqual(sha256(fromBase64Url(sealed.envelope.body)));
  });

  it('shows the gateway only the header fields DESIGN.md lists, and no plaintext', () => {
    const { header } = sealed.envelope;
    expect(Object.keys(header).sort()).toEqual([
      'bodyLength',
      'bodyNonce',
      'ephemeralKey',
      'jobId',
      'maxTokens',
      'model',
      'recipients',
      'v',
    ]);
    expect(header.recipients.map((r) => Object.keys(r).sort())).toEqual([
      ['agentId', 'boxKeyId', 'nonce', 'wrappedKey'],
      ['agentId', 'boxKeyId', 'nonce', 'wrappedKey'],
    ]);
    const wire = JSON.stringify(sealed.envelope);
    for (const m of MESSAGES) expect(wire).not.toContain(m.content);
  });

  it('draws fresh randomness by default: two seals of one request share nothing secret', async () => {
    const options = { model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, recipients: [A.verified], now: NOW };
    const [one, two] = await Promise.all([sealRequest(options), sealRequest(options)]);
    expect(one.jobId).not.toBe(two.jobId);
    expect(one.contentKey).not.toEqual(two.contentKey);
    expect(one.envelope.header.ephemeralKey).not.toBe(two.envelope.header.ephemeralKey);
    expect(one.envelope.header.bodyNonce).not.toBe(two.envelope.header.bodyNonce);
    expect(one.envelope.header.recipients[0]!.nonce).not.toBe(two.envelope.header.recipients[0]!.nonce);
  });

  it('seals with a key prepared for exactly these recipients, once, and opens as any other', async () => {
    const options = { model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, recipients: [A.verified, B.verified], now: NOW };
    const prepared = await prepareEphemeral([A.verified, B.verified]);
    const withIt = await sealRequest({ ...options, prepared });
    expect(prepared.usable).toBe(false);
    // Spent: a second seal draws its own key, so the gateway cannot link the two requests by it.
    const again = await sealRequest({ ...options, prepared });
    const fresh = await sealRequest(options);
    const keys = [withIt, again, fresh].map((x) => x.envelope.header.ephemeralKey);
    expect(new Set(keys).size).toBe(3);
    for (const agent of [A, B]) {
      const opened = await openAs(agent, withIt.envelope);
      expect(opened.contentKey).toEqual(withIt.contentKey);
      expect(opened.payload.messages).toEqual(MESSAGES);
    }
  });

  it('does not use a key prepared for other recipients or another order, nor one discarded', async () => {
    const forA = await prepareEphemeral([A.verified]);
    const forAB = await prepareEphemeral([A.verified, B.verified]);
    const options = { model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, now: NOW };
    await sealRequest({ ...options, recipients: [B.verified], prepared: forA });
    await sealRequest({ ...options, recipients: [B.verified, A.verified], prepared: forAB });
    expect(forA.usable).toBe(true);
    expect(forAB.usable).toBe(true);
    expect(forA.fits([A.boxKey.publicKey])).toBe(true);
    const taken = forA.take([A.boxKey.publicKey]);
    expect(taken?.boxKeys).toHaveLength(1);
    expect(forA.take([A.boxKey.publicKey])).toBeNull();
    expect(forAB.take([A.boxKey.publicKey, B.boxKey.publicKey])?.boxKeys).toHaveLength(2);
    const spare = await prepareEphemeral([C.verified]);
    spare.discard();
    expect(spare.usable).toBe(false);
    expect(spare.take([C.boxKey.publicKey])).toBeNull();
  });

  it('pads the body to a power-of-two bucket, so similar requests have equal lengths', async () => {
    const lengthFor = async (content: string) => {
      const s = await sealRequest({
        model: MODEL.id,
        messages: [{ role: 'user', content }],
        sampling: SAMPLING,
        recipients: [A.verified],
        now: NOW,
      });
      expect(fromBase64Url(s.envelope.body)).toHaveLength(s.envelope.header.bodyLength);
      return s.envelope.header.bodyLength;
    };
    expect(await lengthFor('hi')).toBe(LIMITS.minRequestBucketBytes + 16);
    expect(await lengthFor('a much longer question, but still well under a kilobyte')).toBe(LIMITS.minRequestBucketBytes + 16);
    expect(await lengthFor('x'.repeat(1500))).toBe(2048 + 16);
    expect(await lengthFor('x'.repeat(3000))).toBe(4096 + 16);
  });

  it('refuses to seal for no recipients or the same agent twice', async () => {
    const base = { model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, now: NOW };
    const message = 'an envelope needs one or more distinct recipients';
    await expectNjError(() => sealRequest({ ...base, recipients: [] }), NightjarError, 'NJ_BAD_REQUEST', message);
    await expectNjError(() => sealRequest({ ...base, recipients: [A.verified, A.verified] }), NightjarError, 'NJ_BAD_REQUEST', message);
  });

  it(`refuses more than ${LIMITS.maxRecipients} recipients`, async () => {
    const many = await Promise.all(Array.from({ length: LIMITS.maxRecipients + 1 }, (_, i) => makeAgent(`many-${i}`)));
    await expectNjError(
      () => sealRequest({ model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, now: NOW, recipients: many.map((a) => a.verified) }),
      ProtocolError,
      'NJ_FRAME_INVALID',
      /^envelope header is invalid at recipients: /,
    );
  });

  it('refuses a request larger than the biggest bucket', async () => {
    const content = 'x'.repeat(LIMITS.maxRequestBodyBytes);
    await expectNjError(
      () => sealRequest({ model: MODEL.id, messages: [{ role: 'user', content }], sampling: SAMPLING, recipients: [A.verified], now: NOW }),
      NightjarError,
      'NJ_PAYLOAD_TOO_LARGE',
      /^the request is \d+ bytes; the limit is 4194300$/,
    );
  });
});

describe('tamper matrix: each header field, flipped, truncated and extended', () => {
  // Fields the digest inside the ciphertext covers, where the change leaves the field well formed
  // and the opener's own entry intact. Fails if openRequest stops comparing payload.headerDigest
  // with the digest of the header it received.
  it.each<[string, Mutation]>([
    ['jobId, bit 0 flipped', (e) => void (e.header.jobId = flipB64(e.header.jobId, 0))],
    ['jobId, bit 127 flipped', (e) => void (e.header.jobId = flipB64(e.header.jobId, 127))],
    ['model, a bit of its last character flipped', (e) => void (e.header.model = flipChar(e.header.model, e.header.model.length - 1, 0))],
    ['model, truncated by one character', (e) => void (e.header.model = e.header.model.slice(0, -1))],
    ['model, extended by one character', (e) => void (e.header.model += 'x')],
    ['maxTokens, bit 0 flipped', (e) => void (e.header.maxTokens ^= 1)],
    ['maxTokens, minus one', (e) => void (e.header.maxTokens -= 1)],
    ['maxTokens, plus one', (e) => void (e.header.maxTokens += 1)],
    // X25519 ignores the top bit of a public key, so this flip unwraps fine: only the digest sees it.
    ['ephemeralKey, top bit (255) flipped', (e) => void (e.header.ephemeralKey = flipB64(e.header.ephemeralKey, 255))],
    ["the other recipient's agentId, flipped", (e) => void (e.header.recipients[1]!.agentId = flipHex(e.header.recipients[1]!.agentId, 0))],
    [
      "the other recipient's boxKeyId, flipped",
      (e) => void (e.header.recipients[1]!.boxKeyId = flipHex(e.header.recipients[1]!.boxKeyId, 15)),
    ],
    ["the other recipient's nonce, flipped", (e) => void (e.header.recipients[1]!.nonce = flipB64(e.header.recipients[1]!.nonce, 0))],
    [
      "the other recipient's wrappedKey, flipped",
      (e) => void (e.header.recipients[1]!.wrappedKey = flipB64(e.header.recipients[1]!.wrappedKey, 383)),
    ],
    ['recipients, reordered', (e) => void e.header.recipients.reverse()],
    ['recipients, the other one removed', (e) => void e.header.recipients.splice(1, 1)],
  ])('%s → NJ_HEADER_MISMATCH', async (_what, mutate) => {
    await expectTamperRefused(mutate, ALTERED);
  });

  // The opener's own entry: which key to use and how it was wrapped. Fails if openRequest stops
  // matching the entry by agentId and boxKeyId, or stops authenticating the wrapped key.
  it.each<[string, Mutation, Expectation]>([
    [
      'own agentId, flipped',
      (e) => void (e.header.recipients[0]!.agentId = flipHex(e.header.recipients[0]!.agentId, 31)),
      [CryptoError, 'NJ_NOT_A_RECIPIENT', MSG.notRecipient],
    ],
    [
      'own boxKeyId, flipped',
      (e) => void (e.header.recipients[0]!.boxKeyId = flipHex(e.header.recipients[0]!.boxKeyId, 0)),
      [CryptoError, 'NJ_NOT_A_RECIPIENT', MSG.oldBoxKey],
    ],
    ['own nonce, bit 0 flipped', (e) => void (e.header.recipients[0]!.nonce = flipB64(e.header.recipients[0]!.nonce, 0)), WRAPPED],
    ['own nonce, bit 191 flipped', (e) => void (e.header.recipients[0]!.nonce = flipB64(e.header.recipients[0]!.nonce, 191)), WRAPPED],
    [
      'own wrappedKey, bit 0 flipped (the tag)',
      (e) => void (e.header.recipients[0]!.wrappedKey = flipB64(e.header.recipients[0]!.wrappedKey, 0)),
      WRAPPED,
    ],
    [
      'own wrappedKey, bit 383 flipped (the key)',
      (e) => void (e.header.recipients[0]!.wrappedKey = flipB64(e.header.recipients[0]!.wrappedKey, 383)),
      WRAPPED,
    ],
    ['ephemeralKey, bit 0 flipped', (e) => void (e.header.ephemeralKey = flipB64(e.header.ephemeralKey, 0)), WRAPPED],
    ['ephemeralKey, bit 200 flipped', (e) => void (e.header.ephemeralKey = flipB64(e.header.ephemeralKey, 200)), WRAPPED],
    [
      'ephemeralKey, replaced by a low-order point',
      (e) => void (e.header.ephemeralKey = toBase64Url(new Uint8Array(32))),
      [CryptoError, 'NJ_BAD_KEY', /^the public key is /],
    ],
    ['bodyNonce, bit 0 flipped', (e) => void (e.header.bodyNonce = flipB64(e.header.bodyNonce, 0)), BODY],
    ['bodyNonce, bit 191 flipped', (e) => void (e.header.bodyNonce = flipB64(e.header.bodyNonce, 191)), BODY],
    // Refused by the header's schema before any key is tried (the gateway refuses it the same way).
    [
      "recipients, the opener's entry added twice",
      (e) => void e.header.recipients.push(clone(e.header.recipients[0]!)),
      [ProtocolError, 'NJ_FRAME_INVALID', 'envelope is invalid at header.recipients: each agent may be named only once'],
    ],
  ])('%s', async (_what, mutate, expected) => {
    await expectTamperRefused(mutate, expected);
  });

  // bodyLength is checked against the body before decrypting. Fails if openRequest stops
  // comparing them (the change would then surface as "altered after sealing" instead).
  it.each<[string, Mutation]>([
    ['bodyLength, bit 0 flipped', (e) => void (e.header.bodyLength ^= 1)],
    ['bodyLength, plus one', (e) => void (e.header.bodyLength += 1)],
    ['bodyLength, doubled', (e) => void (e.header.bodyLength *= 2)],
  ])('%s → NJ_HEADER_MISMATCH (length)', async (_what, mutate) => {
    await expectTamperRefused(mutate, LENGTH);
  });

  // Malformed fields never reach the crypto: the schema refuses them first.
  it.each<[string, Mutation, string]>([
    ['v, bit 0 flipped', (e) => void ((e.header as { v: number }).v ^= 1), 'header.v'],
    ['v, plus one', (e) => void ((e.header as { v: number }).v += 1), 'header.v'],
    ['jobId, truncated', (e) => void (e.header.jobId = truncB64(e.header.jobId)), 'header.jobId'],
    ['jobId, extended', (e) => void (e.header.jobId = extendB64(e.header.jobId)), 'header.jobId'],
    ['jobId, a second spelling of the same bytes', (e) => void (e.header.jobId = nonCanonical(e.header.jobId)), 'header.jobId'],
    ['model, upper case', (e) => void (e.header.model = flipChar(e.header.model, 0, 5)), 'header.model'],
    ['model, emptied', (e) => void (e.header.model = ''), 'header.model'],
    ['maxTokens, zero', (e) => void (e.header.maxTokens = 0), 'header.maxTokens'],
    ['maxTokens, above the protocol limit', (e) => void (e.header.maxTokens = LIMITS.maxTokens + 1), 'header.maxTokens'],
    ['ephemeralKey, truncated', (e) => void (e.header.ephemeralKey = truncB64(e.header.ephemeralKey)), 'header.ephemeralKey'],
    ['ephemeralKey, extended', (e) => void (e.header.ephemeralKey = extendB64(e.header.ephemeralKey)), 'header.ephemeralKey'],
    [
      'own agentId, truncated',
      (e) => void (e.header.recipients[0]!.agentId = e.header.recipients[0]!.agentId.slice(0, -1)),
      'header.recipients.0.agentId',
    ],
    ['own agentId, extended', (e) => void (e.header.recipients[0]!.agentId += '0'), 'header.recipients.0.agentId'],
    [
      'own boxKeyId, truncated',
      (e) => void (e.header.recipients[0]!.boxKeyId = e.header.recipients[0]!.boxKeyId.slice(0, -1)),
      'header.recipients.0.boxKeyId',
    ],
    ['own boxKeyId, extended', (e) => void (e.header.recipients[0]!.boxKeyId += '0'), 'header.recipients.0.boxKeyId'],
    [
      'own nonce, truncated',
      (e) => void (e.header.recipients[0]!.nonce = truncB64(e.header.recipients[0]!.nonce)),
      'header.recipients.0.nonce',
    ],
    [
      'own nonce, extended',
      (e) => void (e.header.recipients[0]!.nonce = extendB64(e.header.recipients[0]!.nonce)),
      'header.recipients.0.nonce',
    ],
    [
      'own wrappedKey, truncated',
      (e) => void (e.header.recipients[0]!.wrappedKey = truncB64(e.header.recipients[0]!.wrappedKey)),
      'header.recipients.0.wrappedKey',
    ],
    [
      'own wrappedKey, extended',
      (e) => void (e.header.recipients[0]!.wrappedKey = extendB64(e.header.recipients[0]!.wrappedKey)),
      'header.recipients.0.wrappedKey',
    ],
    [
      "the other recipient's nonce, truncated",
      (e) => void (e.header.recipients[1]!.nonce = truncB64(e.header.recipients[1]!.nonce)),
      'header.recipients.1.nonce',
    ],
    [
      "the other recipient's wrappedKey, extended",
      (e) => void (e.header.recipients[1]!.wrappedKey = extendB64(e.header.recipients[1]!.wrappedKey)),
      'header.recipients.1.wrappedKey',
    ],
    ['recipients, emptied', (e) => void (e.header.recipients = []), 'header.recipients'],
    ['bodyNonce, truncated', (e) => void (e.header.bodyNonce = truncB64(e.header.bodyNonce)), 'header.bodyNonce'],
    ['bodyNonce, extended', (e) => void (e.header.bodyNonce = extendB64(e.header.bodyNonce)), 'header.bodyNonce'],
    ['bodyLength, below the smallest bucket', (e) => void (e.header.bodyLength = LIMITS.minRequestBucketBytes + 15), 'header.bodyLength'],
    ['an extra header field', (e) => void Object.assign(e.header, { route: 'x' }), 'header'],
    ['an extra envelope field', (e) => void Object.assign(e, { note: 'x' }), '(root)'],
  ])('%s → NJ_FRAME_INVALID', async (_what, mutate, path) => {
    await expectTamperRefused(mutate, FRAME(path));
  });
});

describe('tamper matrix: the body', () => {
  const editBody = (e: Envelope, edit: (b: Uint8Array) => Uint8Array): void => {
    e.body = toBase64Url(edit(fromBase64Url(e.body)));
  };
  const flipAt = (bit: number) => (b: Uint8Array) => {
    const out = new Uint8Array(b);
    out[bit >> 3]! ^= 1 << (bit & 7);
    return out;
  };

  // Fails if openRequest stops authenticating the body (secretbox open).
  it.each([0, 7, 127, 128, 4000, -1])('bit %s flipped → NJ_DECRYPT_FAILED', async (bit) => {
    await expectTamperRefused((e) => editBody(e, (b) => flipAt(bit < 0 ? b.length * 8 + bit : bit)(b)), BODY);
  });

  // Fails if openRequest stops comparing the body length with header.bodyLength.
  it.each<[string, (b: Uint8Array) => Uint8Array]>([
    ['truncated by one byte', (b) => b.subarray(0, -1)],
    ['truncated to the tag', (b) => b.subarray(0, 16)],
    ['extended by one byte', (b) => new Uint8Array([...b, 0])],
    ['emptied', () => new Uint8Array(0)],
  ])('%s → NJ_HEADER_MISMATCH (length)', async (_what, edit) => {
    await expectTamperRefused((e) => editBody(e, edit), LENGTH);
  });

  it('extended, with bodyLength extended to match → NJ_DECRYPT_FAILED', async () => {
    await expectTamperRefused((e) => {
      editBody(e, (b) => new Uint8Array([...b, 0]));
      e.header.bodyLength += 1;
    }, BODY);
  });

  it('swapped for the body of another request to the same agents → NJ_DECRYPT_FAILED', async () => {
    const other = await sealRequest({
      model: MODEL.id,
      messages: MESSAGES,
      sampling: SAMPLING,
      recipients: [A.verified, B.verified],
      now: NOW,
    });
    await expectTamperRefused((e) => void (e.body = other.envelope.body), BODY);
  });

  it('written as non-canonical base64url → NJ_FRAME_INVALID', async () => {
    // 1040 bytes leave two spare bits in the last character; setting one is a second spelling.
    await expectTamperRefused(
      (e) => void (e.body = nonCanonical(e.body)),
      [ProtocolError, 'NJ_FRAME_INVALID', 'base64url text is not canonical'],
    );
  });
});

describe('tamper matrix: every bit of every binary field', () => {
  // The sweep behind the table above: no single-bit change anywhere in the envelope opens.
  it('refuses each single-bit flip with the check responsible for that field', async () => {
    const fields: [string, (e: Envelope) => { get: () => string; set: (v: string) => void }, ErrorCode][] = [
      ['jobId', (e) => ({ get: () => e.header.jobId, set: (v) => void (e.header.jobId = v) }), 'NJ_HEADER_MISMATCH'],
      [
        'own nonce',
        (e) => ({ get: () => e.header.recipients[0]!.nonce, set: (v) => void (e.header.recipients[0]!.nonce = v) }),
        'NJ_DECRYPT_FAILED',
      ],
      [
        'own wrappedKey',
        (e) => ({ get: () => e.header.recipients[0]!.wrappedKey, set: (v) => void (e.header.recipients[0]!.wrappedKey = v) }),
        'NJ_DECRYPT_FAILED',
      ],
      [
        'other nonce',
        (e) => ({ get: () => e.header.recipients[1]!.nonce, set: (v) => void (e.header.recipients[1]!.nonce = v) }),
        'NJ_HEADER_MISMATCH',
      ],
      [
        'other wrappedKey',
        (e) => ({ get: () => e.header.recipients[1]!.wrappedKey, set: (v) => void (e.header.recipients[1]!.wrappedKey = v) }),
        'NJ_HEADER_MISMATCH',
      ],
      ['bodyNonce', (e) => ({ get: () => e.header.bodyNonce, set: (v) => void (e.header.bodyNonce = v) }), 'NJ_DECRYPT_FAILED'],
      ['ephemeralKey', (e) => ({ get: () => e.header.ephemeralKey, set: (v) => void (e.header.ephemeralKey = v) }), 'NJ_DECRYPT_FAILED'],
    ];
    const outcomes = new Map<string, number>();
    for (const [name, access, code] of fields) {
      const bits = fromBase64Url(access(sealed.envelope).get()).length * 8;
      for (let bit = 0; bit < bits; bit++) {
        const envelope = clone(sealed.envelope);
        const field = access(envelope);
        field.set(flipB64(field.get(), bit));
        const error = await openAs(A, envelope).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, `${name} bit ${bit} opened`).toBeInstanceOf(CryptoError);
        // The one exception: the ignored top bit of the ephemeral key is caught by the digest.
        const expected = name === 'ephemeralKey' && bit === 255 ? 'NJ_HEADER_MISMATCH' : code;
        expect((error as CryptoError).code, `${name} bit ${bit}`).toBe(expected);
        outcomes.set(name, (outcomes.get(name) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(outcomes)).toEqual({
      jobId: 128,
      'own nonce': 192,
      'own wrappedKey': 384,
      'other nonce': 192,
      'other wrappedKey': 384,
      bodyNonce: 192,
      ephemeralKey: 256,
    });
  });

  it('refuses a flip in every byte of the body', async () => {
    const body = fromBase64Url(sealed.envelope.body);
    for (let i = 0; i < body.length; i++) {
      const envelope = clone(sealed.envelope);
      const bytes = new Uint8Array(body);
      bytes[i]! ^= 1 << (i & 7);
      envelope.body = toBase64Url(bytes);
      const error = await openAs(A, envelope).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as CryptoError | undefined)?.code, `body byte ${i}`).toBe('NJ_DECRYPT_FAILED');
    }
  });
});

describe('recipients and keys', () => {
  it('an envelope for agent A opened by agent B → NJ_NOT_A_RECIPIENT', async () => {
    const onlyA = await sealRequest({ model: MODEL.id, messages: MESSAGES, sampling: SAMPLING, recipients: [A.verified], now: NOW });
    await expectNjError(() => openAs(B, onlyA.envelope), CryptoError, 'NJ_NOT_A_RECIPIENT', MSG.notRecipient);
    await expectNjError(() => openAs(C, sealed.envelope), CryptoError, 'NJ_NOT_A_RECIPIENT', MSG.notRecipient);
  });

  // Agent A's entry filed under agent B's id. Fails if openRequest picks the box key by agentId
  // alone and ignores the entry's boxKeyId.
  it("A's entry under B's id → NJ_NOT_A_RECIPIENT for B", async () => {
    await expectTamperRefused(
      (e) => {
        const [a, b] = e.header.recipients;
        e.header.recipients = [
          { ...b!, agentId: a!.agentId },
          { ...a!, agentId: b!.agentId },
        ];
      },
      [CryptoError, 'NJ_NOT_A_RECIPIENT', MSG.oldBoxKey],
      B,
    );
  });

  // A's wrapped key (nonce and ciphertext) under B's id and box key id: B's key cannot open it.
  // Fails if the wrap stops being bound to the recipient's box key.
  it("A's wrapped key under B's id and box key id → NJ_DECRYPT_FAILED for B", async () => {
    await expectTamperRefused(
      (e) => {
        const [a, b] = e.header.recipients;
        e.header.recipients = [a!, { ...b!, nonce: a!.nonce, wrappedKey: a!.wrappedKey }];
      },
      WRAPPED,
      B,
    );
  });

  it('the wrong secret under the right box key id → NJ_DECRYPT_FAILED', async () => {
    const wrongKey = { ...A.boxKey, secretKey: B.boxKey.secretKey };
    await expectNjError(() => openAs(A, sealed.envelope, { boxKeys: [wrongKey] }), CryptoError, 'NJ_DECRYPT_FAILED', MSG.wrapped);
  });

  it('after a rotation: opens with the previous key kept, refuses once it is dropped', async () => {
    const next = await makeAgent('agent-a-next');
    expect((await openAs(A, sealed.envelope, { boxKeys: [next.boxKey, A.boxKey] })).payload.jobId).toBe(sealed.jobId);
    await expectNjError(() => openAs(A, sealed.envelope, { boxKeys: [next.boxKey] }), CryptoError, 'NJ_NOT_A_RECIPIENT', MSG.oldBoxKey);
  });
});

describe('freshness and replay', () => {
  // Fails if openRequest stops checking created against now - maxAge and now + maxSkew.
  it.each<[string, number, boolean]>([
    ['exactly at the age limit', NOW + LIMITS.maxRequestAgeMs, true],
    ['one millisecond too old', NOW + LIMITS.maxRequestAgeMs + 1, false],
    ['an hour too old', NOW + 3_600_000, false],
    ['exactly at the skew limit', NOW - LIMITS.maxClockSkewMs, true],
    ['one millisecond too far in the future', NOW - LIMITS.maxClockSkewMs - 1, false],
    ['a day in the future', NOW - 86_400_000, false],
  ])('created %s', async (_what, now, ok) => {
    if (ok) expect((await openAs(A, sealed.envelope, { now })).payload.created).toBe(NOW);
    else await expectNjError(() => openAs(A, sealed.envelope, { now }), CryptoError, 'NJ_STALE_REQUEST', MSG.stale);
  });

  it('honours tighter limits given as options', async () => {
    await expectNjError(() => openAs(A, sealed.envelope, { now: NOW + 1001, maxAgeMs: 1000 }), CryptoError, 'NJ_STALE_REQUEST', MSG.stale);
    await expectNjError(() => openAs(A, sealed.envelope, { now: NOW - 11, maxSkewMs: 10 }), CryptoError, 'NJ_STALE_REQUEST', MSG.stale);
  });

  // Fails if ReplayGuard.check stops remembering jobIds.
  it('a replayed jobId through ReplayGuard → NJ_REPLAY', async () => {
    const guard = new ReplayGuard();
    const opened = await openAs(A, sealed.envelope);
    guard.check(opened.payload.jobId, opened.payload.created, NOW);
    const again = await openAs(A, clone(sealed.envelope));
    await expectNjError(
      () => guard.check(again.payload.jobId, again.payload.created, NOW + 1000),
      CryptoError,
      'NJ_REPLAY',
      'this jobId was already served',
    );
    expect(() => guard.check(toBase64Url(testBytes('another job', 16)), NOW, NOW)).not.toThrow();
    expect(guard.size).toBe(2);
  });

  it('remembers an id for as long as its request could still pass the age check', () => {
    const guard = new ReplayGuard();
    const horizon = LIMITS.maxRequestAgeMs + LIMITS.maxClockSkewMs;
    guard.check('job-1', NOW, NOW);
    guard.prune(NOW + horizon);
    expect(guard.size).toBe(1);
    guard.prune(NOW + horizon + 1);
    expect(guard.size).toBe(0);
  });

  it('when full, prunes what aged out and otherwise refuses rather than forgetting', async () => {
    const guard = new ReplayGuard({ maxEntries: 2, horizonMs: 1000 });
    guard.check('a', NOW, NOW);
    guard.check('b', NOW + 500, NOW + 500);
    const busy = await expectNjError(
      () => guard.check('c', NOW + 600, NOW + 600),
      NightjarError,
      'NJ_ENGINE_BUSY',
      'too many recent jobs to remember; try again shortly',
    );
    expect(busy.retryAfterMs).toBe(1000);
    // 'a' expires at NOW + 1000: at NOW + 1001 it is pruned to make room, 'b' is still held.
    guard.check('c', NOW + 1001, NOW + 1001);
    await expectNjError(() => guard.check('b', NOW + 1001, NOW + 1001), CryptoError, 'NJ_REPLAY', 'this jobId was already served');
  });
});

describe('a client that seals something inconsistent', () => {
  /** Builds an envelope by hand from the primitives, so the sealed payload can disagree with it. */
  async function craft(
    recipient: TestAgent,
    edit: { payload?: (p: Record<string, unknown>) => void; padded?: (plaintext: Uint8Array) => Uint8Array },
  ): Promise<Envelope> {
    const contentKey = testBytes('craft/content-key', 32);
    const ephemeralSecret = testBytes('craft/ephemeral', 32);
    const nonce = testBytes('craft/nonce', 24);
    const bodyNonce = testBytes('craft/body-nonce', 24);
    const jobId = toBase64Url(testBytes('craft/job', 16));
    const header: EnvelopeHeader = {
      v: 1,
      jobId,
      model: MODEL.id,
      maxTokens: SAMPLING.maxTokens,
      ephemeralKey: toBase64Url(nacl.box.keyPair.fromSecretKey(ephemeralSecret).publicKey),
      recipients: [
        {
          agentId: recipient.identity.agentId,
          boxKeyId: recipient.boxKey.keyId,
          nonce: toBase64Url(nonce),
          wrappedKey: toBase64Url(await boxSeal(contentKey, nonce, recipient.boxKey.publicKey, ephemeralSecret)),
        },
      ],
      bodyNonce: toBase64Url(bodyNonce),
      bodyLength: LIMITS.minRequestBucketBytes + 16,
    };
    const payload: Record<string, unknown> = {
      v: 1,
      jobId,
      model: MODEL.id,
      created: NOW,
      headerDigest: headerDigest(header),
      messages: MESSAGES,
      sampling: SAMPLING,
    };
    edit.payload?.(payload);
    const plaintext = utf8(JSON.stringify(payload));
    const padded = edit.padded ? edit.padded(plaintext) : pad(plaintext, LIMITS.minRequestBucketBytes);
    return { header, body: toBase64Url(secretSeal(padded, bodyNonce, contentKey)) };
  }

  it('opens when consistent (the crafting itself is sound)', async () => {
    expect((await openAs(A, await craft(A, {}))).payload.messages).toEqual(MESSAGES);
  });

  // The digest covers the header, but the agent also compares the sealed copies of jobId, model
  // and maxTokens with the header. Fails if openRequest drops that comparison.
  it.each<[string, (p: Record<string, unknown>) => void]>([
    ['jobId', (p) => void (p.jobId = toBase64Url(testBytes('craft/other-job', 16)))],
    ['model', (p) => void (p.model = 'some-other-model')],
    ['sampling.maxTokens', (p) => void (p.sampling = { ...SAMPLING, maxTokens: SAMPLING.maxTokens + 1 })],
  ])('sealed %s differs from the header → NJ_HEADER_MISMATCH', async (_what, edit) => {
    await expectNjError(async () => openAs(A, await craft(A, { payload: edit })), CryptoError, 'NJ_HEADER_MISMATCH', MSG.disagrees);
  });

  it('sealed headerDigest of another header → NJ_HEADER_MISMATCH', async () => {
    const edit = (p: Record<string, unknown>) => void (p.headerDigest = headerDigest(sealed.envelope.header));
    await expectNjError(async () => openAs(A, await craft(A, { payload: edit })), CryptoError, 'NJ_HEADER_MISMATCH', MSG.altered);
  });

  it('a sealed payload that breaks the schema → NJ_FRAME_INVALID naming the field', async () => {
    const edit = (p: Record<string, unknown>) => void delete p.messages;
    await expectNjError(
      async () => openAs(A, await craft(A, { payload: edit })),
      ProtocolError,
      'NJ_FRAME_INVALID',
      /^request is invalid at messages: /,
    );
  });

  it('an impossible padding length → NJ_DECRYPT_FAILED', async () => {
    const padded = () => {
      const out = new Uint8Array(LIMITS.minRequestBucketBytes);
      new DataView(out.buffer).setUint32(0, LIMITS.minRequestBucketBytes - 3);
      return out;
    };
    await expectNjError(
      async () => openAs(A, await craft(A, { padded })),
      CryptoError,
      'NJ_DECRYPT_FAILED',
      'padded message has an impossible length',
    );
  });

  // The plaintext is a prompt: an error about it must not carry it, not even in `cause`, where a
  // logger printing the error would find it. Fails if openRequest attaches the JSON parse error.
  it('a body that is not JSON → NJ_DECRYPT_FAILED, without echoing the plaintext anywhere', async () => {
    const canary = 'CANARY-do-not-log-this-prompt';
    // V8's JSON.parse error quotes the start of its input: "Unexpected token 'C', "CANARY-do-"…".
    const padded = () => pad(utf8(`${canary} and more of the prompt`), LIMITS.minRequestBucketBytes);
    const error = await expectNjError(async () => openAs(A, await craft(A, { padded })), CryptoError, 'NJ_DECRYPT_FAILED', MSG.notJson);
    // V8 quotes only the first ten characters, so look for a prefix of the canary.
    expect(errorChainText(error)).not.toContain(canary.slice(0, 6));
    expect(JSON.stringify(error.toJSON())).not.toContain(canary.slice(0, 6));
  });

  it('a body that is not UTF-8 → NJ_DECRYPT_FAILED', async () => {
    const padded = () => pad(new Uint8Array([0x7b, 0xff, 0x7d]), LIMITS.minRequestBucketBytes);
    await expectNjError(async () => openAs(A, await craft(A, { padded })), CryptoError, 'NJ_DECRYPT_FAILED', MSG.notJson);
  });
});
