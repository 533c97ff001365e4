/**
 * Presence and capacity of every agent in the cluster, in a JetStream key-value bucket whose
 * entries live for presenceTtlMs. The node that holds an agent's socket writes its entry (agent →
 * node, trust, operator, last status with free slots, its signed bundle) whenever the agent
 * arrives or changes, refreshes it every presenceRefreshMs, and deletes it when the agent leaves
 * (only if it is still the entry that node wrote: an agent that already reconnected through
 * another node keeps that node's). Every node watches the bucket (no polling) and keeps the other
 * nodes' agents as {@link RemoteAgent}s in a {@link Directory} of their own, so it can hand clients
 * candidates from the whole network and route jobs to them over NATS (nats-transport.ts).
 *
 * NATS 2.9's key-value TTL removes old entries without telling watchers, so each node also drops a
 * remote entry it has not heard refreshed within presenceTtlMs (one timer, on its own clock). Each
 * entry read is checked against the cluster wire's schema and its bundle's signature is verified
 * (once per bundle); an entry that fails is dropped and counted.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import {
  Emitter,
  Resource,
  TimerSlot,
  errorMessage,
  verifyBundle,
  type Clock,
  type Envelope,
  type Event,
  type Logger,
  type Trust,
  type VerifiedBundle,
} from '../../shared/index.js';
import type { AgentSession } from '../agent-session.js';
import { newHealth, type AgentHealth, type AgentStatus, type Directory, type DirectoryEntry } from '../directory.js';
import type { AgentChannel, AttemptListener } from '../transport.js';
import { CLUSTER_WIRE_VERSION, presenceSchema, readWire, writeWire, type ClusterWireLimits, type PresenceRecord } from './wire.js';

/** How a {@link RemoteAgent} reaches its node (the NATS transport). */
export interface RemoteLink {
  dispatch(agent: RemoteAgent, jobId: string, attempt: number, envelope: Envelope, listener: AttemptListener): void;
  cancel(agent: RemoteAgent, jobId: string, attempt: number, reason: string): void;
  forget(agent: RemoteAgent, jobId: string, attempt: number): void;
}

/** An agent whose socket is on another node, as this node knows it from the presence bucket. */
export class RemoteAgent implements DirectoryEntry, AgentChannel {
  readonly agentId: string;
  /** The node that holds its socket. */
  nodeId: string;
  bundle: VerifiedBundle;
  trust: Trust;
  status: AgentStatus | null;
  operatorId: string | null;
  accepting: boolean;
  /** Attempts this node dispatched to it and has not seen end. */
  inFlight = 0;
  inFlightAtStatus = 0;
  connectedAt: number;
  lastSeenAt: number;
  challengedAt: number;
  /** What this node measured of it (its own jobs' outcomes). */
  health: AgentHealth;
  #fresh: boolean;
  readonly #link: RemoteLink;

  constructor(record: PresenceRecord, bundle: VerifiedBundle, link: RemoteLink, now: number) {
    this.agentId = record.agentId;
    this.nodeId = record.nodeId;
    this.bundle = bundle;
    this.trust = record.trust;
    this.status = record.status;
    this.operatorId = record.operatorId;
    this.accepting = record.accepting;
    this.connectedAt = record.connectedAt;
    this.lastSeenAt = now;
    this.challengedAt = now;
    this.#fresh = record.challengeFresh;
    this.health = newHealth(now);
    this.#link = link;
  }

  /** Takes a newer entry of the same agent. */
  update(record: PresenceRecord, bundle: VerifiedBundle, now: number): void {
    this.nodeId = record.nodeId;
    this.bundle = bundle;
    this.trust = record.trust;
    this.status = record.status;
    this.operatorId = record.operatorId;
    this.accepting = record.accepting;
    this.connectedAt = record.connectedAt;
    this.lastSeenAt = now;
    this.#fresh = record.challengeFresh;
    if (record.challengeFresh) this.challengedAt = now;
    this.inFlightAtStatus = this.inFlight;
  }

  /** As its node last said. */
  challengeFresh(): boolean {
    return this.#fresh;
  }

  dispatch(jobId: string, attempt: number, envelope: Envelope, listener: AttemptListener): void {
    this.#link.dispatch(this, jobId, attempt, envelope, listener);
  }

  cancel(jobId: string, attempt: number, reason: string): void {
    this.#link.cancel(this, jobId, attempt, reason);
  }

  forget(jobId: string, attempt: number): void {
    this.#link.forget(this, jobId, attempt);
  }
}

/** The presence entry of a local session, as its node writes it. */
export function presenceOf(session: AgentSession, freeSlots: number, nodeId: string, now: number): PresenceRecord {
  const s = session.status;
  return {
    v: CLUSTER_WIRE_VERSION,
    agentId: session.agentId,
    nodeId,
    operatorId: session.operatorId,
    trust: session.trust,
    status: s
      ? {
          state: s.state,
          model: s.model,
          freeSlots,
          totalSlots: s.totalSlots,
          tokensPerSecond: s.tokensPerSecond,
          ttftMs: s.ttftMs,
          ...(s.memoryPressure === undefined ? {} : { memoryPressure: s.memoryPressure }),
        }
      : null,
    accepting: session.accepting,
    challengeFresh: session.challengeFresh(now),
    connectedAt: session.connectedAt,
    bundle: session.bundle.signed,
    at: now,
  };
}

/** Options of {@link Presence}. */
export interface PresenceOptions {
  /** This node's id. Required. */
  nodeId: string;
  /** The bucket (created with a TTL by the caller). Required. */
  kv: KV;
  /** This node's connected agents, whose entries it writes. Required. */
  local: Directory<AgentSession>;
  /** Other nodes' agents, which it keeps from the bucket. Required. */
  remote: Directory<RemoteAgent>;
  /** How a remote agent is reached. Required. */
  link: RemoteLink;
  /** Time source. Required. */
  clock: Clock;
  /** Where problems go (ids and counts only). Required. */
  logger: Logger;
  /** An entry not refreshed within this long is gone. Required (the gateway's option defaults it). */
  ttlMs: number;
  /** Time between refreshes of this node's entries. Required (the gateway's option defaults it). */
  refreshMs: number;
  /** Limits on what is read from the bucket. Required. */
  limits: ClusterWireLimits;
  /** Agents kept from other nodes at most; entries past it are dropped. Required (the gateway's option defaults it). */
  maxRemoteAgents: number;
}

/** This node's side of the presence bucket: what it writes, and the rest of the network it reads. */
export class Presence extends Resource {
  /** Fires when what some remote agent can take may have changed (an entry came, changed or went). */
  readonly onChanged: Event<void>;
  readonly #changed: Emitter<void>;
  /** Entries read that failed their schema or their bundle's signature. */
  rejected = 0;
  readonly #o: PresenceOptions;
  /** The revision this node last wrote for each of its agents (a delete is conditional on it). */
  readonly #written = new Map<string, number>();
  /** Writes waiting per agent (one in flight at a time; the latest wins). */
  readonly #dirty = new Set<string>();
  readonly #writing = new Set<string>();
  readonly #pending = new Set<Promise<void>>();
  readonly #expiry: TimerSlot;
  readonly #refresh: TimerSlot;
  /** Verified bundles by signature, so a refresh costs no signature check. */
  readonly #verified = new Map<string, VerifiedBundle>();
  #watch: Awaited<ReturnType<KV['watch']>> | null = null;
  #watching: Promise<void> | null = null;

  constructor(options: PresenceOptions) {
    super();
    this.#o = options;
    this.#changed = this.disposables.add(new Emitter<void>());
    this.onChanged = this.#changed.event;
    this.#expiry = this.disposables.add(new TimerSlot(options.clock));
    this.#refresh = this.disposables.add(new TimerSlot(options.clock));
    const { local } = options;
    this.disposables.add(local.onAgentConnected((s) => this.#mark(s.agentId)));
    this.disposables.add(local.onAgentChanged((s) => this.#mark(s.agentId)));
    this.disposables.add(local.onAgentDisconnected((s) => this.#gone(s.agentId)));
  }

  /** Starts watching the bucket (resolves once the watch is open) and refreshing this node's entries. */
  async start(): Promise<void> {
    this.#watch = await this.#o.kv.watch();
    const watch = this.#watch;
    this.#watching = (async () => {
      for await (const entry of watch) await this.#read(entry);
    })().catch((err: unknown) => {
      if (!this.isDisposed) this.#o.logger.error('the presence watch ended', { err: errorMessage(err) });
    });
    for (const s of this.#o.local.all()) this.#mark(s.agentId);
    this.#refresh.set(this.#o.refreshMs, () => this.#refreshAll());
  }

  /** Resolves once every write and delete under way has finished. */
  async flushed(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }

  #refreshAll(): void {
    if (this.isDisposed) return;
    for (const s of this.#o.local.all()) this.#mark(s.agentId);
    this.#refresh.set(this.#o.refreshMs, () => this.#refreshAll());
  }

  #track(p: Promise<void>): void {
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** Schedules a write of the agent's entry (coalesced: one in flight per agent, the latest state wins). */
  #mark(agentId: string): void {
    if (this.isDisposed) return;
    this.#dirty.add(agentId);
    if (this.#writing.has(agentId)) return;
    this.#writing.add(agentId);
    this.#track(this.#write(agentId));
  }

  async #write(agentId: string): Promise<void> {
    const { kv, local, nodeId, clock, logger } = this.#o;
    try {
      while (this.#dirty.delete(agentId)) {
        const session = local.get(agentId);
        if (!session || this.isDisposed) return;
        const now = clock.now();
        const revision = await kv.put(agentId, writeWire(presenceOf(session, local.freeSlots(session), nodeId, now)));
        // The agent may have left while the put was under way: its delete (below) needs the revision.
        this.#written.set(agentId, revision);
        if (!local.get(agentId)) await this.#delete(agentId);
      }
    } catch (err) {
      logger.warn('could not write an agent’s presence', { agentId, err: errorMessage(err) });
    } finally {
      this.#writing.delete(agentId);
    }
  }

  #gone(agentId: string): void {
    this.#dirty.delete(agentId);
    if (this.#writing.has(agentId)) return; // the write under way deletes it when it sees the agent gone
    this.#track(this.#delete(agentId));
  }

  async #delete(agentId: string): Promise<void> {
    const revision = this.#written.get(agentId);
    if (revision === undefined) return;
    this.#written.delete(agentId);
    try {
      // Only the entry this node wrote: another node's newer one (the agent reconnected there) stays.
      await this.#o.kv.delete(agentId, { previousSeq: revision });
    } catch {
      // Someone wrote after us (the agent's new node): nothing of ours to delete.
    }
  }

  async #read(entry: KvWatchEntry): Promise<void> {
    const { remote, local, nodeId, clock, logger, limits, link, maxRemoteAgents } = this.#o;
    const current = remote.get(entry.key);
    if (entry.operation !== 'PUT') {
      if (current) {
        remote.delete(current);
        this.#changed.fire();
      }
      return;
    }
    let record: PresenceRecord;
    let bundle: VerifiedBundle;
    try {
      record = readWire(presenceSchema, entry.value, limits);
      if (record.agentId !== entry.key) throw new Error('an entry under another agent’s key');
      if (record.nodeId === nodeId && local.get(record.agentId)?.bundle.signed.signature === record.bundle.signature) {
        // Our own write for an agent connected here, with the bundle its handshake verified: nothing to
        // check again, and no second verified copy of the bundle kept (a node would hold one per agent).
        if (current) remote.delete(current);
        return;
      }
      bundle = await this.#verify(record);
    } catch (err) {
      this.rejected++;
      logger.warn('dropped a presence entry that failed its checks', { key: entry.key.slice(0, 64), err: errorMessage(err) });
      if (current) {
        remote.delete(current);
        this.#changed.fire();
      }
      return;
    }
    if (record.nodeId === nodeId) {
      // Ours (our own write, or one from a previous run under this id): the local directory has the truth.
      if (current) remote.delete(current);
      return;
    }
    const now = clock.now();
    if (current) {
      current.update(record, bundle, now);
      remote.changed(current);
    } else {
      if (remote.size >= maxRemoteAgents) {
        this.rejected++;
        logger.warn('the remote agents limit is reached; an entry was dropped', { limit: maxRemoteAgents });
        return;
      }
      remote.set(new RemoteAgent(record, bundle, link, now));
    }
    this.#scheduleExpiry();
    this.#changed.fire();
  }

  async #verify(record: PresenceRecord): Promise<VerifiedBundle> {
    const key = record.bundle.signature;
    const known = this.#verified.get(key);
    if (known) return known;
    const verified = await verifyBundle(record.bundle, { now: this.#o.clock.now() });
    if (verified.bundle.agentId !== record.agentId) throw new Error('a bundle of another agent');
    // An attested agent must carry an enclave co-signature in its bundle; a peer cannot vouch for one without it.
    if (record.trust === 'attested' && verified.bundle.attestation === undefined) throw new Error('attested without an attestation');
    if (this.#verified.size >= this.#o.maxRemoteAgents * 2) this.#verified.clear();
    this.#verified.set(key, verified);
    return verified;
  }

  /** One timer for the oldest remote entry's expiry. */
  #scheduleExpiry(): void {
    const { remote, ttlMs, clock } = this.#o;
    let oldest = Infinity;
    for (const a of remote.all()) oldest = Math.min(oldest, a.lastSeenAt);
    if (oldest === Infinity) return this.#expiry.clear();
    this.#expiry.set(Math.max(0, oldest + ttlMs - clock.now()), () => {
      const cutoff = clock.now() - ttlMs;
      let dropped = false;
      for (const a of remote.all()) {
        if (a.lastSeenAt <= cutoff) {
          remote.delete(a);
          dropped = true;
        }
      }
      if (dropped) this.#changed.fire();
      this.#scheduleExpiry();
    });
  }

  /** Stops the watch and the timers, deletes this node's entries, and waits for writes under way. */
  protected override async onDispose(): Promise<void> {
    this.#refresh.dispose();
    this.#expiry.dispose();
    this.#watch?.stop();
    await this.#watching;
    await this.flushed();
    await Promise.all([...this.#written.keys()].map((id) => this.#delete(id)));
  }
}
