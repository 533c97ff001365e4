/**
 * A local network for client tests: a gateway on port 0 and agents with their receipts recorded,
 * optionally reached through a TCP relay the test can cut (an agent that "dies").
 */
import { Agent, type InferenceEngine, type ServedModel } from '../../../src/main/agent/index.js';
import { Gateway, type GatewayOptions, type JobOutcome } from '../../../src/gateway/index.js';
import {
  Emitter,
  generateIdentity,
  type Clock,
  type EnclaveSigner,
  type Posture,
  type SignedReceipt,
  type TimerHandle,
} from '../../../src/shared/index.js';
import { FAKE_MODEL, agentGone, agentServing } from '../../helpers/network.js';
import { startRecordingProxy, type RecordingProxy } from '../../helpers/recording-proxy.js';
import { onceTrue } from '../../helpers/events.js';

export interface TestAgent {
  readonly agent: Agent;
  readonly agentId: string;
  /** Receipts the agent signed, in order. */
  readonly receipts: SignedReceipt[];
  /** Resolves once the agent has signed `count` receipts (each job it ends signs one). */
  receiptsSigned(count: number): Promise<void>;
  /** The relay between agent and gateway, when asked for: close it to cut the agent off. */
  readonly relay: RecordingProxy | null;
}

export interface AddAgentOptions {
  model?: ServedModel;
  relay?: boolean;
  /** A software enclave key (the agent is told to allow it: tests only). Defaults to none. */
  enclave?: EnclaveSigner;
  /** The posture the agent reports. Defaults to the agent's own default (unattested). */
  posture?: Posture;
}

export interface TestNet {
  readonly gateway: Gateway;
  readonly agents: TestAgent[];
  /** Every finished job's outcome at the gateway, by jobId. */
  readonly outcomes: Map<string, JobOutcome>;
  addAgent(engine: InferenceEngine, options?: AddAgentOptions): Promise<TestAgent>;
  close(): Promise<void>;
}

export async function startNet(options: GatewayOptions = {}): Promise<TestNet> {
  const gateway = await Gateway.start({ port: 0, allowSynthetic: true, ...options });
  const outcomes = new Map<string, JobOutcome>();
  gateway.onJobFinished(({ jobId, outcome }) => outcomes.set(jobId, outcome));
  const agents: TestAgent[] = [];
  return {
    gateway,
    agents,
    outcomes,
    async addAgent(engine, o = {}) {
      const relay = o.relay ? await startRecordingProxy(Number(new URL(gateway.url).port)) : null;
      const receipts: SignedReceipt[] = [];
      const signed = new Emitter<void>();
      const agent = await Agent.create({
        gatewayUrl: relay ? `ws://127.0.0.1:${relay.port}/v1/agent` : gateway.agentUrl,
        identity: await generateIdentity(),
        engine,
        model: o.model ?? FAKE_MODEL,
        backoff: { initialMs: 50, maxMs: 200 },
        stopGraceMs: 200,
        recordReceipt: (r) => {
          receipts.push(r);
          signed.fire();
        },
        ...(o.enclave ? { enclave: o.enclave, allowSoftwareEnclave: true } : {}),
        ...(o.posture ? { posture: o.posture } : {}),
      });
      agent.start();
      await agentServing(gateway, agent.agentId, 10_000);
      const entry: TestAgent = {
        agent,
        agentId: agent.agentId,
        receipts,
        relay,
        receiptsSigned: (count) => onceTrue(signed.event, () => receipts.length >= count, `the agent to sign ${count} receipt(s)`),
      };
      agents.push(entry);
      return entry;
    },
    async close() {
      await Promise.all(agents.map((a) => a.agent.dispose()));
      await gateway.dispose();
      await Promise.all(agents.map((a) => a.relay?.close()));
    },
  };
}

/** A clock whose time is real (plus what `advance` added) but whose timers fire only when the test says so. */
export class ManualClock implements Clock {
  readonly timers: { fn: () => void; ms: number; handle: TimerHandle }[] = [];
  readonly #scheduled = new Emitter<void>();
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
    this.#scheduled.fire();
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    const i = this.timers.findIndex((t) => t.handle === handle);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** Resolves, once a timer is pending, with its delay. */
  async nextTimer(): Promise<number> {
    await onceTrue(this.#scheduled.event, () => this.timers.length > 0, 'a timer', 10_000);
    return this.timers[0]!.ms;
  }

  /** Fires the oldest pending timer. */
  fire(): void {
    const t = this.timers.shift();
    if (!t) throw new Error('no timer to fire');
    t.fn();
  }
}

export { FAKE_MODEL, agentGone };
