/**
 * The relay under test in its own process (bench/relay-server.ts), as the relay and accept-burst
 * areas drive it, and fake agents connected to it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BenchAgentKeys } from './identities.js';
import { FakeAgent, type FakeAgentOptions } from './relay-peers.js';
import type { ClusterNodeConfig, RelayServerMessage, RelayServerRequest } from './relay-server.js';

/** What relays the streams: the real gateway, or a bare forwarder as the baseline. */
export type RelayKind = 'gateway' | 'forwarder';

/** The relay's process. */
export class RelayProcess {
  private constructor(
    /** 'cluster' for a cluster node ({@link RelayProcess.startClusterNode}). */
    readonly kind: RelayKind | 'cluster',
    private readonly child: ChildProcess,
    readonly url: string,
    readonly agentUrl: string,
  ) {}

  /** Starts the relay; `listenBacklog` sets the gateway's (its default when absent). */
  static start(kind: RelayKind, listenBacklog?: number): Promise<RelayProcess> {
    return RelayProcess.#fork(kind, listenBacklog === undefined ? [kind] : [kind, String(listenBacklog)]);
  }

  /** Starts a cluster node on PostgreSQL and NATS. */
  static startClusterNode(config: ClusterNodeConfig): Promise<RelayProcess> {
    return RelayProcess.#fork('cluster', ['cluster', JSON.stringify(config)]);
  }

  static #fork(kind: RelayKind | 'cluster', args: string[]): Promise<RelayProcess> {
    const child = fork(fileURLToPath(new URL('./relay-server.js', import.meta.url)), args, {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise((resolve, reject) => {
      child.once('message', (m: RelayServerMessage) => {
        if (m.type === 'ready') resolve(new RelayProcess(kind, child, m.url, m.agentUrl));
      });
      child.once('exit', (code) => reject(new Error(`the ${kind} process exited (code ${code})`)));
    });
  }

  #ask<T extends 'memory' | 'cpu' | 'sql' | 'logged'>(type: T): Promise<Extract<RelayServerMessage, { type: T }>> {
    return new Promise((resolve) => {
      const listener = (m: RelayServerMessage): void => {
        if (m.type !== type) return;
        this.child.off('message', listener);
        resolve(m as Extract<RelayServerMessage, { type: T }>);
      };
      this.child.on('message', listener);
      this.child.send({ type } satisfies RelayServerRequest);
    });
  }

  /** The relay's memory after two full GCs. */
  memory(): Promise<Extract<RelayServerMessage, { type: 'memory' }>> {
    return this.#ask('memory');
  }

  /** The statements a cluster node's driver has run so far (zeros for the other kinds). */
  sql(): Promise<Extract<RelayServerMessage, { type: 'sql' }>> {
    return this.#ask('sql');
  }

  /** A cluster node's warnings and errors so far, by message (none for the other kinds). */
  async logged(): Promise<Record<string, number>> {
    return (await this.#ask('logged')).counts;
  }

  /** CPU time the relay process has used so far, in microseconds. */
  async cpuMicros(): Promise<number> {
    return (await this.#ask('cpu')).micros;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ type: 'close' } satisfies RelayServerRequest);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Connects one fake agent per key set, 50 at a time, each offering `slots` (`options(i)`: the i-th agent's options). */
export async function connectAgents(
  relay: { readonly agentUrl: string },
  keys: readonly BenchAgentKeys[],
  slots: number,
  options: (index: number) => FakeAgentOptions = () => ({}),
): Promise<FakeAgent[]> {
  const agents = keys.map((k, i) => new FakeAgent(k, slots, options(i)));
  for (let i = 0; i < agents.length; i += 50) await Promise.all(agents.slice(i, i + 50).map((a) => a.connect(relay.agentUrl)));
  return agents;
}
