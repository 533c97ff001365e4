/**
 * The agent's outbound WebSocket to the gateway: hello with the signed bundle, answer the
 * challenge, then heartbeats and job traffic. Reconnects with the one backoff of src/shared (full
 * jitter), its delays on the injected clock.
 *
 * Reconnect timing (docs/agent.md "Reconnecting" has the reasoning and the measured figures): the
 * wait before retry n is drawn uniformly from [0, min(5 s, 500 ms · 2^n)], so a fleet that lost a
 * gateway together comes back spread over the last ceiling and none waits more than 5 s once the
 * gateway answers again. A refused upgrade's Retry-After (429, 503) is a floor the draw is added
 * to. The count of failures starts afresh only after a connection that stayed up `stableAfterMs`,
 * so a gateway that accepts and drops at once keeps its agents spread instead of calling them
 * back together every time. An attempt that has not been welcomed within `handshakeTimeoutMs` is
 * cut and counts as a failure (a black-holed address would otherwise hold it for minutes).
 *
 * Liveness (docs/protocol.md "Liveness"): a link can go quiet without closing (a cable pulled, a
 * NAT that dropped its state, a black-holed route), and TCP takes minutes to notice. Once
 * welcomed, the link pings the gateway (a WebSocket ping) whenever it has heard nothing from it
 * for `pingMs`, and counts anything it hears (a frame, a ping, a pong) as a sign of life; after
 * `silenceTimeoutMs` of silence it cuts the socket, which ends the connection as any drop does
 * (the agent stops its jobs within a token and keeps their receipts). Both are on the injected
 * clock. The gateway's ws answers pings by itself, so this works against any gateway version.
 */
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import {
  CLOSE_CODES,
  Resource,
  backoffDelay,
  raceClock,
  resolveBackoff,
  silentLogger,
  systemClock,
  withDefaults,
  type BackoffOptions,
  type Emitter,
  type Event,
  type ResolvedBackoff,
  type LinkState,
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  decodeMessage,
  gatewayFrameSchema,
  signChallenge,
  signEnclaveAnswer,
  errorMessage,
  type AgentFrame,
  type Clock,
  type GatewayFrame,
  type IdentityKeyPair,
  type EnclaveSigner,
  type Logger,
  type SignedBundle,
  type GoodbyeReason,
  TimerSlot,
  loggedEmitter,
} from '../../shared/index.js';

export type { LinkState };

type FrameOf<T extends GatewayFrame['type']> = Extract<GatewayFrame, { type: T }>;
/** The status fields a heartbeat carries. */
export type StatusFields = Omit<Extract<AgentFrame, { type: 'status' }>, 'v' | 'type'>;
/** The gateway's welcome (operator, trust, heartbeat interval). */
export type WelcomeFrame = FrameOf<'welcome'>;
/** The gateway's refusal of this agent (code and reason). */
export type RejectFrame = FrameOf<'reject'>;
/** A job for this agent. */
export type JobFrame = FrameOf<'job'>;
/** A job's cancellation. */
export type CancelFrame = FrameOf<'cancel'>;
/** The gateway's answer to a receipt delivered late. */
export type ReceiptAckFrame = FrameOf<'receipt-ack'>;
/** Why the link is closed, as the goodbye frame says it. */

/** Options of {@link GatewayLink}. */
export interface GatewayLinkOptions {
  /** The gateway's agent WebSocket URL, e.g. ws://127.0.0.1:8787/v1/agent. Required. */
  url: string;
  /** Signs the handshake's challenge. Required. */
  identity: IdentityKeyPair;
  /**
   * The Secure Enclave key that also answers every challenge (the auth and attest frames'
   * enclaveSignature, naming the presented bundle's box key). Defaults to none.
   */
  enclave?: EnclaveSigner | null;
  /** The bundle to present; called at each connect so a rotated bundle is used. Required. */
  bundle: () => SignedBundle;
  /** The heartbeat's content, read at each beat. Required. */
  status: () => StatusFields;
  /** One-time enrollment token that binds this identity to an operator. Defaults to none. */
  enrollToken?: string | null;
  /** Reconnect timing (full jitter), each field defaulted on its own. Defaults to {@link LINK_BACKOFF}: 500 ms growing ×2 up to 5 s. */
  backoff?: BackoffOptions;
  /** Random source in [0, 1) for the jitter. Defaults to Math.random. */
  random?: () => number;
  /**
   * How long a connection must have stayed up (from the gateway's welcome) for the next failure to
   * count as the first again; a shorter one keeps the backoff where it was. Defaults to 30 000 ms.
   */
  stableAfterMs?: number;
  /**
   * How long one attempt may take from opening the socket to the gateway's welcome before it is
   * cut and retried. Defaults to 10 000 ms (the gateway's own handshake timeout).
   */
  handshakeTimeoutMs?: number;
  /** Longest Retry-After of a refused upgrade that is honoured; a longer one is cut to this. Defaults to 60 000 ms. */
  maxRetryAfterMs?: number;
  /** How long a closing socket may take before it is cut. Defaults to 2000 ms. */
  closeTimeoutMs?: number;
  /**
   * Once welcomed, how long the link may hear nothing from the gateway before it pings it.
   * Defaults to 5000 ms.
   */
  pingMs?: number;
  /**
   * Once welcomed, how long the link may hear nothing at all from the gateway (no frame, ping or
   * pong) before it counts the link as dead and cuts it: three pings unanswered with the defaults,
   * against the gateway's 15 s heartbeat interval and 10 s challenge deadline. 0 never. Defaults to 15 000 ms.
   */
  silenceTimeoutMs?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

type LinkDefaults = Required<
  Pick<
    GatewayLinkOptions,
    | 'enrollToken'
    | 'enclave'
    | 'random'
    | 'stableAfterMs'
    | 'handshakeTimeoutMs'
    | 'maxRetryAfterMs'
    | 'closeTimeoutMs'
    | 'pingMs'
    | 'silenceTimeoutMs'
    | 'clock'
    | 'logger'
  >
>;

const LINK_DEFAULTS: LinkDefaults = {
  enrollToken: null,
  enclave: null,
  random: Math.random,
  stableAfterMs: 30_000,
  handshakeTimeoutMs: 10_000,
  maxRetryAfterMs: 60_000,
  closeTimeoutMs: 2000,
  pingMs: 5000,
  silenceTimeoutMs: 15_000,
  clock: systemClock,
  logger: silentLogger,
};

/**
 * The link's reconnect timing: the wait before retry n is a uniform draw from
 * [0, min(maxMs, initialMs · factor^n)]. A 5 s cap brings every agent back within 5 s of the
 * gateway answering again; the arrivals of a fleet that waited at the cap are spread over those
 * 5 s, at most about 4 % of it in any 100 ms (docs/agent.md, "Reconnecting").
 */
export const LINK_BACKOFF: ResolvedBackoff = { initialMs: 500, maxMs: 5000, factor: 2 };

/**
 * The wait a refused upgrade asks for, from its Retry-After header (seconds, or an HTTP date),
 * in ms and at most `maxMs`; 0 when there is none or it cannot be read.
 */
export function retryAfterFloor(header: string | string[] | undefined, now: number, maxMs: number): number {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return 0;
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  return Number.isFinite(ms) ? Math.min(maxMs, Math.max(0, Math.round(ms))) : 0;
}

/**
 * The agent WebSocket URL of a gateway given as http(s):// or ws(s)://: http becomes ws, https
 * becomes wss, and a bare origin gets the agent endpoint /v1/agent. Throws NJ_BAD_REQUEST for
 * anything else.
 */
export function gatewaySocketUrl(address: string): string {
  let url: URL;
  try {
    url = new URL(address.trim());
  } catch {
    throw new NightjarError('NJ_BAD_REQUEST', 'The gateway address must be a URL such as https://gateway.example.');
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `The gateway address must use https (or http, ws, wss), not ${url.protocol.replace(':', '')}.`,
    );
  }
  if (url.username || url.password)
    throw new NightjarError('NJ_BAD_REQUEST', 'The gateway address must not carry a user name or password.');
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/agent';
  url.hash = '';
  return url.toString();
}

/**
 * A persistent, authenticated connection to one gateway: connect() opens it and keeps it open
 * (reconnecting with jittered backoff) until disconnect(); dispose() disconnects for good.
 */
export class GatewayLink extends Resource {
  readonly #o: typeof LINK_DEFAULTS & GatewayLinkOptions;
  readonly #backoff: ResolvedBackoff;
  readonly #retry: TimerSlot;
  readonly #beatTimer: TimerSlot;
  readonly #attemptTimer: TimerSlot;
  readonly #liveTimer: TimerSlot;
  readonly #state$: Emitter<LinkState>;
  readonly #welcome$: Emitter<WelcomeFrame>;
  readonly #reject$: Emitter<RejectFrame>;
  readonly #job$: Emitter<JobFrame>;
  readonly #cancel$: Emitter<CancelFrame>;
  readonly #receiptAck$: Emitter<ReceiptAckFrame>;
  readonly #disconnected$: Emitter<void>;
  readonly #heard$: Emitter<void>;
  #socket: WebSocket | null = null;
  #state: LinkState = 'idle';
  #failures = 0;
  /** When the current connection was welcomed (clock ms), or null before the welcome. */
  #welcomedAt: number | null = null;
  #heartbeatMs = 15_000;
  #closed: Promise<void> | null = null;
  #retryDelay: number | null = null;
  /** When the gateway was last heard from on the current connection (clock ms). */
  #heardAt = 0;
  /** When the link last pinged the gateway (clock ms). */
  #pingedAt = 0;

  constructor(options: GatewayLinkOptions) {
    super();
    this.#o = withDefaults(LINK_DEFAULTS, options);
    this.#backoff = resolveBackoff(options.backoff, LINK_BACKOFF);
    const log = this.#o.logger;
    const d = this.disposables;
    this.#retry = d.add(new TimerSlot(this.#o.clock));
    this.#beatTimer = d.add(new TimerSlot(this.#o.clock));
    this.#attemptTimer = d.add(new TimerSlot(this.#o.clock));
    this.#liveTimer = d.add(new TimerSlot(this.#o.clock));
    this.#state$ = d.add(loggedEmitter(log, 'link state'));
    this.#welcome$ = d.add(loggedEmitter(log, 'welcome'));
    this.#reject$ = d.add(loggedEmitter(log, 'reject'));
    this.#job$ = d.add(loggedEmitter(log, 'job'));
    this.#cancel$ = d.add(loggedEmitter(log, 'cancel'));
    this.#receiptAck$ = d.add(loggedEmitter(log, 'receipt ack'));
    this.#disconnected$ = d.add(loggedEmitter(log, 'disconnect'));
    this.#heard$ = d.add(loggedEmitter(log, 'gateway heard'));
    this.onState = this.#state$.event;
    this.onWelcome = this.#welcome$.event;
    this.onReject = this.#reject$.event;
    this.onJob = this.#job$.event;
    this.onCancel = this.#cancel$.event;
    this.onReceiptAck = this.#receiptAck$.event;
    this.onDisconnected = this.#disconnected$.event;
    this.onPong = this.#heard$.event;
  }

  /** Fires whenever {@link GatewayLink.state} changes. */
  readonly onState: Event<LinkState>;
  /** Fires after each successful handshake, with the gateway's welcome. */
  readonly onWelcome: Event<WelcomeFrame>;
  /** Fires when the gateway refuses this agent (before it closes the connection). */
  readonly onReject: Event<RejectFrame>;
  /** Fires with each job the gateway sends. */
  readonly onJob: Event<JobFrame>;
  /** Fires with each cancellation the gateway sends. */
  readonly onCancel: Event<CancelFrame>;
  /** Fires with the gateway's answer to each receipt delivered late. */
  readonly onReceiptAck: Event<ReceiptAckFrame>;
  /** Fires when an authenticated connection ends. */
  readonly onDisconnected: Event<void>;
  /** Fires when the gateway answers one of the link's liveness pings (tests step their clocks on it). */
  readonly onPong: Event<void>;

  get state(): LinkState {
    return this.#state;
  }

  /** The delay chosen before the pending reconnect, if one is pending. */
  get retryDelayMs(): number | null {
    return this.#retryDelay;
  }

  /** Starts connecting; reconnects until disconnect(). After disconnect(), starts afresh. */
  connect(): void {
    if (this.isDisposed || (this.#state !== 'idle' && this.#state !== 'stopped')) return;
    this.#closed = null;
    this.#failures = 0;
    this.#open();
  }

  #setState(state: LinkState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#state$.fire(state);
  }

  /** Sends a frame if connected; returns false if it could not be sent. */
  send(frame: AgentFrame): boolean {
    if (this.#state !== 'connected' || !this.#socket || this.#socket.readyState !== WebSocket.OPEN) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a heartbeat now (after a state change). */
  beat(): void {
    this.send({ v: PROTOCOL_VERSION, type: 'status', ...this.#o.status() });
  }

  /**
   * Says goodbye with `reason`, closes (cutting the socket if it takes longer than
   * `closeTimeoutMs` on the clock), and stops reconnecting until connect().
   */
  disconnect(reason: GoodbyeReason = 'quit'): Promise<void> {
    this.#closed ??= (async () => {
      const socket = this.#socket;
      this.send({ v: PROTOCOL_VERSION, type: 'goodbye', reason });
      this.#setState('stopped');
      this.#retry.clear();
      this.#beatTimer.clear();
      this.#attemptTimer.clear();
      this.#liveTimer.clear();
      this.#retryDelay = null;
      this.#socket = null;
      if (!socket || socket.readyState === WebSocket.CLOSED) return;
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.close(CLOSE_CODES.goingAway, reason);
      if (!(await raceClock(this.#o.clock, this.#o.closeTimeoutMs, closed)).done) {
        socket.terminate();
        await closed;
      }
    })();
    return this.#closed;
  }

  /** Says goodbye ('quit') and closes for good. */
  protected override async onDispose(): Promise<void> {
    await this.disconnect('quit');
  }

  #open(): void {
    this.#setState('connecting');
    const log = this.#o.logger;
    const socket = new WebSocket(this.#o.url, { maxPayload: LIMITS.maxAgentFrameBytes, perMessageDeflate: false });
    this.#socket = socket;
    let authenticated = false;
    let presented: SignedBundle | null = null;
    /** The wait a refused upgrade asked for, the floor of the next retry's. */
    let floorMs = 0;
    this.#welcomedAt = null;
    // Cut (and so retried) when the gateway has not welcomed this attempt in time: a black-holed
    // address, a gateway that accepts and never answers.
    this.#attemptTimer.set(this.#o.handshakeTimeoutMs, () => {
      log.info('the gateway did not finish the handshake in time; retrying', { timeoutMs: this.#o.handshakeTimeoutMs });
      socket.terminate();
    });
    // Listening takes the refusal over from ws, which would only report the status: the listener
    // reads the Retry-After, then cuts the attempt (ws then emits close).
    socket.on('unexpected-response', (_req, res: IncomingMessage) => {
      if (res.statusCode === 429 || res.statusCode === 503) {
        floorMs = retryAfterFloor(res.headers['retry-after'], this.#o.clock.now(), this.#o.maxRetryAfterMs);
      }
      log.info('the gateway refused the connection', { status: res.statusCode, retryAfterMs: floorMs });
      res.resume();
      socket.terminate();
    });

    socket.on('open', () => {
      presented = this.#o.bundle();
      const hello: AgentFrame = { v: PROTOCOL_VERSION, type: 'hello', bundle: presented };
      // Absent from the frame, not null, when there is none.
      if (this.#o.enrollToken) hello.enrollToken = this.#o.enrollToken;
      socket.send(JSON.stringify(hello));
    });
    // Anything the gateway says is a sign of life (ws answers its pings by itself).
    socket.on('ping', () => {
      if (this.#socket === socket) this.#heardAt = this.#o.clock.now();
    });
    socket.on('pong', () => {
      if (this.#socket !== socket) return;
      this.#heardAt = this.#o.clock.now();
      this.#heard$.fire();
    });
    socket.on('message', (data, isBinary) => {
      // A socket this link has let go of (stopped, then started again) speaks for nobody.
      if (this.#socket !== socket) return;
      this.#heardAt = this.#o.clock.now();
      if (isBinary) return;
      let frame: GatewayFrame;
      try {
        frame = decodeMessage(gatewayFrameSchema, data as Buffer, LIMITS.maxAgentFrameBytes, 'gateway frame');
      } catch (err) {
        log.warn('unreadable frame from the gateway', { code: err instanceof NightjarError ? err.code : 'NJ_FRAME_INVALID' });
        socket.close(CLOSE_CODES.badFrame, 'NJ_FRAME_INVALID');
        return;
      }
      switch (frame.type) {
        case 'challenge': {
          // The first challenge is the handshake (answered with auth); later ones are the
          // gateway's periodic liveness checks (answered with attest, naming the nonce).
          const periodic = authenticated;
          const fields = { gatewayId: frame.gatewayId, nonce: frame.nonce, time: frame.time, agentId: this.#o.identity.agentId };
          // The box key the gateway holds now: the presented bundle's, or the rotated one sent since.
          const boxKeyId = (periodic ? this.#o.bundle() : (presented ?? this.#o.bundle())).bundle.boxKeyId;
          const enclave = this.#o.enclave;
          void Promise.all([
            signChallenge(fields, this.#o.identity),
            enclave ? signEnclaveAnswer({ ...fields, boxKeyId }, enclave) : undefined,
          ]).then(
            ([signature, enclaveSignature]) => {
              if (socket.readyState !== WebSocket.OPEN) return;
              const extra = enclaveSignature === undefined ? {} : { enclaveSignature };
              const answer: AgentFrame = periodic
                ? { v: PROTOCOL_VERSION, type: 'attest', nonce: frame.nonce, signature, ...extra }
                : { v: PROTOCOL_VERSION, type: 'auth', signature, ...extra };
              socket.send(JSON.stringify(answer));
            },
            (err: unknown) => log.warn('could not answer the challenge', { err: errorMessage(err) }),
          );
          return;
        }
        case 'welcome':
          authenticated = true;
          this.#attemptTimer.clear();
          this.#welcomedAt = this.#o.clock.now();
          this.#setState('connected');
          this.#heartbeatMs = frame.heartbeatMs;
          log.info('connected to gateway', { agentId: frame.agentId, trust: frame.trust });
          this.beat();
          // A bundle re-signed during the handshake (a key rotation) could not be sent then.
          if (this.#o.bundle() !== presented) this.send({ v: PROTOCOL_VERSION, type: 'bundle', bundle: this.#o.bundle() });
          this.#scheduleBeat();
          this.#pingedAt = this.#heardAt;
          this.#watch(socket);
          this.#welcome$.fire(frame);
          return;
        case 'reject':
          log.warn('gateway rejected this agent', { code: frame.code, reason: frame.message });
          this.#reject$.fire(frame);
          return;
        case 'job':
          this.#job$.fire(frame);
          return;
        case 'cancel':
          this.#cancel$.fire(frame);
          return;
        case 'receipt-ack':
          this.#receiptAck$.fire(frame);
          return;
        case 'error':
          log.warn('gateway reported an error', { code: frame.code, reason: frame.message });
          return;
      }
    });
    socket.on('error', (err) => log.debug('gateway socket error', { err: err.message }));
    socket.on('close', (code) => {
      if (authenticated) this.#disconnected$.fire();
      if (this.#socket !== socket) return;
      this.#beatTimer.clear();
      this.#attemptTimer.clear();
      this.#liveTimer.clear();
      if (this.#state === 'stopped') return;
      this.#scheduleRetry(code, floorMs);
    });
  }

  /**
   * Waits before the next attempt: the gateway's Retry-After floor, if it gave one, plus the
   * jittered backoff of the failures so far (counted afresh after a connection that stayed up).
   */
  #scheduleRetry(code: number, floorMs: number): void {
    const welcomedAt = this.#welcomedAt;
    this.#welcomedAt = null;
    if (welcomedAt !== null && this.#o.clock.now() - welcomedAt >= this.#o.stableAfterMs) this.#failures = 0;
    const delay = floorMs + backoffDelay(this.#failures++, this.#backoff, this.#o.random);
    this.#o.logger.info('gateway connection closed; retrying', { code, delayMs: delay });
    this.#setState('waiting');
    this.#retryDelay = delay;
    this.#retry.set(delay, () => {
      this.#retryDelay = null;
      if (this.#state === 'waiting') this.#open();
    });
  }

  /** True while a liveness ping is out and nothing has been heard from the gateway since. */
  get awaitingPong(): boolean {
    return this.#state === 'connected' && this.#pingedAt > this.#heardAt;
  }

  /**
   * The liveness watch of a welcomed connection: pings the gateway when it has been quiet for
   * `pingMs` (at most once per `pingMs`), and cuts the socket once it has been silent for
   * `silenceTimeoutMs`. Wakes at the earlier of the next ping and the deadline. A wake far past
   * its time (the machine slept, the clock jumped) does not count the lost time as the gateway's
   * silence: it pings at once and gives the gateway the rest of the deadline to answer.
   */
  #watch(socket: WebSocket, dueAt: number | null = null): void {
    const { pingMs, silenceTimeoutMs, clock } = this.#o;
    if (silenceTimeoutMs <= 0 || this.#socket !== socket || this.#state !== 'connected') return;
    const now = clock.now();
    if (dueAt !== null && now - dueAt > pingMs) {
      this.#o.logger.info('the liveness watch woke late (a sleep?); pinging the gateway', { lateMs: now - dueAt });
      this.#heardAt = Math.max(this.#heardAt, now - pingMs);
      this.#pingedAt = Math.min(this.#pingedAt, now - pingMs);
    }
    const silentFor = now - this.#heardAt;
    if (silentFor >= silenceTimeoutMs) {
      this.#o.logger.warn('the gateway link went silent; cutting it', { silentMs: silentFor, silenceTimeoutMs });
      socket.terminate();
      return;
    }
    if (silentFor >= pingMs && now - this.#pingedAt >= pingMs && socket.readyState === WebSocket.OPEN) {
      this.#pingedAt = now;
      socket.ping();
    }
    const nextPing = Math.max(this.#heardAt, this.#pingedAt) + pingMs;
    const wake = Math.max(1, Math.min(nextPing, this.#heardAt + silenceTimeoutMs) - now);
    this.#liveTimer.set(wake, () => this.#watch(socket, now + wake));
  }

  #scheduleBeat(): void {
    this.#beatTimer.set(this.#heartbeatMs, () => {
      if (this.#state !== 'connected') return;
      this.beat();
      this.#scheduleBeat();
    });
  }
}
