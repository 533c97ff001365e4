/**
 * A TCP proxy that records every byte passing in either direction. Put it in front of the
 * gateway and point clients and agents at it: the recording is everything the gateway received
 * and sent on the wire.
 *
 * Black hole: {@link RecordingProxy.blackHole} models a cable pulled, a NAT that dropped its
 * state, a black-holed route. From then on the open connections forward nothing in either
 * direction and pass on no end or close (each side sees only silence, until its own timers give
 * up), and a new connection is accepted but goes nowhere. {@link RecordingProxy.heal} lets new
 * connections through again; the black-holed ones stay dead, as a NAT's lost state does.
 */
import net from 'node:net';
import { Emitter, type Event } from '../../src/shared/index.js';

/** Bytes of one proxied connection, by direction. */
export interface RecordedConnection {
  readonly toTarget: Buffer[];
  readonly fromTarget: Buffer[];
}

export interface RecordingProxy {
  /** Port to connect to instead of the target's. */
  readonly port: number;
  /** Every connection seen, with its bytes. */
  readonly connections: RecordedConnection[];
  /**
   * Everything recorded, as one buffer: the raw bytes of both directions, plus the unmasked
   * payloads of WebSocket frames sent to the target (clients mask them, which would hide
   * plaintext from a raw search).
   */
  capture(): Buffer;
  /** Stops forwarding, silently, on every open and new connection (see the file's comment). */
  blackHole(): void;
  /** New connections are forwarded again; those black-holed stay so. */
  heal(): void;
  /** Fires when bytes arrive at the black hole (from either side), after they were dropped. */
  readonly onSwallowed: Event<void>;
  /** Fires when bytes were forwarded (either way), after they were recorded. */
  readonly onForwarded: Event<void>;
  close(): Promise<void>;
}

export async function startRecordingProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<RecordingProxy> {
  const connections: RecordedConnection[] = [];
  const sockets = new Set<net.Socket>();
  const swallowed = new Emitter<void>();
  const forwarded = new Emitter<void>();
  /** Set while new connections are black-holed; each open connection checks its own flag too. */
  let holed = false;
  const holes = new Set<{ holed: boolean }>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server = net.createServer((inbound) => {
    track(inbound);
    if (holed) {
      // Accepted, then nothing: the route goes nowhere.
      inbound.on('data', () => swallowed.fire());
      return;
    }
    const outbound = net.connect(targetPort, targetHost);
    track(outbound);
    const conn: RecordedConnection = { toTarget: [], fromTarget: [] };
    connections.push(conn);
    const state = { holed: false };
    holes.add(state);
    inbound.on('data', (d) => {
      if (state.holed) return swallowed.fire();
      conn.toTarget.push(Buffer.from(d));
      outbound.write(d);
      forwarded.fire();
    });
    outbound.on('data', (d) => {
      if (state.holed) return swallowed.fire();
      conn.fromTarget.push(Buffer.from(d));
      inbound.write(d);
      forwarded.fire();
    });
    inbound.on('end', () => state.holed || outbound.end());
    outbound.on('end', () => state.holed || inbound.end());
    inbound.on('close', () => state.holed || outbound.destroy());
    outbound.on('close', () => state.holed || inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections,
    capture() {
      const parts: Buffer[] = [];
      for (const c of connections) {
        const up = Buffer.concat(c.toTarget);
        parts.push(up, Buffer.concat(c.fromTarget), unmaskedWebSocketPayloads(up));
      }
      return Buffer.concat(parts);
    },
    blackHole() {
      holed = true;
      for (const h of holes) h.holed = true;
    },
    heal() {
      holed = false;
    },
    onSwallowed: swallowed.event,
    onForwarded: forwarded.event,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      swallowed.dispose();
      forwarded.dispose();
    },
  };
}

/**
 * The ways `secret` could appear in a capture: raw UTF-8, base64 and base64url at each of the
 * three byte alignments (its middle part, which does not depend on neighbouring bytes), and
 * lower- and upper-case hex.
 */
export function encodingsOf(secret: string): string[] {
  const bytes = Buffer.from(secret, 'utf8');
  const forms = new Set<string>([secret, bytes.toString('hex'), bytes.toString('hex').toUpperCase()]);
  for (let offset = 0; offset < 3; offset++) {
    const padded = Buffer.concat([Buffer.alloc(offset), bytes]);
    for (const enc of ['base64', 'base64url'] as const) {
      const text = padded.toString(enc).replace(/=+$/, '');
      // Drop characters that mix in the alignment bytes or the unknown next byte.
      const start = Math.ceil((offset * 4) / 3) + 1;
      const end = text.length - 4;
      if (end - start >= 8) forms.add(text.slice(start, end));
    }
  }
  return [...forms];
}

/** Every encoding of `secret` found in `haystack`. */
export function tracesOf(secret: string, haystack: Buffer | string): string[] {
  const text = typeof haystack === 'string' ? haystack : haystack.toString('latin1');
  return encodingsOf(secret).filter((form) => text.includes(form));
}

/**
 * If `stream` is an HTTP upgrade followed by client WebSocket frames, the frames' unmasked
 * payloads, concatenated (RFC 6455 §5.2–5.3); otherwise an empty buffer.
 */
export function unmaskedWebSocketPayloads(stream: Buffer): Buffer {
  if (!/^GET [^\r\n]* HTTP\/1\.1\r\n/.test(stream.subarray(0, 256).toString('latin1'))) return Buffer.alloc(0);
  const headerEnd = stream.indexOf('\r\n\r\n');
  if (headerEnd < 0 || !/upgrade: websocket/i.test(stream.subarray(0, headerEnd).toString('latin1'))) return Buffer.alloc(0);
  const out: Buffer[] = [];
  let i = headerEnd + 4;
  while (i + 2 <= stream.length) {
    const masked = (stream[i + 1]! & 0x80) !== 0;
    let len = stream[i + 1]! & 0x7f;
    let p = i + 2;
    if (len === 126) {
      len = stream.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      len = Number(stream.readBigUInt64BE(p));
      p += 8;
    }
    const key = masked ? stream.subarray(p, p + 4) : null;
    if (masked) p += 4;
    if (p + len > stream.length) break;
    const payload = Buffer.from(stream.subarray(p, p + len));
    if (key) for (let k = 0; k < payload.length; k++) payload[k]! ^= key[k & 3]!;
    out.push(payload);
    i = p + len;
  }
  return Buffer.concat(out);
}
