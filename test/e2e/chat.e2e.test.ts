/**
 * The whole path on real parts: a gateway on a real socket, an agent running node-llama-cpp on
 * the synthetic tiny model, the SDK and the `nightjar chat` command as clients. At temperature 0
 * the client must receive exactly what the engine produces when called directly, with a receipt
 * whose token counts match. The gateway's wire and logs carry no trace of prompt or reply.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { NightjarClient } from '../../src/client/index.js';
import { Agent, loadEngine, sha256File, writeSyntheticModel, type InferenceEngine, type ServedModel } from '../../src/main/agent/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { createLogger } from '../../src/node/index.js';
import { generateIdentity, randomBytes, toHex, type ChatMessage } from '../../src/shared/index.js';
import { batchedPrefixes } from '../helpers/batching.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { startRecordingProxy, tracesOf, type RecordingProxy } from '../helpers/recording-proxy.js';

let dir: string;
let engine: InferenceEngine;
let model: ServedModel;
let gateway: Gateway;
let proxy: RecordingProxy;
let agent: Agent;
const gatewayLog: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-e2e-'));
  const file = await writeSyntheticModel({ path: path.join(dir, 'synthetic-tiny.gguf'), shape: 'tiny' });
  engine = await loadEngine({ modelPath: file.path, threads: 1, slots: 4 });
  model = { id: file.modelId, sha256: await sha256File(file.path), synthetic: true, contextLength: engine.model.contextLength };
  gateway = await Gateway.start({
    port: 0,
    allowSynthetic: true,
    logger: createLogger({ level: 'debug', write: (l) => gatewayLog.push(l) }),
  });
  proxy = await startRecordingProxy(Number(new URL(gateway.url).port));
  agent = await Agent.create({
    gatewayUrl: `ws://127.0.0.1:${proxy.port}/v1/agent`,
    identity: await generateIdentity(),
    engine,
    model,
    stopGraceMs: 1000,
  });
  agent.start();
  await agentServing(gateway, agent.agentId, 10_000);
}, 60_000);

afterAll(async () => {
  await agent?.dispose();
  await gateway?.dispose();
  await proxy?.close();
  await engine?.dispose();
  await rm(dir, { recursive: true, force: true });
});

const http = perTestFetch();

const client = (): NightjarClient =>
  new NightjarClient({ gatewayUrl: `http://127.0.0.1:${proxy.port}`, trust: { allowSynthetic: true }, fetch: http.fetch });

describe('end to end on node-llama-cpp', () => {
  it('delivers exactly the text the engine produces directly, with matching receipt counts', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Name three birds that fly at night.' },
    ];
    const direct = await engine.generate({ messages, sampling: { maxTokens: 48, temperature: 0 } });
    expect(direct.text.length).toBeGreaterThan(0);

    const stream = client().chat({ model: model.id, messages, maxTokens: 48, temperature: 0 });
    let streamed = '';
    for await (const delta of stream) streamed += delta;
    const result = await stream.result;

    expect(result.text).toBe(direct.text);
    expect(streamed).toBe(direct.text);
    expect(result.finishReason).toBe(direct.finishReason);
    expect(result.usage).toEqual(direct.usage);
    expect(result.receipt.promptTokens).toBe(direct.usage.promptTokens);
    expect(result.receipt.completionTokens).toBe(direct.usage.completionTokens);
    expect(result.receipt.modelSha256).toBe(model.sha256);
    expect(result.receipt.agentId).toBe(agent.agentId);
  });

  it('serves several jobs at once on separate sequences, each as it would alone', async () => {
    const prompts = ['owls', 'nightjars', 'bats', 'moths'].map((w): ChatMessage[] => [{ role: 'user', content: `Tell me about ${w}.` }]);
    const alone = [];
    for (const m of prompts) alone.push(await engine.generate({ messages: m, sampling: { maxTokens: 40, temperature: 0 } }));
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, agent.stats.activeJobs)), 1);
    const together = await Promise.all(
      prompts.map((m) => client().complete({ model: model.id, messages: m, maxTokens: 40, temperature: 0 })),
    );
    clearInterval(sampler);
    // Each job continues its own prompt, as it does alone (see test/helpers/batching.ts).
    expect(batchedPrefixes(together.map((r) => r.text))).toEqual(batchedPrefixes(alone.map((r) => r.text)));
    expect(together.map((r) => r.usage)).toEqual(alone.map((r) => r.usage));
    expect(peak).toBeGreaterThan(1);
  });

  it('nightjar chat reads the prompt from stdin and prints the verified reply', async () => {
    const prompt = 'What is a gateway?';
    const direct = await engine.generate({ messages: [{ role: 'user', content: prompt }], sampling: { maxTokens: 32, temperature: 0 } });
    let out = '';
    let err = '';
    const code = await main(
      ['chat', '--gateway', `http://127.0.0.1:${proxy.port}`, '--allow-synthetic', '--max-tokens', '32', '--temperature', '0'],
      {
        stdout: { write: (t: string) => (out += t) },
        stderr: { write: (t: string) => (err += t) },
        stdin: Readable.from([Buffer.from(prompt + '\n')]),
        env: {},
        cwd: process.cwd(),
        signal: new AbortController().signal,
        fetch: http.fetch,
      },
    );
    expect(err).toMatch(/receipt verified/);
    expect(code).toBe(0);
    expect(out).toBe(direct.text + '\n');
    expect(err).toContain(`${direct.usage.promptTokens} prompt + ${direct.usage.completionTokens} completion tokens`);
  });

  it('leaves no trace of the prompt or the real reply in what the gateway sent, received or logged', async () => {
    const canary = `CANARY-${toHex(randomBytes(12))}`;
    const result = await client().complete({
      model: model.id,
      messages: [{ role: 'user', content: `Remember ${canary} for me.` }],
      maxTokens: 64,
      temperature: 0,
    });
    expect(result.text.length).toBeGreaterThanOrEqual(24);
    const wire = proxy.capture();
    const logs = gatewayLog.join('\n');
    expect(wire.toString('latin1')).toContain(result.jobId);
    for (const haystack of [wire, logs]) {
      expect(tracesOf(canary, haystack)).toEqual([]);
      expect(tracesOf(result.text, haystack)).toEqual([]);
      // Any 24-character stretch of the reply, raw.
      const text = typeof haystack === 'string' ? haystack : haystack.toString('latin1');
      for (let i = 0; i + 24 <= result.text.length; i += 8) expect(text.includes(result.text.slice(i, i + 24))).toBe(false);
    }
  });
});
