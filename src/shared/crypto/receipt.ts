/**
 * Receipts: the agent's signed statement of one job. The gateway verifies it (against the bytes
 * it relayed) before crediting anyone; the client verifies it against what it sent and received.
 */
import { CryptoError } from '../errors.js';
import { bytesEqual, fromBase64Url, signingBytes, toBase64Url } from '../encoding.js';
import { validate } from '../protocol/codec.js';
import { receiptSchema, signedReceiptSchema, type Receipt, type SignedReceipt } from '../protocol/schemas.js';
import { cryptoBackend } from './backend.js';
import { agentIdFor, type IdentityKeyPair } from './keys.js';

/** Signing domain of receipts. */
export const RECEIPT_DOMAIN = 'receipt/v1';

/** Signs a receipt with the agent's identity key. */
export async function signReceipt(receipt: Receipt, identity: IdentityKeyPair): Promise<SignedReceipt> {
  const checked = validate(receiptSchema, receipt, 'receipt');
  if (checked.agentId !== identity.agentId) throw new CryptoError('NJ_BAD_KEY', 'a receipt must name the agent that signs it');
  const signature = await (await cryptoBackend()).sign(identity.seed, signingBytes(RECEIPT_DOMAIN, checked));
  return { receipt: checked, signature: toBase64Url(signature) };
}

/** What a verifier knows independently of the receipt. Every field given must match. */
export interface ReceiptExpectations {
  /** The signer's identity key, from a verified bundle. */
  identityKey: Uint8Array;
  agentId?: string;
  jobId?: string;
  attempt?: number;
  model?: string;
  requestDigest?: Uint8Array;
  replyDigest?: Uint8Array;
  promptTokens?: number;
  completionTokens?: number;
}

/** Verifies a signed receipt; throws NJ_RECEIPT_INVALID naming the first check that failed. */
export async function verifyReceipt(input: unknown, expected: ReceiptExpectations): Promise<Receipt> {
  let signed: SignedReceipt;
  try {
    signed = validate(signedReceiptSchema, input, 'receipt');
  } catch (cause) {
    throw new CryptoError('NJ_RECEIPT_INVALID', (cause as Error).message, { cause });
  }
  const r = signed.receipt;
  const ok = await (await cryptoBackend()).verify(expected.identityKey, signingBytes(RECEIPT_DOMAIN, r), fromBase64Url(signed.signature));
  if (!ok) throw new CryptoError('NJ_RECEIPT_INVALID', 'receipt signature does not verify');
  // Whoever pays by agentId must not pay agent B for a receipt agent A signed.
  if (r.agentId !== agentIdFor(expected.identityKey)) {
    throw new CryptoError('NJ_RECEIPT_INVALID', 'receipt agentId is not the id of the key that signed it');
  }
  const mismatch = (field: string): never => {
    throw new CryptoError('NJ_RECEIPT_INVALID', `receipt ${field} does not match the job`);
  };
  if (expected.agentId !== undefined && r.agentId !== expected.agentId) mismatch('agentId');
  if (expected.jobId !== undefined && r.jobId !== expected.jobId) mismatch('jobId');
  if (expected.attempt !== undefined && r.attempt !== expected.attempt) mismatch('attempt');
  if (expected.model !== undefined && r.model !== expected.model) mismatch('model');
  if (expected.requestDigest && !bytesEqual(fromBase64Url(r.requestDigest), expected.requestDigest)) mismatch('requestDigest');
  if (expected.replyDigest && !bytesEqual(fromBase64Url(r.replyDigest), expected.replyDigest)) mismatch('replyDigest');
  if (expected.promptTokens !== undefined && r.promptTokens !== expected.promptTokens) mismatch('promptTokens');
  if (expected.completionTokens !== undefined && r.completionTokens !== expected.completionTokens) mismatch('completionTokens');
  if (r.endedAt < r.startedAt) mismatch('time span');
  return r;
}
