/**
 * Hold ownership across gateway nodes on a real PostgreSQL (test/cluster/support/pg.ts): each held
 * job names its node; a node releases only the holds of nodes not seen within the TTL (and its own
 * previous run's), keeps sweeping, and two sweepers never release a job twice. Time is a fake clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACCOUNTS,
  Billing,
  Gateway,
  GatewayMetrics,
  NodeLiveness,
  openPostgresStore,
  type GatewayStore,
  type Price,
} from '../../src/gateway/index.js';
import { NightjarError, nextEvent, randomBytes, silentLogger, toBase64Url } from '../../src/shared/index.js';
import { FakeClock } from '../gateway/support/fake-clock.js';
import { createScratchDatabase, type ScratchDatabase } from './support/pg.js';

const PRICE: Price = { promptPerMTok: 1_000_000n, completionPerMTok: 1_000_000n };
const TTL = 30_000;
const BEAT = 5000;
const SWEEP = 10_000;

let db: ScratchDatabase;
let schemaN = 0;

beforeAll(async () => {
  db = await createScratchDatabase();
});
afterAll(async () => {
  await db.drop();
});

/** A fresh schema in the run's database: a store on it, and a key with credit. */
async function fresh(clock: FakeClock): Promise<{ store: GatewayStore; open(): Promise<GatewayStore>; keyId: string }> {
  const schema = `s${schemaN++}`;
  const open = (): Promise<GatewayStore> => openPostgresStore({ connectionString: db.url, schema, now: clock.now() });
  const store = await open();
  const key = await store.accounts.createApiKey({ name: 'client', now: clock.now() });
  await store.ledger.topUp(key.id, 1_000_000n, clock.now());
  return { store, open, keyId: key.id };
}

async function hold(store: GatewayStore, keyId: string, nodeId: string | null, now: number): Promise<string> {
  const jobId = toBase64Url(randomBytes(16));
  await store.ledger.hold({ jobId, keyId, model: 'm', price: PRICE, operatorShareBps: 9500, bodyLength: 100, maxTokens: 10, nodeId, now });
  return jobId;
}

const status = async (store: GatewayStore, jobId: string): Promise<string | undefined> => (await store.ledger.job(jobId))?.status;

function liveness(store: GatewayStore, clock: FakeClock, nodeId: string): NodeLiveness {
  return new NodeLiveness({
    nodeId,
    nodes: store.nodes,
    ledger: store.ledger,
    clock,
    logger: silentLogger,
    heartbeatMs: BEAT,
    ttlMs: TTL,
    sweepMs: SWEEP,
  });
}

describe('hold ownership across nodes', () => {
  it('a starting node keeps a live node’s holds and releases its own previous run’s', async () => {
    const clock = new FakeClock(1_000_000);
    const { store, keyId } = await fresh(clock);
    try {
      await store.nodes.register('a', clock.now());
      const ofA = await hold(store, keyId, 'a', clock.now());
      const ofB = await hold(store, keyId, 'b', clock.now());
      await using b = liveness(store, clock, 'b');
      // Fails with the old start (releaseAllHeld): a's live job would be released too.
      expect(await b.start()).toBe(1);
      expect(await status(store, ofA)).toBe('held');
      expect(await store.ledger.job(ofB)).toMatchObject({ status: 'released', outcome: 'gateway node restarted', nodeId: 'b' });
      expect(await store.ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('a node not seen within the TTL loses its holds to the sweep of a live node; a heartbeating one never', async () => {
    const clock = new FakeClock(1_000_000);
    const { store, keyId } = await fresh(clock);
    try {
      await using a = liveness(store, clock, 'a');
      await using b = liveness(store, clock, 'b');
      await a.start();
      await b.start();
      const ofA = await hold(store, keyId, 'a', clock.now());
      const ofDead = await hold(store, keyId, 'c', clock.now());
      await store.nodes.register('c', clock.now());
      // Past the TTL a and b have heartbeaten, c (crashed) has not; a periodic sweep (a's or b's
      // timer, whichever fires first) releases c's hold.
      const swept = Promise.race([nextEvent(a.onSwept), nextEvent(b.onSwept)]);
      for (let t = 0; t < TTL + SWEEP; t += BEAT) {
        clock.advance(BEAT);
        await Promise.all([a.heartbeat(), b.heartbeat()]);
      }
      expect((await swept).deadNodes).toEqual(['c']);
      expect(await status(store, ofA)).toBe('held');
      expect(await store.ledger.job(ofDead)).toMatchObject({ status: 'released', outcome: 'gateway node lost' });
      expect((await store.nodes.list()).map((n) => n.nodeId).sort()).toEqual(['a', 'b']);
      const { balance, held } = await store.ledger.clientBalance(keyId);
      expect(held).toBe(110n);
      expect(balance).toBe(1_000_000n - 110n);
      expect(await store.ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('holds of a node with no row at all are released; two sweepers at once release each job once', async () => {
    const clock = new FakeClock(1_000_000);
    const { store, open, keyId } = await fresh(clock);
    const other = await open();
    try {
      const jobs = await Promise.all(Array.from({ length: 6 }, () => hold(store, keyId, 'gone', clock.now())));
      const x = liveness(store, clock, 'x');
      const y = liveness(other, clock, 'y');
      await Promise.all([store.nodes.register('x', clock.now()), other.nodes.register('y', clock.now())]);
      const [sx, sy] = await Promise.all([x.sweep(), y.sweep()]);
      expect(sx.released + sy.released).toBe(6);
      for (const id of jobs) expect(await status(store, id)).toBe('released');
      expect(await store.ledger.balance(ACCOUNTS.holds)).toBe(0n);
      expect(await store.ledger.clientBalance(keyId)).toEqual({ balance: 1_000_000n, held: 0n });
      expect(await store.ledger.checkInvariants()).toEqual([]);
      await Promise.all([x.dispose(), y.dispose()]);
    } finally {
      await other.dispose();
      await store.dispose();
    }
  });

  it('a node taken for dead puts its row back on its next heartbeat', async () => {
    const clock = new FakeClock(1_000_000);
    const { store } = await fresh(clock);
    try {
      await using a = liveness(store, clock, 'a');
      await a.start();
      await store.nodes.remove('a');
      await a.heartbeat();
      expect((await store.nodes.list()).map((n) => n.nodeId)).toEqual(['a']);
    } finally {
      await store.dispose();
    }
  });
});

describe('a gateway node on PostgreSQL', () => {
  it('billing names the node on each hold it places', async () => {
    const clock = new FakeClock(1_000_000);
    const { store, keyId } = await fresh(clock);
    try {
      const billing = new Billing({
        ledger: store.ledger,
        operatorShareBps: 9500,
        metrics: new GatewayMetrics({ processMetrics: false }),
        clock,
        logger: silentLogger,
        nodeId: 'gw-a',
      });
      const jobId = toBase64Url(randomBytes(16));
      await billing.hold({ jobId, keyId, model: 'm', price: PRICE, bodyLength: 1, maxTokens: 1 });
      expect((await store.ledger.job(jobId))?.nodeId).toBe('gw-a');
      billing.dispose();
    } finally {
      await store.dispose();
    }
  });

  it('starts keeping a live node’s holds and releasing a dead one’s; on stop releases only its own', async () => {
    const clock = new FakeClock(1_000_000);
    const { store, keyId } = await fresh(clock);
    try {
      await store.nodes.register('live', clock.now());
      await store.nodes.register('dead', clock.now() - TTL - 1);
      const ofLive = await hold(store, keyId, 'live', clock.now());
      const ofDead = await hold(store, keyId, 'dead', clock.now());
      const gateway = await Gateway.start({
        port: 0,
        store,
        clock,
        cluster: { nodeId: 'gw-a', nodeTtlMs: TTL, nodeHeartbeatMs: BEAT, nodeSweepMs: SWEEP },
      });
      expect(gateway.nodeId).toBe('gw-a');
      expect(await status(store, ofLive)).toBe('held');
      expect(await status(store, ofDead)).toBe('released');
      const own = await hold(store, keyId, gateway.nodeId, clock.now());
      await gateway.dispose();
      expect(await status(store, own)).toBe('released');
      // Fails with the old stop (releaseAllHeld): the live node's job would go too.
      expect(await status(store, ofLive)).toBe('held');
      expect((await store.nodes.list()).map((n) => n.nodeId)).toEqual(['live']);
      expect(await store.ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('refuses to start when NATS cannot be reached, without repeating the URL’s credentials', async () => {
    const clock = new FakeClock(1_000_000);
    const { store } = await fresh(clock);
    try {
      const err = await Gateway.start({ port: 0, store, clock, cluster: { nodeId: 'gw-n', nats: 'nats://user:s3cret@127.0.0.1:1' } }).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ code: 'NJ_CONFIG_INVALID' });
      expect((err as Error).message).toMatch(/^cannot reach NATS/);
      expect((err as Error).message).not.toContain('s3cret');
      // Its node row went with it.
      expect(await store.nodes.list()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });

  it('refuses a bad node id and a TTL shorter than two heartbeats', async () => {
    const clock = new FakeClock(1_000_000);
    await expect(Gateway.start({ port: 0, clock, cluster: { nodeId: 'bad id!' } })).rejects.toThrow(NightjarError);
    await expect(Gateway.start({ port: 0, clock, cluster: { nodeHeartbeatMs: 5000, nodeTtlMs: 9000 } })).rejects.toMatchObject({
      code: 'NJ_CONFIG_INVALID',
    });
  });
});
