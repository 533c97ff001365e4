/**
 * The must-show of issue 14: three gateway processes (A, B, C) on the real PostgreSQL and NATS.
 * A client on node A, an agent (the real agent, on the fake engine) on node C behind a load
 * balancer (a TCP forwarder in this test, test/cluster/support/forwarder.ts), a streamed reply;
 * node C killed (SIGKILL) mid-stream. The client gets a clear error (NJ_AGENT_FAILED, from A's
 * per-attempt liveness: C's keepalives stop); the agent reconnects through the balancer, now
 * pointing at B, and serves again (its next job goes A → B over NATS); nothing is charged beyond
 * what a valid receipt covers, and the ledger afterwards is what one node would have written:
 * every hold settled or released once, the books balanced, the client charged exactly the sum of
 * the settled jobs' charges.
 *
 * The test waits on events only: the gateways' start lines, the presence bucket's watch (the agent
 * written by C, then by B), the stream's chunks and results, the processes' exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import { Agent } from '../../src/main/agent/index.js';
import { ACCOUNTS, openPostgresStore, presenceSchema, type ClusterOptions, type GatewayStore } from '../../src/gateway/index.js';
import { generateIdentity } from '../../src/shared/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { REAL_FILE, REAL_MODEL, REAL_PRICE } from '../gateway/support/net.js';
import { startForwarder, type Forwarder } from './support/forwarder.js';
import { NATS_URL, scratchNats, type ScratchNats } from './support/nats.js';
import { createScratchDatabase, type ScratchDatabase } from './support/pg.js';

const NODE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'cluster-gateway.ts');
const http = perTestFetch();
const FUNDS = 10_000_000n;

interface NodeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly agentUrl: string;
  readonly nodeId: string;
  readonly exited: Promise<number | null>;
}

let db: ScratchDatabase;
let nats: ScratchNats;
const children: ChildProcess[] = [];

beforeAll(async () => {
  db = await createScratchDatabase();
  nats = scratchNats();
});
/** Kills whatever node process is still running, and waits for it to exit. */
async function stopChildren(): Promise<void> {
  const running = children.splice(0).filter((c) => c.exitCode === null && c.signalCode === null);
  const exits = running.map((c) => new Promise((r) => c.once('exit', r)));
  for (const c of running) c.kill('SIGKILL');
  await Promise.all(exits);
}

afterAll(async () => {
  await stopChildren();
  await nats.drop();
  await db.drop();
});

async function startNode(nodeId: string): Promise<NodeProcess> {
  const cluster: ClusterOptions = {
    nodeId,
    nats: NATS_URL,
    presenceBucket: nats.bucket,
    subjectPrefix: nats.prefix,
    attemptKeepaliveMs: 200,
    // Well over the agent's reconnect (backoff 50–200 ms): its receipt for the killed job reaches B
    // while A still holds the job, the case B must not settle on the receipt's word alone.
    attemptSilenceMs: 3000,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', NODE, JSON.stringify({ postgres: db.url, cluster })], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const line = await Promise.race([
    new Promise<string>((r) => createInterface({ input: child.stdout! }).once('line', r)),
    exited.then((code) => Promise.reject(new Error(`node ${nodeId} exited (${code})`))),
  ]);
  return { child, exited, ...(JSON.parse(line) as { url: string; agentUrl: string; nodeId: string }) };
}

/** Resolves once the presence bucket says `agentId` is serving through `nodeId` (a watch, not a poll). */
async function servingThrough(kv: KV, agentId: string, nodeId: string): Promise<void> {
  const watch = await kv.watch({ key: agentId });
  try {
    for await (const e of watch) {
      if (e.operation !== 'PUT') continue;
      const p = presenceSchema.safeParse(e.json());
      if (p.success && p.data.nodeId === nodeId && p.data.status?.state === 'serving' && p.data.operatorId !== null) return;
    }
  } finally {
    watch.stop();
  }
}

describe('three gateway nodes, one killed mid-stream', () => {
  it('the client on A gets a clear error, the agent serves again through B, and the ledger is one node’s', async () => {
    const setup: GatewayStore = await openPostgresStore({ connectionString: db.url });
    let nc: NatsConnection | null = null;
    let lb: Forwarder | null = null;
    let agent: Agent | null = null;
    try {
      const now = Date.now();
      await setup.catalog.addFile(REAL_MODEL.id, REAL_FILE, now);
      await setup.accounts.setPrice(REAL_MODEL.id, REAL_PRICE, now);
      const operator = await setup.accounts.createOperator({ name: 'Ada', now });
      const key = await setup.accounts.createApiKey({ name: 'client', now });
      await setup.ledger.topUp(key.id, FUNDS, now);
      const enroll = await setup.accounts.createEnrollmentToken({ operatorId: operator.id, now, ttlMs: 3600_000 });

      const [a, b, c] = await Promise.all([startNode('node-a'), startNode('node-b'), startNode('node-c')]);
      nc = await connect({ servers: NATS_URL });
      const kv = await new Kvm(nc).open(nats.bucket);

      // The load balancer sends the agent to C first.
      lb = await startForwarder(Number(new URL(c.url).port));
      const engine = new FakeEngine({ words: Array.from({ length: 300 }, (_, i) => `t${i} `), tokenDelayMs: 20 });
      agent = await Agent.create({
        gatewayUrl: `ws://127.0.0.1:${lb.port}/v1/agent`,
        identity: await generateIdentity(),
        engine,
        model: REAL_MODEL,
        backoff: { initialMs: 50, maxMs: 200 },
        stopGraceMs: 100,
        enrollToken: enroll.token,
      });
      const onC = servingThrough(kv, agent.agentId, 'node-c');
      agent.start();
      await onC;

      const client = new NightjarClient({ gatewayUrl: a.url, trust: { allowSynthetic: true }, fetch: http.fetch, apiKey: key.key });
      const first = client.chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 300 });
      const firstJob = first.jobId;
      const reading = first[Symbol.asyncIterator]();
      let received = '';
      for (let i = 0; i < 3; i++) {
        const next = await reading.next();
        expect(next.done).toBe(false);
        received += next.value as string;
      }
      // C dies mid-stream; the balancer now sends new connections to B.
      lb.target = Number(new URL(b.url).port);
      const onB = servingThrough(kv, agent.agentId, 'node-b');
      c.child.kill('SIGKILL');
      const err = await first.result.catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'NJ_AGENT_FAILED' });
      expect((err as Error).message).toMatch(/the agent failed mid-reply .*node-c/);
      expect(received).toMatch(/^t0 t1 t2 /);
      expect(await c.exited).toBe(null);

      // The agent is back, through B; the next job from A reaches it there.
      await onB;
      const second = await client.complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'again' }], maxTokens: 5 });
      expect(second.text).toBe('t0 t1 t2 t3 t4 ');
      expect(second.receipt.agentId).toBe(agent.agentId);

      // The killed job's receipt (the agent signed one for what it made when its link dropped)
      // reached B while A still held the job. Fails without Billing's wait for another node's hold:
      // B settles it at once from the hold, on the receipt's claims, with no bound of what A relayed.
      await expect
        .poll(async () => (await setup.ledger.job(await firstJob))?.outcome, { timeout: 20_000, interval: 200 })
        .toBe('settled-late');
      const late = (await setup.ledger.job(await firstJob))!;
      expect(late.completionBound).not.toBeNull();
      expect(late.completionTokens!).toBeLessThanOrEqual(late.completionBound!);

      // Stop A and B gracefully so whatever they still hold is billed; then read the books.
      await agent.dispose();
      agent = null;
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      expect(await a.exited).toBe(0);
      expect(await b.exited).toBe(0);

      const ledger = setup.ledger;
      expect(await ledger.checkInvariants()).toEqual([]);
      const one = await ledger.job(await firstJob);
      const two = await ledger.job(second.receipt.jobId);
      expect(two).toMatchObject({ status: 'settled', nodeId: 'node-a', completionTokens: 5 });
      // The killed job: released by A (no receipt reached it), or settled later on the receipt the
      // agent delivered through B — never charged past what that receipt covers.
      expect(one?.status === 'released' || one?.outcome === 'settled-late').toBe(true);
      expect(one?.nodeId).toBe('node-a');
      const charges = [one, two].reduce((sum, j) => sum + (j?.charged ?? 0n), 0n);
      if (one?.status === 'settled') {
        const covered =
          (BigInt(one.promptTokens!) * REAL_PRICE.promptPerMTok + BigInt(one.completionTokens!) * REAL_PRICE.completionPerMTok) /
          1_000_000n;
        expect(one.charged! <= covered + 1n).toBe(true);
      }
      expect(await ledger.clientBalance(key.id)).toEqual({ balance: FUNDS - charges, held: 0n });
      expect(await ledger.balance(ACCOUNTS.holds)).toBe(0n);
      const paid = (await ledger.balance(ACCOUNTS.operator(operator.id))) + (await ledger.balance(ACCOUNTS.platform));
      expect(paid).toBe(charges);
    } finally {
      await agent?.dispose();
      await stopChildren();
      await lb?.close();
      await nc?.close();
      await setup.dispose();
    }
  });
});
