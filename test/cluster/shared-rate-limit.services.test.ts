/**
 * The cluster's shared rate-limit buckets (src/gateway/cluster/shared-rate-limit.ts) on the real
 * NATS key-value store: two nodes' limiters on one bucket share a caller's tokens; a conflicting
 * write between a take's read and its compare-and-swap (a real JetStream revision conflict, made to
 * happen at that moment by a second connection writing the entry) is retried and counts once;
 * concurrent takes on two connections never grant more than the bucket holds; and with NATS
 * unreachable a take falls back to the node's own bucket at once, logged once per outage.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { StorageType } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { RateLimiter } from '../../src/gateway/index.js';
import {
  SharedLimits,
  rateLimitEntryName,
  rateLimitKeySecret,
  type FallbackReason,
  type LimitsKv,
} from '../../src/gateway/cluster/shared-rate-limit.js';
import { sha256, silentLogger, toHex, utf8, type Logger, type LogFields } from '../../src/shared/index.js';
import { FakeClock } from '../gateway/support/fake-clock.js';
import { startForwarder, type Forwarder } from './support/forwarder.js';
import { NATS_URL, scratchNats, type ScratchNats } from './support/nats.js';

let nats: ScratchNats;
const connections: NatsConnection[] = [];
const forwarders: Forwarder[] = [];

beforeAll(() => {
  nats = scratchNats();
});
afterEach(async () => {
  await Promise.all(connections.splice(0).map((nc) => nc.close()));
  await Promise.all(forwarders.splice(0).map((f) => f.close()));
});
afterAll(async () => {
  await nats.drop();
});

async function bucket(servers = NATS_URL, options: { reconnect?: boolean } = {}): Promise<KV> {
  const nc = await connect({ servers, maxReconnectAttempts: options.reconnect === false ? 0 : -1, reconnectTimeWait: 100 });
  connections.push(nc);
  return new Kvm(nc).create(nats.bucket, { ttl: 60_000, history: 1, maxValueSize: 256, storage: StorageType.Memory });
}

interface Node {
  limits: SharedLimits;
  take(id: string): Promise<{ ok: boolean; retryAfterMs?: number }>;
  fallbacks: FallbackReason[];
  logged: { level: string; message: string; fields?: LogFields }[];
}

function node(kv: LimitsKv, clock: FakeClock, limits = { perSecond: 1, burst: 5 }, extra: { timeoutMs?: number } = {}): Node {
  const fallbacks: FallbackReason[] = [];
  const logged: Node['logged'] = [];
  const logger: Logger = {
    ...silentLogger,
    info: (message, fields) => logged.push({ level: 'info', message, fields }),
    warn: (message, fields) => logged.push({ level: 'warn', message, fields }),
    child: () => logger,
  };
  const shared = new SharedLimits({
    kv,
    clock,
    logger,
    timeoutMs: extra.timeoutMs ?? 5000,
    retryMs: 1000,
    casAttempts: 5,
    maxPending: 100,
    onFallback: (r) => fallbacks.push(r),
    keySecret: SECRET,
  });
  const limiter = shared.limiter('rate', limits, new RateLimiter({ clock, ...limits }));
  return { limits: shared, take: async (id) => limiter.take(id), fallbacks, logged };
}

const SECRET = rateLimitKeySecret(new Uint8Array(32).fill(7));
const caller = (): string => `key:${Math.random().toString(36).slice(2)}`;

describe('shared token buckets', () => {
  // Fails with per-node buckets (each node's own RateLimiter): ten takes are accepted, five on each.
  it('two nodes share one bucket per caller: burst 5 over both, then refused on either with the time to the next token', async () => {
    const clock = new FakeClock();
    const [a, b] = [node(await bucket(), clock), node(await bucket(), clock)];
    const id = caller();
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push((await (i % 2 ? b : a).take(id)).ok);
    expect(answers).toEqual([true, true, true, true, true]);
    expect(await a.take(id)).toEqual({ ok: false, retryAfterMs: 1000 });
    expect(await b.take(id)).toEqual({ ok: false, retryAfterMs: 1000 });
    expect((await a.take(caller())).ok).toBe(true); // another caller has a bucket of its own
    clock.advance(1000);
    expect((await b.take(id)).ok).toBe(true);
    expect((await a.take(id)).ok).toBe(false);
    expect([...a.fallbacks, ...b.fallbacks]).toEqual([]);
  });

  // Fails with a plain hash of the id as the name (anyone who reads the bucket could try every
  // IPv4 address against it): the name must be keyed with the cluster's secret.
  it('never puts the caller id in a key: the entry is named by a hash keyed with the cluster secret', async () => {
    const clock = new FakeClock();
    const kv = await bucket();
    const a = node(kv, clock);
    const id = 'key:visible-id-123';
    await a.take(id);
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys.some((k) => k.includes('visible'))).toBe(false);
    expect(keys).toContain(rateLimitEntryName('rate', id, SECRET));
    expect(keys).not.toContain(`rate.${toHex(sha256(utf8(id))).slice(0, 32)}`);
  });

  // Fails without the retry on a revision conflict (isConflict in #takeShared): the take would
  // fall back (counted 'conflict') or the other writer's token would be lost.
  it('retries a compare-and-swap that lost to another node’s write, and the bucket counts both', async () => {
    const clock = new FakeClock();
    const kv = await bucket();
    const other = await bucket();
    const id = caller();
    const b = node(other, clock);
    let interpose = true;
    // Between this node's read and its write, node B takes a token: a real write that moves the revision.
    const racing: LimitsKv = {
      get: async (k) => {
        const entry = await kv.get(k);
        if (interpose) {
          interpose = false;
          expect((await b.take(id)).ok).toBe(true);
        }
        return entry;
      },
      create: (k, v) => kv.create(k, v),
      update: (k, v, r) => kv.update(k, v, r),
    };
    const a = node(racing, clock);
    expect((await a.take(id)).ok).toBe(true);
    expect(a.limits.conflicts).toBe(1);
    expect(a.fallbacks).toEqual([]);
    const left = [];
    for (let i = 0; i < 4; i++) left.push((await a.take(id)).ok);
    expect(left).toEqual([true, true, true, false]); // 5 in all: B's one, A's four
  });

  // Fails without compare-and-swap (a plain put): concurrent takes on two connections overwrite
  // each other and grant more than the burst.
  it('concurrent takes on two nodes never grant more than the burst', async () => {
    const clock = new FakeClock();
    const limits = { perSecond: 0.001, burst: 10 };
    const [a, b] = [node(await bucket(), clock, limits), node(await bucket(), clock, limits)];
    const id = caller();
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).take(id)));
    const fallbacks = [...a.fallbacks, ...b.fallbacks];
    // A take that exhausted its compare-and-swap attempts uses its node's bucket (counted): none expected with two nodes.
    expect(fallbacks).toEqual([]);
    expect(answers.filter((t) => t.ok)).toHaveLength(10);
  });

  // Fails without the fallback: with NATS gone the take waits on a dead connection and rejects or
  // never answers; with it, the node's own bucket answers at once.
  it('falls back to the node’s own bucket while NATS is unreachable, logs it once, and tries NATS again after the back-off', async () => {
    const clock = new FakeClock();
    const forwarder = await startForwarder(Number(new URL(NATS_URL).port || 4222));
    forwarders.push(forwarder);
    const kv = await bucket(`nats://127.0.0.1:${forwarder.port}`);
    const a = node(kv, clock, { perSecond: 1, burst: 3 }, { timeoutMs: 200 });
    const id = caller();
    expect((await a.take(id)).ok).toBe(true);
    expect(a.limits.shared).toBe(true);
    await forwarder.close();
    forwarders.splice(0);
    // The first take after the loss waits out the timeout (on the fake clock) or sees the disconnect.
    const first = a.take(id);
    await new Promise((r) => setTimeout(r, 50));
    clock.advance(200);
    expect((await first).ok).toBe(true);
    expect(a.limits.shared).toBe(false);
    // The node's own bucket (burst 3, full): two more, then refused: per-node limits, not none.
    const local = [];
    for (let i = 0; i < 3; i++) local.push((await a.take(id)).ok);
    expect(local).toEqual([true, true, false]);
    expect(a.fallbacks).toEqual(['unreachable', 'unreachable', 'unreachable', 'unreachable']);
    expect(a.logged.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(a.logged[0]!.message).toMatch(/shared rate limits unavailable/);
    // NATS back (on the same address): after the back-off the next take probes it and is shared again.
    forwarders.push(await startForwarder(forwarder.target, forwarder.port));
    const nc = connections.at(-1)!;
    for (let i = 0; i < 100 && nc.isClosed() === false; i++) {
      if (
        (await nc.flush().then(
          () => true,
          () => false,
        )) === true
      )
        break;
      await new Promise((r) => setTimeout(r, 50));
    }
    clock.advance(1000);
    const again = caller();
    expect((await a.take(again)).ok).toBe(true);
    expect(a.limits.shared).toBe(true);
    expect(a.fallbacks).toHaveLength(4);
    expect(a.logged.map((l) => l.level)).toEqual(['warn', 'info']);
  });
});
