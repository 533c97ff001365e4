/**
 * A FakeEngine that also embeds: text i becomes a vector of `embeddingLength` values all equal to
 * its length plus i/1000, and each character counts one token. For tests of the embedding path
 * (job runner, gateway, SDK) where the vectors' meaning does not matter.
 */
import type { EmbedRequest, EmbedResult, Embedder } from '../../src/main/agent/index.js';
import { FakeEngine } from './fake-engine.js';

export class EmbeddingEngine extends FakeEngine implements Embedder {
  /** Every embed call, in order. */
  readonly asked: EmbedRequest[] = [];
  constructor(readonly embeddingLength: number) {
    super();
  }
  countEmbedTokens(input: readonly string[]): Promise<number[]> {
    return Promise.resolve(input.map((t) => t.length));
  }
  embed(request: EmbedRequest): Promise<EmbedResult> {
    this.asked.push(request);
    const vectors = request.input.map((t, i) => new Float32Array(this.embeddingLength).fill(t.length + i / 1000));
    return Promise.resolve({ vectors, promptTokens: request.input.reduce((s, t) => s + t.length, 0) });
  }
}
