/**
 * Agent admission: the WebSocket upgrade at /v1/agent, refused (429, with Retry-After) past the
 * per-address connection cap, the per-address and global caps on unfinished handshakes, and
 * while shutting down (503); each accepted socket becomes an {@link AgentSession}, which joins
 * the directory once it proved its identity and was admitted (operator binding).
 *
 * A handshake slot is held from the upgrade until the handshake ends: admitted, refused, or timed
 * out at handshakeTimeoutMs, when the session terminates the socket (never ws's polite close,
 * which waits 30 s for a silent peer). Until then the bytes a socket may send are bounded too:
 * its frames by maxHandshakeFrameBytes (checked, with their depth, before they are parsed), and
 * everything it sends by {@link HANDSHAKE_BYTES_PER_FRAME_LIMIT} times that, counted as they
 * arrive, so a peer cannot make the gateway buffer a 6 MiB frame before its first check.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import { WebSocketServer, type WebSocket } from 'ws';
import { CLOSE_CODES, NightjarError, raceClock, toBase64Url } from '../../shared/index.js';
import { AgentSession, type AgentSessionOptions } from '../agent-session.js';
import type { GatewayContext, GatewayPluginOptions } from './context.js';

/** How long dispose() waits for agents to close their sockets before it cuts them. */
const CLOSE_WAIT_MS = 2000;

/**
 * Bytes an unfinished handshake may receive in all, in frame limits: a hello and an auth frame,
 * with room for pongs and framing.
 */
export const HANDSHAKE_BYTES_PER_FRAME_LIMIT = 4;

/** Open connections and unfinished handshakes of one address. */
interface AddressCounts {
  open: number;
  pending: number;
}

/** Options of {@link AgentAdmission}. */
export interface AgentAdmissionOptions {
  /** The gateway's shared state. Required. */
  ctx: GatewayContext;
  /** Called whenever what some agent can take may have changed. Required. */
  onCapacity: () => void;
}

/** Takes agents' WebSocket upgrades and runs their sessions. */
export class AgentAdmission {
  readonly #ctx: GatewayContext;
  readonly #onCapacity: () => void;
  readonly #wss: WebSocketServer;
  readonly #perIp = new Map<string, AddressCounts>();
  readonly #sessions = new Set<AgentSession>();
  /** Each unfinished handshake's timeout, and its address. */
  readonly #pendingDeadlines = new Map<AgentSession, [number, string]>();
  #pendingTotal = 0;
  #disposed: Promise<void> | null = null;
  /** The sessions' admit and late-receipt hooks: one pair for every session, not a pair each. */
  readonly #admitHook: Required<AgentSessionOptions>['admit'];
  readonly #lateReceiptHook: Required<AgentSessionOptions>['lateReceipt'];

  constructor(options: AgentAdmissionOptions) {
    this.#ctx = options.ctx;
    this.#onCapacity = options.onCapacity;
    this.#admitHook = (s, enrollToken) => this.#admit(s, enrollToken);
    // Only a file the catalog lists for a catalogued model bills, late as on time.
    const fileListed = (model: string, sha256: string): boolean =>
      !this.#ctx.catalog.lists(model) || this.#ctx.catalog.catalogued(model, sha256);
    this.#lateReceiptHook = (s, frame) => this.#ctx.billing.settleLate(s, frame, { fileListed });
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: this.#ctx.options.maxAgentFrameBytes, perMessageDeflate: false });
  }

  /** Handles an HTTP upgrade: refuses it with a status, or hands the socket to a new session. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/v1/agent') {
      refuseUpgrade(socket, '404 Not Found', new NightjarError('NJ_NOT_FOUND', 'agents connect to /v1/agent'));
      return;
    }
    if (this.#ctx.closing() || this.#disposed) {
      const error = new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down', { retryAfterMs: 2000 });
      refuseUpgrade(socket, '503 Service Unavailable', error);
      return;
    }
    const ip = req.socket.remoteAddress ?? 'unknown';
    const over = this.#overLimit(ip);
    if (over) {
      this.#ctx.metrics.rejected.inc({ limit: 'agent-connections' });
      this.#ctx.log.warn('agent connection refused', { ip, reason: over.message });
      refuseUpgrade(
        socket,
        '429 Too Many Requests',
        new NightjarError('NJ_RATE_LIMITED', over.message, { retryAfterMs: over.retryAfterMs }),
      );
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const session = this.#accept(ws, ip);
      // Counted as they arrive, beside ws's own reader, before ws has buffered a whole frame.
      let received = head.length;
      const budget = HANDSHAKE_BYTES_PER_FRAME_LIMIT * this.#ctx.options.maxHandshakeFrameBytes;
      const count = (chunk: Buffer): void => {
        received += chunk.length;
        if (received <= budget) return;
        socket.off('data', count);
        this.#ctx.metrics.rejected.inc({ limit: 'handshake-bytes' });
        this.#ctx.log.warn('agent handshake sent too much; connection cut', { ip, bytes: received });
        session.terminate();
      };
      socket.on('data', count);
      session.onHandshakeEnded(() => socket.off('data', count));
    });
  }

  /**
   * Which cap a new connection from `ip` would pass, said as the refusal's message, and when to
   * retry; null if none. Past a cap on unfinished handshakes: in a second, or sooner if the oldest
   * of them (of the address, or in all) times out sooner. Never later: in a reconnect storm the
   * slots are held by honest handshakes that end in milliseconds, not at their timeout.
   */
  #overLimit(ip: string): { message: string; retryAfterMs: number } | null {
    const { maxAgentConnectionsPerIp, maxPendingHandshakesPerIp, maxPendingHandshakes } = this.#ctx.options;
    const counts = this.#perIp.get(ip) ?? { open: 0, pending: 0 };
    const n = (count: number, what: string): string => `${count} ${what}${count === 1 ? '' : 's'}`;
    if (counts.open >= maxAgentConnectionsPerIp) {
      return { message: `this address already has ${n(maxAgentConnectionsPerIp, 'agent connection')}`, retryAfterMs: 1000 };
    }
    if (counts.pending >= maxPendingHandshakesPerIp) {
      return {
        message: `this address already has ${n(maxPendingHandshakesPerIp, 'unfinished handshake')}`,
        retryAfterMs: this.#slotFreesInMs(ip),
      };
    }
    if (this.#pendingTotal >= maxPendingHandshakes) {
      return {
        message: `the gateway already has ${n(maxPendingHandshakes, 'unfinished handshake')}`,
        retryAfterMs: this.#slotFreesInMs(null),
      };
    }
    return null;
  }

  /** 1 000 ms, or the time until the oldest unfinished handshake (of `ip`, or of anyone) times out if sooner; at least 1 ms. */
  #slotFreesInMs(ip: string | null): number {
    let first = Number.POSITIVE_INFINITY;
    for (const [deadline, from] of this.#pendingDeadlines.values()) if (ip === null || from === ip) first = Math.min(first, deadline);
    return Math.max(1, Math.min(1000, Math.ceil(first - this.#ctx.clock.now())));
  }

  #accept(socket: WebSocket, ip: string): AgentSession {
    const { options, clock, log, directory, store } = this.#ctx;
    const counts = this.#perIp.get(ip) ?? { open: 0, pending: 0 };
    this.#perIp.set(ip, counts);
    counts.open++;
    counts.pending++;
    this.#pendingTotal++;
    let pending = true;
    const handshakeOver = (): void => {
      if (!pending) return;
      pending = false;
      counts.pending--;
      this.#pendingTotal--;
    };
    const session = new AgentSession({
      socket,
      gatewayId: options.gatewayId,
      clock,
      logger: log,
      maxFrameBytes: options.maxAgentFrameBytes,
      maxHandshakeFrameBytes: options.maxHandshakeFrameBytes,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      heartbeatMs: options.heartbeatMs,
      pingMs: options.agentPingMs,
      silenceTimeoutMs: options.agentSilenceTimeoutMs,
      challengeIntervalMs: options.challengeIntervalMs,
      challengeTimeoutMs: options.challengeTimeoutMs,
      releases: options.releasedApps ?? this.#ctx.catalog,
      admit: this.#admitHook,
      lateReceipt: this.#lateReceiptHook,
    });
    this.#sessions.add(session);
    this.#pendingDeadlines.set(session, [clock.now() + options.handshakeTimeoutMs, ip]);
    session.onHandshakeEnded(() => {
      this.#pendingDeadlines.delete(session);
      handshakeOver();
    });
    session.onAuthenticated((s) => {
      const previous = directory.set(s);
      if (previous) previous.close(CLOSE_CODES.replaced, 'NJ_AGENT_REPLACED');
      log.info('agent connected', {
        agentId: s.agentId,
        operatorId: s.operatorId,
        models: s.bundle.bundle.models.map((m) => m.id).join(','),
        slots: s.bundle.bundle.capacity.slots,
      });
      this.#onCapacity();
    });
    session.onCapacity((s) => {
      directory.changed(s);
      this.#onCapacity();
    });
    session.onClosed((s) => {
      directory.delete(s);
      log.info('agent disconnected', { agentId: s.agentId });
      store.accounts.touchAgent(s.agentId, clock.now()).catch(() => undefined);
      this.#onCapacity();
    });
    session.onSocketClosed((s) => {
      this.#sessions.delete(s);
      handshakeOver();
      counts.open--;
      if (counts.open === 0) this.#perIp.delete(ip);
    });
    return session;
  }

  async #admit(session: AgentSession, enrollToken: string | undefined): Promise<{ operatorId: string | null }> {
    const { clock, log, store } = this.#ctx;
    if (this.#ctx.closing()) throw new NightjarError('NJ_SHUTTING_DOWN', 'the gateway is shutting down');
    const result = await store.accounts.admitAgent({
      agentId: session.agentId,
      identityKey: toBase64Url(session.bundle.identityKey),
      enrollToken,
      model: session.bundle.bundle.models[0]?.id ?? null,
      now: clock.now(),
    });
    if (result.boundNow) log.info('agent enrolled', { agentId: session.agentId, operatorId: result.operatorId });
    return result;
  }

  /**
   * Says goodbye to every agent (close 1001), waits up to 2 s on the injected clock for their
   * sockets to close, cuts the rest, and stops taking upgrades.
   */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      const sessions = [...this.#sessions];
      const waited = await raceClock(this.#ctx.clock, CLOSE_WAIT_MS, Promise.all(sessions.map((s) => s.dispose())));
      if (!waited.done) for (const s of this.#sessions) s.terminate();
      await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** Answers a refused upgrade with a status line and Nightjar's JSON error, then closes the socket. */
function refuseUpgrade(socket: Duplex, status: string, error: NightjarError): void {
  const body = JSON.stringify({ error: error.toJSON() });
  const retry = error.retryAfterMs === undefined ? '' : `Retry-After: ${Math.max(1, Math.ceil(error.retryAfterMs / 1000))}\r\n`;
  socket.end(
    `HTTP/1.1 ${status}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `${retry}Connection: close\r\n\r\n${body}`,
  );
}

/** Options of {@link agentAdmissionRoutes}. */
export interface AgentAdmissionPluginOptions extends GatewayPluginOptions {
  /** The admission that handles the upgrades. */
  admission: AgentAdmission;
}

/** Routes the server's WebSocket upgrades to the admission. */
export const agentAdmissionRoutes: FastifyPluginAsync<AgentAdmissionPluginOptions> = async (app, { admission }) => {
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => admission.handleUpgrade(req, socket, head);
  app.server.on('upgrade', onUpgrade);
  app.addHook('onClose', async () => {
    app.server.off('upgrade', onUpgrade);
  });
};
