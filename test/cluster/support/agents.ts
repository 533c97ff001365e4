/**
 * A real agent (on a fake engine) for the cluster suites: connected to one node, returned once
 * another node lists it as serving from the presence bucket (a watched event, not a poll).
 */
import { Agent } from '../../../src/main/agent/index.js';
import type { Gateway, RemoteAgent } from '../../../src/gateway/index.js';
import { generateIdentity, nextEvent } from '../../../src/shared/index.js';
import type { FakeEngine } from '../../helpers/fake-engine.js';
import { REAL_MODEL } from '../../gateway/support/net.js';

/** What {@link agentOn} needs of a suite's cluster: enrollment tokens, and where to keep the agent for disposal. */
export interface AgentHome {
  enroll(): Promise<string>;
  readonly agents: Agent[];
}

/** An agent on `gateway`, once `seenFrom` lists it as serving (from the presence bucket). */
export async function agentOn(net: AgentHome, gateway: Gateway, seenFrom: Gateway, engine: FakeEngine): Promise<Agent> {
  const agent = await Agent.create({
    gatewayUrl: gateway.agentUrl,
    identity: await generateIdentity(),
    engine,
    model: REAL_MODEL,
    backoff: { initialMs: 50, maxMs: 200 },
    stopGraceMs: 100,
    enrollToken: await net.enroll(),
  });
  net.agents.push(agent);
  const remote = seenFrom.cluster!.remote;
  const serving = (r: RemoteAgent | undefined): boolean => r?.status?.state === 'serving' && r.operatorId !== null;
  const seen = serving(remote.get(agent.agentId))
    ? Promise.resolve()
    : Promise.race([
        nextEvent(remote.onAgentConnected, (r) => r.agentId === agent.agentId && serving(r)),
        nextEvent(remote.onAgentChanged, (r) => r.agentId === agent.agentId && serving(r)),
      ]);
  agent.start();
  await seen;
  return agent;
}
