/**
 * Agent handshakes (issue 17): a handshake that times out terminates its socket, so its slot (per
 * address and in all) is free at handshakeTimeoutMs and an honest agent is admitted at once; the
 * frames a socket sends before its handshake completes are bounded (maxHandshakeFrameBytes, and
 * four times that in all, counted as the bytes arrive) and depth-scanned before they are parsed.
 *
 * The silent upgrades here are raw TCP sockets that complete the WebSocket upgrade and then never
 * read, write or answer a close: exactly what ws's polite close() waits 30 s for.
 */
import net from 'node:net';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_CODES, LIMITS, PROTOCOL_VERSION, gatewayFrameSchema, type GatewayFrame } from '../../src/shared/index.js';
import type { Gateway } from '../../src/gateway/index.js';
import { FAKE_MODEL, startTestGateway } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { RawAgent } from './support/raw-agent.js';

let gateway: Gateway | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await gateway?.dispose();
  gateway = undefined;
});

/** A socket that upgrades to WebSocket and then stays silent; `closed` resolves when the gateway drops it. */
function silentUpgrade(agentUrl: string): Promise<{ status: number; closed: Promise<void> }> {
  const { hostname, port } = new URL(agentUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    cleanups.push(async () => socket.destroy());
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    let head = '';
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (head.includes('\r\n\r\n')) return;
      head += chunk.toString('latin1');
      if (head.includes('\r\n\r\n')) resolve({ status: Number(head.split(' ')[1]), closed });
    });
    socket.on('close', () => reject(new Error('closed before the upgrade answer')));
    socket.write(
      'GET /v1/agent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
  });
}

/** The status, message and retry hints of an upgrade the gateway refused. */
function refusedUpgrade(agentUrl: string): Promise<{ status: number; message: string; retryAfterMs: number; retryAfter: string }> {
  const socket = new WebSocket(agentUrl);
  socket.on('error', () => undefined);
  cleanups.push(async () => socket.terminate());
  return new Promise((resolve, reject) => {
    socket.on('open', () => reject(new Error('the upgrade was accepted')));
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        const { message, retryAfterMs } = JSON.parse(body).error;
        resolve({ status: res.statusCode ?? 0, message, retryAfterMs, retryAfter: String(res.headers['retry-after']) });
      });
    });
  });
}

/** A WebSocket that has upgraded (no hello yet), with the frames it hears and how it closed. */
async function openSocket(agentUrl: string): Promise<{ ws: WebSocket; frames: GatewayFrame[]; closed: Promise<number> }> {
  const ws = new WebSocket(agentUrl);
  ws.on('error', () => undefined);
  cleanups.push(async () => ws.terminate());
  const frames: GatewayFrame[] = [];
  ws.on('message', (data) => frames.push(gatewayFrameSchema.parse(JSON.parse(String(data)))));
  const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
  await new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('unexpected-response', () => reject(new Error('the upgrade was refused')));
  });
  return { ws, frames, closed };
}

describe('handshake slots', () => {
  it('frees every slot when the handshake timeout fires, and admits an honest agent at once', async () => {
    // Fails without the terminate() in AgentSession's refusal of an unfinished handshake: ws's
    // close() waits 30 s (real time) for the silent peers to answer, so `closed` never resolves
    // and the slots stay taken.
    const clock = new FakeClock();
    gateway = await startTestGateway({ clock, handshakeTimeoutMs: 10_000, maxPendingHandshakes: 4, maxPendingHandshakesPerIp: 16 });
    const silent = await Promise.all(Array.from({ length: 4 }, () => silentUpgrade(gateway!.agentUrl)));
    expect(silent.map((s) => s.status)).toEqual([101, 101, 101, 101]);
    expect(await refusedUpgrade(gateway.agentUrl)).toEqual({
      status: 429,
      message: 'the gateway already has 4 unfinished handshakes',
      retryAfterMs: 1000,
      retryAfter: '1',
    });
    clock.advance(10_000);
    await Promise.all(silent.map((s) => s.closed));
    const honest = await RawAgent.connect({ url: gateway.agentUrl, model: FAKE_MODEL });
    cleanups.push(() => honest.close());
    expect(gateway.directory.get(honest.agentId)).toBeDefined();
  });

  it('frees an address’s slots the same way', async () => {
    // Fails without the terminate(), as above.
    const clock = new FakeClock();
    gateway = await startTestGateway({ clock, handshakeTimeoutMs: 10_000, maxPendingHandshakesPerIp: 2 });
    const silent = await Promise.all([silentUpgrade(gateway.agentUrl), silentUpgrade(gateway.agentUrl)]);
    const full = { status: 429, message: 'this address already has 2 unfinished handshakes' };
    expect(await refusedUpgrade(gateway.agentUrl)).toEqual({ ...full, retryAfterMs: 1000, retryAfter: '1' });
    clock.advance(9_999);
    // The retry hint is a second at most, sooner when the oldest handshake times out sooner.
    // (Fails with the flat 1 s hint: 1000 here.)
    expect(await refusedUpgrade(gateway.agentUrl)).toEqual({ ...full, retryAfterMs: 1, retryAfter: '1' });
    clock.advance(1);
    await Promise.all(silent.map((s) => s.closed));
    const honest = await RawAgent.connect({ url: gateway.agentUrl, model: FAKE_MODEL });
    cleanups.push(() => honest.close());
    expect(gateway.directory.get(honest.agentId)).toBeDefined();
  });
});

describe('frames before the handshake', () => {
  it('refuses a frame over maxHandshakeFrameBytes before parsing it (NJ_FRAME_TOO_LARGE, 4400)', async () => {
    // Fails without the handshake frame limit in AgentSession: the frame (under the 6 MiB agent
    // frame limit) is parsed and refused as "agent frame is not JSON" instead.
    gateway = await startTestGateway();
    const s = await openSocket(gateway.agentUrl);
    s.ws.send('x'.repeat(64 * 1024 + 1));
    expect(await s.closed).toBe(CLOSE_CODES.badFrame);
    expect(s.frames).toEqual([
      { v: PROTOCOL_VERSION, type: 'reject', code: 'NJ_FRAME_TOO_LARGE', message: 'agent frame is 65537 bytes; the limit is 65536' },
    ]);
  });

  it('cuts a socket that sends more than four frame limits before its handshake, before the frame is whole', async () => {
    // Fails without the byte count in AgentAdmission: the 1 MiB frame is received whole, then
    // refused with a reject frame and close 4400 rather than cut (1006).
    gateway = await startTestGateway();
    const s = await openSocket(gateway.agentUrl);
    s.ws.send('x'.repeat(1024 * 1024));
    expect(await s.closed).toBe(1006);
    expect(s.frames).toEqual([]);
    expect(await gateway.metrics.value(gateway.metrics.rejected, { limit: 'handshake-bytes' })).toBe(1);
  });

  it('refuses a hello nested deeper than LIMITS.maxJsonDepth before parsing it', async () => {
    // Fails without the depth scan in decodeMessage: the hello is parsed and refused by its schema.
    gateway = await startTestGateway();
    const s = await openSocket(gateway.agentUrl);
    const depth = LIMITS.maxJsonDepth;
    s.ws.send(`{"v":1,"type":"hello","bundle":${'['.repeat(depth)}${']'.repeat(depth)}}`);
    expect(await s.closed).toBe(CLOSE_CODES.badFrame);
    expect(s.frames).toEqual([
      { v: PROTOCOL_VERSION, type: 'reject', code: 'NJ_FRAME_INVALID', message: `agent frame nests deeper than ${depth} levels` },
    ]);
  });

  it('lets an admitted agent send frames up to maxAgentFrameBytes again', async () => {
    gateway = await startTestGateway();
    const raw = await RawAgent.connect({ url: gateway.agentUrl, model: FAKE_MODEL });
    raw.send('x'.repeat(100 * 1024));
    expect((await raw.closed).code).toBe(CLOSE_CODES.badFrame);
    expect(raw.frames.at(-1)).toEqual({
      v: PROTOCOL_VERSION,
      type: 'reject',
      code: 'NJ_FRAME_INVALID',
      message: 'agent frame is not JSON',
    });
  });
});
