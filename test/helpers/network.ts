/**
 * Starts a local network for a test: a gateway on port 0 and agents connected to it.
 */
import { Agent, type InferenceEngine, type ServedModel } from '../../src/main/agent/index.js';
import { Gateway, type GatewayOptions } from '../../src/gateway/index.js';
import { generateIdentity, systemClock, type Logger } from '../../src/shared/index.js';

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

export async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
