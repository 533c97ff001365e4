/**
 * The agent's outbound WebSocket to the gateway: hello with the signed bundle, answer the
 * challenge, then heartbeats and job traffic. Reconnects with jittered exponential backoff.
 */
import WebSocket from 'ws';
import {
  CLOSE_CODES,
  LIMITS,
  NightjarError,
  PROTOCOL_VERSION,
  decodeMessage,
  gatewayFrameSchema,
  signChallenge,
  type AgentFrame,
  type Clock,
  type GatewayFrame,
  type IdentityKeyPair,
  type Logger,
  type SignedBundle,
  type TimerHandle,
} from '../../shared/index.js';

type FrameOf<T extends GatewayFrame['type']> = Extract<GatewayFrame, { type: T }>;
/** The status fields a heartbeat carries. */
export type StatusFields = Omit<Extract<AgentFrame, { type: 'status' }>, 'v' | 'type'>;

/** Reconnect timing. */
export interface BackoffOptions {
  /** First delay. Defaults to 500 ms. */
  initialMs?: number;
  /** Ceiling. Defaults to 30 000 ms. */
  maxMs?: number;
  /** Growth per failure. Defaults to 2. */
  factor?: number;
}

/** Options of {@link GatewayLink}. */
export interface GatewayLinkOptions {
  /** The gateway's agent WebSocket URL, e.g. ws://127.0.0.1:8787/v1/agent. */
  url: string;
  identity: IdentityKeyPair;
  /** The bundle to present; called at each connect so a rotated bundle is used. */
  bundle: () => SignedBundle;
  /** One-time enrollment token that binds this identity to an operator. Defaults to none. */
  enrollToken?: string;
  /** The heartbeat's content, read at each beat. */
  status: () => StatusFields;
  clock: Clock;
  logger: Logger;
  /** Reconnect timing. Defaults as {@link BackoffOptions} says. */
  backoff?: BackoffOptions;
  /** Random source in [0, 1) for jitter. Defaults to Math.random. */
  random?: () => number;
  onJob(frame: FrameOf<'job'>): void;
  onCancel(frame: FrameOf<'cancel'>): void;
  /** Called after each successful handshake. */
  onConnected?(frame: FrameOf<'welcome'>): void;
  /** Called when the gateway refuses this agent (before it closes the connection). */
  onReject?(frame: FrameOf<'reject'>): void;
  /** Called when an authenticated connection ends. */
  onDisconnected?(): void;
  /** Called whenever {@link GatewayLink.state} changes. */
  onStateChange?(state: LinkState): void;
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

/** Link states. */
export type LinkState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped';

/**
 * Full-jitter exponential backoff: a uniform delay in [0, min(max, initial·factor^n)].
 */
export function backoffDelay(failures: number, options: BackoffOptions, random: () => number): number {
  const initial = options.initialMs ?? 500;
  const cap = Math.min(options.maxMs ?? 30_000, initial * (options.factor ?? 2) ** Math.min(failures, 30));
  return Math.round(random() * cap);
}

/** A persistent, authenticated connection to one gateway. */
export class GatewayLink {
  readonly #o: GatewayLinkOptions;
  #socket: WebSocket | null = null;
  #state: LinkState = 'idle';
  #failures = 0;
  #retryTimer: TimerHandle | null = null;
  #beatTimer: TimerHandle | null = null;
  #heartbeatMs = 15_000;
  #closed: Promise<void> | null = null;
  #retryDelay: number | null = null;

  constructor(options: GatewayLinkOptions) {
    this.#o = options;
  }

  get state(): LinkState {
    return this.#state;
  }

  /** The delay chosen before the pending reconnect, if one is pending. */
  get retryDelayMs(): number | null {
    return this.#retryDelay;
  }

  /** Starts connecting; reconnects until stop(). After stop(), starts afresh. */
  start(): void {
    if (this.#state !== 'idle' && this.#state !== 'stopped') return;
    this.#closed = null;
    this.#failures = 0;
    this.#connect();
  }

  #setState(state: LinkState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#o.onStateChange?.(state);
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

  /** Says goodbye, closes, and stops reconnecting. */
  stop(reason: 'paused' | 'schedule' | 'owner-active' | 'quit' | 'error' = 'quit'): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      const socket = this.#socket;
      this.#goodbye(reason);
      this.#setState('stopped');
      this.#clearTimers();
      this.#socket = null;
      if (!socket || socket.readyState === WebSocket.CLOSED) {
        resolve();
        return;
      }
      socket.once('close', () => resolve());
      socket.close(CLOSE_CODES.goingAway, reason);
      const t = setTimeout(() => socket.terminate(), 2000);
      socket.once('close', () => clearTimeout(t));
    });
    return this.#closed;
  }

  #goodbye(reason: 'paused' | 'schedule' | 'owner-active' | 'quit' | 'error'): void {
    this.send({ v: PROTOCOL_VERSION, type: 'goodbye', reason });
  }

  #clearTimers(): void {
    if (this.#retryTimer) this.#o.clock.clearTimeout(this.#retryTimer);
    if (this.#beatTimer) this.#o.clock.clearTimeout(this.#beatTimer);
    this.#retryTimer = this.#beatTimer = null;
    this.#retryDelay = null;
  }

  #connect(): void {
    this.#setState('connecting');
    const log = this.#o.logger;
    const socket = new WebSocket(this.#o.url, { maxPayload: LIMITS.maxAgentFrameBytes, perMessageDeflate: false });
    this.#socket = socket;
    let authenticated = false;

    socket.on('open', () => {
      const hello: AgentFrame = { v: PROTOCOL_VERSION, type: 'hello', bundle: this.#o.bundle() };
      if (this.#o.enrollToken) hello.enrollToken = this.#o.enrollToken;
      socket.send(JSON.stringify(hello));
    });
    socket.on('message', (data, isBinary) => {
      // A socket this link has let go of (stopped, then started again) speaks for nobody.
      if (isBinary || this.#socket !== socket) return;
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
          void signChallenge(
            { gatewayId: frame.gatewayId, nonce: frame.nonce, time: frame.time, agentId: this.#o.identity.agentId },
            this.#o.identity,
          ).then((signature) => {
            if (socket.readyState !== WebSocket.OPEN) return;
            const answer: AgentFrame = periodic
              ? { v: PROTOCOL_VERSION, type: 'attest', nonce: frame.nonce, signature }
              : { v: PROTOCOL_VERSION, type: 'auth', signature };
            socket.send(JSON.stringify(answer));
          });
          return;
        }
        case 'welcome':
          authenticated = true;
          this.#failures = 0;
          this.#setState('connected');
          this.#heartbeatMs = frame.heartbeatMs;
          log.info('connected to gateway', { agentId: frame.agentId, trust: frame.trust });
          this.beat();
          this.#scheduleBeat();
          this.#o.onConnected?.(frame);
          return;
        case 'reject':
          log.warn('gateway rejected this agent', { code: frame.code, reason: frame.message });
          this.#o.onReject?.(frame);
          return;
        case 'job':
          this.#o.onJob(frame);
          return;
        case 'cancel':
          this.#o.onCancel(frame);
          return;
        case 'error':
          log.warn('gateway reported an error', { code: frame.code, reason: frame.message });
          return;
      }
    });
    socket.on('error', (err) => log.debug('gateway socket error', { err: err.message }));
    socket.on('close', (code) => {
      if (authenticated) this.#o.onDisconnected?.();
      if (this.#socket !== socket) return;
      if (this.#beatTimer) this.#o.clock.clearTimeout(this.#beatTimer);
      this.#beatTimer = null;
      if (this.#state === 'stopped') return;
      this.#failures++;
      const delay = backoffDelay(this.#failures, this.#o.backoff ?? {}, this.#o.random ?? Math.random);
      log.info('gateway connection closed; retrying', { code, delayMs: delay });
      this.#setState('waiting');
      this.#retryDelay = delay;
      this.#retryTimer = this.#o.clock.setTimeout(() => {
        this.#retryTimer = null;
        this.#retryDelay = null;
        if (this.#state === 'waiting') this.#connect();
      }, delay);
    });
  }

  #scheduleBeat(): void {
    this.#beatTimer = this.#o.clock.setTimeout(() => {
      if (this.#state !== 'connected') return;
      this.beat();
      this.#scheduleBeat();
    }, this.#heartbeatMs);
  }
}
