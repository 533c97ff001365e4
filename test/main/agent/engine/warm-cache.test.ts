/**
 * The warm conversation cache of the engine (engine.ts, "Warm conversations"), on real
 * node-llama-cpp with the synthetic tiny model. Its vocabulary makes prompt lengths checkable by
 * hand: BOS plus one token per UTF-8 byte of the rendered template, one character per greedy token.
 *
 * Expiry runs on a fake clock handed to the engine.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine, writeSyntheticModel, type GenerateResult, type InferenceEngine } from '../../../../src/main/agent/index.js';
import { NightjarError, type ChatMessage } from '../../../../src/shared/index.js';
import { FakeClock } from '../../../gateway/support/fake-clock.js';

let dir: string;
let modelPath: string;
const engines: InferenceEngine[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-warm-'));
  modelPath = (await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 })).path;
});

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.dispose()));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const TTL = 120_000;

async function engineWith(options: { slots?: number; warmSequences?: number; clock?: FakeClock } = {}): Promise<InferenceEngine> {
  const engine = await loadEngine({ modelPath, threads: 1, slots: options.slots ?? 2, warmTtlMs: TTL, ...options });
  engines.push(engine);
  return engine;
}

const key = (): string => randomBytes(32).toString('base64url');

function turn(engine: InferenceEngine, messages: ChatMessage[], cacheKey?: string, maxTokens = 8): Promise<GenerateResult> {
  return engine.generate({ messages, sampling: { maxTokens, temperature: 0 }, ...(cacheKey === undefined ? {} : { cacheKey }) });
}

/** The synthetic chat template rendered by hand; its token count is 1 (BOS) + its UTF-8 bytes. */
function renderedTokens(messages: ChatMessage[]): number {
  let text = '';
  for (const m of messages) text += `<|${m.role}|>\n${m.content}<|end|>\n`;
  return 1 + Buffer.byteLength(text + '<|assistant|>\n', 'utf8');
}

const first: ChatMessage[] = [{ role: 'user', content: 'Tell me about the night sky over the sea.' }];
const next = (reply: string): ChatMessage[] => [...first, { role: 'assistant', content: reply }, { role: 'user', content: 'And then?' }];

describe('warm conversation cache', () => {
  it('the second turn with the same cache key evaluates only its new tokens, and replies as a cold run does', async () => {
    const engine = await engineWith();
    const k = key();
    const one = await turn(engine, first, k);
    expect(one.finishReason).toBe('length');
    expect(one.cachedPromptTokens).toBeUndefined();
    const second = next(one.text);
    const two = await turn(engine, second, k);
    // What the sequence holds after turn one: its prompt and the reply's tokens, less the last one
    // sampled (never evaluated). All of it is a prefix of turn two's rendering.
    const kept = renderedTokens(first) + one.text.length - 1;
    expect(two.cachedPromptTokens).toBe(kept);
    expect(two.usage.promptTokens).toBe(renderedTokens(second));
    // Reuse changes cost, not results: a cold engine gives the same greedy reply.
    const cold = await turn(await engineWith(), second);
    expect(cold.cachedPromptTokens).toBeUndefined();
    expect(two.text).toBe(cold.text);
    expect(two.usage).toEqual(cold.usage);
  });

  it('another cache key, or none, never reuses a conversation (the scope is the key)', async () => {
    // Pins the scoping that closes the timing side channel (SECURITY.md): with a lookup that
    // ignores which key asks (acquire handing any warm sequence to a job with a key), the turn
    // with key B below takes A's sequence and reports its prefix as cached (seen failing so).
    const engine = await engineWith({ slots: 1 });
    const a = key();
    const one = await turn(engine, first, a);
    expect((await turn(engine, next(one.text), key())).cachedPromptTokens).toBeUndefined();
    const again = await turn(engine, first, a);
    expect((await turn(engine, next(again.text))).cachedPromptTokens).toBeUndefined();
    // The job without a key took A's slot over: A's next turn starts cold too.
    expect((await turn(engine, next(again.text), a)).cachedPromptTokens).toBeUndefined();
  });

  it('a warm sequence expires after warmTtlMs', async () => {
    const clock = new FakeClock(0);
    const engine = await engineWith({ clock });
    const k = key();
    const one = await turn(engine, first, k);
    clock.advance(TTL - 1);
    const two = await turn(engine, next(one.text), k);
    expect(two.cachedPromptTokens).toBeGreaterThan(0);
    // The kept time starts again at the end of each turn.
    clock.advance(TTL);
    expect(clock.pending).toBe(0);
    expect((await turn(engine, next(one.text), k)).cachedPromptTokens).toBeUndefined();
  });

  it('keeps at most warmSequences, least recently used evicted first, and counts them as free slots', async () => {
    const engine = await engineWith({ slots: 3, warmSequences: 2 });
    const [a, b, c] = [key(), key(), key()];
    const ra = await turn(engine, first, a);
    const rb = await turn(engine, first, b);
    expect(engine.freeSlots).toBe(3);
    // A third conversation evicts the least recently used (a).
    await turn(engine, first, c);
    expect(engine.freeSlots).toBe(3);
    expect((await turn(engine, next(rb.text), b)).cachedPromptTokens).toBeGreaterThan(0);
    expect((await turn(engine, next(ra.text), a)).cachedPromptTokens).toBeUndefined();
  });

  it('gives a warm sequence to a job without one when no other slot is free', async () => {
    const engine = await engineWith({ slots: 2 });
    const [a, b] = [key(), key()];
    const ra = await turn(engine, first, a);
    const rb = await turn(engine, first, b);
    expect(engine.freeSlots).toBe(2);
    // Two jobs at once without a warm sequence of their own: both get a slot, a's and then b's.
    const results = await Promise.all([turn(engine, first), turn(engine, first)]);
    expect(results.map((r) => r.cachedPromptTokens)).toEqual([undefined, undefined]);
    expect(results[0]!.text).toBe(ra.text);
    expect((await turn(engine, next(rb.text), b)).cachedPromptTokens).toBeUndefined();
    expect(engine.freeSlots).toBe(2);
  });

  it('keeps nothing of a cancelled turn, nor after forgetConversations', async () => {
    const engine = await engineWith();
    const k = key();
    const abort = new AbortController();
    const cancelled = await engine.generate({
      messages: first,
      sampling: { maxTokens: 50, temperature: 0 },
      cacheKey: k,
      signal: abort.signal,
      onDelta: () => abort.abort(),
    });
    expect(cancelled.finishReason).toBe('cancelled');
    const one = await turn(engine, first, k);
    expect(one.cachedPromptTokens).toBeUndefined();
    await engine.forgetConversations!();
    expect((await turn(engine, next(one.text), k)).cachedPromptTokens).toBeUndefined();
  });

  it('refuses a malformed cache key', async () => {
    const engine = await engineWith();
    const error = await turn(engine, first, 'short').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NightjarError);
    expect((error as NightjarError).code).toBe('NJ_BAD_REQUEST');
    expect((error as NightjarError).message).toMatch(/^A cache key is 22 to 86 base64url characters/);
    expect(engine.freeSlots).toBe(2);
  });

  it('refuses warmSequences above the slots', async () => {
    await expect(loadEngine({ modelPath, threads: 1, slots: 2, warmSequences: 3 })).rejects.toMatchObject({
      code: 'NJ_CONFIG_INVALID',
      message: 'Engine option warmSequences must be an integer from 0 to slots (2); got 3.',
    });
  });
});
