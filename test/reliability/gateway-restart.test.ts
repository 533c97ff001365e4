/**
 * The gateway killed (SIGKILL) mid-stream and restarted on its port and SQLite file, seen from
 * the client's side of a fault proxy (issue 17). late-receipts.test.ts covers the agent's side
 * (it stops within a token, its receipt is settled once after the reconnect); here the client
 * reaches the gateway through the proxy, and the kill happens two ways:
 *
 * - the proxy passes the connection's end on (a gateway host that closes its sockets as its
 *   process dies): the stream ends at once with NJ_STREAM_BROKEN;
 * - the client's link is a black hole when the gateway dies (the host gone with the network, no
 *   FIN ever arrives): the stream ends with NJ_STREAM_BROKEN once it has been silent for the
 *   SDK's streamIdleMs (1 s), because the gateway promised keepalives.
 *
 * Then the same port and ledger come back; the agent delivers its receipts; the ledger and the
 * agent's receipts reconcile exactly; and a next chat through the same proxy succeeds.
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { prepareBilledLedger, startCrashableGateway } from '../gateway/support/crashable.js';
import { IncompleteReplyError, NightjarClient } from '../../src/client/index.js';
import { ACCOUNTS, Gateway, openSqliteStore, type GatewayStore } from '../../src/gateway/index.js';
import { Agent } from '../../src/main/agent/index.js';
import { generateIdentity, type SignedReceipt } from '../../src/shared/index.js';
import { onceTrue } from '../helpers/events.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { REAL_MODEL, tempDir } from '../gateway/support/net.js';
import { FUNDS } from './support/faulty-net.js';

const http = perTestFetch();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/** Every receipt settled once for its tokens (a cancelled one at most), every settled job backed by one, nothing held. */
async function reconcile(store: GatewayStore, receipts: SignedReceipt[], keyId: string, operatorId: string): Promise<string[]> {
  const problems = await store.ledger.checkInvariants();
  let charged = 0n;
  let operatorShare = 0n;
  for (const { receipt } of receipts) {
    const job = await store.ledger.job(receipt.jobId);
    if (job?.status !== 'settled') {
      problems.push(`job ${receipt.jobId}: receipt signed, job ${job?.status ?? 'missing'}`);
      continue;
    }
    const cut = receipt.finishReason === 'cancelled' && (job.completionTokens ?? 0) <= receipt.completionTokens;
    if (job.promptTokens !== receipt.promptTokens || (job.completionTokens !== receipt.completionTokens && !cut)) {
      problems.push(`job ${receipt.jobId}: settled ${job.completionTokens} completion tokens, receipt ${receipt.completionTokens}`);
    }
    charged += job.charged ?? 0n;
    operatorShare += job.operatorAmount ?? 0n;
  }
  const settled = await store.ledger.receipts(operatorId, { limit: 1000 });
  if (settled.length !== receipts.length) problems.push(`${settled.length} jobs settled for ${receipts.length} receipts`);
  const client = await store.ledger.clientBalance(keyId);
  if (client.held !== 0n) problems.push(`${client.held} still held`);
  if (FUNDS - client.balance !== charged) problems.push(`the client spent ${FUNDS - client.balance}, the receipts charged ${charged}`);
  const paid = await store.ledger.balance(ACCOUNTS.operator(operatorId));
  if (paid !== operatorShare) problems.push(`the operator holds ${paid}, its share of the receipts is ${operatorShare}`);
  return problems;
}

describe('a gateway killed mid-stream and restarted, seen through the client proxy', () => {
  for (const how of ['the end passed on', 'the client link black-holed'] as const) {
    // Pins, for 'the end passed on', the SDK's handling of a connection that ends mid-reply (would
    // fail without it: the reply would look complete, or the read would hang); for 'black-holed',
    // the SDK's idle timeout after a keepalive (would fail without readNdjson's idleMs or the
    // gateway's keepalives: the read waits forever and the test times out; stream-broken.test.ts
    // shows that on a manual clock). Both: the outbox and late settlement (the receipt is settled
    // once after the restart; reconcile() fails otherwise).
    it(`${how}: NJ_STREAM_BROKEN, the receipt settled once after the restart, the next chat succeeds`, async () => {
      const tmp = await tempDir('nightjar-rel-');
      cleanups.push(() => tmp.remove());
      const file = path.join(tmp.dir, 'gateway.db');
      const ledger = await prepareBilledLedger(file, FUNDS);
      const first = await startCrashableGateway(file);
      cleanups.push(async () => first.child.kill('SIGKILL'));
      const port = Number(new URL(first.url).port);
      const proxy: FaultProxy = await startFaultProxy({ targetPort: port, seed: 3 });
      cleanups.push(() => proxy.close());

      const engine = new FakeEngine({ tokenDelayMs: 10, slots: 1, words: ['tick', ' tock'] });
      const receipts: SignedReceipt[] = [];
      const agent = await Agent.create({
        gatewayUrl: first.agentUrl,
        identity: await generateIdentity(),
        engine,
        model: REAL_MODEL,
        backoff: { initialMs: 50, maxMs: 200 },
        stopGraceMs: 100,
        enrollToken: ledger.enroll,
        recordReceipt: (r) => void receipts.push(r),
      });
      cleanups.push(() => agent.dispose());
      agent.start();
      await onceTrue(agent.onLink, () => agent.linkState === 'connected', 'the agent to connect');

      const client = (): NightjarClient =>
        new NightjarClient({
          gatewayUrl: `http://127.0.0.1:${proxy.port}`,
          apiKey: ledger.key,
          trust: { allowSynthetic: true },
          fetch: http.fetch,
        });
      const stream = client().chat({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'a long story' }], maxTokens: 2000 });
      const jobId = await stream.jobId;
      let deltas = 0;
      const error = await (async () => {
        for await (const _ of stream) {
          if (++deltas !== 5) continue;
          if (how === 'the client link black-holed') proxy.set('both', { blackHole: 'discard' });
          first.child.kill('SIGKILL');
        }
      })().catch((err: unknown) => err);
      expect(error).toBeInstanceOf(IncompleteReplyError);
      const e = error as IncompleteReplyError;
      expect(e.code).toBe('NJ_STREAM_BROKEN');
      expect(e.servedBy.jobId).toBe(jobId);
      if (how === 'the client link black-holed') expect(e.message).toMatch(/went silent for 1000 ms mid-reply/);
      else expect(e.message).toMatch(/^the reply broke off after \d+ characters/);
      expect(e.partialText.length).toBeGreaterThanOrEqual(5 * 4);
      proxy.heal();

      // The agent stopped and kept its receipt; the gateway comes back on its port and ledger.
      await onceTrue(agent.onJobs, () => agent.undeliveredReceipts === 1 && agent.stats.activeJobs === 0, 'the job to stop', 10_000);
      const store = await openSqliteStore({ path: file });
      const gateway = await Gateway.start({ port, store, allowSynthetic: true });
      cleanups.push(async () => {
        await agent.dispose();
        await gateway.dispose();
        await store.dispose();
      });
      await onceTrue(agent.onReceiptAck, () => agent.undeliveredReceipts === 0, 'the late receipt to be acknowledged', 10_000);
      expect(await store.ledger.job(jobId)).toMatchObject({ status: 'settled', outcome: 'settled-late' });

      // Service resumes through the same proxy (the SDK retries a model briefly unknown after the restart).
      await agentServing(gateway, agent.agentId, 10_000);
      const next = await client().complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 2 });
      expect(next.text).toBe('tick tock');
      await onceTrue(agent.onReceipt, () => receipts.length === 2, 'the second receipt');
      expect(await reconcile(store, receipts, ledger.keyId, ledger.operatorId)).toEqual([]);
    }, 30_000);
  }
});
