/**
 * The evidence of one job (docs/protocol.md "Evidence"): what a client keeps of a job so it can
 * later reveal it to the gateway's auditor (POST /v1/jobs/:jobId/reveal) — the job's content key,
 * the envelope as posted, the agent's reply salt and every reply chunk ciphertext as relayed.
 * Whoever holds it can read the whole job: the conversation and the reply.
 *
 * {@link openEvidence} checks it against the agent's signed receipt before it opens anything: the
 * body's sha256 must be the receipt's request digest and the chunks' {@link ReplyDigest} its reply
 * digest, so the ciphertext is what the agent signed. The content key is then bound by the reply:
 * the chunks were sealed under keys the agent derived from the content key it unwrapped, so a key
 * other than that one does not open them (a body crafted to open under two keys still cannot).
 */
import { z } from 'zod';
import { CryptoError, NightjarError } from '../errors.js';
import { bytesEqual, fromBase64Url, toBase64Url } from '../encoding.js';
import { validate } from '../protocol/codec.js';
import { LIMITS, PROTOCOL_VERSION } from '../protocol/limits.js';
import { agentIdSchema, attemptSchema, b64, b64Max, envelopeSchema, jobIdSchema, type Receipt } from '../protocol/schemas.js';
import type { ReplyUnderCheck } from '../honesty/audit.js';
import { openRequestBody } from './envelope.js';
import { sha256 } from './hash.js';
import { ReplyDigest, ReplyOpener, deriveReplyKeys } from './reply.js';

/**
 * The most reply chunks one evidence may hold: every text chunk carries at least one token, so a
 * reply of LIMITS.maxTokens tokens has at most that many, plus the closing chunk and one to spare.
 */
export const MAX_EVIDENCE_CHUNKS = LIMITS.maxTokens + 2;

/** One reply chunk as the gateway relayed it. */
export const evidenceChunkSchema = z.strictObject({
  seq: z
    .int()
    .min(0)
    .max(MAX_EVIDENCE_CHUNKS - 1),
  /** The chunk ciphertext, base64url. */
  data: b64Max(LIMITS.maxChunkBytes),
});

/** What a client keeps of one job to reveal it later. Strict, every field bounded. */
export const jobEvidenceSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  jobId: jobIdSchema,
  /** The agent that served the job (the reply keys are bound to its id). */
  agentId: agentIdSchema,
  /** The gateway's attempt number of that agent's reply. */
  attempt: attemptSchema,
  /** The job's 32-byte content key, base64url: it opens the request and the reply. */
  contentKey: b64(32),
  /** The envelope as posted: visible header and body. */
  envelope: envelopeSchema,
  /** The agent's 16-byte salt for this attempt's reply keys, base64url. */
  replySalt: b64(16),
  /** Every reply chunk, in order, as relayed. */
  chunks: z.array(evidenceChunkSchema).min(1).max(MAX_EVIDENCE_CHUNKS),
});
/** What a client keeps of one job to reveal it later (see {@link jobEvidenceSchema}). */
export type JobEvidence = z.infer<typeof jobEvidenceSchema>;

/**
 * Checks `input` (a JobEvidence) against the agent's receipt of the job and opens it. Throws
 * CryptoError NJ_EVIDENCE_INVALID naming the check that failed: the shape, the job, agent or
 * attempt (against the receipt and the envelope), the request digest, the reply digest, the body
 * (does not open under the content key, or disagrees with its header or the receipt's model),
 * a reply chunk (does not open, out of order, after the final one), a reply without its final
 * chunk, or a finish reason that differs from the receipt's.
 */
export async function openEvidence(input: JobEvidence, receipt: Receipt): Promise<ReplyUnderCheck> {
  let evidence: JobEvidence;
  try {
    evidence = validate(jobEvidenceSchema, input, 'evidence');
  } catch (cause) {
    throw invalid((cause as Error).message, cause);
  }
  const { header } = evidence.envelope;
  if (evidence.jobId !== receipt.jobId || header.jobId !== receipt.jobId) throw invalid('the evidence is of another job than the receipt');
  if (evidence.agentId !== receipt.agentId) throw invalid("the evidence names another agent than the receipt's");
  if (evidence.attempt !== receipt.attempt) throw invalid("the evidence is of another attempt than the receipt's");
  if (!header.recipients.some((r) => r.agentId === receipt.agentId))
    throw invalid('the envelope was not sealed for the agent that signed the receipt');
  if (header.model !== receipt.model) throw invalid("the envelope names another model than the receipt's");

  const body = decode(evidence.envelope.body, 'the envelope body');
  if (!bytesEqual(sha256(body), fromBase64Url(receipt.requestDigest))) {
    throw invalid("the request ciphertext is not the one the agent's receipt signed (request digest)");
  }
  const chunks = evidence.chunks.map((c) => ({ seq: c.seq, data: decode(c.data, `reply chunk ${c.seq}`) }));
  const digest = new ReplyDigest();
  for (const c of chunks) digest.add(c.data);
  if (!bytesEqual(digest.digest(), fromBase64Url(receipt.replyDigest))) {
    throw invalid("the reply chunks are not the ones the agent's receipt signed (reply digest)");
  }

  const contentKey = fromBase64Url(evidence.contentKey);
  try {
    let payload;
    try {
      ({ payload } = openRequestBody(evidence.envelope, contentKey));
    } catch (cause) {
      throw invalid(`the request body: ${(cause as Error).message}`, cause);
    }
    const opener = new ReplyOpener(deriveReplyKeys(contentKey, fromBase64Url(evidence.replySalt), evidence.agentId));
    let text = '';
    try {
      for (const c of chunks) text += opener.open(c.seq, c.data).delta;
      const final = opener.finish();
      if (final.finishReason !== receipt.finishReason) throw invalid("the reply's final chunk and the receipt differ on how it ended");
      return {
        jobId: receipt.jobId,
        model: payload.model,
        modelSha256: receipt.modelSha256,
        messages: payload.messages,
        sampling: payload.sampling,
        reply: {
          text,
          finishReason: final.finishReason,
          ...(final.stopSequence !== undefined ? { stopSequence: final.stopSequence } : {}),
        },
        claimed: { promptTokens: receipt.promptTokens, completionTokens: receipt.completionTokens },
        ...(payload.tools === undefined && payload.toolChoice === undefined && payload.responseFormat === undefined
          ? {}
          : {
              constraints: {
                ...(payload.tools === undefined ? {} : { tools: payload.tools }),
                ...(payload.toolChoice === undefined ? {} : { toolChoice: payload.toolChoice }),
                ...(payload.responseFormat === undefined ? {} : { responseFormat: payload.responseFormat }),
              },
            }),
        ...(final.toolCalls === undefined ? {} : { toolCalls: final.toolCalls }),
      };
    } catch (cause) {
      if (cause instanceof NightjarError && cause.code === 'NJ_EVIDENCE_INVALID') throw cause;
      throw invalid(`the reply: ${(cause as Error).message}`, cause);
    }
  } finally {
    contentKey.fill(0);
  }
}

/**
 * Builds a job's evidence from what the client kept while the job ran (the SDK does this when a
 * request asks to keep evidence). The content key is copied, not taken.
 */
export function jobEvidence(parts: {
  jobId: string;
  agentId: string;
  attempt: number;
  contentKey: Uint8Array;
  envelope: JobEvidence['envelope'];
  replySalt: string;
  chunks: readonly { seq: number; data: string }[];
}): JobEvidence {
  return {
    v: PROTOCOL_VERSION,
    jobId: parts.jobId,
    agentId: parts.agentId,
    attempt: parts.attempt,
    contentKey: toBase64Url(parts.contentKey),
    envelope: parts.envelope,
    replySalt: parts.replySalt,
    chunks: parts.chunks.map((c) => ({ seq: c.seq, data: c.data })),
  };
}

function decode(text: string, what: string): Uint8Array {
  try {
    return fromBase64Url(text);
  } catch (cause) {
    throw invalid(`${what} is not canonical base64url`, cause);
  }
}

function invalid(check: string, cause?: unknown): CryptoError {
  return new CryptoError('NJ_EVIDENCE_INVALID', `evidence: ${check}`, cause === undefined ? undefined : { cause });
}
