/**
 * A gateway restart on the same SQLite file and port: accounts, balances, bindings and receipts
 * survive; the agent reconnects by itself (its backoff) and is still bound; the client's key
 * works again; holds a crashed run left behind are released.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes, toBase64Url } from '../../src/shared/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import { ACCOUNTS, Gateway, openSqliteStore } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { REAL_MODEL, REAL_PRICE, billed, clientOf, startAgent, startBilledNetwork, tempDir } from './support/net.js';

const http = perTestFetch();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ask = { model: REAL_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens: 16 };

describe('gateway restart', () => {
  it('keeps the ledger and accounts; the agent reconnects on its own and the client carries on', async () => {
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const first = await startBilledNetwork(tmp.dir);
    const port = Number(new URL(first.gateway.url).port);
    let agent: Agent | undefined = await startAgent(first.gateway, { engine: new FakeEngine(), enrollToken: await first.enrollToken() });
    cleanups.push(async () => agent?.dispose());
    const isBilled = billed(first.gateway);
    const one = await clientOf(first.gateway, http.fetch, first.key.key).complete(ask);
    await isBilled(one.jobId);
    expect(await first.store.ledger.balance(ACCOUNTS.operator(first.operator.id))).toBe(17n);
    await first.gateway.dispose();
    // A job admitted and never finished, as a crash leaves it: its worst case is still held.
    const stranded = toBase64Url(randomBytes(16));
    await first.store.ledger.hold({
      jobId: stranded,
      keyId: first.key.id,
      model: REAL_MODEL.id,
      price: REAL_PRICE,
      operatorShareBps: 9500,
      bodyLength: 1040,
      maxTokens: 10,
      now: Date.now(),
    });
    expect((await first.store.ledger.clientBalance(first.key.id)).held).toBe(1060n);
    await first.store.dispose();
    expect(agent.linkState === 'waiting' || agent.linkState === 'connecting').toBe(true);

    const store = await openSqliteStore({ path: first.file });
    const gateway = await Gateway.start({ port, store, allowSynthetic: true });
    cleanups.push(async () => {
      await agent?.dispose();
      agent = undefined;
      await gateway.dispose();
      await store.dispose();
    });
    await agentServing(gateway, agent.agentId, 5000);
    expect(gateway.directory.get(agent.agentId)?.operatorId).toBe(first.operator.id);
    expect(await store.ledger.job(stranded)).toMatchObject({ status: 'released', outcome: 'gateway restarted' });
    expect(await store.ledger.clientBalance(first.key.id)).toEqual({ balance: 10_000_000n - 18n, held: 0n });

    const again = billed(gateway);
    const two = await clientOf(gateway, http.fetch, first.key.key).complete(ask);
    await again(two.jobId);
    expect(two.agentId).toBe(agent.agentId);
    expect(await store.ledger.balance(ACCOUNTS.operator(first.operator.id))).toBe(34n);
    expect(await store.ledger.clientBalance(first.key.id)).toEqual({ balance: 10_000_000n - 36n, held: 0n });
    expect((await store.ledger.receipts(first.operator.id, { limit: 10 })).map((r) => r.jobId).sort()).toEqual(
      [one.jobId, two.jobId].sort(),
    );
    expect(await store.ledger.checkInvariants()).toEqual([]);
  });
});
