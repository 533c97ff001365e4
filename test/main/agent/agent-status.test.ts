/**
 * The agent tells the gateway about its free slots when a job starts and ends, not only at the
 * next heartbeat: a one-slot agent can take a job right after finishing one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../../src/client/index.js';
import type { Agent } from '../../../src/main/agent/index.js';
import type { Gateway } from '../../../src/gateway/index.js';
import { FakeEngine } from '../../helpers/fake-engine.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { FAKE_MODEL, agentListed, startTestAgent, startTestGateway } from '../../helpers/network.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
let agent: Agent | undefined;
afterEach(async () => {
  await agent?.dispose();
  await gateway?.dispose();
  agent = gateway = undefined;
});

describe('free slots in heartbeats', () => {
  // Fails if the agent stops beating when a job ends: the gateway would keep the "0 free" it
  // heard when the job started until the next heartbeat, 15 s away, and refuse the second job.
  it('a one-slot agent takes a second job as soon as the first ends', async () => {
    // No queue, so a busy-looking agent means an immediate NJ_NO_CAPACITY.
    gateway = await startTestGateway({ maxQueuePerModel: 0, heartbeatMs: 60_000 });
    const engine = new FakeEngine({ slots: 1, tokenDelayMs: 5, words: ['a ', 'b ', 'c '] });
    agent = await startTestAgent(gateway, { engine });
    const client = new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch, retry: false });
    const ask = { model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 3 };
    const reports = (freeSlots: number, what: string) =>
      agentListed(gateway!, agent!.agentId, (s) => s.status?.freeSlots === freeSlots, what, 2000);
    // Awaited from before the job starts, so a heartbeat that comes and goes quickly is not missed.
    const busy = reports(0, 'the busy heartbeat');
    const stream = client.chat(ask);
    await stream.served;
    // While the job runs, the gateway has heard that no slot is free.
    await busy;
    await stream.result;
    await reports(1, 'the free heartbeat');
    expect((await client.complete(ask)).text).toBe('a b c ');
  });
});
