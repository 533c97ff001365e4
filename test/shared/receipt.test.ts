/**
 * Receipts (DESIGN.md "Envelope" step 6): the agent's signed statement of a job, which the gateway
 * checks before crediting anyone and the client checks against what it sent and received.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CryptoError,
  ProtocolError,
  RECEIPT_DOMAIN,
  canonicalJson,
  cryptoBackend,
  fromBase64Url,
  signReceipt,
  signingBytes,
  toBase64Url,
  utf8,
  verifyReceipt,
  type Receipt,
  type ReceiptExpectations,
  type SignedReceipt,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';
import { MODEL, NOW, clone, makeAgent, testBytes, type TestAgent } from './support/fixtures.js';

const SIGNATURE = 'receipt signature does not verify';

let A: TestAgent;
let B: TestAgent;
let receipt: Receipt;
let signed: SignedReceipt;
let expectations: ReceiptExpectations;

const REQUEST_DIGEST = testBytes('receipt/request', 32);
const REPLY_DIGEST = testBytes('receipt/reply', 32);

beforeAll(async () => {
  [A, B] = await Promise.all([makeAgent('receipt-agent'), makeAgent('receipt-other')]);
  receipt = {
    v: 1,
    jobId: toBase64Url(testBytes('receipt/job', 16)),
    attempt: 1,
    agentId: A.identity.agentId,
    model: MODEL.id,
    modelSha256: MODEL.sha256,
    promptTokens: 42,
    completionTokens: 7,
    requestDigest: toBase64Url(REQUEST_DIGEST),
    replyDigest: toBase64Url(REPLY_DIGEST),
    startedAt: NOW,
    endedAt: NOW + 1234,
    finishReason: 'stop',
  };
  signed = await signReceipt(receipt, A.identity);
  expectations = {
    identityKey: A.identity.publicKey,
    agentId: A.identity.agentId,
    jobId: receipt.jobId,
    attempt: 1,
    model: MODEL.id,
    requestDigest: REQUEST_DIGEST,
    replyDigest: REPLY_DIGEST,
    promptTokens: 42,
    completionTokens: 7,
  };
});

const flipB64 = (text: string, bit = 0): string => {
  const bytes = fromBase64Url(text);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toBase64Url(bytes);
};

describe('a genuine receipt', () => {
  it('verifies against everything the verifier knows, and against the key alone', async () => {
    expect(await verifyReceipt(signed, expectations)).toEqual(receipt);
    expect(await verifyReceipt(signed, { identityKey: A.identity.publicKey })).toEqual(receipt);
  });

  it('is signed over its canonical encoding under the receipt domain', async () => {
    const bytes = utf8(`nightjar/receipt/v1\n${canonicalJson(receipt)}`);
    expect(signingBytes(RECEIPT_DOMAIN, receipt)).toEqual(bytes);
    expect(await (await cryptoBackend()).verify(A.identity.publicKey, bytes, fromBase64Url(signed.signature))).toBe(true);
  });
});

describe('tamper matrix: every field altered', () => {
  // Fails if verifyReceipt stops checking the signature (each field is covered by it).
  it.each<[string, (r: Receipt) => void]>([
    ['jobId', (r) => void (r.jobId = flipB64(r.jobId))],
    ['attempt', (r) => void (r.attempt += 1)],
    ['agentId', (r) => void (r.agentId = B.identity.agentId)],
    ['model', (r) => void (r.model = 'another-model')],
    ['modelSha256', (r) => void (r.modelSha256 = 'f' + r.modelSha256.slice(1))],
    ['promptTokens', (r) => void (r.promptTokens += 1)],
    ['completionTokens', (r) => void (r.completionTokens += 1000)],
    ['requestDigest', (r) => void (r.requestDigest = flipB64(r.requestDigest, 255))],
    ['replyDigest', (r) => void (r.replyDigest = flipB64(r.replyDigest, 3))],
    ['startedAt', (r) => void (r.startedAt -= 1)],
    ['endedAt', (r) => void (r.endedAt += 1)],
    ['finishReason', (r) => void (r.finishReason = 'length')],
  ])('%s → NJ_RECEIPT_INVALID', async (_what, mutate) => {
    const tampered = clone(signed);
    mutate(tampered.receipt);
    await expectNjError(() => verifyReceipt(tampered, { identityKey: A.identity.publicKey }), CryptoError, 'NJ_RECEIPT_INVALID', SIGNATURE);
  });

  it.each([0, 255, 256, 511])('signature bit %s flipped → NJ_RECEIPT_INVALID', async (bit) => {
    const tampered = { ...signed, signature: flipB64(signed.signature, bit) };
    await expectNjError(() => verifyReceipt(tampered, expectations), CryptoError, 'NJ_RECEIPT_INVALID', SIGNATURE);
  });

  it.each<[string, (s: SignedReceipt) => void, string]>([
    ['v', (s) => void ((s.receipt as { v: number }).v = 2), 'receipt is invalid at receipt.v: Invalid input: expected 1'],
    [
      'signature, truncated',
      (s) => void (s.signature = s.signature.slice(0, -2)),
      'receipt is invalid at signature: expected 64 bytes of base64url',
    ],
    ['an extra field', (s) => void Object.assign(s.receipt, { bonus: 1 }), 'receipt is invalid at receipt: Unrecognized key: "bonus"'],
    [
      'negative tokens',
      (s) => void (s.receipt.promptTokens = -1),
      'receipt is invalid at receipt.promptTokens: Too small: expected number to be >=0',
    ],
  ])('%s → NJ_RECEIPT_INVALID (schema)', async (_what, mutate, message) => {
    const tampered = clone(signed);
    mutate(tampered);
    await expectNjError(() => verifyReceipt(tampered, expectations), CryptoError, 'NJ_RECEIPT_INVALID', message);
  });
});

describe('the signer', () => {
  it('verified against another agent’s key → NJ_RECEIPT_INVALID', async () => {
    await expectNjError(
      () => verifyReceipt(signed, { ...expectations, identityKey: B.identity.publicKey }),
      CryptoError,
      'NJ_RECEIPT_INVALID',
      SIGNATURE,
    );
  });

  // Agent A signs a receipt that names agent B, hoping whoever pays by agentId credits B.
  // Fails if verifyReceipt stops binding the receipt's agentId to the key that signed it.
  it('a receipt naming another agent than its signer → NJ_RECEIPT_INVALID, even with no agentId expected', async () => {
    const forged = { ...receipt, agentId: B.identity.agentId };
    const signature = await (await cryptoBackend()).sign(A.identity.seed, signingBytes(RECEIPT_DOMAIN, forged));
    const input = { receipt: forged, signature: toBase64Url(signature) };
    await expectNjError(
      () => verifyReceipt(input, { identityKey: A.identity.publicKey }),
      CryptoError,
      'NJ_RECEIPT_INVALID',
      'receipt agentId is not the id of the key that signed it',
    );
    await expectNjError(() => verifyReceipt(input, { identityKey: B.identity.publicKey }), CryptoError, 'NJ_RECEIPT_INVALID', SIGNATURE);
  });

  it('signReceipt refuses to sign for another agent, or a malformed receipt', async () => {
    await expectNjError(
      () => signReceipt({ ...receipt, agentId: B.identity.agentId }, A.identity),
      CryptoError,
      'NJ_BAD_KEY',
      'a receipt must name the agent that signs it',
    );
    await expectNjError(
      () => signReceipt({ ...receipt, completionTokens: 1.5 }, A.identity),
      ProtocolError,
      'NJ_FRAME_INVALID',
      /^receipt is invalid at completionTokens: /,
    );
  });
});

describe('expectations', () => {
  // Each fails if verifyReceipt stops comparing that field with what the verifier knows.
  it.each<[keyof ReceiptExpectations, (e: ReceiptExpectations) => void]>([
    ['agentId', (e) => void (e.agentId = B.identity.agentId)],
    ['jobId', (e) => void (e.jobId = toBase64Url(testBytes('receipt/other-job', 16)))],
    ['attempt', (e) => void (e.attempt = 0)],
    ['model', (e) => void (e.model = 'another-model')],
    ['requestDigest', (e) => void (e.requestDigest = testBytes('receipt/other-request', 32))],
    ['replyDigest', (e) => void (e.replyDigest = testBytes('receipt/other-reply', 32))],
    ['promptTokens', (e) => void (e.promptTokens = 41)],
    ['completionTokens', (e) => void (e.completionTokens = 8)],
  ])('%s differs → NJ_RECEIPT_INVALID', async (field, change) => {
    const expected = { ...expectations };
    change(expected);
    await expectNjError(
      () => verifyReceipt(signed, expected),
      CryptoError,
      'NJ_RECEIPT_INVALID',
      `receipt ${field} does not match the job`,
    );
  });

  // Fails if verifyReceipt stops checking that the job ended after it started.
  it('a job that ended before it started → NJ_RECEIPT_INVALID', async () => {
    const backwards = await signReceipt({ ...receipt, endedAt: receipt.startedAt - 1 }, A.identity);
    await expectNjError(
      () => verifyReceipt(backwards, expectations),
      CryptoError,
      'NJ_RECEIPT_INVALID',
      'receipt time span does not match the job',
    );
  });
});
