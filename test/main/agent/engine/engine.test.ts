/**
 * The engine, on real node-llama-cpp with the synthetic tiny model (written once for this file).
 *
 * Engines here run with `threads: 1`. Measured on the 2-core development VM: the tiny model does
 * 100 greedy tokens in 20–60 ms with one thread and in 0.5–8 s with two, because with so little
 * work per token ggml's thread barriers dominate (and stall whenever a vCPU is descheduled).
 * Threads change speed, not results.
 *
 * The synthetic vocabulary makes token counts checkable by hand: a prompt is BOS plus one token
 * per UTF-8 byte of the rendered template, and greedy output is printable ASCII, one character per
 * token.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine, writeSyntheticModel, type GenerateResult, type InferenceEngine } from '../../../../src/main/agent/index.js';
import { createLogger } from '../../../../src/node/index.js';
import { NightjarError, type ChatMessage } from '../../../../src/shared/index.js';
import { batchedPrefixes } from '../../../helpers/batching.js';

let dir: string;
let modelPath: string;
let engine: InferenceEngine;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-engine-'));
  modelPath = (await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 })).path;
  engine = await loadEngine({ modelPath, threads: 1, slots: 4 });
});

afterAll(async () => {
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const ask = (content: string): ChatMessage[] => [{ role: 'user', content }];

async function greedy(messages: ChatMessage[], maxTokens: number, target: InferenceEngine = engine): Promise<GenerateResult> {
  return target.generate({ messages, sampling: { maxTokens, temperature: 0 } });
}

/** The synthetic chat template rendered by hand; its token count is 1 (BOS) + its UTF-8 bytes. */
function renderedTokens(messages: ChatMessage[]): number {
  const last = messages.at(-1);
  let text = '';
  for (const m of messages) {
    text += `<|${m.role}|>\n${m.content}`;
    if (!(m === last && m.role === 'assistant')) text += '<|end|>\n';
  }
  if (last?.role !== 'assistant') text += '<|assistant|>\n';
  return 1 + Buffer.byteLength(text, 'utf8');
}

async function expectError(promise: Promise<unknown>, code: string, message: string | RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(NightjarError);
  expect((error as NightjarError).code).toBe(code);
  if (typeof message === 'string') expect((error as Error).message).toBe(message);
  else expect((error as Error).message).toMatch(message);
}

describe('loading', () => {
  it('reports the model as the file describes it', () => {
    expect(engine.model).toEqual({
      path: modelPath,
      trainContextLength: 4096,
      contextLength: 4096,
      synthetic: true,
      name: 'Nightjar synthetic tiny',
    });
    expect(engine.totalSlots).toBe(4);
    expect(engine.freeSlots).toBe(4);
  });

  it('refuses a missing file and a file that is not GGUF with NJ_MODEL_FILE_INVALID', async () => {
    const missing = path.join(dir, 'missing.gguf');
    await expectError(
      loadEngine({ modelPath: missing, threads: 1 }),
      'NJ_MODEL_FILE_INVALID',
      new RegExp(`^No model file at ${missing} \\(ENOENT`),
    );
    const junk = path.join(dir, 'junk.gguf');
    await writeFile(junk, randomBytes(4096));
    await expectError(
      loadEngine({ modelPath: junk, threads: 1 }),
      'NJ_MODEL_FILE_INVALID',
      new RegExp(`^${junk} is not a readable GGUF file: `),
    );
    await expectError(loadEngine({ modelPath: dir, threads: 1 }), 'NJ_MODEL_FILE_INVALID', `${dir} is not a file.`);
  });

  it('refuses a GGUF file cut short with NJ_MODEL_LOAD_FAILED', async () => {
    const bytes = await readFile(modelPath);
    const cut = path.join(dir, 'cut.gguf');
    await writeFile(cut, bytes.subarray(0, bytes.length - 4096));
    const lines: string[] = [];
    const logger = createLogger({ write: (line) => lines.push(line), level: 'debug' });
    await expectError(
      loadEngine({ modelPath: cut, threads: 1, logger }),
      'NJ_MODEL_LOAD_FAILED',
      new RegExp(`^llama.cpp could not load ${cut}: `),
    );
    // llama.cpp's own complaint went to the injected logger, not to the console.
    expect(lines.map((l) => JSON.parse(l) as { level: string; msg: string })).toContainEqual(
      expect.objectContaining({ level: 'error', msg: 'llama.cpp' }),
    );
  });

  it('refuses bad options with NJ_CONFIG_INVALID before loading anything', async () => {
    await expectError(
      loadEngine({ modelPath, slots: 0 }),
      'NJ_CONFIG_INVALID',
      'Engine option slots must be an integer from 1 to 256; got 0.',
    );
    await expectError(
      loadEngine({ modelPath, threads: 1.5 }),
      'NJ_CONFIG_INVALID',
      'Engine option threads must be an integer from 1 to 1024; got 1.5.',
    );
    await expectError(loadEngine({ modelPath, contextLength: -1 }), 'NJ_CONFIG_INVALID', /^Engine option contextLength must be an integer/);
  });
});

describe('generation', () => {
  it('logs metadata only: neither the prompt nor the reply appears in any log line', async () => {
    const lines: string[] = [];
    const logged = await loadEngine({
      modelPath,
      threads: 1,
      slots: 1,
      logger: createLogger({ write: (line) => lines.push(line), level: 'debug' }),
    });
    try {
      const result = await greedy(ask('my secret plan'), 30, logged);
      await expectError(greedy(ask('another secret'), 5000, logged), 'NJ_CONTEXT_OVERFLOW', /^The prompt takes/);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) {
        expect(line).not.toContain('secret');
        expect(line).not.toContain(result.text.slice(0, 12));
      }
    } finally {
      await logged.dispose();
    }
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(['model loaded', 'model unloaded']);
  });

  it('streams deltas that concatenate to exactly the text, in printable ASCII', async () => {
    const deltas: string[] = [];
    const result = await engine.generate({
      messages: ask('Tell me about nightjars.'),
      sampling: { maxTokens: 50, temperature: 0 },
      onDelta: (d) => deltas.push(d),
    });
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe(result.text);
    expect(result.text).toMatch(/^[\x20-\x7e]{50}$/);
    expect(result.finishReason).toBe('length');
    expect(result.timeToFirstTokenMs).toBeGreaterThan(0);
    expect(result.tokensPerSecond).toBeGreaterThan(0);
  });

  it('is deterministic across engine instances, and a slot keeps nothing of earlier jobs', async () => {
    const reference = ask('What do nightjars eat?');
    // Fill every slot of the first engine with other conversations first.
    await Promise.all(['moths', 'beetles', 'dusk', 'heath'].map((w) => greedy(ask(`A long story about ${w}.`), 40)));
    const first = await greedy(reference, 80);
    const other = await loadEngine({ modelPath, threads: 1, slots: 4 });
    try {
      const second = await greedy(reference, 80, other);
      expect(second.text).toBe(first.text);
      expect(second.usage).toEqual(first.usage);
    } finally {
      await other.dispose();
    }
    expect((await greedy(reference, 80)).text).toBe(first.text);
  });

  it('stops at maxTokens with finish reason length and exactly that many completion tokens', async () => {
    for (const maxTokens of [1, 7, 33]) {
      const result = await greedy(ask('Count.'), maxTokens);
      expect(result.finishReason).toBe('length');
      expect(result.usage.completionTokens).toBe(maxTokens);
      expect(result.text).toHaveLength(maxTokens);
    }
  });

  it('stops at a stop sequence: finish reason stop, text cut just before it, deltas consistent', async () => {
    const base = (await greedy(ask('Say something.'), 80)).text;
    const stop = base.slice(30, 33);
    const at = base.indexOf(stop);
    const deltas: string[] = [];
    const result = await engine.generate({
      messages: ask('Say something.'),
      sampling: { maxTokens: 80, temperature: 0, stop: ['never there', stop] },
      onDelta: (d) => deltas.push(d),
    });
    expect(result.finishReason).toBe('stop');
    // It says which sequence stopped it (Anthropic clients see it as stop_sequence).
    expect(result.stopSequence).toBe(stop);
    // Choice documented in engine.ts: the stop text is not part of the reply (as in the OpenAI API).
    expect(result.text).toBe(base.slice(0, at));
    expect(deltas.join('')).toBe(result.text);
    // Generation ended on the very token that completed the stop sequence.
    expect(result.usage.completionTokens).toBe(at + stop.length);
  });

  it('emits text held back for a stop sequence that never completes', async () => {
    const base = (await greedy(ask('Say something.'), 60)).text;
    // Starts like the output at position 10 but ends in a byte greedy decoding never emits.
    const stop = `${base.slice(10, 14)}\u0001`;
    const deltas: string[] = [];
    const result = await engine.generate({
      messages: ask('Say something.'),
      sampling: { maxTokens: 60, temperature: 0, stop: [stop] },
      onDelta: (d) => deltas.push(d),
    });
    expect(result).toMatchObject({ text: base, finishReason: 'length' });
    expect(result.stopSequence).toBeUndefined();
    expect(deltas.join('')).toBe(base);
  });

  it('counts promptTokens from the rendered prompt, the same as countPromptTokens', async () => {
    const conversations: ChatMessage[][] = [
      ask('Hi'),
      [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'héllo wörld ✓ — 日本' },
        { role: 'assistant', content: 'Yes.' },
        // Special-token text in a message is text, never a control token: 3 + 4 bytes, not 2 tokens.
        { role: 'user', content: '<s></s>' },
      ],
      // A conversation ending with the assistant is continued from its text (a prefill).
      [
        { role: 'user', content: 'Finish this:' },
        { role: 'assistant', content: 'Once upon' },
      ],
    ];
    for (const messages of conversations) {
      const expected = renderedTokens(messages);
      expect(await engine.countPromptTokens(messages)).toBe(expected);
      const result = await greedy(messages, 5);
      expect(result.usage).toEqual({ promptTokens: expected, completionTokens: 5 });
    }
  });

  it('runs concurrent generations on separate sequences, each continuing its own prompt as it does alone', async () => {
    const prompts = ['Why do nightjars churr?', 'Where do they nest?', 'When do they migrate?', 'How big are they?'];
    const alone: string[] = [];
    for (const p of prompts) alone.push((await greedy(ask(p), 60)).text);
    let minFree = engine.totalSlots;
    const together = await Promise.all(
      prompts.map((p) =>
        engine.generate({
          messages: ask(p),
          sampling: { maxTokens: 60, temperature: 0 },
          onDelta: () => (minFree = Math.min(minFree, engine.freeSlots)),
        }),
      ),
    );
    expect(minFree).toBe(0);
    // Each job continues its own prompt, as it does alone (see test/helpers/batching.ts).
    expect(batchedPrefixes(together.map((r) => r.text))).toEqual(batchedPrefixes(alone));
    expect(new Set(batchedPrefixes(alone)).size).toBe(prompts.length);
    expect(engine.freeSlots).toBe(4);
  });

  it('samples reproducibly with a seed at temperature > 0', async () => {
    const run = (seed: number): Promise<GenerateResult> =>
      engine.generate({ messages: ask('Improvise.'), sampling: { maxTokens: 100, temperature: 1, topK: 50, topP: 1, seed } });
    const a = await run(42);
    expect((await run(42)).text).toBe(a.text);
    expect((await run(43)).text).not.toBe(a.text);
  });
});

describe('limits and errors', () => {
  it('refuses a job with NJ_ENGINE_BUSY when every slot is generating', async () => {
    const controller = new AbortController();
    const running = Array.from({ length: 4 }, (_, i) =>
      engine.generate({ messages: ask(`Busy ${i}`), sampling: { maxTokens: 4000, temperature: 0 }, signal: controller.signal }),
    );
    expect(engine.freeSlots).toBe(0);
    await expectError(greedy(ask('One more'), 5), 'NJ_ENGINE_BUSY', 'All 4 sequences of this engine are generating; no slot is free.');
    controller.abort();
    const results = await Promise.all(running);
    for (const r of results) expect(r.finishReason).toBe('cancelled');
    expect(engine.freeSlots).toBe(4);
    expect((await greedy(ask('One more'), 5)).finishReason).toBe('length');
  });

  it('refuses with NJ_CONTEXT_OVERFLOW when prompt plus maxTokens cannot fit, before using the slot', async () => {
    const messages = ask('Hello');
    const p = renderedTokens(messages);
    await expectError(
      greedy(messages, 4096),
      'NJ_CONTEXT_OVERFLOW',
      `The prompt takes ${p} tokens and maxTokens is 4096: ` +
        `${p + 4096} tokens do not fit the context of 4096 tokens per sequence ` +
        `(at most ${4096 - p} tokens can be generated for this prompt).`,
    );
    expect(engine.freeSlots).toBe(4);
    const long = ask('x'.repeat(5000));
    const q = renderedTokens(long);
    await expectError(
      greedy(long, 1),
      'NJ_CONTEXT_OVERFLOW',
      `The prompt takes ${q} tokens and maxTokens is 1: ` +
        `${q + 1} tokens do not fit the context of 4096 tokens per sequence ` +
        `(at most 0 tokens can be generated for this prompt).`,
    );
  });

  it('fills a small context exactly to its end, and not one token further', async () => {
    const small = await loadEngine({ modelPath, threads: 1, slots: 2, contextLength: 256 });
    try {
      expect(small.model.contextLength).toBe(256);
      const messages = ask('Fill it up.');
      const room = 256 - renderedTokens(messages);
      const full = await greedy(messages, room, small);
      expect(full).toMatchObject({ finishReason: 'length', usage: { completionTokens: room } });
      await expectError(
        greedy(messages, room + 1, small),
        'NJ_CONTEXT_OVERFLOW',
        /do not fit the context of 256 tokens per sequence \(at most \d+ tokens can be generated/,
      );
    } finally {
      await small.dispose();
    }
  });

  it('refuses malformed requests with NJ_BAD_REQUEST', async () => {
    await expectError(greedy([], 5), 'NJ_BAD_REQUEST', 'A generation needs at least one message.');
    await expectError(
      greedy([{ role: 'tool', content: 'x' } as unknown as ChatMessage], 5),
      'NJ_BAD_REQUEST',
      "Message 0 is not {role: 'system' | 'user' | 'assistant', content: string}.",
    );
    await expectError(greedy(ask('x'), 0), 'NJ_BAD_REQUEST', /^Invalid sampling parameters: maxTokens: /);
    await expectError(
      engine.generate({ messages: ask('x'), sampling: { maxTokens: 5, temperature: 3 } }),
      'NJ_BAD_REQUEST',
      /^Invalid sampling parameters: temperature: /,
    );
    expect(engine.freeSlots).toBe(4);
  });

  it('turns a throwing onDelta into NJ_ENGINE_FAILED and frees the slot', async () => {
    const job = engine.generate({
      messages: ask('x'),
      sampling: { maxTokens: 20, temperature: 0 },
      onDelta: () => {
        throw new Error('sink broke');
      },
    });
    await expectError(job, 'NJ_ENGINE_FAILED', 'Generation failed after 1 tokens: sink broke');
    expect(engine.freeSlots).toBe(4);
  });
});

describe('cancellation', () => {
  it('stops on the token during which the abort came: nothing after it, one token generated', async () => {
    const messages = ask('Go on and on.');
    const base = (await greedy(messages, 10)).text;
    // With no '<' early on, nothing is held back for the template's "<|end|>" stop text, so the
    // first delta is the first token.
    expect(base).not.toContain('<');
    const controller = new AbortController();
    const deltas: string[] = [];
    let afterAbort = 0;
    const result = await engine.generate({
      messages,
      sampling: { maxTokens: 4000, temperature: 0 },
      signal: controller.signal,
      onDelta: (d) => {
        if (controller.signal.aborted) afterAbort++;
        deltas.push(d);
        controller.abort();
      },
    });
    expect(afterAbort).toBe(0);
    expect(result).toMatchObject({ finishReason: 'cancelled', text: base.slice(0, 1), usage: { completionTokens: 1 } });
    expect(deltas).toEqual([base.slice(0, 1)]);
    expect(engine.freeSlots).toBe(4);
  });

  it('stops within a token of an abort from outside', async () => {
    const controller = new AbortController();
    let textAtAbort = '';
    let afterAbort = 0;
    let streamed = '';
    const job = engine.generate({
      messages: ask('Keep talking.'),
      sampling: { maxTokens: 4000, temperature: 0 },
      signal: controller.signal,
      onDelta: (d) => {
        if (controller.signal.aborted) afterAbort++;
        streamed += d;
      },
    });
    await new Promise<void>((resolve) => {
      const poll = (): void => {
        if (streamed.length >= 20) {
          textAtAbort = streamed;
          controller.abort();
          resolve();
        } else setImmediate(poll);
      };
      poll();
    });
    const result = await job;
    expect(result.finishReason).toBe('cancelled');
    expect(afterAbort).toBe(0);
    expect(result.text).toBe(textAtAbort);
    // Tokens generated = characters streamed, plus at most the 7 held back for "<|end|>\n"; the
    // token in flight when the abort came is dropped, not counted.
    expect(result.usage.completionTokens - textAtAbort.length).toBeGreaterThanOrEqual(0);
    expect(result.usage.completionTokens - textAtAbort.length).toBeLessThanOrEqual(7);
    expect(engine.freeSlots).toBe(4);
  });

  it('a cancel during a long prompt lands between pieces of promptChunkTokens, before any token is generated', async () => {
    const chunked = await loadEngine({ modelPath, threads: 1, slots: 1, promptChunkTokens: 8 });
    try {
      const messages = ask('word '.repeat(600));
      const full = await chunked.countPromptTokens(messages);
      const controller = new AbortController();
      const job = chunked.generate({ messages, sampling: { maxTokens: 10, temperature: 0 }, signal: controller.signal });
      setImmediate(() => controller.abort());
      const result = await job;
      expect(result.finishReason).toBe('cancelled');
      expect(result.usage.completionTokens).toBe(0);
      expect(result.usage.promptTokens).toBeLessThan(full);
      expect(result.usage.promptTokens % 8).toBe(0);
    } finally {
      await chunked.dispose();
    }
  });

  it('returns cancelled at once, with no usage, for a signal aborted before the call', async () => {
    const deltas: string[] = [];
    const result = await engine.generate({
      messages: ask('x'),
      sampling: { maxTokens: 10 },
      signal: AbortSignal.abort(),
      onDelta: (d) => deltas.push(d),
    });
    expect(result).toMatchObject({ finishReason: 'cancelled', text: '', usage: { promptTokens: 0, completionTokens: 0 } });
    expect(deltas).toEqual([]);
  });
});

describe('dispose', () => {
  it('cancels running generations, frees everything, is idempotent, and later calls fail clearly', async () => {
    const doomed = await loadEngine({ modelPath, threads: 1, slots: 2 });
    const running = doomed.generate({ messages: ask('Long'), sampling: { maxTokens: 4000, temperature: 0 } });
    await new Promise((r) => setImmediate(r));
    const [a, b] = [doomed.dispose(), doomed.dispose()];
    expect(a).toBe(b);
    await Promise.all([a, b]);
    expect((await running).finishReason).toBe('cancelled');
    expect(doomed.freeSlots).toBe(0);
    const message = 'The engine for tiny.gguf was disposed; load the model again to generate.';
    await expectError(greedy(ask('x'), 5, doomed), 'NJ_ENGINE_FAILED', message);
    await expectError(doomed.countPromptTokens(ask('x')), 'NJ_ENGINE_FAILED', message);
    await doomed.dispose();
    await doomed[Symbol.asyncDispose]();
  });
});
