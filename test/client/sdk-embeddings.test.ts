/**
 * Embedding jobs through a real gateway and a real agent, with FakeEngine stand-ins (the vectors
 * are made up here, the path is real): wide vectors spread over several reply chunks in order, the
 * gateway verifies and settles the receipt (prompt tokens, 0 completion), and an agent whose
 * engine cannot embed, or whose context a text overflows, refuses the job before accepting it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import { LIMITS } from '../../src/shared/index.js';
import { EmbeddingEngine } from '../helpers/embedding-engine.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startNet, type TestNet } from './support/net.js';

let net: TestNet | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
});
const http = perTestFetch();

async function clientFor(engine: FakeEngine): Promise<NightjarClient> {
  net = await startNet();
  await net.addAgent(engine);
  return new NightjarClient({
    gatewayUrl: net.gateway.url,
    trust: { allowSynthetic: true },
    fetch: http.fetch,
    retry: { modelUnknownMs: 0 },
  });
}

describe('embedding jobs', () => {
  it('carries wide vectors over several chunks, in order, and the gateway settles prompt tokens only', async () => {
    // 40 vectors of 2048 float32 values are about 440 KiB of base64: fails without the job
    // runner's embeddingBatches (one chunk over LIMITS.maxChunkBytes is refused by the sealer).
    const engine = new EmbeddingEngine(2048);
    const client = await clientFor(engine);
    const input = Array.from({ length: 40 }, (_, i) => 'x'.repeat(i + 1));
    const result = await client.embeddings({ model: FAKE_MODEL.id, input });
    expect(result.embeddings).toHaveLength(40);
    result.embeddings.forEach((v, i) => {
      expect(v).toHaveLength(2048);
      expect(v[0]).toBeCloseTo(i + 1 + i / 1000, 4);
    });
    expect(result.receipt).toMatchObject({ promptTokens: 820, completionTokens: 0, finishReason: 'stop' });
    expect(result.receipt.promptTokens).toBeGreaterThan(0);
    await client.countersigned();
    const outcome = net!.outcomes.get(result.jobId);
    expect(outcome).toMatchObject({ status: 'done', receipt: { promptTokens: 820, completionTokens: 0 } });
    expect(engine.asked).toHaveLength(1);
    // More than one chunk could hold.
    expect(40 * 2048 * 4).toBeGreaterThan(LIMITS.maxChunkBytes);
  });

  it('is refused before it is accepted by an agent whose engine cannot embed', async () => {
    // Fails without checkEmbedJob's isEmbedder test: the job runner calls an embed that is not there.
    const client = await clientFor(new FakeEngine());
    const err = await client.embeddings({ model: FAKE_MODEL.id, input: ['x'] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NJ_BAD_REQUEST', message: expect.stringContaining('does not serve embeddings') });
  });

  it('is refused with NJ_CONTEXT_OVERFLOW when a text does not fit the context, before anything is embedded', async () => {
    // Fails without checkEmbedJob's token count: the engine is asked to embed the text.
    const engine = new EmbeddingEngine(8);
    const client = await clientFor(engine);
    const err = await client.embeddings({ model: FAKE_MODEL.id, input: ['ok', 'y'.repeat(5000)] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NJ_CONTEXT_OVERFLOW', message: expect.stringContaining('an input takes 5000 tokens') });
    expect(engine.asked).toEqual([]);
  });
});
