import { WebSocket, WebSocketServer } from 'ws';
import { describe, expect, it } from 'vitest';
import { startRecordingProxy, tracesOf } from './recording-proxy.js';

describe('recording proxy', () => {
  it('sees text a WebSocket client sends, though clients mask their frames', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    const got = new Promise<string>((r) => wss.once('connection', (s) => s.once('message', (d) => r(String(d)))));
    const proxy = await startRecordingProxy((wss.address() as { port: number }).port);
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`);
    await new Promise((r) => ws.once('open', r));
    const secret = 'masked-secret-0123456789abcdef';
    ws.send(`x${secret}`.repeat(200));
    expect(await got).toContain(secret);
    const raw = Buffer.concat(proxy.connections.flatMap((c) => [...c.toTarget, ...c.fromTarget]));
    expect(tracesOf(secret, raw)).toEqual([]);
    expect(tracesOf(secret, proxy.capture())).toContain(secret);
    ws.close();
    await new Promise((r) => ws.once('close', r));
    await proxy.close();
    await new Promise((r) => wss.close(r));
  });

  it('finds base64 and hex forms at every alignment', () => {
    const secret = 'CANARY-abcdef0123456789';
    for (let offset = 0; offset < 3; offset++) {
      const bytes = Buffer.concat([Buffer.alloc(offset, 7), Buffer.from(secret), Buffer.from('tail')]);
      expect(tracesOf(secret, bytes.toString('base64')).length).toBeGreaterThan(0);
      expect(tracesOf(secret, bytes.toString('base64url')).length).toBeGreaterThan(0);
    }
    expect(tracesOf(secret, Buffer.from(secret).toString('hex'))).toHaveLength(1);
    expect(tracesOf(secret, 'nothing to see')).toEqual([]);
  });

  // The black hole is what the liveness tests stand on: a connection that stops carrying bytes
  // with no FIN or RST to tell either side, and new connections that reach nothing.
  it('black-holes: forwards nothing and passes on no close; after heal, new connections go through again', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    const server = new Promise<WebSocket>((r) => wss.once('connection', r));
    const proxy = await startRecordingProxy((wss.address() as { port: number }).port);
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/`);
    await new Promise((r) => ws.once('open', r));
    const far = await server;
    let heard = 0;
    far.on('message', () => heard++);
    far.on('close', () => heard--);
    proxy.blackHole();
    const dropped = new Promise<void>((r) => proxy.onSwallowed(r));
    ws.send('into the void');
    await dropped;
    // Cut at this end: the far end hears neither the message nor the close.
    const cut = new Promise((r) => ws.once('close', r));
    ws.terminate();
    await cut;
    const probe = new WebSocket(`ws://127.0.0.1:${proxy.port}/`);
    probe.on('error', () => undefined);
    const swallowed = new Promise<void>((r) => proxy.onSwallowed(r));
    await swallowed; // the upgrade request went into the hole
    expect(probe.readyState).toBe(WebSocket.CONNECTING);
    probe.terminate();
    expect(heard).toBe(0);
    expect(far.readyState).toBe(WebSocket.OPEN);

    proxy.heal();
    const next = new Promise<WebSocket>((r) => wss.once('connection', r));
    const again = new WebSocket(`ws://127.0.0.1:${proxy.port}/`);
    await new Promise((r) => again.once('open', r));
    const got = new Promise<string>((r) => void next.then((s) => s.once('message', (d) => r(String(d)))));
    again.send('through');
    expect(await got).toBe('through');
    again.terminate();
    far.terminate();
    await proxy.close();
    await new Promise((r) => wss.close(r));
  });
});
