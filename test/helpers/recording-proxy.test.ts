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
});
