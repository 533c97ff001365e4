/**
 * The load balancer of the cluster test, as small as it can be: a TCP forwarder on loopback whose
 * target a test switches (to the node that is still up). A connection whose target closes is
 * closed too, so the agent behind it notices and reconnects (through the forwarder, to the new target).
 */
import net from 'node:net';

/** A forwarder: its port, the target it sends new connections to, and close(). */
export interface Forwarder {
  readonly port: number;
  /** Where new connections go. */
  target: number;
  close(): Promise<void>;
}

/** Starts a forwarder to `target` on `port` (0: a free one). */
export async function startForwarder(target: number, port = 0): Promise<Forwarder> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(forwarder.target, '127.0.0.1');
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const forwarder: Forwarder = {
    port: (server.address() as net.AddressInfo).port,
    target,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return forwarder;
}
