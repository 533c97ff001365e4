/**
 * The reply check's false positives and detection on synthetic models: the figures behind
 * AuditPolicy's bounds (src/shared/honesty/judge.ts) and docs/honesty.md "Audits: the check".
 *
 *   npx tsx bench/reply-check.ts [--seeds 100]
 *
 * Standalone (not an area of `npm run bench`): it measures verdicts, not speed. Honest replies
 * come from Nightjar's own engine; each row says how many of its replies failed the check and why.
 * - honest, same file: the agent runs the file the checker holds (tiny, seed 0).
 * - honest, other kernel: the agent runs mini-q8_0's weights stored as F32, the checker the Q8_0
 *   file (a float path against the CPU's quantised-activation path: a stand-in for Metal against
 *   the checker's CPU; random weights amplify such differences along a sequence).
 * - cheats: another model's replies (tiny, seed 1) under the first one's hash, random printable text.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createReplyChecker, loadEngine, writeSyntheticModel, type InferenceEngine } from '../src/main/agent/index.js';
import type { AuditVerdict, ChatMessage, ReplyUnderCheck, Sampling } from '../src/shared/index.js';

const PROMPTS = ['Tell me a story about a fox.', 'What is 2+2?', 'Write a poem about the sea, in four lines.', 'Hello', 'Explain tides.'];

interface Row {
  label: string;
  replies: number;
  failed: number;
  reasons: Record<string, number>;
  worstLnBound: number;
  meanLogprob: number;
  worstGap: number;
}

function replyOf(
  sha256: string,
  messages: ChatMessage[],
  sampling: Sampling,
  r: Awaited<ReturnType<InferenceEngine['generate']>>,
): ReplyUnderCheck {
  return {
    jobId: 'bench',
    model: 'synthetic',
    modelSha256: sha256,
    messages,
    sampling,
    reply: { text: r.text, finishReason: r.finishReason, ...(r.stopSequence === undefined ? {} : { stopSequence: r.stopSequence }) },
    claimed: r.usage,
  };
}

function tally(label: string, verdicts: AuditVerdict[]): Row {
  const reasons: Record<string, number> = {};
  for (const v of verdicts) for (const f of v.findings) reasons[f.reason] = (reasons[f.reason] ?? 0) + 1;
  return {
    label,
    replies: verdicts.length,
    failed: verdicts.filter((v) => !v.pass).length,
    reasons,
    worstLnBound: Math.min(...verdicts.map((v) => v.figures['likelihoodLnBound'] ?? 0)),
    meanLogprob: verdicts.reduce((s, v) => s + (v.figures['meanLogprob'] ?? 0), 0) / verdicts.length,
    worstGap: Math.max(...verdicts.map((v) => v.figures['worstGap'] ?? 0)),
  };
}

async function main(): Promise<void> {
  const at = process.argv.indexOf('--seeds');
  const seeds = at > 0 ? Number(process.argv[at + 1]) : 100;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-reply-check-'));
  const tiny = await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 });
  const other = await writeSyntheticModel({ path: path.join(dir, 'tiny-1.gguf'), shape: 'tiny', seed: 1 });
  const q8 = await writeSyntheticModel({ path: path.join(dir, 'mini.gguf'), shape: 'mini-q8_0', seed: 0 });
  const f32 = await writeSyntheticModel({ path: path.join(dir, 'mini-f32.gguf'), shape: 'mini-q8_0', seed: 0, storeAsF32: true });
  const files = new Map([tiny, q8].map((f) => [f.sha256, f.path]));
  const checker = createReplyChecker({ modelPath: (sha) => files.get(sha) ?? null, threads: 1 });
  const agents = {
    tiny: await loadEngine({ modelPath: tiny.path, threads: 1, slots: 1 }),
    other: await loadEngine({ modelPath: other.path, threads: 1, slots: 1 }),
    q8: await loadEngine({ modelPath: q8.path, threads: 1, slots: 1 }),
    f32: await loadEngine({ modelPath: f32.path, threads: 1, slots: 1 }),
  };
  const rows: Row[] = [];
  const temperatures: (number | undefined)[] = [0, undefined, 1, 1.5, 2];
  const run = async (label: string, agent: InferenceEngine, sha256: string, temperature: number | undefined, n: number): Promise<void> => {
    const verdicts: AuditVerdict[] = [];
    for (let seed = 0; seed < n; seed++) {
      const messages: ChatMessage[] = [{ role: 'user', content: `${PROMPTS[seed % PROMPTS.length]!} (${seed})` }];
      const sampling: Sampling = { maxTokens: 64, seed, ...(temperature === undefined ? {} : { temperature }) };
      const r = await agent.generate({ messages, sampling });
      verdicts.push(await checker.check(replyOf(sha256, messages, sampling, r), { reference: temperature === 0 }));
    }
    rows.push(tally(`${label}, temperature ${temperature ?? '0.8 (default)'}`, verdicts));
  };
  for (const t of temperatures) await run('honest, same file', agents.tiny, tiny.sha256, t, seeds);
  for (const t of temperatures) await run('honest, other kernel', agents.f32, q8.sha256, t, seeds);
  for (const t of [0, undefined, 1]) await run('another model under the hash', agents.other, tiny.sha256, t, Math.min(seeds, 50));
  {
    const verdicts: AuditVerdict[] = [];
    for (let seed = 0; seed < Math.min(seeds, 50); seed++) {
      let x = seed * 7919 + 1;
      const text = Array.from({ length: 64 }, () => {
        x = (x * 1103515245 + 12345) % 2147483648;
        return String.fromCharCode(32 + Math.floor((x / 2147483648) * 95));
      }).join('');
      const messages: ChatMessage[] = [{ role: 'user', content: PROMPTS[seed % PROMPTS.length]! }];
      verdicts.push(
        await checker.check({
          jobId: 'bench',
          model: 'synthetic',
          modelSha256: tiny.sha256,
          messages,
          sampling: { maxTokens: 64 },
          reply: { text, finishReason: 'length' },
          claimed: { promptTokens: 1, completionTokens: 64 },
        }),
      );
    }
    rows.push(tally('random printable text, temperature 0.8 (default)', verdicts));
  }
  await checker.dispose();
  for (const a of Object.values(agents)) await a.dispose();
  await rm(dir, { recursive: true, force: true });

  console.log('| replies | n | failed | reasons | worst ln bound | mean log p | worst gap |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const reasons = Object.entries(r.reasons)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(
      `| ${r.label} | ${r.replies} | ${r.failed} | ${reasons || '—'} | ` +
        `${r.worstLnBound.toFixed(1)} | ${r.meanLogprob.toFixed(2)} | ${r.worstGap.toFixed(2)} |`,
    );
  }
}

await main();
