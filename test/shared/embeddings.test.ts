/**
 * The embedding job in the protocol: what a sealed embedding request may hold (task, input,
 * dimensions, bounded by LIMITS), that its visible header is the chat header's shape with maxTokens
 * 1, and how reply chunks carry vectors (float32, base64url) within the chunk limit.
 */
import { describe, expect, it } from 'vitest';
import {
  LIMITS,
  ReplyOpener,
  ReplySealer,
  decodeEmbedding,
  deriveReplyKeys,
  encodeEmbedding,
  openRequest,
  requestPayloadSchema,
  sealRequest,
} from '../../src/shared/index.js';
import { MESSAGES, MODEL, NOW, SAMPLING, makeAgent } from './support/fixtures.js';

const base = {
  v: 1,
  jobId: 'AAAAAAAAAAAAAAAAAAAAAA',
  model: MODEL.id,
  created: NOW,
  headerDigest: 'A'.repeat(43),
};
const embed = { ...base, messages: [], sampling: { maxTokens: 1 }, task: 'embed', input: ['a', 'b'] };
const issues = (value: unknown): string[] => {
  const r = requestPayloadSchema.safeParse(value);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('an embedding request payload', () => {
  it('is accepted with inputs, no messages and maxTokens 1', () => {
    expect(issues(embed)).toEqual([]);
    expect(issues({ ...embed, dimensions: 64 })).toEqual([]);
  });

  it('is refused with messages, tools, another maxTokens, no input, empty or too many texts', () => {
    // Each fails without the matching line of checkTask (schemas.ts) or the input bounds.
    expect(issues({ ...embed, messages: MESSAGES })).toEqual(['messages: an embedding job has no messages']);
    expect(issues({ ...embed, responseFormat: { type: 'json_object' } })).toEqual([
      'task: an embedding job has no tools or response format',
    ]);
    expect(issues({ ...embed, sampling: { maxTokens: 2 } })).toEqual(['sampling.maxTokens: an embedding job asks for maxTokens 1']);
    expect(issues({ ...embed, input: undefined })).toEqual(['input: an embedding job needs input']);
    expect(issues({ ...embed, input: [''] })[0]).toMatch(/^input\.0: Too small/);
    expect(issues({ ...embed, input: Array(LIMITS.maxEmbedInputs + 1).fill('x') })[0]).toMatch(/^input: Too big/);
    expect(issues({ ...embed, input: ['x'.repeat(LIMITS.maxEmbedInputLength + 1)] })[0]).toMatch(/^input\.0: Too big/);
    expect(issues({ ...embed, dimensions: LIMITS.maxEmbeddingDimensions + 1 })[0]).toMatch(/^dimensions: Too big/);
  });

  it('a chat payload still needs messages and takes no input', () => {
    const chat = { ...base, messages: MESSAGES, sampling: SAMPLING };
    expect(issues(chat)).toEqual([]);
    expect(issues({ ...chat, messages: [] })).toEqual(['messages: Too small: expected array to have >=1 items']);
    expect(issues({ ...chat, input: ['x'] })).toEqual(['input: input and dimensions belong to embedding jobs (task embed)']);
  });

  it('seals with the header a chat has (maxTokens 1) and opens to the texts', async () => {
    const agent = await makeAgent('agent-embed');
    const sealed = await sealRequest({
      model: MODEL.id,
      messages: [],
      sampling: { maxTokens: 1 },
      embed: { input: ['one', 'two'], dimensions: 64 },
      recipients: [agent.verified],
      now: NOW,
    });
    expect(Object.keys(sealed.envelope.header).sort()).toEqual(
      ['bodyLength', 'bodyNonce', 'ephemeralKey', 'jobId', 'maxTokens', 'model', 'recipients', 'v'].sort(),
    );
    expect(sealed.envelope.header.maxTokens).toBe(1);
    const opened = await openRequest(sealed.envelope, { agentId: agent.identity.agentId, boxKeys: [agent.boxKey], now: NOW });
    expect(opened.payload).toMatchObject({ task: 'embed', input: ['one', 'two'], dimensions: 64, messages: [] });
  });
});

describe('vectors in reply chunks', () => {
  const keys = deriveReplyKeys(new Uint8Array(32).fill(7), new Uint8Array(16).fill(1), 'a'.repeat(32));

  it('round-trip exactly as float32, in order, across chunks', () => {
    const a = Float32Array.from([0.1, -2.5, 3e-8, 1e30]);
    const b = Float32Array.from([1, 2, 3, 4]);
    const sealer = new ReplySealer(keys);
    const opener = new ReplyOpener(keys);
    const first = sealer.seal('', undefined, [encodeEmbedding(a)]);
    const last = sealer.seal('', { finishReason: 'stop', usage: { promptTokens: 4, completionTokens: 0 } }, [encodeEmbedding(b)]);
    const got = [opener.open(first.seq, first.data), opener.open(last.seq, last.data)]
      .flatMap((c) => c.embeddings ?? [])
      .map(decodeEmbedding);
    expect(got).toEqual([a, b]);
    expect(opener.finish().usage.completionTokens).toBe(0);
  });

  it('the widest vector fits one chunk; bytes that are not whole float32 values are refused', () => {
    const wide = new Float32Array(LIMITS.maxEmbeddingDimensions).fill(1.5);
    const { data } = new ReplySealer(keys).seal('', undefined, [encodeEmbedding(wide)]);
    expect(data.length).toBeLessThanOrEqual(LIMITS.maxChunkBytes);
    expect(() => decodeEmbedding('AAAA')).toThrow(/not float32 values/);
  });
});
