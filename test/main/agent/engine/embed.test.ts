/**
 * The engine's embeddings on the real node-llama-cpp and the synthetic tiny model (width 64): the
 * width, determinism, token counts, a text longer than the context refused, and nothing after
 * dispose.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine, writeSyntheticModel } from '../../../../src/main/agent/index.js';
import { NightjarError } from '../../../../src/shared/index.js';

let dir: string;
let modelPath: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-embed-engine-'));
  modelPath = (await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny' })).path;
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('engine embeddings', () => {
  it('embeds each text at the model width, the same text the same, counting its tokens', async () => {
    await using engine = await loadEngine({ modelPath, threads: 1, slots: 1, contextLength: 256 });
    expect(engine.embeddingLength).toBe(64);
    const [a, b] = await engine.countEmbedTokens(['hi', 'hello there']);
    expect(a).toBeGreaterThan(0);
    expect(b).toBeGreaterThan(a!);
    const result = await engine.embed({ input: ['hi', 'hello there', 'hi'] });
    expect(result.vectors.map((v) => v.length)).toEqual([64, 64, 64]);
    expect(result.vectors[2]).toEqual(result.vectors[0]);
    expect(result.vectors[1]).not.toEqual(result.vectors[0]);
    expect(result.promptTokens).toBe(2 * a! + b!);
  });

  it('refuses a text that does not fit the context, and embeds nothing after dispose', async () => {
    const engine = await loadEngine({ modelPath, threads: 1, slots: 1, contextLength: 256 });
    // Fails without embed's own length check: llama.cpp's embedding context throws a plain Error (NJ_ENGINE_FAILED).
    const long = await engine.embed({ input: ['x '.repeat(400)] }).catch((e: unknown) => e);
    expect(long).toBeInstanceOf(NightjarError);
    expect(long).toMatchObject({ code: 'NJ_CONTEXT_OVERFLOW', message: expect.stringContaining('Split it into shorter texts') });
    await engine.dispose();
    await expect(engine.embed({ input: ['hi'] })).rejects.toMatchObject({
      code: 'NJ_ENGINE_FAILED',
      message: expect.stringContaining('was disposed'),
    });
  });
});
