/**
 * A local network for client tests: a gateway on port 0 and agents with their receipts recorded,
 * optionally reached through a TCP relay the test can cut (an agent that "dies").
 */
import { Agent, type InferenceEngine, type ServedModel } from '../../../src/main/agent/index.js';
import { startGateway, type Gateway, type GatewayOptions, type JobOutcome } from '../../../src/gateway/index.js';
import { generateIdentity, type Clock, type SignedReceipt, type TimerHandle } from '../../../src/shared/index.js';
import { FAKE_MODEL, waitFor } from '../../helpers/network.js';
import { startRecordingProxy, type RecordingProxy } from '../../helpers/recording-proxy.js';

export interface TestAgent {
  readonly agent: Agent;
  readonly agentId: string;
  /** Receipts the agent signed, in order. */
  readonly receipts: SignedReceipt[];
  /** The relay between agent and gateway, when asked for: close it to cut the agent off. */
  readonly relay: RecordingProxy | null;
}

export interface TestNet {
  readonly gateway: Gateway;
  readonly agents: TestAgent[];
  /** Every finished job's outcome at the gateway, by jobId. */
  readonly outcomes: Map<string, JobOutcome>;
  addAgent(engine: InferenceEngine, options?: { model?: ServedModel; relay?: boolean }): Promise<TestAgent>;
  close(): Promise<void>;
}

export async function startNet(options: GatewayOptions = {}): Promise<TestNet> {
  const gateway = await startGateway({ port: 0, allowSynthetic: true, ...options });
  const outcomes = new Map<string, JobOutcome>();
  gateway.onJobFinished((jobId, outcome) => outcomes.set(jobId, outcome));
  const agents: TestAgent[] = [];
  return {
    gateway,
    agents,
    outcomes,
    async addAgent(engine, o = {}) {
      const relay = o.relay ? await startRecordingProxy(Number(new URL(gateway.url).port)) : null;
      const receipts: SignedReceipt[] = [];
      const agent = await Agent.create({
        gatewayUrl: relay ? `ws://127.0.0.1:${relay.port}/v1/agent` : gateway.agentUrl,
        identity: await generateIdentity(),
        engine,
        model: o.model ?? FAKE_MODEL,
        backoff: { initialMs: 50, maxMs: 200 },
        stopGraceMs: 200,
        recordReceipt: (r) => {
          receipts.push(r);
        },
      });
      agent.start();
      await waitFor(() => gateway.directory.get(agent.agentId)?.status?.state === 'serving', 10_000, 'agent to register');
      const entry = { agent, agentId: agent.agentId, receipts, relay };
      agents.push(entry);
      return entry;
    },
    async close() {
      await Promise.all(agents.map((a) => a.agent.dispose()));
      await gateway.close();
      await Promise.all(agents.map((a) => a.relay?.close()));
    },
  };
}

/** A clock whose time is real (plus what `advance` added) but whose timers fire only when the test says so. */
export class ManualClock implements Clock {
  readonly timers: { fn: () => void; ms: number; handle: TimerHandle }[] = [];
  #offset = 0;

  now(): number {
    return Date.now() + this.#offset;
  }

  /** Moves the clock forward without firing timers. */
  advance(ms: number): void {
    this.#offset += ms;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = {};
    this.timers.push({ fn, ms, handle });
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    const i = this.timers.findIndex((t) => t.handle === handle);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** Waits until a timer is pending, then returns its delay. */
  async nextTimer(): Promise<number> {
    await waitFor(() => this.timers.length > 0, 10_000, 'a timer');
    return this.timers[0]!.ms;
  }

  /** Fires the oldest pending timer. */
  fire(): void {
    const t = this.timers.shift();
    if (!t) throw new Error('no timer to fire');
    t.fn();
  }
}

export { FAKE_MODEL, waitFor };
