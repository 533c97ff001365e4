/**
 * An embedding job through a billed gateway (SQLite ledger) with a real agent on an embedding
 * FakeEngine and the real SDK: the gateway verifies the receipt, charges the prompt tokens only
 * (no completion), and the client's countersignature (0 completion tokens) disputes nothing.
 */
import { describe, expect, it } from 'vitest';
import { EmbeddingEngine } from '../helpers/embedding-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { REAL_MODEL, billed, billedNetworkPerTest, clientOf, startAgent } from './support/net.js';

const http = perTestFetch();
const fx = billedNetworkPerTest();

describe('an embedding job at a billed gateway', () => {
  it('is charged for its prompt tokens only, and its countersignature agrees', async () => {
    const { net } = fx;
    fx.agents.push(await startAgent(net.gateway, { engine: new EmbeddingEngine(16), enrollToken: await net.enrollToken() }));
    const isBilled = billed(net.gateway);
    const client = clientOf(net.gateway, http.fetch, net.key.key);
    const result = await client.embeddings({ model: REAL_MODEL.id, input: ['twelve chars', 'and twenty more chars'] });
    expect(result.embeddings.map((v) => v.length)).toEqual([16, 16]);
    await isBilled(result.jobId);
    await client.countersigned();
    const job = (await net.store.ledger.job(result.jobId))!;
    // REAL_PRICE: 1 micro-credit per prompt token, 2 per completion token. 12 + 21 = 33 prompt tokens.
    expect({ prompt: job.promptTokens, completion: job.completionTokens, charged: job.charged, disputed: job.disputedAt !== null }).toEqual(
      {
        prompt: 33,
        completion: 0,
        charged: 33n,
        disputed: false,
      },
    );
    expect(await net.store.ledger.clientBalance(net.key.id)).toEqual({ balance: 10_000_000n - 33n, held: 0n });
    expect(await net.store.ledger.checkInvariants()).toEqual([]);
  });
});
