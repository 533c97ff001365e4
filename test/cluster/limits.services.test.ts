/**
 * Limits and sign-ins that work the same whichever node a request reaches (issue 14), on the real
 * PostgreSQL and NATS with two gateway nodes in one process:
 * - an operator session made on node A works on node B, a sign-out on B ends it on A, and an
 *   expired one is refused (sessions in the store, migration 10);
 * - a key's reply streams at maxStreamsPerKey over A and B: the next one on either is refused with
 *   the same code and message as on one node; two stores holding at once never exceed it;
 * - a key's request rate over A and B is one bucket (burst 5: five accepted over both, then 429
 *   with Retry-After on either); with NATS cut off, A limits with its own bucket and says so in
 *   its metrics, and shares again once NATS is back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { NightjarClient } from '../../src/client/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import { Gateway, openPostgresStore, type ClusterOptions, type GatewayOptions, type GatewayStore } from '../../src/gateway/index.js';
import { NightjarError } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { REAL_FILE, REAL_MODEL, REAL_PRICE } from '../gateway/support/net.js';
import { agentOn as clusterAgentOn } from './support/agents.js';
import { startForwarder, type Forwarder } from './support/forwarder.js';
import { createScratchDatabase, type ScratchDatabase } from './support/pg.js';
import { NATS_URL, scratchNats, type ScratchNats } from './support/nats.js';

const http = perTestFetch();
let db: ScratchDatabase;
let nats: ScratchNats;
let schemaN = 0;
const limitBuckets: string[] = [];

beforeAll(async () => {
  db = await createScratchDatabase();
  nats = scratchNats();
});
afterAll(async () => {
  await nats.drop();
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    for (const b of limitBuckets) await jsm.streams.delete(`KV_${b}`).catch(() => false);
  } finally {
    await nc.close();
  }
  await db.drop();
});

interface Cluster {
  stores: GatewayStore[];
  setup: GatewayStore;
  a: Gateway;
  b: Gateway;
  keyId: string;
  key: string;
  operatorToken: string;
  operatorId: string;
  agents: Agent[];
  forwarders: Forwarder[];
  enroll(): Promise<string>;
}
let cluster: Cluster | null = null;

afterEach(async () => {
  if (!cluster) return;
  await Promise.all(cluster.agents.map((a) => a.dispose()));
  await Promise.all([cluster.a.dispose(), cluster.b.dispose()]);
  await Promise.all(cluster.stores.map((s) => s.dispose()));
  await Promise.all(cluster.forwarders.map((f) => f.close()));
  cluster = null;
});

/** Two nodes on one schema and NATS; `natsA` is the NATS URL node A uses (a forwarder, to cut it off). */
async function start(options: Partial<GatewayOptions> = {}, natsA = NATS_URL, forwarders: Forwarder[] = []): Promise<Cluster> {
  const schema = `l${schemaN++}`;
  const open = (): Promise<GatewayStore> => openPostgresStore({ connectionString: db.url, schema });
  const setup = await open();
  const now = Date.now();
  await setup.catalog.addFile(REAL_MODEL.id, REAL_FILE, now);
  await setup.accounts.setPrice(REAL_MODEL.id, REAL_PRICE, now);
  const operator = await setup.accounts.createOperator({ name: 'Ada', now });
  const key = await setup.accounts.createApiKey({ name: 'client', now });
  await setup.ledger.topUp(key.id, 100_000_000n, now);
  const limitsBucket = `${nats.bucket}_${schema}`;
  limitBuckets.push(limitsBucket);
  const node = (nodeId: string, url: string): ClusterOptions => ({
    nodeId,
    nats: url,
    presenceBucket: nats.bucket,
    limitsBucket,
    subjectPrefix: `${nats.prefix}${schema}`,
  });
  const [sa, sb] = [await open(), await open()];
  const a = await Gateway.start({ port: 0, store: sa, ...options, cluster: node(`a-${schema}`, natsA) });
  const b = await Gateway.start({ port: 0, store: sb, ...options, cluster: node(`b-${schema}`, NATS_URL) });
  cluster = {
    stores: [setup, sa, sb],
    setup,
    a,
    b,
    keyId: key.id,
    key: key.key,
    operatorToken: operator.token,
    operatorId: operator.id,
    agents: [],
    forwarders,
    enroll: async () => (await setup.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3600_000 })).token,
  };
  return cluster;
}

const json = { 'content-type': 'application/json' };

async function signIn(gateway: Gateway, token: string): Promise<string> {
  const res = await http.fetch(`${gateway.url}/v1/operator/session`, { method: 'POST', headers: json, body: JSON.stringify({ token }) });
  expect(res.status).toBe(200);
  return res.headers.get('set-cookie')!.split(';')[0]!;
}

const me = async (gateway: Gateway, cookie: string): Promise<number> =>
  (await http.fetch(`${gateway.url}/v1/operator/me`, { headers: { cookie } })).status;

describe('operator sessions', () => {
  // Fails with sessions in each node's memory: B knows nothing of A's session (401), and A's
  // survives B's sign-out.
  it('a session made on A works on B; a sign-out on B ends it on A; an expired one is refused', async () => {
    const net = await start();
    const cookie = await signIn(net.a, net.operatorToken);
    expect(await me(net.a, cookie)).toBe(200);
    const onB = await http.fetch(`${net.b.url}/v1/operator/me`, { headers: { cookie } });
    expect(onB.status).toBe(200);
    expect(await onB.json()).toMatchObject({ operator: { id: net.operatorId, name: 'Ada' } });
    const out = await http.fetch(`${net.b.url}/v1/operator/session`, { method: 'DELETE', headers: { cookie } });
    expect(out.status).toBe(200);
    expect(await me(net.a, cookie)).toBe(401);
    expect(await me(net.b, cookie)).toBe(401);

    const second = await signIn(net.b, net.operatorToken);
    expect(await me(net.a, second)).toBe(200);
    // Its lifetime ran out (as the store's clock sees it): refused on both nodes.
    expect(await net.setup.driver.run('UPDATE operator_sessions SET expires_at = ?', [Date.now() - 1])).toBe(1);
    expect(await me(net.a, second)).toBe(401);
    expect(await me(net.b, second)).toBe(401);
  });
});

/** An agent on `gateway`, once `seenFrom` lists it as serving and `gateway` has it serving too. */
async function agentOn(net: Cluster, gateway: Gateway, seenFrom: Gateway, engine: FakeEngine): Promise<Agent> {
  const agent = await clusterAgentOn(net, gateway, seenFrom, engine);
  await gateway.agentServing(agent.agentId, { timeoutMs: 10_000 });
  return agent;
}

const client = (net: Cluster, gateway: Gateway): NightjarClient =>
  new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch, apiKey: net.key });

const WORDS = Array.from({ length: 40 }, (_, i) => `w${i} `);

/** A stream on `gateway` that has begun (its first text arrived); `done` waits for it to end whole. */
async function openStream(net: Cluster, gateway: Gateway): Promise<{ done(): Promise<void> }> {
  const stream = client(net, gateway).chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 40 });
  const it = stream[Symbol.asyncIterator]();
  let text = ((await it.next()).value as string | undefined) ?? '';
  const rest = (async () => {
    for (let n = await it.next(); !n.done; n = await it.next()) text += n.value;
    expect(text).toBe(WORDS.join(''));
  })();
  rest.catch(() => undefined);
  return { done: () => rest };
}

async function errorOf(p: Promise<unknown>): Promise<NightjarError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NightjarError);
  return err as NightjarError;
}

describe('maxStreamsPerKey over the cluster', () => {
  // Fails with each node counting only its own streams: A holds one of the key's two streams, so
  // a third on A (and on B) is admitted.
  it('a key at its limit over A and B is refused on either, with the code and message of one node', async () => {
    const net = await start({ maxStreamsPerKey: 2 });
    await agentOn(net, net.a, net.b, new FakeEngine({ slots: 4, tokenDelayMs: 60, words: WORDS }));
    const first = await openStream(net, net.a);
    const second = await openStream(net, net.b);
    for (const gateway of [net.a, net.b]) {
      const err = await errorOf(
        client(net, gateway).complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 2 }),
      );
      expect({ code: err.code, message: err.message, retry: err.retryAfterMs }).toEqual({
        code: 'NJ_RATE_LIMITED',
        message: 'this key already has 2 replies streaming, its limit',
        retry: 1000,
      });
    }
    await Promise.all([first.done(), second.done()]);
    expect(await net.a.metrics.value(net.a.metrics.rejected, { limit: 'streams' })).toBe(1);
    // Both ended: the key may stream again, on either node.
    expect(
      (await client(net, net.b).complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 2 })).text,
    ).toBe('w0 w1 ');
  });

  // Fails without the count in the hold's transaction (a count read before it, or none): two
  // stores admitting at once both see room and more than the limit are held.
  it('holds placed at once through two stores never exceed the key’s limit', async () => {
    const net = await start();
    const [sa, sb] = [net.stores[1]!, net.stores[2]!];
    const now = Date.now();
    const hold = (store: GatewayStore, i: number) =>
      store.ledger.hold({
        jobId: `race-${i}-${'0'.repeat(16)}`,
        keyId: net.keyId,
        model: REAL_MODEL.id,
        price: REAL_PRICE,
        operatorShareBps: 9500,
        bodyLength: 2064,
        maxTokens: 8,
        nodeId: i % 2 ? net.a.nodeId : net.b.nodeId,
        maxHeldPerKey: 3,
        now,
      });
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => hold(i % 2 ? sa : sb, i)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of results.filter((r) => r.status === 'rejected')) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({
        code: 'NJ_RATE_LIMITED',
        message: 'this key already has 3 replies streaming, its limit',
      });
    }
    const held = await net.setup.driver.get("SELECT COUNT(*) AS n FROM jobs WHERE client_key_id = ? AND status = 'held'", [net.keyId]);
    expect(Number(held?.n)).toBe(3);
  });
});

const account = async (gateway: Gateway, key: string): Promise<Response> =>
  http.fetch(`${gateway.url}/v1/account`, { headers: { authorization: `Bearer ${key}` } });

async function metric(gateway: Gateway, line: RegExp): Promise<number> {
  const text = await (await http.fetch(`${gateway.url}/metrics`)).text();
  const m = line.exec(text);
  return m ? Number(m[1]) : 0;
}

describe('request rate limits over the cluster', () => {
  // Fails with per-node buckets: the key gets 5 on each node, so the sixth request (on A) is a 200.
  it('one bucket per key over A and B: burst 5 accepted over both, then 429 with Retry-After on either', async () => {
    const net = await start({ rateLimit: { perSecond: 0.01, burst: 5 } });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await account(i % 2 ? net.b : net.a, net.key)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    for (const gateway of [net.a, net.b]) {
      const res = await account(gateway, net.key);
      expect(res.status).toBe(429);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(1);
      expect(await res.json()).toMatchObject({ error: { code: 'NJ_RATE_LIMITED', message: 'too many requests for this key' } });
    }
    // Another key has a bucket of its own.
    const other = await net.setup.accounts.createApiKey({ name: 'other', now: Date.now() });
    expect((await account(net.b, other.key)).status).toBe(200);
    expect(await metric(net.a, /^nightjar_rate_limit_shared (\d+)$/m)).toBe(1);
    expect(await metric(net.a, /^nightjar_rate_limit_fallbacks_total\{reason="unreachable"\} (\d+)$/m)).toBe(0);
  });

  // Fails without the fallback: with NATS cut off, A's requests wait on the dead connection and
  // fail (or hang); with it, A answers from its own bucket and its metrics say so.
  it('with NATS cut off, a node limits with its own bucket and counts it; once NATS is back it shares again', async () => {
    const forwarder = await startForwarder(Number(new URL(NATS_URL).port || 4222));
    const forwarders = [forwarder];
    const net = await start({ rateLimit: { perSecond: 0.01, burst: 3 } }, `nats://127.0.0.1:${forwarder.port}`, forwarders);
    expect((await account(net.a, net.key)).status).toBe(200);
    expect((await account(net.b, net.key)).status).toBe(200);
    await forwarder.close();
    // A's own bucket is full (burst 3): three more on A, then 429 — B's shared bucket has one left.
    const onA = [];
    for (let i = 0; i < 4; i++) onA.push((await account(net.a, net.key)).status);
    expect(onA).toEqual([200, 200, 200, 429]);
    expect(await metric(net.a, /^nightjar_rate_limit_shared (\d+)$/m)).toBe(0);
    expect(await metric(net.a, /^nightjar_rate_limit_fallbacks_total\{reason="unreachable"\} (\d+)$/m)).toBe(4);
    expect((await account(net.b, net.key)).status).toBe(200);
    expect((await account(net.b, net.key)).status).toBe(429);
    // NATS back on the same address: after the client reconnects and the back-off passes, A shares again.
    forwarders.push(await startForwarder(forwarder.target, forwarder.port));
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await account(net.a, net.key)).status;
      if ((await metric(net.a, /^nightjar_rate_limit_shared (\d+)$/m)) === 1) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await metric(net.a, /^nightjar_rate_limit_shared (\d+)$/m)).toBe(1);
    // The shared bucket is empty (B spent it): A refuses too, now.
    expect(status).toBe(429);
    expect((await account(net.a, net.key)).status).toBe(429);
  });
});
