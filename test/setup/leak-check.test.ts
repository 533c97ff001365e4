import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { expectNoGrowth, snapshot } from './leaks.js';

describe('leak checker', () => {
  it('reports a server left listening, and passes once it is closed', async () => {
    const before = snapshot();
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    await expect(expectNoGrowth(before, 'probe', 100)).rejects.toThrow('probe left handles open: 1 × TCPServerWrap');
    await new Promise<void>((r) => server.close(() => r()));
    await expect(expectNoGrowth(before, 'probe', 1000)).resolves.toBeUndefined();
  });

  it('reports a pending timer', async () => {
    const before = snapshot();
    const t = setTimeout(() => undefined, 60_000);
    await expect(expectNoGrowth(before, 'probe', 50)).rejects.toThrow('1 × Timeout');
    clearTimeout(t);
  });
});
