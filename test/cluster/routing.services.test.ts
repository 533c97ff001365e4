/**
 * Routing between gateway nodes on the real PostgreSQL and NATS, in one process: an agent on node
 * C, a client on node A. A's directory learns C's agent from the presence bucket (watched, not
 * polled) and hands it as a candidate; the job travels to C over NATS subjects and the chunks, the
 * receipt and its acknowledgement come back in order; the job's node (A) verifies and bills the
 * receipt, once, on the shared ledger. A cancel from A reaches the agent on C. C gone silent ends
 * the attempt `lost`, with a clear error to the client.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { NightjarClient } from '../../src/client/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import { ACCOUNTS, Gateway, openPostgresStore, type ClusterOptions, type GatewayStore } from '../../src/gateway/index.js';
import { NightjarError, nextEvent } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { REAL_FILE, REAL_MODEL, REAL_PRICE } from '../gateway/support/net.js';
import { createScratchDatabase, type ScratchDatabase } from './support/pg.js';
import { NATS_URL, scratchNats, type ScratchNats } from './support/nats.js';
import { agentOn } from './support/agents.js';

const http = perTestFetch();
let db: ScratchDatabase;
let nats: ScratchNats;
let schemaN = 0;

beforeAll(async () => {
  db = await createScratchDatabase();
  nats = scratchNats();
});
afterAll(async () => {
  await nats.drop();
  await db.drop();
});

interface Cluster {
  stores: GatewayStore[];
  a: Gateway;
  c: Gateway;
  keyId: string;
  key: string;
  operatorId: string;
  operatorToken: string;
  enroll(): Promise<string>;
  agents: Agent[];
}
let cluster: Cluster | null = null;

afterEach(async () => {
  if (!cluster) return;
  await Promise.all(cluster.agents.map((a) => a.dispose()));
  await Promise.all([cluster.a.dispose(), cluster.c.dispose()]);
  await Promise.all(cluster.stores.map((s) => s.dispose()));
  cluster = null;
});

async function start(extra: Partial<ClusterOptions> = {}): Promise<Cluster> {
  const schema = `r${schemaN++}`;
  const open = (): Promise<GatewayStore> => openPostgresStore({ connectionString: db.url, schema });
  const setup = await open();
  const now = Date.now();
  await setup.catalog.addFile(REAL_MODEL.id, REAL_FILE, now);
  await setup.accounts.setPrice(REAL_MODEL.id, REAL_PRICE, now);
  const operator = await setup.accounts.createOperator({ name: 'Ada', now });
  const key = await setup.accounts.createApiKey({ name: 'client', now });
  await setup.ledger.topUp(key.id, 10_000_000n, now);
  const [sa, sc] = [await open(), await open()];
  const node = (nodeId: string): ClusterOptions => ({
    nodeId,
    nats: NATS_URL,
    presenceBucket: nats.bucket,
    subjectPrefix: `${nats.prefix}${schema}`,
    attemptKeepaliveMs: 100,
    attemptSilenceMs: 1000,
    ...extra,
  });
  const a = await Gateway.start({ port: 0, store: sa, cluster: node(`a-${schema}`) });
  const c = await Gateway.start({ port: 0, store: sc, cluster: node(`c-${schema}`) });
  cluster = {
    stores: [setup, sa, sc],
    a,
    c,
    keyId: key.id,
    key: key.key,
    operatorId: operator.id,
    operatorToken: operator.token,
    enroll: async () => (await setup.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3600_000 })).token,
    agents: [],
  };
  return cluster;
}

const client = (net: Cluster, gateway: Gateway): NightjarClient =>
  new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch, apiKey: net.key });

const words = Array.from({ length: 12 }, (_, i) => `w${i}`);

describe('presence in the key-value bucket', () => {
  it('A lists C’s agent from the bucket, drops malformed and forged entries, and forgets the agent when it leaves C', async () => {
    const net = await start();
    const agent = await agentOn(net, net.c, net.a, new FakeEngine({ words }));
    const remote = net.a.cluster!.remote;
    expect(remote.get(agent.agentId)).toMatchObject({ nodeId: net.c.nodeId, operatorId: net.operatorId, trust: 'signed' });
    const models = await (await http.fetch(`${net.a.url}/v1/models`, { headers: { authorization: `Bearer ${net.key}` } })).json();
    expect(models).toMatchObject({ models: [{ id: REAL_MODEL.id, agents: 1 }] });
    expect(await (await http.fetch(`${net.a.url}/metrics`)).text()).toMatch(/^nightjar_cluster_remote_agents 1$/m);
    // Its operator, asking A, sees it connected and serving (fails without the remote lookup in
    // operator-api's agentView: it reads 'offline' on every node but C).
    const view = await (
      await http.fetch(`${net.a.url}/v1/operator/agents`, { headers: { authorization: `Bearer ${net.operatorToken}` } })
    ).json();
    expect(view).toMatchObject({
      agents: [
        {
          agentId: agent.agentId,
          connected: true,
          state: 'serving',
          trust: 'signed',
          model: REAL_MODEL.id,
          routable: true,
          jobsDone: null,
        },
      ],
    });
    // A peer's entry is checked: not JSON, the wrong shape, a bundle whose signature fails.
    const nc = await connect({ servers: NATS_URL });
    try {
      const kv = await new Kvm(nc).open(nats.bucket);
      const rejected = net.a.cluster!.presence.rejected;
      const entry = JSON.parse(new TextDecoder().decode((await kv.get(agent.agentId))!.value)) as Record<string, unknown>;
      const forged = { ...entry, bundle: { ...(entry.bundle as object), signature: 'A'.repeat(86) } };
      const other = 'ab'.repeat(16);
      await kv.put(other, 'not json');
      await kv.put(other, JSON.stringify({ ...entry, agentId: other, trust: 'root' }));
      await kv.put(other, JSON.stringify({ ...forged, agentId: other }));
      await kv.put(other, JSON.stringify(entry)); // under another agent's key
      const seen = nextEvent(remote.onAgentDisconnected, (r) => r.agentId === agent.agentId);
      await kv.put(agent.agentId, JSON.stringify(forged));
      await seen; // the forged entry replaced a good one: that agent is dropped until its node writes again
      expect(net.a.cluster!.presence.rejected - rejected).toBe(5);
      expect(remote.get(other)).toBeUndefined();
    } finally {
      await nc.close();
    }
    // C rewrites it on its next refresh or change; once it leaves C, A forgets it (a watched delete).
    const back = nextEvent(remote.onAgentConnected, (r) => r.agentId === agent.agentId);
    net.c.directory.changed(net.c.directory.get(agent.agentId)!);
    await back;
    const gone = nextEvent(remote.onAgentDisconnected, (r) => r.agentId === agent.agentId);
    await net.agents.pop()!.dispose();
    await gone;
    expect(remote.size).toBe(0);
  });
});

describe('what nodes read from NATS is checked', () => {
  it('refuses a dispatch that fails the schema before it reaches the agent; drops and counts garbage on a node’s subjects', async () => {
    // Without the schema check in #onDispatch (readWire(dispatchSchema, …) replaced by a bare
    // JSON.parse), the malformed envelope below is handed to the agent's session and the answer is ok.
    const net = await start();
    const agent = await agentOn(net, net.c, net.a, new FakeEngine({ words }));
    const p = `${net.c.options.cluster!.subjectPrefix}`;
    const nc = await connect({ servers: NATS_URL });
    try {
      const ask = async (message: unknown): Promise<unknown> =>
        JSON.parse(new TextDecoder().decode((await nc.request(`${p}.node.${net.c.nodeId}.dispatch`, JSON.stringify(message))).data));
      const jobId = 'A'.repeat(22);
      const bad = { v: 1, from: 'evil', agentId: agent.agentId, jobId, attempt: 0, envelope: { header: { v: 1, jobId }, body: 'AAAA' } };
      expect(await ask(bad)).toMatchObject({ v: 1, ok: false, code: 'NJ_FRAME_INVALID' });
      expect(await ask('not even an object')).toMatchObject({ ok: false, code: 'NJ_FRAME_INVALID' });
      expect(net.c.cluster!.transport.open.incoming).toBe(0);
      const before = net.a.cluster!.transport.rejected;
      nc.publish(`${p}.attempt.${net.a.nodeId}`, 'garbage');
      nc.publish(`${p}.attempt.${net.a.nodeId}`, JSON.stringify({ v: 1, from: 'x', jobId, attempt: 0, seq: 0, event: 'chunk' }));
      await nc.flush();
      // A round trip through A's subscription: its dispatch subject answers after the two above were read.
      await nc.request(`${p}.node.${net.a.nodeId}.dispatch`, 'ping');
      expect(net.a.cluster!.transport.rejected - before).toBe(3);
    } finally {
      await nc.close();
    }
  });
});

describe('jobs between nodes over NATS', () => {
  // Fails without the shared samples (NatsTransport's `speed` subject): C never times a job that
  // A ran, so it would rank the agent on nothing, and each node on a different figure.
  it('the speed A measured of a job on C’s agent is known to C too, as a measurement, never as a strike', async () => {
    const net = await start();
    // 12 words 40 ms apart: a decode over 400 ms, long enough to be timed.
    const agent = await agentOn(net, net.c, net.a, new FakeEngine({ words, tokenDelayMs: 40 }));
    await client(net, net.a).complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 32 });
    const onA = net.a.honesty.measured(agent.agentId, REAL_MODEL.id)!;
    expect(onA.samples).toBe(1);
    expect(onA.tokensPerSecond).toBeGreaterThan(0);
    await expect.poll(() => net.c.honesty.measured(agent.agentId, REAL_MODEL.id)?.samples, { timeout: 5000 }).toBe(1);
    const onC = net.c.honesty.measured(agent.agentId, REAL_MODEL.id)!;
    expect(onC.tokensPerSecond).toBeCloseTo(onA.tokensPerSecond, 6);
    expect(onC.ttftMs).toBeCloseTo(onA.ttftMs, 6);
    expect(await net.stores[0]!.strikes.list({ agentId: agent.agentId })).toEqual([]);
  });

  it('a client on A gets a streamed, verified reply from an agent on C; A bills it once on the shared ledger', async () => {
    const net = await start();
    const agent = await agentOn(net, net.c, net.a, new FakeEngine({ words }));
    expect(net.a.directory.get(agent.agentId)).toBeUndefined(); // not A's socket
    const billed = nextEvent(net.a.onJobBilled);
    const stream = client(net, net.a).chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 32 });
    let text = '';
    for await (const delta of stream) text += delta;
    const result = await stream.result;
    expect(text).toBe(words.join(''));
    expect(result.receipt.agentId).toBe(agent.agentId);
    const { jobId } = await billed;
    const job = await net.stores[0]!.ledger.job(jobId);
    expect(job).toMatchObject({ status: 'settled', agentId: agent.agentId, nodeId: net.a.nodeId, outcome: 'done' });
    const charged = job!.charged!;
    expect(charged > 0n).toBe(true);
    expect(await net.stores[0]!.ledger.balance(ACCOUNTS.operator(net.operatorId))).toBe(job!.operatorAmount);
    // The same receipt delivered again, late, to the other node: the ledger credits it once.
    const again = await net.stores[2]!.ledger.settleLate({
      jobId,
      attempt: job!.attempt!,
      agentId: agent.agentId,
      operatorId: net.operatorId,
      model: REAL_MODEL.id,
      promptTokens: job!.promptTokens!,
      completionTokens: job!.completionTokens!,
      requestDigest: job!.requestDigest!,
      finishReason: 'stop',
      receipt: job!.receipt!,
      now: Date.now(),
    });
    expect(again.status).toBe('duplicate');
    expect(await net.stores[0]!.ledger.balance(ACCOUNTS.operator(net.operatorId))).toBe(job!.operatorAmount);
    expect(await net.stores[0]!.ledger.checkInvariants()).toEqual([]);
    expect(net.a.cluster!.transport.open).toEqual({ outgoing: 0, incoming: 0 });
    expect(net.c.cluster!.transport.open).toEqual({ outgoing: 0, incoming: 0 });
  });

  it('a cancel on A reaches the agent on C, which ends the job with a receipt for what it made', async () => {
    const net = await start();
    const engine = new FakeEngine({ words: Array.from({ length: 400 }, (_, i) => `t${i}`), tokenDelayMs: 5 });
    await agentOn(net, net.c, net.a, engine);
    const billed = nextEvent(net.a.onJobBilled);
    const stream = client(net, net.a).chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 400 });
    for await (const delta of stream) {
      expect(delta).toMatch(/^t0/);
      break; // stops reading: the SDK cancels the job
    }
    const err = await stream.result.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NightjarError);
    const { jobId } = await billed;
    const job = await net.stores[0]!.ledger.job(jobId);
    // Billed on the receipt the agent signed after the cancel: fewer tokens than asked, never more.
    expect(job?.status).toBe('settled');
    expect(job!.completionTokens!).toBeLessThan(400);
    expect(engine.generated).toBeLessThan(400);
  });

  it('C gone silent mid-stream: the client on A gets a clear error and the attempt ends lost', async () => {
    const net = await start();
    const engine = new FakeEngine({ words: Array.from({ length: 400 }, (_, i) => `t${i}`), tokenDelayMs: 5 });
    await agentOn(net, net.c, net.a, engine);
    const stream = client(net, net.a).chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 400 });
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    // C's subjects go quiet at once, as when its process dies (its sockets stay, here).
    await net.c.cluster!.transport.dispose();
    const err = await stream.result.catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NJ_AGENT_FAILED' });
    expect((err as Error).message).toMatch(/went silent|stopping|did not answer/);
    expect(net.a.cluster!.transport.open.outgoing).toBe(0);
  });
});
