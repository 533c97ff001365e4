/**
 * A reconnect storm, measured: many real agents on one real gateway, the gateway stopped and,
 * after an outage, started again on the same port; when each agent is connected and serving again
 * is read from the new gateway's directory events. Used by test/main/agent/gateway-link.test.ts
 * (with its bound) and by tools/measure/reconnect-storm.ts (for the figures in docs/agent.md).
 */
import { performance } from 'node:perf_hooks';
import { Agent } from '../../src/main/agent/index.js';
import { Gateway, type GatewayOptions } from '../../src/gateway/index.js';
import { generateIdentity, raceClock, systemClock, type BackoffOptions } from '../../src/shared/index.js';
import { FakeEngine } from './fake-engine.js';
import { FAKE_MODEL } from './network.js';

/** Options of {@link reconnectStorm}. */
export interface ReconnectStormOptions {
  /** Agents in the fleet. */
  agents: number;
  /** Time between the first gateway's end and the second's start, in ms. */
  outageMs: number;
  /** The agents' reconnect timing. Defaults to the link's own (LINK_BACKOFF). */
  backoff?: BackoffOptions;
  /** Options of both gateways (port and allowSynthetic are set here). Defaults to none. */
  gateway?: GatewayOptions;
  /** Agents started at once while the fleet is brought up, so it stays under the handshake caps. Defaults to 8. */
  startBatch?: number;
  /** How long the fleet may take to serve again before the storm fails. Defaults to 30 000 ms. */
  timeoutMs?: number;
}

/** What a storm measured; every time is in ms from the moment the second gateway listens. */
export interface ReconnectStormFigures {
  agents: number;
  outageMs: number;
  /** When each agent's handshake finished at the new gateway, ascending. */
  connectedMs: number[];
  /** When each agent's first heartbeat saying serving reached it, ascending. */
  servingMs: number[];
  /** The most handshakes finished within any 100 ms. */
  peakPer100Ms: number;
  /** Upgrades the new gateway refused (its handshake and connection caps) while the fleet came back. */
  refused: number;
}

/** The most of `sorted` (ascending) inside any window of `windowMs`. */
export function peakInWindow(sorted: readonly number[], windowMs: number): number {
  let peak = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[j]! - sorted[i]! >= windowMs) i++;
    peak = Math.max(peak, j - i + 1);
  }
  return peak;
}

/** The value below which `p` (0–1) of `sorted` (ascending) lies. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Runs one storm (bring the fleet up, stop the gateway, wait, start it again, await every agent) and disposes everything. */
export async function reconnectStorm(options: ReconnectStormOptions): Promise<ReconnectStormFigures> {
  const { agents: count, outageMs } = options;
  const gatewayOptions: GatewayOptions = { allowSynthetic: true, ...options.gateway };
  const first = await Gateway.start({ ...gatewayOptions, port: 0 });
  const port = Number(new URL(first.url).port);
  const fleet: Agent[] = [];
  let second: Gateway | null = null;
  try {
    const batch = options.startBatch ?? 8;
    for (let i = 0; i < count; i += batch) {
      const started = await Promise.all(
        Array.from({ length: Math.min(batch, count - i) }, async () => {
          const agent = await Agent.create({
            gatewayUrl: first.agentUrl,
            identity: await generateIdentity(),
            engine: new FakeEngine({ slots: 1 }),
            model: FAKE_MODEL,
            backoff: options.backoff,
            stopGraceMs: 0,
          });
          fleet.push(agent);
          agent.start();
          return agent;
        }),
      );
      await Promise.all(started.map((a) => first.agentServing(a.agentId, { timeoutMs: 20_000, clock: systemClock })));
    }

    await first.dispose();
    await new Promise((resolve) => setTimeout(resolve, outageMs));

    const connected = new Map<string, number>();
    const serving = new Map<string, number>();
    let t0 = 0;
    let allServing!: () => void;
    const done = new Promise<void>((resolve) => (allServing = resolve));
    const seen = (agentId: string, isServing: boolean): void => {
      const at = performance.now() - t0;
      if (!connected.has(agentId)) connected.set(agentId, at);
      if (isServing && !serving.has(agentId)) {
        serving.set(agentId, at);
        if (serving.size === count) allServing();
      }
    };
    second = await Gateway.start({ ...gatewayOptions, port });
    t0 = performance.now();
    const gw = second;
    // Anything that finished its handshake before the listeners were added counts as time 0.
    for (const s of gw.directory.all()) seen(s.agentId, s.status?.state === 'serving');
    gw.onAgentConnected((s) => seen(s.agentId, s.status?.state === 'serving'));
    gw.directory.onAgentChanged((s) => seen(s.agentId, s.status?.state === 'serving'));
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (!(await raceClock(systemClock, timeoutMs, done)).done) {
      throw new Error(`${count - serving.size} of ${count} agents were not serving ${timeoutMs} ms after the gateway came back`);
    }

    const connectedMs = [...connected.values()].sort((a, b) => a - b);
    return {
      agents: count,
      outageMs,
      connectedMs,
      servingMs: [...serving.values()].sort((a, b) => a - b),
      peakPer100Ms: peakInWindow(connectedMs, 100),
      refused: await gw.metrics.value(gw.metrics.rejected, { limit: 'agent-connections' }),
    };
  } finally {
    await Promise.all(fleet.map((a) => a.dispose()));
    await second?.dispose();
    await first.dispose();
  }
}
