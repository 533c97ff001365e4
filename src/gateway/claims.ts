/**
 * Bounds on what a receipt may claim, from what the gateway itself saw: the padded size of the
 * request and the sizes of the reply chunks it relayed. The gateway cannot read a prompt or a
 * reply, so it cannot count tokens; it can only say how many tokens those bytes could at most
 * have held. A receipt claiming more is not settled as claimed: it is billed at the bound, and the
 * capped claim is logged and counted (metric `nightjar_receipt_claims_capped_total`).
 *
 * Both bounds rest on one fact: every token a BPE (or byte-level) tokenizer produces from UTF-8
 * text stands for at least one byte of it (special tokens aside, which the allowances below
 * cover), so text of n bytes is at most n tokens, whatever the vocabulary. JSON escaping only
 * ever adds bytes, so counting the bytes of the JSON that carries the text over-counts, never
 * under-counts.
 */
import { LIMITS } from '../shared/index.js';

/** Bytes of a secretbox (XSalsa20-Poly1305) ciphertext that are not plaintext: its tag. */
const TAG_BYTES = 16;
/** Bytes of a padded plaintext that are not the message: the padding's length prefix. */
const LENGTH_PREFIX_BYTES = 4;
/**
 * The shortest JSON a reply chunk can be without its delta text: `{"seq":0,"delta":""}` is 20
 * bytes; anything else it carries (a larger seq, the final chunk's usage) only adds.
 */
const CHUNK_SKELETON_BYTES = 20;
/**
 * Completion tokens a reply may count beyond the text it delivered: the end-of-generation token,
 * and the text of the stop sequence that ended it (never part of the reply, at most
 * LIMITS.maxStopLength bytes, so at most that many tokens), or the tail held back when it was
 * cancelled (a possible stop-sequence start, no longer than one either).
 */
export const UNDELIVERED_COMPLETION_ALLOWANCE = LIMITS.maxStopLength + 1;

/**
 * The most prompt tokens a request of `bodyLength` ciphertext bytes can hold: its plaintext
 * capacity, `bodyLength` less the tag and the padding's length prefix.
 *
 * Why this is sound: the plaintext is the request's JSON (DESIGN.md "Envelope"), and the messages'
 * text is part of it, so the text has at most that many bytes and so at most that many tokens.
 * The chat template adds tokens of its own around each message and the conversation; the JSON
 * spends more bytes than that on the same structure — at least 29 per message
 * (`{"role":"user","content":""},`) and about 160 on the fields around the conversation (the
 * jobId, the header digest, the model, the created time, the sampling) — while the templates in
 * use add a handful of tokens per message (ChatML and Llama 3 about 5) and a BOS token. The
 * bound is loose (requests pad up to power-of-two buckets of at least 1 KiB), but it is a bound:
 * the countersignature of DESIGN.md "Honest work" is what tightens it.
 */
export function promptTokenBound(bodyLength: number): number {
  return Math.max(0, bodyLength - TAG_BYTES - LENGTH_PREFIX_BYTES);
}

/** The most delta text, in bytes (so in tokens), one reply chunk of `ciphertextLength` bytes can carry. */
export function chunkTextCapacity(ciphertextLength: number): number {
  return Math.max(0, ciphertextLength - TAG_BYTES - LENGTH_PREFIX_BYTES - CHUNK_SKELETON_BYTES);
}

/**
 * The most completion tokens a reply can count, given the text capacity of the chunks relayed
 * (the sum of {@link chunkTextCapacity}) and the request's maxTokens.
 */
export function completionTokenBound(relayedTextCapacity: number, maxTokens: number): number {
  return Math.min(maxTokens, relayedTextCapacity + UNDELIVERED_COMPLETION_ALLOWANCE);
}

/** A receipt's token claims cut to their bounds, and which were cut. */
export interface BoundedClaims {
  promptTokens: number;
  completionTokens: number;
  /** The fields that claimed more than their bound. */
  capped: ('prompt' | 'completion')[];
}

/** Cuts a receipt's claims to their bounds (`completionBound` null: only maxTokens bounds it). */
export function boundClaims(
  claimed: { promptTokens: number; completionTokens: number },
  bounds: { bodyLength: number; maxTokens: number; completionBound: number | null },
): BoundedClaims {
  const promptMax = promptTokenBound(bounds.bodyLength);
  const completionMax = Math.min(bounds.maxTokens, bounds.completionBound ?? bounds.maxTokens);
  const capped: BoundedClaims['capped'] = [];
  if (claimed.promptTokens > promptMax) capped.push('prompt');
  if (claimed.completionTokens > completionMax) capped.push('completion');
  return {
    promptTokens: Math.min(claimed.promptTokens, promptMax),
    completionTokens: Math.min(claimed.completionTokens, completionMax),
    capped,
  };
}
