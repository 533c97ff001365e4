/**
 * One agent's WebSocket, from handshake to close: hello (bundle, enrollment token) → challenge →
 * auth → admission (operator binding) → welcome; then heartbeats, periodic challenges and job
 * traffic. Job frames are handed to the listener registered for (jobId, attempt); chunk payloads
 * stay opaque.
 */
import type { WebSocket } from 'ws';
import {
  Emitter,
  errorMessage,
  CLOSE_CODES,
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  ProtocolError,
  agentFrameSchema,
  decodeMessage,
  randomBytes,
  silentLogger,
  toBase64Url,
  verifyBundle,
  verifyChallenge,
  withDefaults,
  NO_RELEASES,
  judgeAttestation,
  judgeBundleAttestation,
  sameEnclaveKey,
  type AttestationReason,
  type ReleasedApps,
  type AgentFrame,
  type AsyncResource,
  type Clock,
  type Envelope,
  type Event,
  type GatewayFrame,
  type Logger,
  type TimerHandle,
  type Trust,
  type VerifiedBundle,
} from '../shared/index.js';
import { newHealth, type AgentHealth, type AgentStatus, type DirectoryEntry } from './directory.js';
import type { AgentChannel, AttemptListener, ReceiptAck } from './transport.js';

type FrameOf<T extends AgentFrame['type']> = Extract<AgentFrame, { type: T }>;

/** Options of {@link AgentSession}. */
export interface AgentSessionOptions {
  /** The agent's accepted WebSocket. Required. */
  socket: WebSocket;
  /** Names this gateway in challenges. Required. */
  gatewayId: string;
  /** Time source of the handshake, pings and challenges. Required. */
  clock: Clock;
  /** Where the session logs (never a frame's payload). Defaults to a silent logger. */
  logger?: Logger;
  /** Time allowed from connect to a verified auth. Defaults to 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Status heartbeat interval asked of the agent. Defaults to 15 000 ms. */
  heartbeatMs?: number;
  /** Once admitted, how long the agent may say nothing before the gateway pings it. Defaults to 5000 ms. */
  pingMs?: number;
  /**
   * Once admitted, how long the agent may say nothing at all (no frame, ping or pong) before its
   * link counts as dead and is cut: its jobs are lost (their clients told, their holds released as
   * for any drop). 0 never. Defaults to 15 000 ms.
   */
  silenceTimeoutMs?: number;
  /** Time between periodic challenges after the handshake. Defaults to 60 000 ms. */
  challengeIntervalMs?: number;
  /** Time an agent has to answer a periodic challenge. Defaults to 10 000 ms. */
  challengeTimeoutMs?: number;
  /** Largest frame accepted. Defaults to LIMITS.maxAgentFrameBytes. */
  maxFrameBytes?: number;
  /** Largest frame accepted before the handshake completes (hello, auth), at most maxFrameBytes. Defaults to 64 KiB. */
  maxHandshakeFrameBytes?: number;
  /**
   * Which app hashes are releases (the attestation's app measurement check). Defaults to
   * {@link NO_RELEASES}: no agent is attested.
   */
  releases?: ReleasedApps;
  /**
   * Admits an agent that proved its identity: records it and resolves with its operator binding,
   * using the enrollment token from its hello if any. Throws NJ_ENROLL_INVALID to refuse it.
   * Defaults to admitting everyone unbound.
   */
  admit?(session: AgentSession, enrollToken: string | undefined): Promise<{ operatorId: string | null }>;
  /**
   * Settles a receipt the agent delivered late (a `receipt` frame: its job's `done` could not be
   * sent while the job ran) and resolves with the acknowledgement to send back. Defaults to
   * answering `retry` (a gateway without a ledger cannot settle anything).
   */
  lateReceipt?(session: AgentSession, frame: FrameOf<'receipt'>): Promise<LateReceiptAck>;
}

/** What the gateway answers a delivered receipt with (a `receipt-ack` frame without its envelope). */
export type LateReceiptAck = ReceiptAck;

/** The defaults of {@link AgentSessionOptions}. */
export const AGENT_SESSION_DEFAULTS: Required<Omit<AgentSessionOptions, 'socket' | 'gatewayId' | 'clock'>> = {
  logger: silentLogger,
  handshakeTimeoutMs: 10_000,
  heartbeatMs: 15_000,
  pingMs: 5000,
  silenceTimeoutMs: 15_000,
  challengeIntervalMs: 60_000,
  challengeTimeoutMs: 10_000,
  maxFrameBytes: LIMITS.maxAgentFrameBytes,
  maxHandshakeFrameBytes: 64 * 1024,
  releases: NO_RELEASES,
  admit: async () => ({ operatorId: null }),
  lateReceipt: async () => ({ outcome: 'retry', code: 'NJ_INTERNAL', message: 'this gateway keeps no ledger' }),
};

type Phase = 'hello' | 'auth' | 'admitting' | 'ready' | 'closed';

/**
 * A connected agent. Implements the directory's view of it once authenticated, and the
 * transport's handle to it ({@link AgentChannel}) on this node.
 */
export class AgentSession implements DirectoryEntry, AgentChannel, AsyncResource {
  agentId = '';
  bundle!: VerifiedBundle;
  /**
   * `attested` only while the last judgement held: the Secure Enclave co-signature of the current
   * bundle and the enclave's answer to the last challenge (the handshake's, then each periodic
   * one) verify, the posture is hardened and its app hash is a release. Otherwise `signed`.
   */
  trust: Trust = 'signed';
  /** Why the agent is or is not attested, as last judged (`['valid']` when attested). */
  attestation: AttestationReason[] = ['no-attestation'];
  status: AgentStatus | null = null;
  inFlight = 0;
  inFlightAtStatus = 0;
  connectedAt: number;
  lastSeenAt: number;
  challengedAt = 0;
  operatorId: string | null = null;
  health: AgentHealth;
  /** True after the agent said goodbye: it finishes its jobs but takes no more. */
  leaving = false;
  /** Periodic challenges sent, and how many the agent missed. */
  challenges = { sent: 0, missed: 0 };

  /** The agent is admitted (fires once). */
  readonly onAuthenticated: Event<AgentSession>;
  /**
   * The handshake is over, admitted or not (fires once): just before {@link AgentSession.onAuthenticated},
   * or when a failed or timed-out handshake has terminated the socket, or when the socket closed first.
   */
  readonly onHandshakeEnded: Event<AgentSession>;
  /**
   * What the agent can take may have changed: a status, a slot freed, a challenge answered or
   * missed, a rotated bundle (its box key, slots, models and validity).
   */
  readonly onCapacity: Event<AgentSession>;
  /** The socket of an admitted agent closed (fires once, before {@link AgentSession.onSocketClosed}). */
  readonly onClosed: Event<AgentSession>;
  /** The socket closed, whatever the phase (fires once, last). */
  readonly onSocketClosed: Event<AgentSession>;

  readonly #options: Required<AgentSessionOptions>;
  readonly #socket: WebSocket;
  readonly #log: Logger;
  /** Open attempts by `jobId:attempt`; made at the first job (an idle agent's session holds no table). */
  #jobs: Map<string, AttemptListener> | null = null;
  readonly #authenticated: Emitter<AgentSession>;
  readonly #handshakeEnded: Emitter<AgentSession>;
  #handshakeOver = false;
  readonly #capacity: Emitter<AgentSession>;
  readonly #closed: Emitter<AgentSession>;
  readonly #socketClosed: Emitter<AgentSession>;
  #phase: Phase = 'hello';
  #enrollToken: string | undefined;
  #challenge: { nonce: string; time: number } | null = null;
  #periodic: { nonce: string; time: number } | null = null;
  #missed = false;
  #handshakeTimer: TimerHandle | null;
  #pingTimer: TimerHandle | null = null;
  #challengeTimer: TimerHandle | null = null;
  #deadlineTimer: TimerHandle | null = null;
  /** When the agent was last pinged (clock ms). */
  #pingedAt = 0;
  /** Why the socket was cut, when the gateway cut it (the lost jobs say so). */
  #cutReason: string | null = null;
  #closedPromise: Promise<void> | null = null;

  constructor(options: AgentSessionOptions) {
    const o = withDefaults(AGENT_SESSION_DEFAULTS, options);
    this.#options = o;
    this.#socket = o.socket;
    this.#log = o.logger;
    // One error handler for the five events (a gateway holds a session per agent: each closure
    // and context is paid as many times as there are agents).
    const onListenerError = (err: unknown): void =>
      this.#log.error('an event listener failed', { event: 'agent session', err: errorMessage(err) });
    this.#authenticated = new Emitter({ onListenerError });
    this.#handshakeEnded = new Emitter({ onListenerError });
    this.#capacity = new Emitter({ onListenerError });
    this.#closed = new Emitter({ onListenerError });
    this.#socketClosed = new Emitter({ onListenerError });
    this.onAuthenticated = this.#authenticated.event;
    this.onHandshakeEnded = this.#handshakeEnded.event;
    this.onCapacity = this.#capacity.event;
    this.onClosed = this.#closed.event;
    this.onSocketClosed = this.#socketClosed.event;
    this.connectedAt = this.lastSeenAt = o.clock.now();
    this.health = newHealth(this.connectedAt);
    this.#handshakeTimer = o.clock.setTimeout(() => {
      this.#reject(new ProtocolError('NJ_AUTH_TIMEOUT', 'the handshake did not finish in time'), CLOSE_CODES.authTimeout);
    }, o.handshakeTimeoutMs);
    this.#socket.on('message', (data, isBinary) => this.#onMessage(data as Buffer, isBinary));
    this.#socket.on('close', (code) => this.#onClose(code));
    this.#socket.on('error', (err) => {
      this.#log.debug('agent socket error', { err: err.message });
      // ws answers a receive error with close(), which waits up to 30 s for the peer; a peer
      // that has not finished its handshake is not waited for.
      if (this.pending) this.#terminateHandshake();
    });
    // Anything the agent says is a sign of life (ws answers the gateway's pings by itself).
    const seen = (): void => {
      this.lastSeenAt = this.#options.clock.now();
    };
    this.#socket.on('ping', seen);
    this.#socket.on('pong', seen);
  }

  /** The heartbeat interval agents are told to use. */
  get heartbeatMs(): number {
    return this.#options.heartbeatMs;
  }

  /** True once admitted and until closed. */
  get ready(): boolean {
    return this.#phase === 'ready';
  }

  /** True while the handshake has not finished. */
  get pending(): boolean {
    return this.#phase === 'hello' || this.#phase === 'auth' || this.#phase === 'admitting';
  }

  /** True if the agent may be given new jobs (ready and not leaving). */
  get accepting(): boolean {
    return this.#phase === 'ready' && !this.leaving;
  }

  /** False once the agent missed a challenge, until it answers the next one in time. */
  challengeFresh(now: number): boolean {
    if (this.#missed) return false;
    const p = this.#periodic;
    return p === null || now - p.time <= this.#timeoutMs;
  }

  get #timeoutMs(): number {
    return this.#options.challengeTimeoutMs;
  }

  /** Sends a job to the agent; `listener` hears everything about (jobId, attempt). */
  dispatch(jobId: string, attempt: number, envelope: Envelope, listener: AttemptListener): void {
    if (this.#phase !== 'ready') throw new NightjarError('NJ_AGENT_FAILED', 'the agent is not connected');
    (this.#jobs ??= new Map()).set(`${jobId}:${attempt}`, listener);
    this.inFlight++;
    this.#send({ v: PROTOCOL_VERSION, type: 'job', jobId, attempt, envelope });
  }

  /**
   * Tells the agent to stop a job. The listener stays registered: the agent still ends the job
   * with a final chunk and a receipt (or a failure), which the gateway settles on.
   */
  cancel(jobId: string, attempt: number, reason: string): void {
    if (this.#jobs?.has(`${jobId}:${attempt}`) && this.#phase === 'ready') {
      this.#send({ v: PROTOCOL_VERSION, type: 'cancel', jobId, attempt, reason: reason.slice(0, 200) });
    }
  }

  /** Forgets a job: its listener hears nothing more, and its slot counts as free again. */
  forget(jobId: string, attempt: number): void {
    if (this.#release(jobId, attempt)) this.#capacity.fire(this);
  }

  /** Removes a job's listener. Returns false if it was not open. */
  #release(jobId: string, attempt: number): boolean {
    const existed = this.#jobs?.delete(`${jobId}:${attempt}`) ?? false;
    if (existed) this.inFlight = Math.max(0, this.inFlight - 1);
    return existed;
  }

  /** Starts closing the socket with `code` (the protocol's close codes: replaced, going away, …). */
  close(code: number, reason: string): void {
    if (this.#socket.readyState === this.#socket.OPEN || this.#socket.readyState === this.#socket.CONNECTING) {
      this.#socket.close(code, reason.slice(0, 120));
    }
  }

  /** Says goodbye (close 1001) and resolves once the socket has closed; cut it with {@link AgentSession.terminate} if it never does. */
  dispose(): Promise<void> {
    this.#closedPromise ??= new Promise((resolve) => {
      if (this.#phase === 'closed') return resolve();
      this.#socketClosed.event(() => resolve());
      this.close(CLOSE_CODES.goingAway, 'gateway shutting down');
    });
    return this.#closedPromise;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /** Drops the connection at once, without a closing handshake. */
  terminate(): void {
    this.#socket.terminate();
  }

  #send(frame: GatewayFrame): void {
    if (this.#socket.readyState === this.#socket.OPEN) this.#socket.send(JSON.stringify(frame));
  }

  /**
   * Refuses the agent: a reject frame, then a close with `closeCode`. Before the handshake
   * completes the socket is then terminated at once (its frames are already written): ws's
   * close() would wait up to 30 s for a silent peer's answer, holding a handshake slot.
   */
  #reject(error: NightjarError, closeCode: number): void {
    if (this.#phase === 'closed') return;
    this.#log.info('agent rejected', { code: error.code, agentId: this.agentId || null });
    this.#send({ v: PROTOCOL_VERSION, type: 'reject', code: error.code, message: error.message });
    this.close(closeCode, error.code);
    if (this.pending) this.#terminateHandshake();
  }

  /** Ends an unfinished handshake: the socket terminated, the session closed to frames, the slot freed. */
  #terminateHandshake(): void {
    this.#phase = 'closed';
    this.#socket.terminate();
    this.#endHandshake();
  }

  #endHandshake(): void {
    if (this.#handshakeOver) return;
    this.#handshakeOver = true;
    this.#handshakeEnded.fire(this);
    // It fires once: its listeners (and what they hold, such as the admission's byte counter) go now, not at close.
    this.#handshakeEnded.dispose();
  }

  #onMessage(data: Buffer, isBinary: boolean): void {
    const arrivedAt = this.#options.clock.now();
    this.lastSeenAt = arrivedAt;
    let frame: AgentFrame;
    try {
      if (isBinary) throw new ProtocolError('NJ_FRAME_INVALID', 'agent frames are JSON text');
      const max = this.pending ? Math.min(this.#options.maxHandshakeFrameBytes, this.#options.maxFrameBytes) : this.#options.maxFrameBytes;
      frame = decodeMessage(agentFrameSchema, data, max, 'agent frame');
    } catch (err) {
      const e = err instanceof NightjarError ? err : new ProtocolError('NJ_FRAME_INVALID', 'unreadable frame');
      this.#reject(e, e.code === 'NJ_PROTOCOL_VERSION' ? CLOSE_CODES.version : CLOSE_CODES.badFrame);
      return;
    }
    this.#handle(frame, arrivedAt).catch((err: unknown) => {
      const e = err instanceof NightjarError ? err : new NightjarError('NJ_FRAME_INVALID', 'frame could not be handled');
      if (!(err instanceof NightjarError)) this.#log.error('agent frame handler failed', { err: String(err) });
      const close =
        e.code === 'NJ_AUTH_FAILED'
          ? CLOSE_CODES.authFailed
          : e.code === 'NJ_ENROLL_INVALID'
            ? CLOSE_CODES.enrollRefused
            : e.code === 'NJ_SHUTTING_DOWN'
              ? CLOSE_CODES.goingAway
              : CLOSE_CODES.badFrame;
      this.#reject(e, close);
    });
  }

  async #handle(frame: AgentFrame, arrivedAt: number): Promise<void> {
    const clock = this.#options.clock;
    if (this.#phase === 'hello') {
      if (frame.type !== 'hello') throw new ProtocolError('NJ_FRAME_UNEXPECTED', `expected hello, got ${frame.type}`);
      this.bundle = await verifyBundle(frame.bundle, { now: clock.now() });
      this.agentId = this.bundle.bundle.agentId;
      this.#enrollToken = frame.enrollToken;
      this.#challenge = { nonce: toBase64Url(randomBytes(32)), time: clock.now() };
      this.#phase = 'auth';
      this.#send({ v: PROTOCOL_VERSION, type: 'challenge', gatewayId: this.#options.gatewayId, ...this.#challenge });
      return;
    }
    if (this.#phase === 'auth') {
      if (frame.type !== 'auth' || !this.#challenge) throw new ProtocolError('NJ_FRAME_UNEXPECTED', `expected auth, got ${frame.type}`);
      const ok = await verifyChallenge(
        { gatewayId: this.#options.gatewayId, ...this.#challenge, agentId: this.agentId },
        frame.signature,
        this.bundle.identityKey,
      );
      if (!ok) throw new NightjarError('NJ_AUTH_FAILED', 'the challenge signature does not verify');
      await this.#judge(this.#challenge, frame.enclaveSignature, arrivedAt, this.#options.handshakeTimeoutMs);
      this.#challenge = null;
      this.#phase = 'admitting';
      // The enrollment token binds only after the identity is proven, so a stolen bundle cannot
      // spend someone else's token.
      const { operatorId } = await this.#options.admit(this, this.#enrollToken);
      this.#enrollToken = undefined;
      if ((this.#phase as Phase) !== 'admitting') return;
      if (this.#handshakeTimer) clock.clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = null;
      this.operatorId = operatorId;
      this.challengedAt = clock.now();
      this.#phase = 'ready';
      this.#endHandshake();
      this.#send({
        v: PROTOCOL_VERSION,
        type: 'welcome',
        agentId: this.agentId,
        trust: this.trust,
        heartbeatMs: this.heartbeatMs,
        maxConcurrentJobs: this.bundle.bundle.capacity.slots,
        operator: operatorId,
      });
      this.#schedulePing();
      this.#scheduleChallenge();
      this.#authenticated.fire(this);
      // It fires once: its listeners go now, not at close.
      this.#authenticated.dispose();
      return;
    }
    if (this.#phase !== 'ready') return;
    switch (frame.type) {
      case 'status':
        if (this.leaving) return;
        this.status = {
          state: frame.state,
          model: frame.model,
          freeSlots: frame.freeSlots,
          totalSlots: frame.totalSlots,
          tokensPerSecond: frame.tokensPerSecond,
          ttftMs: frame.ttftMs,
          memoryPressure: frame.memoryPressure,
        };
        this.inFlightAtStatus = this.inFlight;
        this.#capacity.fire(this);
        return;
      case 'accepted':
        this.#jobs?.get(`${frame.jobId}:${frame.attempt}`)?.accepted(frame);
        return;
      case 'chunk':
        this.#jobs?.get(`${frame.jobId}:${frame.attempt}`)?.chunk(frame, arrivedAt);
        return;
      case 'done':
        await this.#done(frame);
        return;
      case 'declined':
      case 'failed': {
        const listener = this.#jobs?.get(`${frame.jobId}:${frame.attempt}`);
        // A frame about a job this agent was never given (or has finished) moves nothing.
        if (!listener) return;
        this.#release(frame.jobId, frame.attempt);
        if (frame.type === 'declined') listener.declined(frame);
        else listener.failed(frame);
        this.#capacity.fire(this);
        return;
      }
      case 'bundle': {
        const next = await verifyBundle(frame.bundle, { now: clock.now() });
        if (next.bundle.agentId !== this.agentId) {
          throw new ProtocolError('NJ_BUNDLE_INVALID', 'a rotated bundle must keep the same identity');
        }
        const previous = this.bundle;
        this.bundle = next;
        // The enclave's last answer named the old box key; the new bundle keeps `attested` only if
        // the same enclave key co-signed it. The next periodic answer judges it whole.
        if (this.trust === 'attested') {
          const judged = await judgeBundleAttestation(next.bundle, this.#options.releases);
          if (judged.trust !== 'attested' || !sameEnclaveKey(previous.bundle, next.bundle)) {
            this.#setAttestation('signed', judged.trust === 'attested' ? ['enclave-key-not-bound'] : judged.reasons);
          }
        }
        this.#capacity.fire(this);
        return;
      }
      case 'goodbye':
        this.leaving = true;
        this.status = {
          ...(this.status ?? { model: null, freeSlots: 0, totalSlots: 0, tokensPerSecond: 0, ttftMs: 0 }),
          state: 'draining',
        };
        this.#log.info('agent said goodbye', { agentId: this.agentId, reason: frame.reason });
        return;
      case 'attest':
        await this.#attest(frame, arrivedAt);
        return;
      case 'receipt':
        this.#ack(frame, await this.#late(frame));
        return;
      default:
        throw new ProtocolError('NJ_FRAME_UNEXPECTED', `unexpected ${frame.type} after the handshake`);
    }
  }

  /**
   * A `done`: the job's listener verifies and bills its receipt; the agent is told, with a
   * `receipt-ack`, once that is on the ledger, and keeps the receipt until then (a gateway that dies
   * before it reads the `done` never answers, so the agent delivers it again after reconnecting). A
   * `done` the job can no longer bill (its attempt ended here first, or its hold went back) is
   * settled as a late receipt: at most once, by the ledger.
   */
  async #done(frame: FrameOf<'done'>): Promise<void> {
    const listener = this.#jobs?.get(`${frame.jobId}:${frame.attempt}`);
    let billed: Promise<ReceiptAck | null> = Promise.resolve(null);
    if (listener) {
      this.#release(frame.jobId, frame.attempt);
      billed = listener.done(frame);
      this.#capacity.fire(this);
    }
    const ack = await billed.catch((err: unknown): ReceiptAck => {
      this.#log.error('a receipt could not be billed', { agentId: this.agentId, jobId: frame.jobId, err: String(err) });
      return { outcome: 'retry', code: 'NJ_INTERNAL', message: 'the gateway could not settle the receipt now' };
    });
    this.#ack(frame, ack ?? (await this.#late(frame)));
  }

  /** Settles a receipt late, answering `retry` when that fails. */
  #late(frame: { jobId: string; attempt: number; receipt: FrameOf<'receipt'>['receipt'] }): Promise<ReceiptAck> {
    return this.#options.lateReceipt(this, { v: PROTOCOL_VERSION, type: 'receipt', ...frame }).catch((err: unknown): ReceiptAck => {
      this.#log.error('late receipt could not be settled', { agentId: this.agentId, jobId: frame.jobId, err: String(err) });
      return { outcome: 'retry', code: 'NJ_INTERNAL', message: 'the gateway could not settle the receipt now' };
    });
  }

  #ack(frame: { jobId: string; attempt: number }, ack: ReceiptAck): void {
    const message = ack.message === undefined ? {} : { message: ack.message.slice(0, LIMITS.maxErrorMessageLength) };
    this.#send({ v: PROTOCOL_VERSION, type: 'receipt-ack', jobId: frame.jobId, attempt: frame.attempt, ...ack, ...message });
  }

  /**
   * A periodic challenge answer. It must name the outstanding nonce and arrive within the
   * deadline (by the gateway's clock, from the time the challenge carried); a late or unknown
   * nonce is ignored (the agent stays out of routing until it answers the next challenge). A bad
   * signature ends the session.
   */
  async #attest(frame: FrameOf<'attest'>, arrivedAt: number): Promise<void> {
    const p = this.#periodic;
    if (!p || frame.nonce !== p.nonce) {
      this.#log.debug('challenge answer for no outstanding challenge', { agentId: this.agentId });
      return;
    }
    const ok = await verifyChallenge(
      { gatewayId: this.#options.gatewayId, ...p, agentId: this.agentId },
      frame.signature,
      this.bundle.identityKey,
    );
    if (!ok) throw new NightjarError('NJ_AUTH_FAILED', 'the challenge answer does not verify');
    if (this.#periodic !== p) return;
    await this.#judge(p, frame.enclaveSignature, arrivedAt, this.#timeoutMs);
    if (this.#periodic !== p) return;
    this.#periodic = null;
    if (this.#deadlineTimer) this.#options.clock.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = null;
    if (arrivedAt - p.time > this.#timeoutMs) {
      this.#markMissed('late');
      return;
    }
    const wasMissed = this.#missed;
    this.#missed = false;
    this.challengedAt = arrivedAt;
    if (wasMissed) this.#log.info('agent answered a challenge again; back in routing', { agentId: this.agentId });
    this.#capacity.fire(this);
  }

  /**
   * Judges the attestation against challenge `c` (this gateway's outstanding one) and the enclave
   * signature the agent sent with its answer, and sets {@link AgentSession.trust}. A failure drops
   * the agent to `signed` (it keeps serving jobs that do not ask for attestation) and is logged
   * with its reasons, never with a signature or key.
   */
  async #judge(
    c: { nonce: string; time: number },
    enclaveSignature: string | undefined,
    arrivedAt: number,
    maxAgeMs: number,
  ): Promise<void> {
    const { bundle } = this.bundle;
    const answer =
      enclaveSignature === undefined
        ? null
        : {
            gatewayId: this.#options.gatewayId,
            nonce: c.nonce,
            time: c.time,
            agentId: this.agentId,
            boxKeyId: bundle.boxKeyId,
            signature: enclaveSignature,
          };
    const judged = await judgeAttestation(bundle, answer, {
      now: arrivedAt,
      gatewayId: this.#options.gatewayId,
      nonce: c.nonce,
      maxAgeMs,
      releases: this.#options.releases,
    });
    this.#setAttestation(judged.trust, judged.reasons);
  }

  #setAttestation(trust: Trust, reasons: AttestationReason[]): void {
    const was = this.trust;
    this.trust = trust;
    // A copy of exactly its length: the judged array may have grown by push (17 slots for one reason).
    this.attestation = reasons.slice();
    const claimed = this.bundle.bundle.attestation !== undefined;
    if (was === 'attested' && trust !== 'attested') {
      this.#log.warn('agent no longer attested; it serves only jobs that do not ask for attestation', {
        agentId: this.agentId,
        reasons: reasons.join(','),
      });
    } else if (was !== trust && trust === 'attested') {
      this.#log.info('agent attested', { agentId: this.agentId });
    } else if (claimed && trust !== 'attested' && this.#phase !== 'ready') {
      this.#log.info('agent claims attestation but is not attested', { agentId: this.agentId, reasons: reasons.join(',') });
    }
    if (was !== trust && this.#phase === 'ready') this.#capacity.fire(this);
  }

  #markMissed(why: string): void {
    if (!this.#missed) this.#log.warn('agent missed a challenge; out of routing until it answers one', { agentId: this.agentId, why });
    this.#missed = true;
    this.challenges.missed++;
  }

  #scheduleChallenge(): void {
    const clock = this.#options.clock;
    this.#challengeTimer = clock.setTimeout(() => {
      this.#challengeTimer = null;
      if (this.#phase !== 'ready') return;
      if (this.#periodic) {
        // Still unanswered (its deadline is longer than the interval): it is missed now.
        this.#markMissed('unanswered');
      }
      const p = { nonce: toBase64Url(randomBytes(32)), time: clock.now() };
      this.#periodic = p;
      this.challenges.sent++;
      this.#send({ v: PROTOCOL_VERSION, type: 'challenge', gatewayId: this.#options.gatewayId, ...p });
      if (this.#deadlineTimer) clock.clearTimeout(this.#deadlineTimer);
      this.#deadlineTimer = clock.setTimeout(() => {
        this.#deadlineTimer = null;
        if (this.#periodic !== p) return;
        this.#periodic = null;
        this.#markMissed('timeout');
        this.#capacity.fire(this);
      }, this.#timeoutMs);
      this.#scheduleChallenge();
    }, this.#options.challengeIntervalMs);
  }

  /**
   * The liveness watch of an admitted agent: pings it when it has been quiet for `pingMs` (at most
   * once per `pingMs`), and cuts the socket once it has said nothing for `silenceTimeoutMs` (a
   * link that went quiet without closing: TCP would take minutes to notice). Wakes at the earlier
   * of the next ping and the deadline, on the clock; a wake far past its time (the clock jumped)
   * pings at once and leaves the agent the rest of the deadline, as the agent's link does.
   */
  #schedulePing(dueAt: number | null = null): void {
    const { clock, pingMs, silenceTimeoutMs } = this.#options;
    if (this.#phase !== 'ready' || silenceTimeoutMs <= 0) return;
    const now = clock.now();
    if (dueAt !== null && now - dueAt > pingMs) {
      this.lastSeenAt = Math.max(this.lastSeenAt, now - pingMs);
      this.#pingedAt = Math.min(this.#pingedAt, now - pingMs);
    }
    const silentFor = now - this.lastSeenAt;
    if (silentFor >= silenceTimeoutMs) {
      this.#log.warn('agent link went silent; cutting it', { agentId: this.agentId, silentMs: silentFor, silenceTimeoutMs });
      this.#cutReason = `the agent's link went silent for ${silentFor} ms`;
      this.#socket.terminate();
      return;
    }
    if (silentFor >= pingMs && now - this.#pingedAt >= pingMs && this.#socket.readyState === this.#socket.OPEN) {
      this.#pingedAt = now;
      this.#socket.ping();
    }
    const wake = Math.max(1, Math.min(Math.max(this.lastSeenAt, this.#pingedAt) + pingMs, this.lastSeenAt + silenceTimeoutMs) - now);
    this.#pingTimer = clock.setTimeout(() => this.#schedulePing(now + wake), wake);
  }

  #onClose(code: number): void {
    const wasReady = this.#phase === 'ready';
    this.#phase = 'closed';
    const clock = this.#options.clock;
    for (const t of [this.#handshakeTimer, this.#pingTimer, this.#challengeTimer, this.#deadlineTimer]) if (t) clock.clearTimeout(t);
    this.#handshakeTimer = this.#pingTimer = this.#challengeTimer = this.#deadlineTimer = null;
    const open = [...(this.#jobs?.values() ?? [])];
    this.#jobs = null;
    this.inFlight = 0;
    for (const listener of open) listener.lost(this.#cutReason ?? `agent disconnected (${code})`);
    this.#endHandshake();
    if (wasReady) this.#closed.fire(this);
    this.#socketClosed.fire(this);
    for (const emitter of [this.#authenticated, this.#handshakeEnded, this.#capacity, this.#closed, this.#socketClosed]) emitter.dispose();
  }
}
