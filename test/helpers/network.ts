/**
 * Starts a local network for a test: a gateway on port 0 and agents connected to it.
 */
import { Agent, type InferenceEngine, type ServedModel } from '../../src/main/agent/index.js';
import { Gateway, type AgentSession, type GatewayOptions } from '../../src/gateway/index.js';
import { generateIdentity, nextEvent, systemClock, type Logger } from '../../src/shared/index.js';

export const FAKE_MODEL: ServedModel = { id: 'synthetic-fake', sha256: 'ab'.repeat(32), synthetic: true, contextLength: 4096 };

export async function startTestGateway(options: GatewayOptions = {}): Promise<Gateway> {
  return Gateway.start({ port: 0, allowSynthetic: true, ...options });
}

export interface TestAgentOptions {
  engine: InferenceEngine;
  model?: ServedModel;
  logger?: Logger;
}

/** Starts an agent and waits until the gateway lists it as serving. */
export async function startTestAgent(gateway: Gateway, options: TestAgentOptions): Promise<Agent> {
  const agent = await Agent.create({
    gatewayUrl: gateway.agentUrl,
    identity: await generateIdentity(),
    engine: options.engine,
    model: options.model ?? FAKE_MODEL,
    backoff: { initialMs: 50, maxMs: 200 },
    stopGraceMs: 100,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  agent.start();
  await agentServing(gateway, agent.agentId);
  return agent;
}

/** Resolves once the gateway lists `agentId` as serving (awaiting its directory's events, on the real clock). */
export async function agentServing(gateway: Gateway, agentId: string, timeoutMs = 5000): Promise<void> {
  await gateway.agentServing(agentId, { timeoutMs, clock: systemClock });
}

/**
 * Resolves with the gateway's session of `agentId` once `accept` holds for it — at once if it
 * does, else at the first change the directory announces after which it does (a heartbeat, a job
 * ending, a rotated bundle). Call it before the change can happen so it cannot be missed. Rejects
 * with NJ_TIMEOUT naming `what` after `timeoutMs` (real time).
 */
export async function agentListed(
  gateway: Gateway,
  agentId: string,
  accept: (session: AgentSession) => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<AgentSession> {
  const holds = (): AgentSession | undefined => {
    const session = gateway.directory.get(agentId);
    return session && accept(session) ? session : undefined;
  };
  const now = holds();
  if (now) return now;
  await nextEvent(gateway.directory.onAgentChanged, () => holds() !== undefined, { clock: systemClock, timeoutMs, what });
  return holds()!;
}

/** Resolves once the gateway no longer lists `agentId` (awaiting its disconnect events, on the real clock). */
export async function agentGone(gateway: Gateway, agentId: string, timeoutMs = 5000): Promise<void> {
  if (!gateway.directory.get(agentId)) return;
  await nextEvent(gateway.onAgentDisconnected, () => !gateway.directory.get(agentId), {
    clock: systemClock,
    timeoutMs,
    what: `agent ${agentId.slice(0, 8)} to leave`,
  });
}
