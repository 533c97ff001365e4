import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import { NightjarError } from '../../src/shared/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import type { Gateway } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { FAKE_MODEL, startTestAgent, startTestGateway } from '../helpers/network.js';

describe('gateway relay with a fake engine', () => {
  let gateway: Gateway;
  const agents: Agent[] = [];
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.dispose()));
    await gateway?.dispose();
  });

  it('carries an encrypted chat end to end and verifies the receipt', async () => {
    gateway = await startTestGateway();
    const engine = new FakeEngine();
    agents.push(await startTestAgent(gateway, { engine }));
    const client = new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true } });
    const stream = client.chat({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 16 });
    const deltas: string[] = [];
    for await (const d of stream) deltas.push(d);
    const result = await stream.result;
    expect(result.text).toBe('Hello from a fake engine.');
    expect(deltas.join('')).toBe(result.text);
    expect(result.finishReason).toBe('stop');
    expect(result.receipt.completionTokens).toBe(6);
    expect(result.agentId).toBe(agents[0]!.agentId);
  });

  it('refuses synthetic models unless the policy allows them', async () => {
    gateway = await startTestGateway();
    agents.push(await startTestAgent(gateway, { engine: new FakeEngine() }));
    const client = new NightjarClient({ gatewayUrl: gateway.url });
    const err = await client.complete({ model: FAKE_MODEL.id, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NightjarError);
    expect((err as NightjarError).code).toBe('NJ_TRUST_POLICY');
    expect((err as NightjarError).message).toMatch(/synthetic model/);
  });
});
