/**
 * Hold ownership across gateway nodes on one database. Each node heartbeats its row in
 * gateway_nodes every heartbeatMs; every held job names its node. A node that has not been seen
 * for ttlMs is dead: no stream of its survives, so whichever live node sweeps first releases its
 * holds (each release is its own idempotent transaction, so two sweepers never release a job
 * twice) and forgets its row. On start a node releases only what a previous run under its own id
 * left, and then sweeps; it keeps sweeping every sweepMs. It never touches a live node's holds.
 *
 * Times are the nodes' own clocks: keep them in sync (NTP) to well within ttlMs. A node that was
 * paused past ttlMs (a VM frozen, a debugger) finds on its next heartbeat that it was taken for
 * dead: its holds are gone (their receipts still settle, late, from the client's balance) and it
 * logs so.
 */
import {
  NightjarError,
  Resource,
  TimerSlot,
  errorMessage,
  loggedEmitter,
  type Clock,
  type Emitter,
  type Event,
  type Logger,
} from '../../shared/index.js';
import type { LedgerStore } from '../ledger/ledger.store.js';
import type { NodeStore } from './node.store.js';

/** What a sweep found and did. */
export interface NodeSweep {
  /** Nodes found dead whose holds this node released. */
  readonly deadNodes: readonly string[];
  /** Holds released. */
  readonly released: number;
}

/** Options of {@link NodeLiveness}. */
export interface NodeLivenessOptions {
  /** This node's id. Required. */
  nodeId: string;
  /** The nodes table. Required. */
  nodes: NodeStore;
  /** The ledger whose holds are released. Required. */
  ledger: LedgerStore;
  /** Time source of heartbeats, sweeps and what counts as stale. Required. */
  clock: Clock;
  /** Where findings go (node ids and counts only). Required. */
  logger: Logger;
  /** Time between this node's heartbeats. Required (the gateway's option defaults it). */
  heartbeatMs: number;
  /** A node not seen for this long is dead. Required (the gateway's option defaults it). */
  ttlMs: number;
  /** Time between sweeps for dead nodes. Required (the gateway's option defaults it). */
  sweepMs: number;
}

/** A node id: letters, digits, '.', '_' and '-', 1–64 of them. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Throws NJ_CONFIG_INVALID unless `id` is a valid node id. */
export function checkNodeId(id: string): string {
  if (!NODE_ID_PATTERN.test(id))
    throw new NightjarError('NJ_CONFIG_INVALID', 'a node id is 1 to 64 letters, digits, dots, underscores or dashes (like gw-1)');
  return id;
}

/** This node's heartbeat and the sweep for dead nodes' holds. */
export class NodeLiveness extends Resource {
  /** Fires after each sweep that released something. */
  readonly onSwept: Event<NodeSweep>;
  readonly #o: NodeLivenessOptions;
  readonly #beat: TimerSlot;
  readonly #sweep: TimerSlot;
  readonly #swept: Emitter<NodeSweep>;
  readonly #running = new Set<Promise<void>>();

  constructor(options: NodeLivenessOptions) {
    super();
    this.#o = options;
    this.#beat = this.disposables.add(new TimerSlot(options.clock));
    this.#sweep = this.disposables.add(new TimerSlot(options.clock));
    this.#swept = this.disposables.add(loggedEmitter<NodeSweep>(options.logger, 'nodes swept'));
    this.onSwept = this.#swept.event;
  }

  /** This node's id. */
  get nodeId(): string {
    return this.#o.nodeId;
  }

  /**
   * Registers this node, releases the holds a previous run under the same id left, sweeps once,
   * and starts the heartbeat and the periodic sweep. Resolves with how many holds it released.
   */
  async start(): Promise<number> {
    const { nodes, ledger, clock, logger, nodeId } = this.#o;
    await nodes.register(nodeId, clock.now());
    const own = await ledger.releaseHeldOf(nodeId, 'gateway node restarted', clock.now());
    if (own > 0) logger.warn('released holds this node left in a previous run', { jobs: own, nodeId });
    const swept = await this.sweep();
    this.#beat.set(this.#o.heartbeatMs, () => this.#tick('beat'));
    this.#sweep.set(this.#o.sweepMs, () => this.#tick('sweep'));
    return own + swept.released;
  }

  /** Marks this node seen now. */
  async heartbeat(): Promise<void> {
    const { nodes, clock, logger, nodeId } = this.#o;
    if (!(await nodes.heartbeat(nodeId, clock.now())))
      logger.error('this node was taken for dead (silent past the node TTL): its holds were released by another node', { nodeId });
  }

  /** Releases the holds of every node not seen for ttlMs, and forgets those nodes. */
  async sweep(): Promise<NodeSweep> {
    const { nodes, ledger, clock, logger, nodeId, ttlMs } = this.#o;
    const before = clock.now() - ttlMs;
    const dead = await nodes.deadOwners(nodeId, before);
    let released = 0;
    for (const node of dead) {
      const n = await ledger.releaseHeldOf(node, 'gateway node lost', clock.now());
      released += n;
      if (n > 0) logger.warn('released the holds of a gateway node not seen within the node TTL', { node, jobs: n });
    }
    await nodes.forgetStale(nodeId, before);
    const result: NodeSweep = { deadNodes: dead, released };
    if (released > 0) this.#swept.fire(result);
    return result;
  }

  #tick(which: 'beat' | 'sweep'): void {
    if (this.isDisposed) return;
    const slot = which === 'beat' ? this.#beat : this.#sweep;
    const every = which === 'beat' ? this.#o.heartbeatMs : this.#o.sweepMs;
    // One database call of this kind at a time; a slow database delays the next, never stacks them.
    const work = (which === 'beat' ? this.heartbeat() : this.sweep()).then(
      () => undefined,
      (err: unknown) =>
        this.#o.logger.warn(`node ${which === 'beat' ? 'heartbeat' : 'sweep'} failed; next one later`, { err: errorMessage(err) }),
    );
    const running = work.finally(() => {
      this.#running.delete(running);
      if (!this.isDisposed) slot.set(every, () => this.#tick(which));
    });
    this.#running.add(running);
  }

  /** Stops the timers, waits for a call under way, and removes this node's row (a graceful stop). */
  protected override async onDispose(): Promise<void> {
    this.#beat.dispose();
    this.#sweep.dispose();
    await Promise.all(this.#running);
    await this.#o.nodes
      .remove(this.#o.nodeId)
      .catch((err: unknown) => this.#o.logger.warn('could not remove this node’s row', { err: errorMessage(err) }));
  }
}
