/**
 * The reply checker on real node-llama-cpp with synthetic models (docs/honesty.md "Audits: the
 * check"): honest replies from Nightjar's own engine pass; each cheat fails with its reason.
 *
 * Models: `tiny` seed 0 is the file the receipts name; `tiny` seed 1 is "another model" of the
 * same shape and vocabulary; `mini-q8_0` and the same weights stored as F32 stand for one model
 * run on two kernels. Engines and the checker run with threads 1 (NOTES.md: the thread default
 * trap). Greedy synthetic models emit printable ASCII only and never end on their own.
 *
 * Each security test names the protection it fails without; each protection was removed once and
 * its test seen to fail (2026-12-01).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createReplyChecker,
  DEFAULT_SAMPLING,
  loadEngine,
  writeSyntheticModel,
  type GenerateResult,
  type InferenceEngine,
  type InspectRequest,
  type ReplyCheckerHandle,
  type ReplyInspector,
  type SyntheticModelFile,
} from '../../../../src/main/agent/index.js';
import { createLogger } from '../../../../src/node/index.js';
import {
  DEFAULT_AUDIT_POLICY,
  NightjarError,
  type AuditVerdict,
  type ChatMessage,
  type ReplyUnderCheck,
  type Sampling,
} from '../../../../src/shared/index.js';

let dir: string;
let tiny: SyntheticModelFile;
let other: SyntheticModelFile;
let q8: SyntheticModelFile;
let f32: SyntheticModelFile;
let agent: InferenceEngine & ReplyInspector;
let otherAgent: InferenceEngine;
let checker: ReplyCheckerHandle;
const lookups: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-reply-check-'));
  tiny = await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 });
  other = await writeSyntheticModel({ path: path.join(dir, 'tiny-1.gguf'), shape: 'tiny', seed: 1 });
  q8 = await writeSyntheticModel({ path: path.join(dir, 'mini.gguf'), shape: 'mini-q8_0', seed: 0 });
  f32 = await writeSyntheticModel({ path: path.join(dir, 'mini-f32.gguf'), shape: 'mini-q8_0', seed: 0, storeAsF32: true });
  agent = await loadEngine({ modelPath: tiny.path, threads: 1, slots: 1 });
  otherAgent = await loadEngine({ modelPath: other.path, threads: 1, slots: 1 });
  const files = new Map([tiny, other, q8].map((f) => [f.sha256, f.path]));
  checker = createReplyChecker({
    threads: 1,
    modelPath: (sha) => {
      lookups.push(sha);
      return files.get(sha) ?? null;
    },
  });
});

afterAll(async () => {
  await checker?.dispose();
  await agent?.dispose();
  await otherAgent?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const ask = (content: string): ChatMessage[] => [{ role: 'user', content }];

function underCheck(messages: ChatMessage[], sampling: Sampling, r: GenerateResult, sha256 = tiny.sha256): ReplyUnderCheck {
  return {
    jobId: 'job-1',
    model: 'synthetic-tiny',
    modelSha256: sha256,
    messages,
    sampling,
    reply: { text: r.text, finishReason: r.finishReason, ...(r.stopSequence === undefined ? {} : { stopSequence: r.stopSequence }) },
    claimed: { ...r.usage },
  };
}

function reasons(v: AuditVerdict): string[] {
  return [...new Set(v.findings.map((f) => f.reason))].sort();
}

async function honest(content: string, sampling: Sampling, engine: InferenceEngine = agent): Promise<ReplyUnderCheck> {
  const messages = ask(content);
  return underCheck(messages, sampling, await engine.generate({ messages, sampling }));
}

/** A printable ASCII string from a small LCG: the "junk" a cheat returns. */
function junk(length: number, seed: number): string {
  let x = seed * 7919 + 1;
  let out = '';
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out += String.fromCharCode(32 + Math.floor((x / 2147483648) * 95));
  }
  return out;
}

describe('the policy', () => {
  it("copies the engine's default sampling", () => {
    expect(DEFAULT_AUDIT_POLICY.defaultSampling).toEqual(DEFAULT_SAMPLING);
  });
});

describe('the engine inspection', () => {
  it('renders and counts the prompt as generate does, and frees its slot', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Héllo — naïve café?' },
    ];
    const r = await agent.generate({ messages, sampling: { maxTokens: 8, temperature: 0 } });
    const inspection = await agent.inspect({ messages, reply: { text: r.text, finishReason: r.finishReason }, topN: 1 });
    expect(inspection.promptTokens).toBe(r.usage.promptTokens);
    expect(inspection.promptTokens).toBe(await agent.countPromptTokens(messages));
    expect(inspection.replyTokens).toBe(r.usage.completionTokens);
    expect(inspection.positions).toHaveLength(8);
    expect(inspection.positions.every((p) => p.rank === 1 && p.top.length === 1)).toBe(true);
    expect(inspection.end).toBeNull();
    expect(agent.freeSlots).toBe(1);
  });

  it('shares the slots with generate: busy while a generation holds the only one', async () => {
    const messages = ask('hold the slot');
    const generation = agent.generate({ messages, sampling: { maxTokens: 200, temperature: 0 } });
    const request: InspectRequest = { messages, reply: { text: 'abc', finishReason: 'length' }, topN: 1 };
    const busy = await agent.inspect(request).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(busy).toBeInstanceOf(NightjarError);
    expect((busy as NightjarError).code).toBe('NJ_ENGINE_BUSY');
    await generation;
    await expect(agent.inspect(request)).resolves.toMatchObject({ replyTokens: 3 });
  });

  it('logs no content', async () => {
    const lines: string[] = [];
    const logged = createReplyChecker({
      threads: 1,
      modelPath: () => tiny.path,
      logger: createLogger({ write: (line) => lines.push(line), level: 'debug' }),
    });
    try {
      const input = await honest('my secret plan', { maxTokens: 16, temperature: 0 });
      await logged.check(input, { reference: true });
      expect(lines.length).toBeGreaterThan(0);
      const all = lines.join('\n');
      expect(all).not.toContain('secret');
      expect(all).not.toContain(input.reply.text);
    } finally {
      await logged.dispose();
    }
  });
});

describe('honest replies pass', () => {
  it('a greedy reply, with the reference run', async () => {
    const input = await honest('Tell me about foxes.', { maxTokens: 48, temperature: 0 });
    const verdict = await checker.check(input, { reference: true });
    expect(verdict).toMatchObject({ pass: true, findings: [] });
    expect(verdict.figures).toMatchObject({ greedyMatch: 1, referenceTokens: 48, replyTokens: 48, worstRank: 1, tokensChecked: 48 });
    for (const key of ['promptTokens', 'replyTokens', 'meanLogprob', 'worstRank', 'tokensChecked', 'ms']) {
      expect(typeof verdict.figures[key]).toBe('number');
    }
  });

  it('a greedy reply that ends on a stop sequence', async () => {
    // A character from the middle of the greedy reply ends the same request with 'stop'.
    const free = await agent.generate({ messages: ask('Tell me about foxes.'), sampling: { maxTokens: 48, temperature: 0 } });
    const stop = free.text.slice(20, 22);
    const input = await honest('Tell me about foxes.', { maxTokens: 48, temperature: 0, stop: [stop] });
    expect(input.reply).toMatchObject({ finishReason: 'stop', stopSequence: stop });
    expect(input.reply.text.length).toBeLessThanOrEqual(20);
    const verdict = await checker.check(input, { reference: true });
    expect(verdict.findings).toEqual([]);
  });

  it('sampled replies at the default sampling and at temperature 1.0, 20 seeds each: no false positive', async () => {
    // Fails without the engine's respelling: the sampler spells some spaces with the byte token
    // <0x20>, the tokenizer with '▁', which the model ranks far below.
    const failed: AuditVerdict[] = [];
    for (const temperature of [undefined, 1]) {
      for (let seed = 0; seed < 20; seed++) {
        const sampling: Sampling = { maxTokens: 48, seed, ...(temperature === undefined ? {} : { temperature }) };
        const verdict = await checker.check(await honest(`Story number ${seed}, please.`, sampling));
        if (!verdict.pass) failed.push(verdict);
      }
    }
    expect(failed).toEqual([]);
  });

  it('replies of the same weights on another kernel (F32 against Q8_0): no false positive', async () => {
    // Kernel differences compound along a sequence in a random-weight model; the allowance of a
    // few tokens past the tolerance, up to the far tolerance, absorbs them (AuditPolicy.farTolerance).
    // Without the allowance (no token past logitTolerance) some of these fail.
    const floatAgent = await loadEngine({ modelPath: f32.path, threads: 1, slots: 1 });
    try {
      const failed: AuditVerdict[] = [];
      for (const temperature of [0, undefined, 1.5]) {
        for (let seed = 0; seed < 6; seed++) {
          const sampling: Sampling = { maxTokens: 64, seed, ...(temperature === undefined ? {} : { temperature }) };
          const input = { ...(await honest(`Question ${seed}: why?`, sampling, floatAgent)), modelSha256: q8.sha256 };
          const verdict = await checker.check(input, { reference: temperature === 0 });
          if (!verdict.pass) failed.push(verdict);
        }
      }
      expect(failed).toEqual([]);
    } finally {
      await floatAgent.dispose();
    }
  }, 120_000);
});

describe('cheats fail', () => {
  it('random printable text: off-distribution (fails without the rank and min-p check)', async () => {
    const messages = ask('Tell me about foxes.');
    for (let seed = 0; seed < 5; seed++) {
      const verdict = await checker.check({
        jobId: 'job-junk',
        model: 'synthetic-tiny',
        modelSha256: tiny.sha256,
        messages,
        sampling: { maxTokens: 48 },
        reply: { text: junk(48, seed), finishReason: 'length' },
        claimed: { promptTokens: 10, completionTokens: 48 },
      });
      expect(verdict.pass).toBe(false);
      expect(reasons(verdict)).toContain('off-distribution');
    }
  });

  it("another model's greedy reply under this model's hash: off-distribution, greedy-mismatch (fails without either check)", async () => {
    const input = await honest('Tell me about foxes.', { maxTokens: 48, temperature: 0 }, otherAgent);
    const verdict = await checker.check(input, { reference: true });
    expect(reasons(verdict)).toEqual(['greedy-mismatch', 'off-distribution']);
    expect(verdict.figures['greedyMatch']).toBe(0);
  });

  it("another model's sampled replies: implausible-likelihood (fails without the likelihood test)", async () => {
    for (let seed = 0; seed < 5; seed++) {
      const input = await honest(`Story number ${seed}, please.`, { maxTokens: 48, seed }, otherAgent);
      const verdict = await checker.check(input);
      expect(reasons(verdict)).toContain('implausible-likelihood');
    }
  });

  it("a reply cut in half and marked 'stop': tail-dropped, greedy and sampled (fails without the end check)", async () => {
    for (const sampling of [
      { maxTokens: 48, temperature: 0 },
      { maxTokens: 48, seed: 3 },
    ] satisfies Sampling[]) {
      const input = await honest('Tell me about foxes.', sampling);
      const half = [...input.reply.text].slice(0, 24).join('');
      const cut: ReplyUnderCheck = {
        ...input,
        reply: { text: half, finishReason: 'stop' },
        claimed: { ...input.claimed, completionTokens: 25 },
      };
      const verdict = await checker.check(cut);
      expect(reasons(verdict)).toEqual(['tail-dropped']);
    }
  });

  it("'length' with half the tokens: tail-dropped (fails without the length check)", async () => {
    const input = await honest('Tell me about foxes.', { maxTokens: 48, seed: 5 });
    expect(input.reply.finishReason).toBe('length');
    const half = [...input.reply.text].slice(0, 24).join('');
    const verdict = await checker.check({
      ...input,
      reply: { text: half, finishReason: 'length' },
      claimed: { ...input.claimed, completionTokens: 24 },
    });
    expect(reasons(verdict)).toEqual(['tail-dropped']);
  });

  it('claimed completion tokens +5: completion-count (fails without the count check)', async () => {
    const input = await honest('Tell me about foxes.', { maxTokens: 48, seed: 7 });
    expect((await checker.check(input)).pass).toBe(true);
    const verdict = await checker.check({ ...input, claimed: { ...input.claimed, completionTokens: input.claimed.completionTokens + 5 } });
    expect(reasons(verdict)).toEqual(['completion-count']);
    expect(verdict.findings[0]!.figures).toMatchObject({ claimed: 53, replyTokens: 48, bound: 50 });
  });

  it('claimed prompt tokens +5: prompt-count (fails without the count check)', async () => {
    const input = await honest('Tell me about foxes.', { maxTokens: 16, seed: 7 });
    const verdict = await checker.check({ ...input, claimed: { ...input.claimed, promptTokens: input.claimed.promptTokens + 5 } });
    expect(reasons(verdict)).toEqual(['prompt-count']);
  });
});

describe('the checker', () => {
  it('rejects NJ_AUDIT_UNAVAILABLE for a sha256 it has no file for', async () => {
    const input = await honest('hi', { maxTokens: 4, temperature: 0 });
    const error = await checker.check({ ...input, modelSha256: 'ab'.repeat(32) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NightjarError);
    expect((error as NightjarError).code).toBe('NJ_AUDIT_UNAVAILABLE');
    expect((error as Error).message).toBe(`This checker holds no model file with sha256 ${'ab'.repeat(32)}.`);
  });

  it('refuses bad options with NJ_CONFIG_INVALID', () => {
    expect(() => createReplyChecker({ modelPath: () => null, threads: 0 })).toThrow(
      'Reply checker option threads must be an integer from 1 to 1024; got 0.',
    );
    expect(() => createReplyChecker({ modelPath: () => null, policy: { logitTolerance: -1 } })).toThrow(
      'Reply checker option policy: AuditPolicy.logitTolerance must be from 0 to 10; got -1.',
    );
  });

  it('runs concurrent checks one at a time and keeps the last model loaded', async () => {
    const a = await honest('one', { maxTokens: 8, temperature: 0 });
    const b = { ...(await honest('two', { maxTokens: 8, temperature: 0 }, otherAgent)), modelSha256: other.sha256 };
    lookups.length = 0;
    const verdicts = await Promise.all([checker.check(a), checker.check(b), checker.check(b), checker.check(a)]);
    expect(verdicts.map((v) => v.pass)).toEqual([true, true, true, true]);
    // tiny was loaded before; other is looked up once (kept for the third check), then tiny again.
    expect(lookups).toEqual([other.sha256, tiny.sha256]);
  }, 120_000);
});
