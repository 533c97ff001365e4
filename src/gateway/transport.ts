/**
 * The seam between a client's job and an agent's session. A {@link ClientJob} runs on the gateway
 * node that admitted it (it holds the client's stream, the ledger hold and the relayed bytes); the
 * agent's socket may be on this node or — in a cluster — on another. The job reaches agents only
 * through a {@link JobTransport}: it asks for live handles ({@link AgentChannel}) to the agents
 * its envelope was sealed for, dispatches one attempt at a time to one of them, and hears back
 * through an {@link AttemptListener}. {@link LocalTransport} is the embedded default, over this
 * node's {@link AgentSession}s; a cluster transport carries the same calls over NATS subjects.
 *
 * The contract every transport keeps, per (jobId, attempt):
 * - Order: the listener hears frames in the order the agent sent them. `accepted` comes before
 *   any `chunk` (a chunk before it is the agent's fault, which the job handles); chunks keep
 *   their order; then exactly one of `declined`, `done`, `failed` or `lost` ends the attempt, and
 *   the listener hears nothing after it.
 * - `lost(reason)` means the transport can no longer reach the agent (socket closed, node gone)
 *   while the attempt was open.
 * - `cancel` asks the agent to stop; the listener stays registered, because the agent still ends
 *   the attempt with its final chunk and a receipt (or a failure), on which the job is billed.
 * - `forget` drops the listener at once (nothing more is heard) and frees the slot it held.
 * - Chunk payloads and receipts travel unchanged: the transport never decrypts, re-encodes or
 *   re-signs anything. The receipt is verified by the node that owns the job (the one that
 *   relayed the chunks and computed their digest), never by the transport or the agent's node.
 * - Capacity: whenever what an agent can take may have changed (a heartbeat, an attempt ending, a
 *   challenge answered or missed, an agent arriving or leaving) the transport fires
 *   {@link JobTransport.onCapacity}, and the owner pumps its queue of waiting jobs.
 */
import type { Envelope, ErrorCode, Event, ReceiptOutcome, VerifiedBundle } from '../shared/index.js';
import type { AgentFrame } from '../shared/index.js';
import type { AgentSession } from './agent-session.js';
import type { Directory } from './directory.js';

type FrameOf<T extends AgentFrame['type']> = Extract<AgentFrame, { type: T }>;

/** What the gateway answers a receipt with (a `receipt-ack` frame without its envelope). */
export interface ReceiptAck {
  outcome: ReceiptOutcome;
  code?: ErrorCode;
  message?: string;
}

/** Receives what an agent says about one dispatched attempt, in the order the agent said it. */
export interface AttemptListener {
  /** The agent took the attempt; its replySalt lets the client derive the reply keys. */
  accepted(frame: FrameOf<'accepted'>): void;
  /** The agent refused the attempt (ends it). */
  declined(frame: FrameOf<'declined'>): void;
  /** A sealed reply chunk, opaque here; `arrivedAt` is the clock reading when it arrived (for relay latency). */
  chunk(frame: FrameOf<'chunk'>, arrivedAt: number): void;
  /**
   * The agent finished, with its signed receipt (ends it). Resolves with the acknowledgement the
   * agent is sent once the receipt is billed (or refused), or null when this job can no longer
   * bill it (its hold went back first): the receipt is then settled as a late one.
   */
  done(frame: FrameOf<'done'>): Promise<ReceiptAck | null>;
  /** The agent failed the attempt (ends it). */
  failed(frame: FrameOf<'failed'>): void;
  /** The agent can no longer be reached with the attempt open (ends it). */
  lost(reason: string): void;
}

/** A live handle to one agent, wherever its socket is. */
export interface AgentChannel {
  readonly agentId: string;
  /** The operator the agent is bound to; null for an unbound agent. */
  readonly operatorId: string | null;
  /** The agent's verified bundle: its identity key and the model files it serves, for the receipt check. */
  readonly bundle: VerifiedBundle;
  /** Sends an attempt to the agent; `listener` hears everything about (jobId, attempt). Throws NJ_AGENT_FAILED if it is gone. */
  dispatch(jobId: string, attempt: number, envelope: Envelope, listener: AttemptListener): void;
  /** Asks the agent to stop the attempt; the listener still hears how it ends. */
  cancel(jobId: string, attempt: number, reason: string): void;
  /** Drops the attempt's listener and frees its slot. */
  forget(jobId: string, attempt: number): void;
}

/** What a job needs of an agent. */
export interface JobNeeds {
  model: string;
  /** The job costs money: only agents bound to an operator may serve it. */
  paid: boolean;
  /** The job was priced from the catalog: only agents whose file the catalog lists for the model. Defaults to false. */
  catalogued?: boolean;
  /** The job's completion budget, for ranking by expected latency. */
  maxTokens: number;
}

/** One agent a job may use, and whether it has a free slot now. */
export interface JobCandidate {
  readonly channel: AgentChannel;
  readonly free: boolean;
}

/** How an attempt went, reported back for routing (the gateway's own measurements). */
export type AttemptReport =
  | { type: 'first-chunk'; ms: number }
  | { type: 'failed' }
  /** A verified receipt. */
  | { type: 'done' };

/** How a job reaches agents. */
export interface JobTransport {
  /**
   * The agents among `agentIds` that may take a job with `needs` at all (connected, serving,
   * eligible), busy or not: those with a free slot first, each group best first — except that the
   * client's first recipient, when free, comes first of all (a client seals a conversation's next
   * turn first for the agent that holds it warm).
   */
  candidates(agentIds: readonly string[], needs: JobNeeds): JobCandidate[];
  /** True if any connected agent serves `model`, busy or not. */
  knows(model: string): boolean;
  /** Records how an attempt on `channel` went. */
  report(channel: AgentChannel, report: AttemptReport): void;
  /** Fires whenever what some agent can take may have changed. */
  readonly onCapacity: Event<void>;
}

/** Options of {@link LocalTransport}. */
export interface LocalTransportOptions {
  /** This node's connected agents. Required. */
  directory: Directory<AgentSession>;
  /** Fires when capacity may have changed. Required (the owner's emitter, fed by the sessions). */
  onCapacity: Event<void>;
  /** Time source for eligibility and ranking. Required. */
  now: () => number;
}

/** The embedded default: the agents' sessions are on this node. */
export class LocalTransport implements JobTransport {
  readonly #directory: Directory<AgentSession>;
  readonly #now: () => number;
  readonly onCapacity: Event<void>;

  constructor(options: LocalTransportOptions) {
    this.#directory = options.directory;
    this.#now = options.now;
    this.onCapacity = options.onCapacity;
  }

  candidates(agentIds: readonly string[], needs: JobNeeds): JobCandidate[] {
    const directory = this.#directory;
    const now = this.#now();
    const eligible: AgentSession[] = [];
    for (const id of agentIds) {
      const session = directory.get(id);
      if (session && directory.eligible(session, { model: needs.model, paid: needs.paid, catalogued: needs.catalogued, now }))
        eligible.push(session);
    }
    const free = eligible
      .filter((s) => directory.freeSlots(s) > 0)
      .sort(
        (a, b) =>
          Number(b.agentId === agentIds[0]) - Number(a.agentId === agentIds[0]) ||
          directory.compare(a, b, now, needs.maxTokens, needs.model),
      );
    const busy = eligible.filter((s) => directory.freeSlots(s) === 0);
    return [...free.map((channel) => ({ channel, free: true })), ...busy.map((channel) => ({ channel, free: false }))];
  }

  knows(model: string): boolean {
    return this.#directory.knows(model);
  }

  report(channel: AgentChannel, report: AttemptReport): void {
    const session = this.#directory.get(channel.agentId);
    // A report about a session that has since been replaced or has left changes nothing.
    if (session !== channel) return;
    if (report.type === 'first-chunk') this.#directory.recordFirstChunk(session, report.ms);
    else if (report.type === 'failed') this.#directory.recordFailure(session, this.#now());
    else session.health.jobsDone++;
  }
}
