/**
 * A fault-injecting TCP proxy for tests (issue 17): put it between client and gateway, or between
 * agent and gateway, and switch faults on and off while traffic flows. Each direction has its own
 * faults — `up` is what the connecting side sends to the target, `down` what comes back:
 *
 * - latency: every chunk is held `latencyMs` plus up to `jitterMs` (seeded), order kept;
 * - bandwidth: a token bucket of `bytesPerSecond` (burst a tenth of a second's worth, at least 1 KiB);
 * - slicing: every chunk is written as pieces of 1..`sliceBytes` bytes (seeded), each its own write
 *   with Nagle off, so the reader sees frames split at every offset;
 * - black hole: nothing more is forwarded, the sockets stay open; `'buffer'` keeps the bytes and
 *   delivers them at heal, `'discard'` throws them away (a cut whose TCP never gives up). Neither
 *   passes on an end or a close from the other side until heal: behind a cut, a peer that dies is
 *   not heard of.
 *
 * And per connection or for all: drop (both sockets closed with FIN), reset (RST, via
 * `resetAndDestroy`), refusing new connections (accepted and reset at once), and heal (every fault
 * off, buffered bytes delivered). A pipe that holds more than 64 KiB stops reading its source, so
 * a slow or black-holed direction pushes back on the sender as a slow network does.
 *
 * Timers run on an injected clock (the real one by default); randomness is seeded, so a run is
 * repeatable up to the kernel's own segmenting. Connections opened and closed are events, so
 * tests await them rather than poll.
 */
import net from 'node:net';
import { Emitter, systemClock, type Clock, type Event, type TimerHandle } from '../../src/shared/index.js';

/** Faults on one direction of the proxy; every field is off when absent. */
export interface DirectionFaults {
  /** Added delay for every chunk, in ms. Defaults to 0. */
  latencyMs?: number;
  /** Up to this much more delay per chunk (uniform, seeded), in ms. Defaults to 0. */
  jitterMs?: number;
  /** Bandwidth cap, bytes per second (token bucket). Defaults to unlimited. */
  bytesPerSecond?: number;
  /** Split every chunk into pieces of 1..sliceBytes bytes, each written on its own. Defaults to no slicing. */
  sliceBytes?: number;
  /** Stop forwarding: keep the bytes for heal ('buffer') or throw them away ('discard'). Defaults to forwarding. */
  blackHole?: 'buffer' | 'discard';
}

/** A direction: `up` is towards the target, `down` back to the connecting side, `both` is both. */
export type FaultDirection = 'up' | 'down' | 'both';

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Port of the target. */
  targetPort: number;
  /** Host of the target. Defaults to '127.0.0.1'. */
  targetHost?: string;
  /** Seed of the proxy's random choices (jitter, slice sizes). Defaults to 1. */
  seed?: number;
  /** Clock for latency and bandwidth timers. Defaults to the system clock. */
  clock?: Clock;
  /** Faults from the start, by direction. Defaults to none. */
  faults?: { up?: DirectionFaults; down?: DirectionFaults };
  /** Called with each chunk as it arrives from either side, before any fault applies (a recorder). Defaults to none. */
  onData?: (connection: ProxiedConnection, direction: 'up' | 'down', chunk: Buffer) => void;
}

/** One proxied connection. */
export interface ProxiedConnection {
  /** 1, 2, … in the order accepted. */
  readonly id: number;
  /** Bytes that arrived from each side (before faults). */
  readonly received: { up: number; down: number };
  /** Bytes written on to each side (after faults). */
  readonly forwarded: { up: number; down: number };
  /** Writes made to each side (a sliced chunk is several). */
  readonly writes: { up: number; down: number };
  /** Whether both sockets are closed. */
  readonly closed: boolean;
  /** How it ended, once it has: 'drop', 'reset', 'refused', or 'peer' (one side closed). */
  readonly endedBy: 'drop' | 'reset' | 'refused' | 'peer' | null;
  /** Closes both sides with FIN (pending bytes are thrown away). */
  drop(): void;
  /** Resets both sides (RST). */
  reset(): void;
}

/** A running fault proxy. */
export interface FaultProxy {
  /** Port to connect to instead of the target's. */
  readonly port: number;
  /** Every connection accepted, in order. */
  readonly connections: readonly ProxiedConnection[];
  /** Connections not yet closed. */
  readonly open: readonly ProxiedConnection[];
  /** Fires when a connection has been accepted and its target connection started. */
  readonly onConnectionOpened: Event<ProxiedConnection>;
  /** Fires when both sockets of a connection are closed. */
  readonly onConnectionClosed: Event<ProxiedConnection>;
  /** Sets faults on a direction (merged into its current ones; `undefined` fields switch off). Applies to open connections too. */
  set(direction: FaultDirection, faults: DirectionFaults): void;
  /** The faults of a direction now. */
  faults(direction: 'up' | 'down'): Readonly<DirectionFaults>;
  /** Drops (FIN) every open connection. */
  dropAll(): void;
  /** Resets (RST) every open connection. */
  resetAll(): void;
  /** While on, each new connection is accepted and reset at once (no target connection). */
  refuseNew(on: boolean): void;
  /** Every fault off, refusing off, black-holed bytes that were buffered delivered. */
  heal(): void;
  /** Resolves once `holds()` is true, checked now and at each connection event; rejects after `timeoutMs` (real time, default 5000). */
  until(holds: () => boolean, timeoutMs?: number): Promise<void>;
  /** Closes every connection and the listener. */
  close(): Promise<void>;
}

/** Bytes a pipe holds before it pauses its source. */
const HIGH_WATER = 64 * 1024;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One direction of one connection: a queue of chunks, delivered in order with the direction's faults. */
class Pipe {
  readonly #queue: { at: number; data: Buffer }[] = [];
  #queued = 0;
  #pumping = false;
  #timer: TimerHandle | null = null;
  #tokens = 0;
  #tokensAt = 0;
  #lastAt = 0;
  #stopped = false;

  constructor(
    readonly from: net.Socket,
    readonly to: net.Socket,
    readonly faults: () => DirectionFaults,
    readonly clock: Clock,
    readonly random: () => number,
    readonly onForwarded: (n: number) => void,
  ) {}

  push(chunk: Buffer): void {
    const f = this.faults();
    if (f.blackHole === 'discard') return;
    const delay = (f.latencyMs ?? 0) + (f.jitterMs ? this.random() * f.jitterMs : 0);
    // Order is kept: a chunk is never due before the one ahead of it.
    const at = Math.max(this.clock.now() + delay, this.#lastAt);
    this.#lastAt = at;
    this.#queue.push({ at, data: chunk });
    this.#queued += chunk.length;
    if (this.#queued > HIGH_WATER) this.from.pause();
    this.kick();
  }

  /** Re-examines the queue (after a fault changed or a timer fired). */
  kick(): void {
    if (this.#timer) {
      this.clock.clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (!this.#pumping) void this.#pump();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) this.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #wait(ms: number): void {
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = null;
      this.kick();
    }, ms);
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (!this.#stopped && this.#queue.length > 0) {
        const f = this.faults();
        if (f.blackHole === 'discard') {
          this.#queue.length = 0;
          this.#queued = 0;
          break;
        }
        if (f.blackHole === 'buffer') return;
        const head = this.#queue[0]!;
        const now = this.clock.now();
        if (head.at > now) return this.#wait(head.at - now);
        let n = head.data.length;
        if (f.sliceBytes) n = Math.min(n, 1 + Math.floor(this.random() * f.sliceBytes));
        if (f.bytesPerSecond) {
          const burst = Math.max(1024, Math.floor(f.bytesPerSecond / 10));
          this.#tokens = Math.min(burst, this.#tokens + ((now - this.#tokensAt) * f.bytesPerSecond) / 1000);
          this.#tokensAt = now;
          n = Math.min(n, burst);
          if (this.#tokens < n) return this.#wait(Math.ceil(((n - this.#tokens) * 1000) / f.bytesPerSecond));
          this.#tokens -= n;
        }
        const piece = head.data.subarray(0, n);
        if (n === head.data.length) this.#queue.shift();
        else head.data = head.data.subarray(n);
        this.#queued -= n;
        if (this.#queued <= HIGH_WATER && this.from.isPaused()) this.from.resume();
        if (this.to.destroyed) return;
        const flushed = this.to.write(piece);
        this.onForwarded(n);
        if (!flushed) await new Promise<void>((r) => this.to.once('drain', r).once('close', r));
        // A sliced piece goes out on its own: yield so the kernel sends it before the next.
        else if (f.sliceBytes) await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.#pumping = false;
    }
  }
}

/** Starts a fault proxy to `options.targetPort` on 127.0.0.1, port 0. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const clock = options.clock ?? systemClock;
  const random = seeded(options.seed ?? 1);
  const faults = { up: { ...options.faults?.up }, down: { ...options.faults?.down } };
  const opened = new Emitter<ProxiedConnection>();
  const closed = new Emitter<ProxiedConnection>();
  const changed = new Emitter<void>();
  const connections: Conn[] = [];
  let refusing = false;
  let nextId = 1;
  /** Ends and closes held back by a black hole, passed on at heal. */
  const deferred: (() => void)[] = [];

  interface Conn extends ProxiedConnection {
    pipes: Pipe[];
  }

  const server = net.createServer((inbound) => {
    inbound.setNoDelay(true);
    inbound.on('error', () => undefined);
    const id = nextId++;
    const state = {
      closed: false,
      endedBy: null as ProxiedConnection['endedBy'],
      received: { up: 0, down: 0 },
      forwarded: { up: 0, down: 0 },
      writes: { up: 0, down: 0 },
    };
    if (refusing) {
      state.endedBy = 'refused';
      const conn: Conn = {
        id,
        ...state,
        pipes: [],
        drop: () => undefined,
        reset: () => undefined,
      };
      connections.push(conn);
      inbound.resetAndDestroy();
      inbound.once('close', () => {
        (conn as { closed: boolean }).closed = true;
        closed.fire(conn);
        changed.fire();
      });
      opened.fire(conn);
      changed.fire();
      return;
    }
    const outbound = net.connect(options.targetPort, options.targetHost ?? '127.0.0.1');
    outbound.setNoDelay(true);
    outbound.on('error', () => undefined);
    let socketsClosed = 0;
    const conn: Conn = {
      id,
      get received() {
        return state.received;
      },
      get forwarded() {
        return state.forwarded;
      },
      get writes() {
        return state.writes;
      },
      get closed() {
        return state.closed;
      },
      get endedBy() {
        return state.endedBy;
      },
      pipes: [],
      drop() {
        if (state.closed) return;
        state.endedBy ??= 'drop';
        for (const p of conn.pipes) p.stop();
        inbound.end();
        outbound.end();
        inbound.destroySoon();
        outbound.destroySoon();
      },
      reset() {
        if (state.closed) return;
        state.endedBy ??= 'reset';
        for (const p of conn.pipes) p.stop();
        if (!inbound.destroyed) inbound.resetAndDestroy();
        // A socket still connecting cannot be reset; destroy it instead.
        if (!outbound.destroyed) {
          if (outbound.connecting) outbound.destroy();
          else outbound.resetAndDestroy();
        }
      },
    };
    const up = new Pipe(
      inbound,
      outbound,
      () => faults.up,
      clock,
      random,
      (n) => {
        state.forwarded.up += n;
        state.writes.up++;
      },
    );
    const down = new Pipe(
      outbound,
      inbound,
      () => faults.down,
      clock,
      random,
      (n) => {
        state.forwarded.down += n;
        state.writes.down++;
      },
    );
    conn.pipes.push(up, down);
    connections.push(conn);
    inbound.on('data', (d: Buffer) => {
      state.received.up += d.length;
      options.onData?.(conn, 'up', d);
      up.push(d);
    });
    outbound.on('data', (d: Buffer) => {
      state.received.down += d.length;
      options.onData?.(conn, 'down', d);
      down.push(d);
    });
    // A half-close is passed on; a closed socket closes its peer (an RST stays an RST).
    // A black-holed direction passes no end or close on either: its reader hears nothing, as
    // behind a cut network, until heal.
    const later = (towards: 'up' | 'down', fn: () => void): void => {
      if (faults[towards].blackHole) deferred.push(fn);
      else fn();
    };
    inbound.on('end', () => later('up', () => outbound.end()));
    outbound.on('end', () => later('down', () => inbound.end()));
    const onClose = (peer: net.Socket, towards: 'up' | 'down') => (hadError: boolean) => {
      state.endedBy ??= 'peer';
      later(towards, () => {
        if (peer.destroyed) return;
        if (hadError && !peer.connecting) peer.resetAndDestroy();
        else peer.destroy();
      });
      if (++socketsClosed === 2) {
        state.closed = true;
        for (const p of conn.pipes) p.stop();
        closed.fire(conn);
        changed.fire();
      }
    };
    inbound.on('close', onClose(outbound, 'up'));
    outbound.on('close', onClose(inbound, 'down'));
    opened.fire(conn);
    changed.fire();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  const kickAll = (): void => {
    for (const c of connections) if (!c.closed) for (const p of c.pipes) p.kick();
  };
  return {
    port,
    connections,
    get open() {
      return connections.filter((c) => !c.closed);
    },
    onConnectionOpened: opened.event,
    onConnectionClosed: closed.event,
    set(direction, f) {
      for (const d of direction === 'both' ? (['up', 'down'] as const) : [direction]) {
        const merged: DirectionFaults = { ...faults[d], ...f };
        faults[d] = Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined)) as DirectionFaults;
      }
      kickAll();
    },
    faults: (direction) => ({ ...faults[direction] }),
    dropAll() {
      for (const c of connections) c.drop();
    },
    resetAll() {
      for (const c of connections) c.reset();
    },
    refuseNew(on) {
      refusing = on;
    },
    heal() {
      faults.up = {};
      faults.down = {};
      refusing = false;
      kickAll();
      for (const fn of deferred.splice(0)) fn();
    },
    async until(holds, timeoutMs = 5000) {
      if (holds()) return;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          sub.dispose();
          reject(new Error(`the proxy's connections did not reach the state awaited within ${timeoutMs} ms`));
        }, timeoutMs);
        const sub = changed.event(() => {
          if (!holds()) return;
          clearTimeout(timer);
          sub.dispose();
          resolve();
        });
      });
    },
    async close() {
      for (const c of connections) c.reset();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      opened.dispose();
      closed.dispose();
      changed.dispose();
    },
  };
}
