/**
 * The fault proxy on a plain echo server: each fault does what it says, and heal undoes it.
 * Latency and bandwidth run on a fake clock (nothing waits on real time).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../gateway/support/fake-clock.js';
import { startFaultProxy, type FaultProxy, type FaultProxyOptions, type ProxiedConnection } from './fault-proxy.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An echo server that records the size of every read. */
async function echoServer(): Promise<{ port: number; reads: number[]; sockets: net.Socket[] }> {
  const reads: number[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('data', (d) => {
      reads.push(d.length);
      s.write(d);
    });
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as net.AddressInfo).port, reads, sockets };
}

async function proxyTo(port: number, options: Partial<FaultProxyOptions> = {}): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ targetPort: port, ...options });
  cleanups.push(() => proxy.close());
  return proxy;
}

/** A client socket with everything it has read collected. */
async function connect(port: number): Promise<{ socket: net.Socket; got: () => Buffer; gotBytes: (n: number) => Promise<Buffer> }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  cleanups.push(() => void socket.destroy());
  await new Promise<void>((r) => socket.once('connect', r));
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  const got = (): Buffer => Buffer.concat(parts);
  return {
    socket,
    got,
    gotBytes: (n) =>
      new Promise((resolve) => {
        const check = (): void => {
          if (got().length < n) return;
          socket.off('data', check);
          resolve(got());
        };
        socket.on('data', check);
        check();
      }),
  };
}

/** Resolves once the proxy has received `n` bytes on `direction` of its first connection. */
function receivedAtProxy(arrived: { n: number; wake: () => void }[], n: number): Promise<void> {
  return new Promise((resolve) => arrived.push({ n, wake: resolve }));
}

function recorder(): { onData: FaultProxyOptions['onData']; arrived: { n: number; wake: () => void }[] } {
  const arrived: { n: number; wake: () => void }[] = [];
  let total = 0;
  return {
    arrived,
    onData: (_c: ProxiedConnection, direction, chunk) => {
      if (direction !== 'up') return;
      total += chunk.length;
      for (const a of arrived.splice(0))
        if (total >= a.n) a.wake();
        else arrived.push(a);
    },
  };
}

const bytes = (n: number, seed = 7): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

describe('fault proxy', () => {
  it('forwards both ways unchanged when clean, and announces connections opened and closed', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const opened = new Promise<ProxiedConnection>((r) => proxy.onConnectionOpened(r));
    const c = await connect(proxy.port);
    expect((await opened).id).toBe(1);
    const data = bytes(100_000);
    c.socket.write(data);
    expect((await c.gotBytes(data.length)).equals(data)).toBe(true);
    const closed = new Promise<ProxiedConnection>((r) => proxy.onConnectionClosed(r));
    c.socket.end();
    expect(await closed).toMatchObject({ id: 1, closed: true, endedBy: 'peer', forwarded: { up: 100_000, down: 100_000 } });
    expect(proxy.open).toEqual([]);
  });

  it('latency: a chunk arrives only once its delay has passed on the clock', async () => {
    const echo = await echoServer();
    const clock = new FakeClock();
    const rec = recorder();
    const proxy = await proxyTo(echo.port, { clock, onData: rec.onData, faults: { up: { latencyMs: 500 } } });
    const c = await connect(proxy.port);
    const arrived = receivedAtProxy(rec.arrived, 5);
    c.socket.write('hello');
    await arrived;
    clock.advance(499);
    expect(proxy.connections[0]!.forwarded.up).toBe(0);
    clock.advance(1);
    expect(proxy.connections[0]!.forwarded.up).toBe(5);
    expect((await c.gotBytes(5)).toString()).toBe('hello');
  });

  it('bandwidth: a token bucket lets a burst through, then a piece each time its bytes have accrued', async () => {
    const echo = await echoServer();
    const clock = new FakeClock();
    const rec = recorder();
    const proxy = await proxyTo(echo.port, { clock, onData: rec.onData, faults: { up: { bytesPerSecond: 1000 } } });
    const c = await connect(proxy.port);
    const data = bytes(4000);
    const arrived = receivedAtProxy(rec.arrived, data.length);
    c.socket.write(data);
    await arrived;
    const forwarded = (): number => proxy.connections[0]!.forwarded.up;
    expect(forwarded()).toBe(1024); // the burst: 1 KiB (a tenth of a second's worth is less)
    clock.advance(1023);
    expect(forwarded()).toBe(1024);
    clock.advance(1);
    expect(forwarded()).toBe(2048);
    clock.advance(2 * 1024);
    expect(forwarded()).toBe(4000);
    expect((await c.gotBytes(data.length)).equals(data)).toBe(true);
  });

  it('slicing: the target reads the stream in small pieces, byte-perfect', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port, { seed: 42, faults: { up: { sliceBytes: 7 } } });
    const c = await connect(proxy.port);
    const data = bytes(3000);
    c.socket.write(data);
    expect((await c.gotBytes(data.length)).equals(data)).toBe(true);
    expect(echo.reads.reduce((a, b) => a + b, 0)).toBe(3000);
    // Each write is at most 7 bytes; the kernel may still coalesce a few, but not the whole.
    expect(echo.reads.length).toBeGreaterThan(100);
  });

  it("black hole 'buffer': nothing is forwarded, the socket stays open, heal delivers it all", async () => {
    const echo = await echoServer();
    const rec = recorder();
    const proxy = await proxyTo(echo.port, { onData: rec.onData });
    const c = await connect(proxy.port);
    proxy.set('up', { blackHole: 'buffer' });
    const arrived = receivedAtProxy(rec.arrived, 3);
    c.socket.write('abc');
    await arrived;
    expect(proxy.connections[0]!.forwarded.up).toBe(0);
    expect(proxy.open).toHaveLength(1);
    proxy.heal();
    expect((await c.gotBytes(3)).toString()).toBe('abc');
  });

  it("black hole 'discard': what was sent meanwhile is gone; after heal the stream flows again", async () => {
    const echo = await echoServer();
    const rec = recorder();
    const proxy = await proxyTo(echo.port, { onData: rec.onData });
    const c = await connect(proxy.port);
    proxy.set('both', { blackHole: 'discard' });
    const arrived = receivedAtProxy(rec.arrived, 3);
    c.socket.write('abc');
    await arrived;
    proxy.heal();
    c.socket.write('xyz');
    expect((await c.gotBytes(3)).toString()).toBe('xyz');
  });

  it('drop closes both sides with FIN; reset closes both with RST', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const a = await connect(proxy.port);
    a.socket.write('1');
    await a.gotBytes(1);
    const ended = new Promise<boolean>((r) => a.socket.once('end', () => r(true)));
    proxy.connections[0]!.drop();
    expect(await ended).toBe(true);

    await proxy.until(() => proxy.open.length === 0);
    const b = await connect(proxy.port);
    b.socket.write('2');
    await b.gotBytes(1);
    const failed = new Promise<NodeJS.ErrnoException>((r) => b.socket.once('error', r));
    proxy.resetAll();
    expect((await failed).code).toBe('ECONNRESET');
    await proxy.until(() => proxy.open.length === 0);
    expect(proxy.connections.map((x) => x.endedBy)).toEqual(['drop', 'reset']);
  });

  it('refusing new connections resets them at once until healed', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    proxy.refuseNew(true);
    const socket = net.connect(proxy.port, '127.0.0.1');
    const error = await new Promise<NodeJS.ErrnoException>((r) => socket.once('error', r));
    expect(error.code).toBe('ECONNRESET');
    expect(echo.sockets).toHaveLength(0);
    proxy.heal();
    const c = await connect(proxy.port);
    c.socket.write('ok');
    expect((await c.gotBytes(2)).toString()).toBe('ok');
  });
});
