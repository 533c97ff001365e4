/**
 * A job's evidence (docs/protocol.md "Evidence"): a client's kept content key, envelope, reply salt
 * and chunk ciphertexts open into the job as a checker sees it, and only when they are the bytes
 * the agent's receipt signed. A tamper matrix flips, truncates and extends each field; each case
 * must be refused as CryptoError NJ_EVIDENCE_INVALID with the message of the check that catches
 * it, and the comment on each group names the check whose removal makes it pass (each was removed
 * once and its cases seen to fail, or to open into something other than the job).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CryptoError,
  MAX_EVIDENCE_CHUNKS,
  PROTOCOL_VERSION,
  ReplySealer,
  deriveReplyKeys,
  fromBase64Url,
  jobEvidence,
  openEvidence,
  sealRequest,
  toBase64Url,
  type JobEvidence,
  type Receipt,
} from '../../src/shared/index.js';
import { errorChainText, expectNjError } from './support/expect-error.js';
import { MESSAGES, MODEL, NOW, SAMPLING, clone, labelledRandom, makeAgent, testBytes, type TestAgent } from './support/fixtures.js';

let A: TestAgent;
let B: TestAgent;

/** One job sealed for A and B, served by A at attempt 1: its evidence and A's receipt. */
interface Job {
  evidence: JobEvidence;
  receipt: Receipt;
}

async function makeJob(label: string, deltas: readonly string[] = ['An ', 'owl.']): Promise<Job> {
  const sealed = await sealRequest({
    model: MODEL.id,
    messages: MESSAGES,
    sampling: SAMPLING,
    recipients: [A.verified, B.verified],
    now: NOW,
    random: labelledRandom(label),
  });
  const salt = testBytes(`${label}/salt`, 16);
  const sealer = new ReplySealer(deriveReplyKeys(sealed.contentKey, salt, A.verified.bundle.agentId));
  const chunks = deltas.map((d) => sealer.seal(d));
  chunks.push(sealer.seal('', { finishReason: 'stop', usage: { promptTokens: 20, completionTokens: 3 }, stopSequence: '\n\n' }));
  const receipt: Receipt = {
    v: PROTOCOL_VERSION,
    jobId: sealed.jobId,
    attempt: 1,
    agentId: A.verified.bundle.agentId,
    model: MODEL.id,
    modelSha256: MODEL.sha256,
    promptTokens: 20,
    completionTokens: 3,
    requestDigest: toBase64Url(sealed.requestDigest),
    replyDigest: toBase64Url(sealer.digest()),
    startedAt: NOW,
    endedAt: NOW + 100,
    finishReason: 'stop',
  };
  const evidence = jobEvidence({
    jobId: sealed.jobId,
    agentId: A.verified.bundle.agentId,
    attempt: 1,
    contentKey: sealed.contentKey,
    envelope: sealed.envelope,
    replySalt: toBase64Url(salt),
    chunks: chunks.map((c) => ({ seq: c.seq, data: toBase64Url(c.data) })),
  });
  return { evidence, receipt };
}

let job: Job;
let other: Job;

beforeAll(async () => {
  [A, B] = await Promise.all([makeAgent('agent-a'), makeAgent('agent-b')]);
  job = await makeJob('job-1');
  other = await makeJob('job-2', ['A ', 'nightjar.']);
});

/** Flips one bit of base64url text's decoded bytes at byte `at` (from the end when negative). */
function flip(text: string, at: number): string {
  const bytes = fromBase64Url(text);
  bytes[at < 0 ? bytes.length + at : at]! ^= 0x01;
  return toBase64Url(bytes);
}
const truncate = (text: string): string => toBase64Url(fromBase64Url(text).subarray(0, -1));
const extend = (text: string): string => {
  const bytes = fromBase64Url(text);
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  return toBase64Url(longer);
};

const refused = (evidence: unknown, receipt: Receipt, message: string | RegExp): Promise<unknown> =>
  expectNjError(() => openEvidence(evidence as JobEvidence, receipt), CryptoError, 'NJ_EVIDENCE_INVALID', message);

describe('evidence that matches its receipt', () => {
  it('opens into the job: the conversation, sampling, reply and the receipt claims', async () => {
    expect(await openEvidence(clone(job.evidence), job.receipt)).toEqual({
      jobId: job.receipt.jobId,
      model: MODEL.id,
      modelSha256: MODEL.sha256,
      messages: MESSAGES,
      sampling: SAMPLING,
      reply: { text: 'An owl.', finishReason: 'stop', stopSequence: '\n\n' },
      claimed: { promptTokens: 20, completionTokens: 3 },
    });
  });

  it('survives JSON (what the SDK writes and the gateway reads)', async () => {
    const opened = await openEvidence(JSON.parse(JSON.stringify(job.evidence)) as JobEvidence, job.receipt);
    expect(opened.reply.text).toBe('An owl.');
  });
});

describe('tamper matrix', () => {
  // The schema (jobEvidenceSchema): removed, each of these reaches a later check or a TypeError.
  it.each([
    ['v', (e: JobEvidence) => ({ ...e, v: 2 }), /^evidence: evidence is invalid at v: /],
    ['an unknown field', (e: JobEvidence) => ({ ...e, extra: 1 }), /^evidence: evidence is invalid at \(root\): Unrecognized key/],
    ['contentKey truncated', (e: JobEvidence) => ({ ...e, contentKey: truncate(e.contentKey) }), /at contentKey: expected 32 bytes/],
    ['contentKey extended', (e: JobEvidence) => ({ ...e, contentKey: extend(e.contentKey) }), /at contentKey: expected 32 bytes/],
    ['replySalt truncated', (e: JobEvidence) => ({ ...e, replySalt: truncate(e.replySalt) }), /at replySalt: expected 16 bytes/],
    ['replySalt extended', (e: JobEvidence) => ({ ...e, replySalt: extend(e.replySalt) }), /at replySalt: expected 16 bytes/],
    ['no chunks', (e: JobEvidence) => ({ ...e, chunks: [] }), /at chunks: /],
    [
      'too many chunks',
      (e: JobEvidence) => ({ ...e, chunks: Array.from({ length: MAX_EVIDENCE_CHUNKS + 1 }, () => e.chunks[0]) }),
      /at chunks: /,
    ],
    [
      'a chunk of more than the largest chunk',
      (e: JobEvidence) => ({ ...e, chunks: [{ seq: 0, data: 'A'.repeat(90_000) }] }),
      /at chunks\.0\.data: /,
    ],
    ['attempt out of range', (e: JobEvidence) => ({ ...e, attempt: 99 }), /at attempt: /],
    [
      'the envelope header',
      (e: JobEvidence) => ({ ...e, envelope: { ...e.envelope, header: { ...e.envelope.header, bodyLength: 1 } } }),
      /at envelope\.header\.bodyLength: /,
    ],
  ])('%s', async (_name, change, message) => {
    await refused(change(clone(job.evidence)), job.receipt, message);
  });

  // The job, agent and attempt checks against the receipt: removed, another job's or agent's reply
  // could be checked under this receipt (the digests catch most, not an agent id alone).
  it('another job id', async () => {
    await refused(
      { ...clone(job.evidence), jobId: other.evidence.jobId },
      job.receipt,
      'evidence: the evidence is of another job than the receipt',
    );
  });
  it('another agent', async () => {
    await refused(
      { ...clone(job.evidence), agentId: B.verified.bundle.agentId },
      job.receipt,
      "evidence: the evidence names another agent than the receipt's",
    );
  });
  it('another attempt', async () => {
    await refused({ ...clone(job.evidence), attempt: 0 }, job.receipt, "evidence: the evidence is of another attempt than the receipt's");
  });
  it("another job's envelope", async () => {
    await refused(
      { ...clone(job.evidence), envelope: clone(other.evidence.envelope) },
      job.receipt,
      'evidence: the evidence is of another job than the receipt',
    );
  });

  // The request digest: removed, a body altered after the agent signed opens (or fails later as a decrypt).
  it.each([
    ['flipped', (b: string) => flip(b, 40)],
    ['truncated', truncate],
    ['extended', extend],
  ])('the body %s', async (_name, change) => {
    const e = clone(job.evidence);
    e.envelope.body = change(e.envelope.body);
    await refused(e, job.receipt, "evidence: the request ciphertext is not the one the agent's receipt signed (request digest)");
  });

  // The reply digest: removed, chunks the agent never sent (dropped, added, reordered, another
  // job's) are checked as its reply.
  it.each([
    ['a chunk flipped', (e: JobEvidence) => ({ ...e, chunks: e.chunks.map((c, i) => (i === 1 ? { ...c, data: flip(c.data, 20) } : c)) })],
    ['a chunk truncated', (e: JobEvidence) => ({ ...e, chunks: e.chunks.map((c, i) => (i === 0 ? { ...c, data: truncate(c.data) } : c)) })],
    ['a chunk extended', (e: JobEvidence) => ({ ...e, chunks: e.chunks.map((c, i) => (i === 0 ? { ...c, data: extend(c.data) } : c)) })],
    ['the last chunk dropped', (e: JobEvidence) => ({ ...e, chunks: e.chunks.slice(0, -1) })],
    ['a chunk repeated', (e: JobEvidence) => ({ ...e, chunks: [e.chunks[0]!, ...e.chunks] })],
    ['two chunks swapped', (e: JobEvidence) => ({ ...e, chunks: [e.chunks[1]!, e.chunks[0]!, ...e.chunks.slice(2)] })],
    ["another job's chunks", (e: JobEvidence) => ({ ...e, chunks: clone(other.evidence.chunks) })],
  ])('%s', async (_name, change) => {
    await refused(
      change(clone(job.evidence)),
      job.receipt,
      "evidence: the reply chunks are not the ones the agent's receipt signed (reply digest)",
    );
  });

  // Opening the body with the content key: removed (the digests alone), a wrong key would give
  // no request to check, and the check would run on nothing.
  it('a wrong content key', async () => {
    await refused(
      { ...clone(job.evidence), contentKey: flip(job.evidence.contentKey, 0) },
      job.receipt,
      'evidence: the request body: the request body does not decrypt: altered, truncated or sealed for another key',
    );
  });
  it("another job's content key", async () => {
    await refused({ ...clone(job.evidence), contentKey: other.evidence.contentKey }, job.receipt, /^evidence: the request body: /);
  });

  // Opening the chunks (ReplyOpener): removed, a wrong salt or chunk numbering would not be noticed.
  it('a wrong reply salt', async () => {
    await refused(
      { ...clone(job.evidence), replySalt: flip(job.evidence.replySalt, 3) },
      job.receipt,
      'evidence: the reply: reply chunk 0 does not decrypt: altered, truncated or sealed for another key',
    );
  });
  it('a chunk renumbered', async () => {
    const e = clone(job.evidence);
    e.chunks[1]!.seq = 5;
    await refused(e, job.receipt, 'evidence: the reply: a gap before chunk: expected 1, got 5');
  });

  // The receipt fields the evidence is matched with: removed, a receipt of another model, or
  // a finish reason the reply does not have, would be checked as this job.
  it('a receipt of another model', async () => {
    await refused(
      clone(job.evidence),
      { ...job.receipt, model: 'other-model' },
      "evidence: the envelope names another model than the receipt's",
    );
  });
  it('a receipt whose finish reason differs from the final chunk', async () => {
    await refused(
      clone(job.evidence),
      { ...job.receipt, finishReason: 'length' },
      "evidence: the reply's final chunk and the receipt differ on how it ended",
    );
  });
  it('a receipt of an agent the envelope was not sealed for', async () => {
    const C = await makeAgent('agent-c');
    const e = { ...clone(job.evidence), agentId: C.verified.bundle.agentId };
    await refused(
      e,
      { ...job.receipt, agentId: C.verified.bundle.agentId },
      'evidence: the envelope was not sealed for the agent that signed the receipt',
    );
  });

  it('never quotes the conversation or the reply in an error', async () => {
    const e = clone(job.evidence);
    e.contentKey = flip(e.contentKey, 0);
    try {
      await openEvidence(e, job.receipt);
    } catch (err) {
      const text = errorChainText(err);
      for (const secret of ['nocturnal', 'owl', 'terse']) expect(text).not.toContain(secret);
    }
  });
});
