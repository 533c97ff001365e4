/**
 * The cluster's {@link JobTransport}: the same calls as {@link LocalTransport}, carried over NATS
 * subjects to the node that holds the agent's socket. Subjects (prefix `p`, default 'nightjar'):
 *
 * - `p.node.<agent node>.dispatch` — request: one attempt (envelope and all); answered ok, or with
 *   the error the agent's session gave (no such agent here). No responders: the node is gone.
 * - `p.node.<agent node>.control` — cancel or forget an attempt.
 * - `p.attempt.<job node>` — what the agent said about each attempt, in order, numbered from 0 per
 *   attempt (accepted, chunk, declined, failed, done, lost), and a keepalive every
 *   attemptKeepaliveMs while the attempt is open. `done` is a request; its answer is the
 *   receipt's acknowledgement, given once the job's node has verified and billed it.
 *
 * NATS keeps the order of one publisher's messages on one subject, so the contract's order holds.
 * A gap in the numbering (a message lost) ends the attempt `lost`. The agent's node gone is found
 * by a per-attempt liveness: the job's node hears nothing of an open attempt for attemptSilenceMs
 * (no keepalive) and ends it `lost`. Not the presence entry's TTL (15 s, and silent on NATS 2.9),
 * and not only no-responders (it answers a request, not a stream already under way).
 *
 * Receipts travel unchanged and are verified by the job's node (the listener's `done`), never by
 * the agent's node; a `done` whose job node does not answer (it died) is settled late by the
 * agent's node on the shared ledger, idempotently per jobId. Every message read is checked
 * against the cluster wire's schemas (wire.ts); one that fails is dropped and counted.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  Emitter,
  NightjarError,
  Resource,
  TimerSlot,
  errorMessage,
  type Clock,
  type Envelope,
  type Event,
  type Logger,
} from '../../shared/index.js';
import type { AgentSession } from '../agent-session.js';
import type { SpeedSample } from '../honesty/speed.js';
import type { Directory, DirectoryEntry, DirectoryModel, EligibilityNeeds } from '../directory.js';
import type { AgentChannel, AttemptListener, AttemptReport, JobCandidate, JobNeeds, JobTransport, ReceiptAck } from '../transport.js';
import { LocalTransport } from '../transport.js';
import { RemoteAgent, type RemoteLink } from './presence.js';
import {
  CLUSTER_WIRE_VERSION,
  attemptEventSchema,
  controlSchema,
  dispatchAnswerSchema,
  dispatchSchema,
  readWire,
  receiptAckSchema,
  speedSampleSchema,
  writeWire,
  type AttemptEvent,
  type ClusterWireLimits,
  type DispatchAnswer,
} from './wire.js';

/** Options of {@link NatsTransport}. */
export interface NatsTransportOptions {
  /** This node's id. Required. */
  nodeId: string;
  /** The NATS connection (its owner closes it). Required. */
  nc: NatsConnection;
  /** This node's connected agents. Required. */
  local: Directory<AgentSession>;
  /** Other nodes' agents (kept by the presence watch). Required. */
  remote: Directory<RemoteAgent>;
  /** Fires when a local agent's capacity may have changed. Required (the gateway's emitter). */
  localCapacity: Event<void>;
  /** Fires when a remote agent's entry came, changed or went. Required (the presence's event). */
  remoteChanged: Event<void>;
  /** Time source. Required. */
  clock: Clock;
  /** Where problems go (ids and codes only). Required. */
  logger: Logger;
  /** Subject prefix. Required (the gateway's option defaults it). */
  subjectPrefix: string;
  /** Keepalive interval of an open attempt, on the agent's node. Required. */
  attemptKeepaliveMs: number;
  /** Silence after which the job's node ends an open attempt `lost`. Required. */
  attemptSilenceMs: number;
  /** How long a dispatch request waits for the agent's node. Required. */
  dispatchTimeoutMs: number;
  /** How long the agent's node waits for a receipt's acknowledgement before settling it late. Required. */
  receiptAckTimeoutMs: number;
  /** Limits on what is read from NATS. Required. */
  limits: ClusterWireLimits;
  /**
   * The measured speeds this node shares: each job it times is published to every node, and each
   * job another node timed is taken in (so every node ranks an agent on the whole cluster's
   * timings, not only its own). Defaults to none.
   */
  speeds?: { onTimed: Event<SpeedSample>; absorb(sample: SpeedSample): void };
}

/** An attempt this node dispatched to a remote agent. */
interface Outgoing {
  readonly agent: RemoteAgent;
  /** The node it was sent to (the agent's entry may name another by now, if it reconnected there). */
  readonly node: string;
  readonly listener: AttemptListener;
  next: number;
  readonly silence: TimerSlot;
}

/** An attempt another node dispatched to one of this node's agents. */
interface Incoming {
  readonly jobNode: string;
  readonly session: AgentSession;
  seq: number;
}

const keyOf = (jobId: string, attempt: number): string => `${jobId}:${attempt}`;

/** NATS's own default max_payload, assumed while the server's is not known (between connections). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** Jobs to agents wherever their sockets are: local sessions directly, remote agents over NATS. */
export class NatsTransport extends Resource implements JobTransport, RemoteLink {
  readonly onCapacity: Event<void>;
  /** Messages read from NATS that failed their checks. */
  rejected = 0;
  readonly #o: NatsTransportOptions;
  readonly #localTransport: LocalTransport;
  readonly #capacity: Emitter<void>;
  readonly #outgoing = new Map<string, Outgoing>();
  readonly #incoming = new Map<string, Incoming>();
  readonly #keepalive: TimerSlot;
  readonly #subs: Subscription[] = [];
  readonly #loops: Promise<void>[] = [];

  constructor(options: NatsTransportOptions) {
    super();
    this.#o = options;
    this.#capacity = this.disposables.add(new Emitter<void>());
    this.onCapacity = this.#capacity.event;
    this.#localTransport = new LocalTransport({
      directory: options.local,
      onCapacity: options.localCapacity,
      now: () => options.clock.now(),
    });
    this.disposables.add(options.localCapacity(() => this.#capacity.fire()));
    this.disposables.add(options.remoteChanged(() => this.#capacity.fire()));
    this.#keepalive = this.disposables.add(new TimerSlot(options.clock));
  }

  /** Subscribes to this node's subjects and starts the keepalives. */
  start(): void {
    const { nc, subjectPrefix: p, nodeId } = this.#o;
    this.#serve(nc.subscribe(`${p}.node.${nodeId}.dispatch`), (m) => this.#onDispatch(m));
    this.#serve(nc.subscribe(`${p}.node.${nodeId}.control`), (m) => this.#onControl(m));
    this.#serve(nc.subscribe(`${p}.attempt.${nodeId}`), (m) => this.#onEvent(m));
    const speeds = this.#o.speeds;
    if (speeds) {
      this.#serve(nc.subscribe(`${p}.speed`), (m) => {
        const sample = readWire(speedSampleSchema, m.data, this.#o.limits);
        if (sample.from === nodeId) return;
        speeds.absorb({ agentId: sample.agentId, model: sample.model, tokensPerSecond: sample.tokensPerSecond, ttftMs: sample.ttftMs });
      });
      this.disposables.add(speeds.onTimed((sample) => this.#shareSpeed(sample)));
    }
    this.#keepalive.set(this.#o.attemptKeepaliveMs, () => this.#beat());
  }

  /** Resolves once the server has seen this node's subscriptions (so a peer's first request finds them). */
  async ready(): Promise<void> {
    await this.#o.nc.flush();
  }

  #serve(sub: Subscription, handle: (m: Msg) => Promise<void> | void): void {
    this.#subs.push(sub);
    this.#loops.push(
      (async () => {
        for await (const m of sub) {
          try {
            await handle(m);
          } catch (err) {
            this.rejected++;
            this.#o.logger.warn('dropped a cluster message', { subject: sub.getSubject(), err: errorMessage(err) });
          }
        }
      })(),
    );
  }

  // ——— JobTransport ———

  candidates(agentIds: readonly string[], needs: JobNeeds): JobCandidate[] {
    const { local, remote, clock } = this.#o;
    const now = clock.now();
    const e: EligibilityNeeds = { model: needs.model, paid: needs.paid, catalogued: needs.catalogued, now };
    const picked: { channel: AgentChannel & DirectoryEntry; free: boolean; latency: number }[] = [];
    for (const id of agentIds) {
      const s = local.get(id);
      if (s) {
        if (local.eligible(s, e))
          picked.push({ channel: s, free: local.freeSlots(s) > 0, latency: local.expectedLatencyMs(s, now, needs.maxTokens, needs.model) });
        continue;
      }
      const r = remote.get(id);
      if (r && remote.eligible(r, e))
        picked.push({ channel: r, free: remote.freeSlots(r) > 0, latency: remote.expectedLatencyMs(r, now, needs.maxTokens, needs.model) });
    }
    // The client's first recipient, when free, goes first (JobTransport.candidates).
    const first = (p: (typeof picked)[number]): number => Number(p.free && p.channel.agentId === agentIds[0]);
    picked.sort(
      (a, b) =>
        first(b) - first(a) ||
        Number(b.free) - Number(a.free) ||
        a.latency - b.latency ||
        a.channel.agentId.localeCompare(b.channel.agentId),
    );
    return picked.map(({ channel, free }) => ({ channel, free }));
  }

  knows(model: string): boolean {
    return this.#o.local.knows(model) || this.#o.remote.knows(model);
  }

  report(channel: AgentChannel, report: AttemptReport): void {
    if (!(channel instanceof RemoteAgent)) return this.#localTransport.report(channel, report);
    const { remote, clock } = this.#o;
    if (remote.get(channel.agentId) !== channel) return;
    if (report.type === 'first-chunk') remote.recordFirstChunk(channel, report.ms);
    else if (report.type === 'failed') remote.recordFailure(channel, clock.now());
    else channel.health.jobsDone++;
  }

  // ——— the job's side: attempts sent to other nodes ———

  dispatch(agent: RemoteAgent, jobId: string, attempt: number, envelope: Envelope, listener: AttemptListener): void {
    const { nc, subjectPrefix: p, nodeId, limits, dispatchTimeoutMs, logger } = this.#o;
    const key = keyOf(jobId, attempt);
    if (this.#outgoing.has(key)) throw new NightjarError('NJ_INTERNAL', 'this attempt was already dispatched');
    const data = writeWire({ v: CLUSTER_WIRE_VERSION, from: nodeId, agentId: agent.agentId, jobId, attempt, envelope });
    if (data.length > limits.maxMessageBytes || data.length > (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD))
      throw new NightjarError('NJ_AGENT_FAILED', 'the request is larger than the cluster carries between nodes');
    const target = agent.nodeId;
    const out: Outgoing = { agent, node: target, listener, next: 0, silence: new TimerSlot(this.#o.clock) };
    this.#outgoing.set(key, out);
    agent.inFlight++;
    this.#armSilence(key, out);
    nc.request(`${p}.node.${target}.dispatch`, data, { timeout: dispatchTimeoutMs }).then(
      (reply) => {
        let answer: DispatchAnswer;
        try {
          answer = readWire(dispatchAnswerSchema, reply.data, limits);
        } catch (err) {
          this.rejected++;
          return this.#endOutgoing(key, (l) => l.lost(`the agent's gateway node gave a malformed answer (${errorMessage(err)})`));
        }
        if (!answer.ok) this.#endOutgoing(key, (l) => l.lost(`${answer.code}: ${answer.message}`));
      },
      (err: unknown) => {
        logger.info('a dispatch to another node went unanswered', { node: target, jobId, err: errorMessage(err) });
        this.#endOutgoing(key, (l) => l.lost(`the agent's gateway node ${target} did not answer`));
      },
    );
  }

  cancel(agent: RemoteAgent, jobId: string, attempt: number, reason: string): void {
    const out = this.#outgoing.get(keyOf(jobId, attempt));
    if (out?.agent !== agent) return;
    this.#control(out.node, 'cancel', jobId, attempt, reason);
  }

  forget(agent: RemoteAgent, jobId: string, attempt: number): void {
    const key = keyOf(jobId, attempt);
    const out = this.#outgoing.get(key);
    if (out?.agent !== agent) return;
    this.#endOutgoing(key, () => undefined);
    this.#control(out.node, 'forget', jobId, attempt, 'forgotten');
  }

  #shareSpeed(sample: SpeedSample): void {
    const { nc, subjectPrefix: p, nodeId } = this.#o;
    try {
      nc.publish(`${p}.speed`, writeWire({ v: CLUSTER_WIRE_VERSION, from: nodeId, ...sample }));
    } catch (err) {
      this.#o.logger.warn('could not share a measured speed', { err: errorMessage(err) });
    }
  }

  #control(node: string, type: 'cancel' | 'forget', jobId: string, attempt: number, reason: string): void {
    const { nc, subjectPrefix: p, nodeId } = this.#o;
    try {
      nc.publish(
        `${p}.node.${node}.control`,
        writeWire({ v: CLUSTER_WIRE_VERSION, from: nodeId, type, jobId, attempt, reason: reason.slice(0, 200) }),
      );
    } catch (err) {
      this.#o.logger.warn('could not send a control message', { node, err: errorMessage(err) });
    }
  }

  #armSilence(key: string, out: Outgoing): void {
    out.silence.set(this.#o.attemptSilenceMs, () => {
      if (this.#outgoing.get(key) !== out) return;
      const [jobId, attempt] = [key.slice(0, key.lastIndexOf(':')), Number(key.slice(key.lastIndexOf(':') + 1))];
      this.#endOutgoing(key, (l) => l.lost(`the agent's gateway node ${out.node} went silent`));
      this.#control(out.node, 'forget', jobId, attempt, 'went silent');
    });
  }

  /** Ends an outgoing attempt: its slot is free again and `fn` tells its listener how (once). */
  #endOutgoing(key: string, fn: (listener: AttemptListener) => void): void {
    const out = this.#outgoing.get(key);
    if (!out) return;
    this.#outgoing.delete(key);
    out.silence.dispose();
    out.agent.inFlight = Math.max(0, out.agent.inFlight - 1);
    fn(out.listener);
    this.#capacity.fire();
  }

  #onEvent(m: Msg): void {
    const ev = readWire(attemptEventSchema, m.data, this.#o.limits);
    const key = keyOf(ev.jobId, ev.attempt);
    const out = this.#outgoing.get(key);
    if (!out || out.node !== ev.from) {
      // Nothing open here for it (ended, forgotten, or never ours): a done is answered so its node settles it late.
      if (ev.event === 'done' && m.reply) m.respond(writeWire({ v: CLUSTER_WIRE_VERSION, ack: null }));
      return;
    }
    if (ev.seq !== out.next) {
      this.#endOutgoing(key, (l) => l.lost('messages from the agent’s gateway node were lost'));
      this.#control(ev.from, 'forget', ev.jobId, ev.attempt, 'messages lost');
      if (ev.event === 'done' && m.reply) m.respond(writeWire({ v: CLUSTER_WIRE_VERSION, ack: null }));
      return;
    }
    out.next++;
    this.#armSilence(key, out);
    if ('frame' in ev && (ev.frame.jobId !== ev.jobId || ev.frame.attempt !== ev.attempt))
      throw new NightjarError('NJ_FRAME_INVALID', 'a frame about another attempt');
    this.#deliver(key, out, ev, m);
  }

  /** Hands an event to the attempt's listener; a done's billing runs beside the loop, so other attempts' chunks never wait for it. */
  #deliver(key: string, out: Outgoing, ev: AttemptEvent, m: Msg): void {
    const l = out.listener;
    switch (ev.event) {
      case 'alive':
        return;
      case 'accepted':
        return l.accepted(ev.frame);
      case 'chunk':
        return l.chunk(ev.frame, this.#o.clock.now());
      case 'declined':
        return this.#endOutgoing(key, (x) => x.declined(ev.frame));
      case 'failed':
        return this.#endOutgoing(key, (x) => x.failed(ev.frame));
      case 'lost':
        return this.#endOutgoing(key, (x) => x.lost(ev.reason));
      case 'done': {
        let billed: Promise<ReceiptAck | null> = Promise.resolve(null);
        this.#endOutgoing(key, (x) => (billed = x.done(ev.frame)));
        void billed
          .catch((err: unknown): ReceiptAck => {
            this.#o.logger.error('a receipt could not be billed', { jobId: ev.jobId, err: errorMessage(err) });
            return { outcome: 'retry', code: 'NJ_INTERNAL', message: 'the gateway could not settle the receipt now' };
          })
          .then((ack) => {
            if (m.reply) m.respond(writeWire({ v: CLUSTER_WIRE_VERSION, ack }));
          });
        return;
      }
    }
  }

  // ——— the agent's side: attempts other nodes sent to this node's agents ———

  #onDispatch(m: Msg): void {
    const answer = (a: DispatchAnswer): boolean => m.respond(writeWire(a));
    let d;
    try {
      d = readWire(dispatchSchema, m.data, this.#o.limits);
    } catch (err) {
      this.rejected++;
      answer({ v: CLUSTER_WIRE_VERSION, ok: false, code: 'NJ_FRAME_INVALID', message: errorMessage(err).slice(0, 200) });
      return;
    }
    const session = this.#o.local.get(d.agentId);
    const key = keyOf(d.jobId, d.attempt);
    if (!session) {
      answer({ v: CLUSTER_WIRE_VERSION, ok: false, code: 'NJ_AGENT_FAILED', message: 'the agent is not connected to that gateway node' });
      return;
    }
    if (this.#incoming.has(key)) {
      answer({ v: CLUSTER_WIRE_VERSION, ok: false, code: 'NJ_DUPLICATE_JOB', message: 'this attempt was already dispatched' });
      return;
    }
    const inc: Incoming = { jobNode: d.from, session, seq: 0 };
    this.#incoming.set(key, inc);
    try {
      session.dispatch(d.jobId, d.attempt, d.envelope, this.#forwarder(key, inc, d.jobId, d.attempt));
    } catch (err) {
      this.#incoming.delete(key);
      const code = err instanceof NightjarError ? err.code : 'NJ_AGENT_FAILED';
      answer({ v: CLUSTER_WIRE_VERSION, ok: false, code, message: errorMessage(err).slice(0, 200) });
      return;
    }
    answer({ v: CLUSTER_WIRE_VERSION, ok: true });
  }

  /** The listener of an attempt dispatched from another node: it sends everything back there. */
  #forwarder(key: string, inc: Incoming, jobId: string, attempt: number): AttemptListener {
    const open = (): boolean => this.#incoming.get(key) === inc;
    const end = (): void => {
      if (open()) this.#incoming.delete(key);
    };
    return {
      accepted: (frame) => open() && this.#send(inc, jobId, attempt, { event: 'accepted', frame }),
      chunk: (frame, arrivedAt) => open() && this.#send(inc, jobId, attempt, { event: 'chunk', frame, arrivedAt }),
      declined: (frame) => {
        if (open()) this.#send(inc, jobId, attempt, { event: 'declined', frame });
        end();
      },
      failed: (frame) => {
        if (open()) this.#send(inc, jobId, attempt, { event: 'failed', frame });
        end();
      },
      lost: (reason) => {
        if (open()) this.#send(inc, jobId, attempt, { event: 'lost', reason: reason.slice(0, 200) });
        end();
      },
      done: async (frame) => {
        if (!open()) return null;
        this.#incoming.delete(key);
        const { nc, subjectPrefix: p, nodeId, receiptAckTimeoutMs, limits } = this.#o;
        const data = writeWire({ v: CLUSTER_WIRE_VERSION, from: nodeId, jobId, attempt, seq: inc.seq++, event: 'done', frame });
        try {
          const reply = await nc.request(`${p}.attempt.${inc.jobNode}`, data, { timeout: receiptAckTimeoutMs });
          return readWire(receiptAckSchema, reply.data, limits).ack ?? null;
        } catch (err) {
          // The job's node is gone (or said nothing valid): the agent's session settles the receipt late here.
          this.#o.logger.info('a receipt’s job node did not acknowledge it; settling it late', {
            node: inc.jobNode,
            jobId,
            err: errorMessage(err),
          });
          return null;
        }
      },
    };
  }

  #send(inc: Incoming, jobId: string, attempt: number, ev: Record<string, unknown>): void {
    const { nc, subjectPrefix: p, nodeId } = this.#o;
    try {
      nc.publish(
        `${p}.attempt.${inc.jobNode}`,
        writeWire({ v: CLUSTER_WIRE_VERSION, from: nodeId, jobId, attempt, seq: inc.seq++, ...ev }),
      );
    } catch (err) {
      this.#o.logger.warn('could not forward an agent’s frame to the job’s node', { node: inc.jobNode, err: errorMessage(err) });
    }
  }

  #beat(): void {
    if (this.isDisposed) return;
    for (const [key, inc] of this.#incoming) {
      const i = key.lastIndexOf(':');
      this.#send(inc, key.slice(0, i), Number(key.slice(i + 1)), { event: 'alive' });
    }
    this.#keepalive.set(this.#o.attemptKeepaliveMs, () => this.#beat());
  }

  #onControl(m: Msg): void {
    const c = readWire(controlSchema, m.data, this.#o.limits);
    const key = keyOf(c.jobId, c.attempt);
    const inc = this.#incoming.get(key);
    if (!inc || inc.jobNode !== c.from) return;
    if (c.type === 'cancel') inc.session.cancel(c.jobId, c.attempt, c.reason);
    else {
      this.#incoming.delete(key);
      inc.session.forget(c.jobId, c.attempt);
    }
  }

  /** Attempts open in each direction (for tests and metrics). */
  get open(): { outgoing: number; incoming: number } {
    return { outgoing: this.#outgoing.size, incoming: this.#incoming.size };
  }

  /** Stops the subscriptions and timers; open outgoing attempts end `lost`. */
  protected override async onDispose(): Promise<void> {
    this.#keepalive.dispose();
    for (const sub of this.#subs) sub.unsubscribe();
    await Promise.all(this.#loops);
    for (const key of [...this.#outgoing.keys()]) this.#endOutgoing(key, (l) => l.lost('this gateway node is stopping'));
    // Attempts other nodes sent here go quiet (their job nodes end them lost); their sessions forget them.
    for (const [key, inc] of [...this.#incoming]) {
      this.#incoming.delete(key);
      const i = key.lastIndexOf(':');
      inc.session.forget(key.slice(0, i), Number(key.slice(i + 1)));
    }
  }
}

/** The candidate side of the directory over the whole network: what the client API asks of it. */
export interface CandidateSource {
  knows(model: string): boolean;
  candidates(needs: EligibilityNeeds, k: number): DirectoryEntry[];
  freeSlots(entry: DirectoryEntry): number;
  models(now: number): DirectoryModel[];
}

/** This node's agents and the other nodes' (from the presence bucket), as one {@link CandidateSource}. */
export class NetworkDirectory implements CandidateSource {
  readonly #local: Directory<AgentSession>;
  readonly #remote: Directory<RemoteAgent>;

  constructor(local: Directory<AgentSession>, remote: Directory<RemoteAgent>) {
    this.#local = local;
    this.#remote = remote;
  }

  knows(model: string): boolean {
    return this.#local.knows(model) || this.#remote.knows(model);
  }

  candidates(needs: EligibilityNeeds, k: number): DirectoryEntry[] {
    const rank = (e: DirectoryEntry): [boolean, number] => {
      if (e instanceof RemoteAgent)
        return [this.#remote.freeSlots(e) > 0, this.#remote.expectedLatencyMs(e, needs.now, undefined, needs.model)];
      const s = e as AgentSession;
      return [this.#local.freeSlots(s) > 0, this.#local.expectedLatencyMs(s, needs.now, undefined, needs.model)];
    };
    const all: DirectoryEntry[] = [...this.#local.candidates(needs, k), ...this.#remote.candidates(needs, k)];
    return all
      .map((e) => ({ e, r: rank(e) }))
      .sort((a, b) => Number(b.r[0]) - Number(a.r[0]) || a.r[1] - b.r[1] || a.e.agentId.localeCompare(b.e.agentId))
      .slice(0, k)
      .map(({ e }) => e);
  }

  freeSlots(entry: DirectoryEntry): number {
    return entry instanceof RemoteAgent ? this.#remote.freeSlots(entry) : this.#local.freeSlots(entry as AgentSession);
  }

  models(now: number): DirectoryModel[] {
    const byId = new Map<string, DirectoryModel>();
    for (const m of [...this.#local.models(now), ...this.#remote.models(now)]) {
      const row = byId.get(m.id);
      if (!row) byId.set(m.id, { ...m });
      else {
        row.synthetic &&= m.synthetic;
        row.agents += m.agents;
        row.freeSlots += m.freeSlots;
      }
    }
    return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }
}
