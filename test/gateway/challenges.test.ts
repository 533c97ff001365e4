/**
 * Periodic challenges, on a fake clock: an agent that misses one leaves routing but stays
 * connected, until it answers the next one in time; late answers and answers naming another
 * nonce do not count; a forged answer ends the session (4401).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_CODES, PROTOCOL_VERSION, generateIdentity, randomBytes, signChallenge, toBase64Url } from '../../src/shared/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import type { Gateway } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, agentServing, startTestAgent, startTestGateway } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { RawAgent } from './support/raw-agent.js';
import { onceTrue } from '../helpers/events.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
const raws: RawAgent[] = [];
const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.dispose()));
  await Promise.all(raws.splice(0).map((r) => r.close()));
  await gateway?.dispose();
  gateway = undefined;
});

const INTERVAL = 60_000;
const DEADLINE = 10_000;

async function setup(clock: FakeClock): Promise<Gateway> {
  // Pings and the liveness deadline are spaced far apart: this clock jumps minutes at a time, and
  // a pong needs real time (test/gateway/liveness.test.ts steps its clock ping by ping instead).
  gateway = await startTestGateway({
    clock,
    challengeIntervalMs: INTERVAL,
    challengeTimeoutMs: DEADLINE,
    heartbeatMs: 3_600_000,
    agentPingMs: 3_600_000,
    agentSilenceTimeoutMs: 3 * 3_600_000,
  });
  return gateway;
}

async function routable(gw: Gateway): Promise<string[]> {
  const res = await http.fetch(`${gw.url}/v1/candidates?model=${FAKE_MODEL.id}&k=8`);
  const body = await res.json();
  return res.ok ? body.candidates.map((c: { bundle: { bundle: { agentId: string } } }) => c.bundle.bundle.agentId) : [body.error.code];
}

describe('periodic challenges', () => {
  it('takes an agent that misses one out of routing without disconnecting it, and back in when it answers the next', async () => {
    const clock = new FakeClock();
    const gw = await setup(clock);
    const raw = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL, answerChallenges: false });
    raws.push(raw);
    await agentServing(gw, raw.agentId, 2000);
    expect(await routable(gw)).toEqual([raw.agentId]);

    const challenge = raw.next('challenge');
    clock.advance(INTERVAL);
    const first = await challenge;
    expect(first).toMatchObject({ gatewayId: 'nightjar-gateway', time: clock.now() });
    clock.advance(DEADLINE - 1);
    expect(await routable(gw)).toEqual([raw.agentId]); // still within the deadline
    clock.advance(2);
    expect(await routable(gw)).toEqual(['NJ_NO_CAPACITY']);
    expect(raw.socket.readyState).toBe(raw.socket.OPEN);
    expect(gw.directory.get(raw.agentId)?.challenges).toEqual({ sent: 1, missed: 1 });
    const metrics = await (await http.fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toContain('\nnightjar_connected_agents 1\n');
    expect(metrics).toContain('\nnightjar_routable_agents 0\n');

    // A late answer to the missed challenge, and an answer naming a nonce never sent: neither counts.
    raw.send({
      v: PROTOCOL_VERSION,
      type: 'attest',
      nonce: first.nonce,
      signature: await signChallenge({ ...first, agentId: raw.agentId }, raw.identity),
    });
    const made = { ...first, nonce: toBase64Url(randomBytes(32)) };
    raw.send({
      v: PROTOCOL_VERSION,
      type: 'attest',
      nonce: made.nonce,
      signature: await signChallenge({ ...made, agentId: raw.agentId }, raw.identity),
    });
    raw.status(); // a frame after them, to know they were handled
    await new Promise((r) => setTimeout(r, 100));
    expect(await routable(gw)).toEqual(['NJ_NO_CAPACITY']);

    raw.answerChallenges = true;
    const next = raw.next('challenge');
    clock.advance(INTERVAL - DEADLINE - 1);
    await next;
    const session = gw.directory.get(raw.agentId)!;
    await onceTrue(gw.directory.onAgentChanged, () => session.challengeFresh(clock.now()), 'the answer', 2000);
    expect(await routable(gw)).toEqual([raw.agentId]);
    expect(gw.directory.get(raw.agentId)?.challenges).toEqual({ sent: 2, missed: 1 });
  });

  // Fails if the gateway accepted any attest naming the outstanding nonce without verifying the
  // signature (drop the verifyChallenge call in AgentSession's #attest): the agent would stay routable.
  it('closes the session (4401) on an answer signed by another key', async () => {
    const clock = new FakeClock();
    const gw = await setup(clock);
    const raw = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL, answerChallenges: false });
    raws.push(raw);
    const challenge = raw.next('challenge');
    clock.advance(INTERVAL);
    const c = await challenge;
    const impostor = await generateIdentity();
    const reject = raw.next('reject');
    raw.send({
      v: PROTOCOL_VERSION,
      type: 'attest',
      nonce: c.nonce,
      signature: await signChallenge({ ...c, agentId: raw.agentId }, impostor),
    });
    expect(await reject).toMatchObject({ code: 'NJ_AUTH_FAILED', message: 'the challenge answer does not verify' });
    expect((await raw.closed).code).toBe(CLOSE_CODES.authFailed);
    await onceTrue(gw.onAgentDisconnected, () => gw.directory.size === 0, 'the agent to leave the directory', 2000);
  });

  it('keeps a real agent, which answers every challenge, in routing', async () => {
    const clock = new FakeClock();
    const gw = await setup(clock);
    const agent = await startTestAgent(gw, { engine: new FakeEngine() });
    agents.push(agent);
    const session = gw.directory.get(agent.agentId)!;
    clock.advance(INTERVAL);
    for (let i = 1; i <= 3; i++) {
      // Time stands still at the challenge until the answer is in; then past its deadline.
      await onceTrue(gw.directory.onAgentChanged, () => session.challengedAt === clock.now(), `answer ${i}`, 2000);
      clock.advance(DEADLINE + 1);
      expect(await routable(gw)).toEqual([agent.agentId]);
      if (i < 3) clock.advance(INTERVAL - DEADLINE - 1);
    }
    expect(session.challenges).toEqual({ sent: 3, missed: 0 });
  });
});
