/**
 * A dispute on real parts: a gateway on a real socket whose reply checker is the real one
 * (createReplyChecker on node-llama-cpp, as `nightjar gateway --audit-models` builds it), real
 * agents on synthetic tiny models, the SDK keeping evidence and revealing it. An honest agent's
 * revealed reply passes and nothing is struck; an agent that serves another model's weights under
 * the claimed file's hash fails, is struck (`audit-failed`) and its job is forfeited.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import {
  Agent,
  createReplyChecker,
  loadEngine,
  writeSyntheticModel,
  type InferenceEngine,
  type ReplyCheckerHandle,
  type ServedModel,
} from '../../src/main/agent/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { generateIdentity, type ChatMessage } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';

let dir: string;
let claimed: ServedModel;
let honestEngine: InferenceEngine;
let cheatEngine: InferenceEngine;
let checker: ReplyCheckerHandle;
let gateway: Gateway;
let apiKey: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-dispute-'));
  const tiny = await writeSyntheticModel({ path: path.join(dir, 'tiny.gguf'), shape: 'tiny', seed: 0 });
  const other = await writeSyntheticModel({ path: path.join(dir, 'tiny-other.gguf'), shape: 'tiny', seed: 1 });
  honestEngine = await loadEngine({ modelPath: tiny.path, threads: 1, slots: 1 });
  cheatEngine = await loadEngine({ modelPath: other.path, threads: 1, slots: 1 });
  claimed = { id: tiny.modelId, sha256: tiny.sha256, synthetic: true, contextLength: honestEngine.model.contextLength };
  checker = createReplyChecker({ threads: 1, modelPath: (sha) => (sha === tiny.sha256 ? tiny.path : null) });
  gateway = await Gateway.start({ port: 0, allowSynthetic: true, honesty: { checker: checker.check } });
  apiKey = (await gateway.store.accounts.createApiKey({ name: 'e2e', now: Date.now() })).key;
}, 60_000);

afterAll(async () => {
  await gateway?.dispose();
  await checker?.dispose();
  await honestEngine?.dispose();
  await cheatEngine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const http = perTestFetch();
const client = (): NightjarClient =>
  new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch, apiKey, countersign: false });

/** Runs one job on an agent serving `engine` under the claimed file's hash, then stops the agent. */
async function revealOneJob(engine: InferenceEngine): Promise<{ agentId: string; reveal: Awaited<ReturnType<NightjarClient['reveal']>> }> {
  const agent = await Agent.create({
    gatewayUrl: gateway.agentUrl,
    identity: await generateIdentity(),
    engine,
    model: claimed,
    stopGraceMs: 500,
  });
  agent.start();
  try {
    await agentServing(gateway, agent.agentId, 10_000);
    const messages: ChatMessage[] = [{ role: 'user', content: 'Name three birds that fly at night.' }];
    const result = await client().complete({ model: claimed.id, messages, maxTokens: 24, temperature: 0, keepEvidence: true });
    return { agentId: agent.agentId, reveal: await client().reveal(result.evidence!) };
  } finally {
    await agent.dispose();
  }
}

describe('a revealed job re-checked by the real checker', () => {
  it('passes for the honest agent and fails, strikes and forfeits for the one serving other weights', async () => {
    const honest = await revealOneJob(honestEngine);
    expect(honest.reveal).toMatchObject({ verdict: { pass: true, findings: [] }, forfeited: false });
    const cheat = await revealOneJob(cheatEngine);
    expect(cheat.reveal.verdict.pass).toBe(false);
    expect(cheat.reveal.verdict.findings.map((f) => f.reason)).toContain('off-distribution');
    expect(cheat.reveal.forfeited).toBe(true);
    await gateway.honesty.whenWritten();
    expect((await gateway.store.strikes.list({})).map((s) => [s.agentId, s.reason])).toEqual([[cheat.agentId, 'audit-failed']]);
    expect((await gateway.store.audits.counts()).sort((a, b) => a.failed - b.failed)).toEqual([
      { agentId: honest.agentId, passed: 1, failed: 0 },
      { agentId: cheat.agentId, passed: 0, failed: 1 },
    ]);
  }, 120_000);
});
