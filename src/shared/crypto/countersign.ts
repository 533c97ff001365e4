/**
 * The client's countersignature (docs/protocol.md "Countersignature"): after each reply the client
 * states what it received — the job, the reply digest it computed over the chunk ciphertexts (the
 * one the agent's receipt signs), the most completion tokens that reply can have held, and whether
 * the stream ended with its final chunk — and authenticates the statement with an HMAC-SHA256 under
 * a key derived from its API key. The gateway, which stores only the API key's SHA-256, derives the
 * same key from that hash; the agent never sees the API key, so it cannot forge a statement.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { z } from 'zod';
import { CryptoError } from '../errors.js';
import { bytesEqual, fromBase64Url, signingBytes, toBase64Url, utf8 } from '../encoding.js';
import { validate } from '../protocol/codec.js';
import { PROTOCOL_VERSION } from '../protocol/limits.js';
import { jobIdSchema } from '../protocol/schemas.js';
import { hkdfSha256, sha256 } from './hash.js';

/** Signing domain of countersignatures. */
export const COUNTERSIGN_DOMAIN = 'countersign/v1';

/** The most completion tokens a countersignature may state (the most a request may ask for, with slack). */
const MAX_COUNT = 1 << 24;

/** What the client states about one reply. */
export const countersignStatementSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  jobId: jobIdSchema,
  /** sha256 over the reply chunk ciphertexts received, each prefixed with its length, base64url. */
  replyDigest: z.string().regex(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/, 'expected 32 bytes of base64url'),
  /** The most completion tokens the received reply can have held (see {@link completionTokensReceived}). */
  completionTokens: z.int().min(0).max(MAX_COUNT),
  /** Reply chunks received and opened. */
  chunks: z.int().min(0).max(MAX_COUNT),
  /** `done`: the final chunk arrived; `broken`: the stream ended before it (or failed a check). */
  received: z.enum(['done', 'broken']),
});
/** What the client states about one reply. */
export type CountersignStatement = z.infer<typeof countersignStatementSchema>;

/** A statement and its HMAC, as the client posts it. */
export const countersignatureSchema = z.strictObject({
  statement: countersignStatementSchema,
  /** HMAC-SHA256 of the statement's signing bytes, base64url. */
  mac: z.string().regex(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/, 'expected 32 bytes of base64url'),
});
/** A statement and its HMAC, as the client posts it. */
export type Countersignature = z.infer<typeof countersignatureSchema>;

/**
 * The most completion tokens a reply can have held, as its client counts them (it has no
 * tokenizer): the UTF-8 bytes of the delivered text, plus the bytes of the request's longest stop
 * sequence (a stop sequence that ends a reply, or a possible start of one held back at a cancel, is
 * generated but never delivered), plus 1 for the end-of-generation token; never more than the
 * request's maxTokens. An honest agent never claims more: every token of a BPE or byte-level
 * tokenizer stands for at least one byte of the text it decodes to.
 */
export function completionTokensReceived(textBytes: number, maxTokens: number, stop: readonly string[] = [], extraBytes = 0): number {
  const longestStop = stop.reduce((m, s) => Math.max(m, utf8(s).length), 0);
  return Math.min(maxTokens, textBytes + longestStop + 1 + extraBytes);
}

/** Bytes of call syntax an agent may generate around one call's name and arguments (`{"name": …, "arguments": …}` and its whitespace). */
export const TOOL_CALL_SYNTAX_BYTES = 64;
/** Bytes a grammar-constrained reply generates after its JSON and never delivers (the grammar's end text, four newlines). */
export const GRAMMAR_END_BYTES = 4;

/**
 * What a constrained reply adds to {@link completionTokensReceived}'s count, as extra bytes: for
 * each tool call its name, its arguments and {@link TOOL_CALL_SYNTAX_BYTES}, and
 * {@link GRAMMAR_END_BYTES} for the grammar's end. Zero for a request without tools or format.
 */
export function constrainedReplyBytes(constrained: boolean, toolCalls: readonly { name: string; arguments: string }[] = []): number {
  if (!constrained) return 0;
  return GRAMMAR_END_BYTES + toolCalls.reduce((n, c) => n + utf8(c.name).length + utf8(c.arguments).length + TOOL_CALL_SYNTAX_BYTES, 0);
}

/**
 * The countersigning key of an API key, from the key's SHA-256 (32 bytes): what
 * the gateway stores, so the gateway derives it without keeping the secret.
 */
export function countersignKey(apiKeySha256: Uint8Array): Uint8Array {
  if (apiKeySha256.length !== 32) throw new CryptoError('NJ_BAD_KEY', 'an API key digest must be 32 bytes');
  return hkdfSha256(apiKeySha256, new Uint8Array(0), 'nightjar/countersign/v1', 32);
}

/** The countersigning key of the API key `apiKey` itself (the client's side). */
export function countersignKeyOf(apiKey: string): Uint8Array {
  return countersignKey(sha256(utf8(apiKey)));
}

/** Authenticates a statement with the countersigning key `key`. */
export function countersign(statement: CountersignStatement, key: Uint8Array): Countersignature {
  const checked = validate(countersignStatementSchema, statement, 'countersignature');
  return { statement: checked, mac: toBase64Url(hmac(nobleSha256, key, signingBytes(COUNTERSIGN_DOMAIN, checked))) };
}

/**
 * Checks a posted countersignature: its shape, its HMAC under `key` and that it names `jobId`.
 * Throws NJ_BAD_SIGNATURE naming the first check that failed.
 */
export function verifyCountersignature(input: unknown, key: Uint8Array, jobId: string): CountersignStatement {
  let c: Countersignature;
  try {
    c = validate(countersignatureSchema, input, 'countersignature');
  } catch (cause) {
    throw new CryptoError('NJ_BAD_SIGNATURE', (cause as Error).message, { cause });
  }
  const expected = hmac(nobleSha256, key, signingBytes(COUNTERSIGN_DOMAIN, c.statement));
  if (!bytesEqual(expected, fromBase64Url(c.mac)))
    throw new CryptoError('NJ_BAD_SIGNATURE', 'the countersignature does not verify for this key');
  if (c.statement.jobId !== jobId) throw new CryptoError('NJ_BAD_SIGNATURE', 'the countersignature names another job');
  return c.statement;
}
