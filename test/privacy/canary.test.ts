/**
 * The gateway never sees a prompt or a reply: every byte it receives and sends (recorded by a
 * TCP proxy in front of it, WebSocket frames unmasked) and every line it logs are searched for a
 * canary prompt and a canary reply, raw, base64 at every alignment, and hex. The control case
 * switches the client to send its request in the clear and shows the search finds it — so this
 * test fails if encryption is removed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import { Agent } from '../../src/main/agent/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { createLogger } from '../../src/node/index.js';
import { generateIdentity, pad, randomBytes, sealRequest, toBase64Url, toHex, utf8 } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { FAKE_MODEL, agentServing } from '../helpers/network.js';
import { startRecordingProxy, tracesOf, type RecordingProxy } from '../helpers/recording-proxy.js';

/** A client that "forgets" to encrypt: same header, the request in the clear as its body. */
const plaintextSeal: typeof sealRequest = async (options) => {
  const sealed = await sealRequest(options);
  const clear = utf8(JSON.stringify({ messages: options.messages, sampling: options.sampling }));
  return { ...sealed, envelope: { ...sealed.envelope, body: toBase64Url(pad(clear, sealed.envelope.header.bodyLength)) } };
};

describe('privacy: the gateway sees no prompt or reply', () => {
  let gateway: Gateway | undefined;
  let proxy: RecordingProxy | undefined;
  let agent: Agent | undefined;
  afterEach(async () => {
    await agent?.dispose();
    await gateway?.dispose();
    await proxy?.close();
    agent = gateway = proxy = undefined;
  });

  async function scenario(seal?: typeof sealRequest) {
    const promptCanary = `CANARY-PROMPT-${toHex(randomBytes(12))}`;
    const replyCanary = `CANARY-REPLY-${toHex(randomBytes(12))}`;
    const gatewayLog: string[] = [];
    const agentLog: string[] = [];
    gateway = await Gateway.start({
      port: 0,
      allowSynthetic: true,
      logger: createLogger({ level: 'debug', write: (l) => gatewayLog.push(l) }),
    });
    proxy = await startRecordingProxy(Number(new URL(gateway.url).port));
    agent = await Agent.create({
      gatewayUrl: `ws://127.0.0.1:${proxy.port}/v1/agent`,
      identity: await generateIdentity(),
      engine: new FakeEngine({ words: ['Sure: ', replyCanary, ' done.'] }),
      model: FAKE_MODEL,
      stopGraceMs: 100,
      logger: createLogger({ level: 'debug', write: (l) => agentLog.push(l) }),
    });
    agent.start();
    await agentServing(gateway, agent.agentId, 5000);
    const client = new NightjarClient({
      gatewayUrl: `http://127.0.0.1:${proxy.port}`,
      trust: { allowSynthetic: true },
      ...(seal ? { seal } : {}),
    });
    const outcome = await client
      .complete({
        model: FAKE_MODEL.id,
        messages: [
          { role: 'system', content: `system ${promptCanary}` },
          { role: 'user', content: `Please repeat ${promptCanary} back to me.` },
        ],
        maxTokens: 32,
      })
      .then(
        (r) => ({ ok: true as const, text: r.text, jobId: r.jobId }),
        (e: unknown) => ({ ok: false as const, error: e }),
      );
    await agent.dispose();
    const wire = proxy.capture();
    const logs = gatewayLog.join('\n');
    return { promptCanary, replyCanary, wire, logs, agentLog: agentLog.join('\n'), outcome };
  }

  it('finds no trace of the canary prompt or reply on the wire or in the logs', async () => {
    const s = await scenario();
    // The scenario really ran: the reply came back, and the capture holds the job's traffic.
    expect(s.outcome.ok).toBe(true);
    if (!s.outcome.ok) return;
    expect(s.outcome.text).toContain(s.replyCanary);
    expect(s.wire.length).toBeGreaterThan(2000);
    expect(s.wire.toString('latin1')).toContain(s.outcome.jobId);
    expect(s.logs).toContain(s.outcome.jobId);

    expect(tracesOf(s.promptCanary, s.wire)).toEqual([]);
    expect(tracesOf(s.replyCanary, s.wire)).toEqual([]);
    expect(tracesOf(s.promptCanary, s.logs)).toEqual([]);
    expect(tracesOf(s.replyCanary, s.logs)).toEqual([]);
    // The agent sees the plaintext, but logs none of it either.
    expect(tracesOf(s.promptCanary, s.agentLog)).toEqual([]);
    expect(tracesOf(s.replyCanary, s.agentLog)).toEqual([]);
  });

  it('control: the same search finds the prompt when the client sends it in the clear', async () => {
    const s = await scenario(plaintextSeal);
    // The agent cannot open a plaintext body, so the job fails — but the gateway saw the prompt.
    expect(s.outcome.ok).toBe(false);
    expect(tracesOf(s.promptCanary, s.wire).length).toBeGreaterThan(0);
  });
});
