/**
 * The compatible proxy encrypts end to end: an unmodified OpenAI client sends a canary prompt and
 * receives a canary reply through `nightjar proxy`, while a TCP recorder in front of the gateway
 * captures every byte the gateway sends and receives (the proxy's requests and the agent's
 * frames). Neither canary appears there in any encoding, nor in the gateway's or the proxy's
 * logs. The control swaps the proxy's sealing for a plaintext body and shows the same search
 * finds the prompt — so this test fails if the proxy stops encrypting.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { CompatProxy, NightjarClient } from '../../src/client/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { Agent } from '../../src/main/agent/index.js';
import { createLogger } from '../../src/node/index.js';
import { generateIdentity, pad, randomBytes, sealRequest, toBase64Url, toHex, utf8 } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, agentServing } from '../helpers/network.js';
import { startRecordingProxy, tracesOf, type RecordingProxy } from '../helpers/recording-proxy.js';

/** Sealing that "forgets" to encrypt: same header, the request in the clear as its body. */
const plaintextSeal: typeof sealRequest = async (options) => {
  const sealed = await sealRequest(options);
  const clear = utf8(JSON.stringify({ messages: options.messages }));
  return { ...sealed, envelope: { ...sealed.envelope, body: toBase64Url(pad(clear, sealed.envelope.header.bodyLength)) } };
};

let gateway: Gateway | undefined;
let wire: RecordingProxy | undefined;
let agent: Agent | undefined;
let proxy: CompatProxy | undefined;
afterEach(async () => {
  await proxy?.dispose();
  await agent?.dispose();
  await gateway?.dispose();
  await wire?.close();
  gateway = wire = agent = proxy = undefined;
});
const http = perTestFetch();
const upstream = perTestFetch();

async function scenario(seal?: typeof sealRequest) {
  const promptCanary = `CANARY-PROMPT-${toHex(randomBytes(12))}`;
  const replyCanary = `CANARY-REPLY-${toHex(randomBytes(12))}`;
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', write: (l) => logs.push(l) });
  gateway = await Gateway.start({ port: 0, allowSynthetic: true, logger });
  wire = await startRecordingProxy(Number(new URL(gateway.url).port));
  agent = await Agent.create({
    gatewayUrl: `ws://127.0.0.1:${wire.port}/v1/agent`,
    identity: await generateIdentity(),
    engine: new FakeEngine({ words: ['Sure: ', replyCanary, '.'] }),
    model: FAKE_MODEL,
  });
  agent.start();
  await agentServing(gateway, agent.agentId);
  const client = new NightjarClient({
    gatewayUrl: `http://127.0.0.1:${wire.port}`,
    trust: { allowSynthetic: true },
    fetch: upstream.fetch,
    retry: false,
    ...(seal ? { seal } : {}),
  });
  proxy = await CompatProxy.start({ client, port: 0, logger });
  const openai = new OpenAI({ apiKey: 'x', baseURL: `${proxy.url}/v1`, fetch: http.fetch, maxRetries: 0 });
  const outcome = await openai.chat.completions
    .create({
      model: FAKE_MODEL.id,
      messages: [
        { role: 'system', content: `system ${promptCanary}` },
        { role: 'user', content: `Please repeat ${promptCanary}.` },
      ],
      stream: true,
    })
    .then(async (stream) => {
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      return { ok: true as const, text };
    })
    .catch((error: unknown) => ({ ok: false as const, error }));
  return { promptCanary, replyCanary, outcome, capture: wire.capture(), logs: logs.join('\n') };
}

describe('privacy through the compatible proxy', () => {
  it('the gateway sees no trace of the prompt or reply an OpenAI client sent through the proxy', async () => {
    const s = await scenario();
    expect(s.outcome).toEqual({ ok: true, text: `Sure: ${s.replyCanary}.` });
    expect(s.capture.toString('latin1')).toContain('POST /v1/jobs');
    expect(s.logs).toContain('proxy request');
    for (const canary of [s.promptCanary, s.replyCanary]) {
      expect(tracesOf(canary, s.capture)).toEqual([]);
      expect(tracesOf(canary, s.logs)).toEqual([]);
    }
  });

  it('control: the same search finds the prompt when the proxy sends it in the clear', async () => {
    const s = await scenario(plaintextSeal);
    expect(s.outcome.ok).toBe(false);
    expect(tracesOf(s.promptCanary, s.capture).length).toBeGreaterThan(0);
  });
});
