/**
 * The embedded default's schema on a real PostgreSQL (127.0.0.1:5432, database `test`): the same
 * migrations apply, and the same ledger cases and invariant checks pass on both databases. Each
 * run works in schemas of its own and drops them afterwards.
 *
 * Run with `npm run test:services`. Set NIGHTJAR_TEST_PG to point elsewhere.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS, openPostgresDriver, openPostgresStore, migrate, toPostgresPlaceholders } from '../../src/gateway/index.js';
import { randomBytes, toBase64Url, toHex } from '../../src/shared/index.js';
import { catalogCases } from './support/catalog-cases.js';
import { ledgerCases } from './support/ledger-cases.js';

const URL = process.env.NIGHTJAR_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const run = `nj_${toHex(randomBytes(4))}`;
const schemas: string[] = [];
let n = 0;
const schema = (): string => {
  const s = `${run}_${n++}`;
  schemas.push(s);
  return s;
};

afterAll(async () => {
  const client = new pg.Client({ connectionString: URL });
  await client.connect();
  try {
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  } finally {
    await client.end();
  }
});

describe('the schema on PostgreSQL', () => {
  it('applies every migration once, and again is a no-op', async () => {
    const driver = await openPostgresDriver({ connectionString: URL, schema: schema() });
    try {
      expect(await migrate(driver, 1)).toEqual(MIGRATIONS.map((m) => m.version));
      expect(await migrate(driver, 2)).toEqual([]);
      const tables = (
        await driver.all('SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name')
      ).map((r) => r.table_name);
      expect(tables).toEqual([
        'agents',
        'api_keys',
        'catalog_files',
        'enrollment_tokens',
        'gateway_keys',
        'jobs',
        'ledger_accounts',
        'ledger_transfers',
        'operators',
        'prices',
        'schema_migrations',
      ]);
    } finally {
      await driver.dispose();
    }
  });

  it('rewrites placeholders outside string literals only', () => {
    expect(toPostgresPlaceholders("SELECT ? , '?' , ? WHERE x = 'a''?'")).toBe("SELECT $1 , '?' , $2 WHERE x = 'a''?'");
  });
});

describe('accounts and reports on PostgreSQL', () => {
  it('runs every account, enrollment, price and report query', async () => {
    const store = await openPostgresStore({ connectionString: URL, schema: schema() });
    try {
      const { accounts, ledger } = store;
      const key = await accounts.createApiKey({ name: 'k', now: 1 });
      expect((await accounts.authenticateApiKey(key.key))?.id).toBe(key.id);
      const op = await accounts.createOperator({ name: 'o', now: 1 });
      expect((await accounts.authenticateOperator(await accounts.rotateOperatorToken(op.id)))?.id).toBe(op.id);
      const token = await accounts.createEnrollmentToken({ operatorId: op.id, now: 1, ttlMs: 3600_000 });
      const agentId = 'a'.repeat(32);
      expect(await accounts.admitAgent({ agentId, identityKey: 'key', enrollToken: token.token, model: 'm', now: 2 })).toEqual({
        operatorId: op.id,
        boundNow: true,
      });
      expect(await accounts.admitAgent({ agentId, identityKey: 'key', enrollToken: token.token, model: 'm', now: 3 })).toEqual({
        operatorId: op.id,
        boundNow: false,
      });
      expect((await accounts.listAgents(op.id)).map((a) => a.agentId)).toEqual([agentId]);
      await accounts.setPrice('m', { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n }, 1);
      await accounts.setPrice('m', { promptPerMTok: 1_000_000n, completionPerMTok: 3_000_000n }, 2);
      const price = (await accounts.getPrice('m'))!;
      expect(price).toEqual({ promptPerMTok: 1_000_000n, completionPerMTok: 3_000_000n });
      await ledger.topUp(key.id, 10_000_000n, 1);
      const day = 86_400_000 * 20_000;
      const jobId = toBase64Url(randomBytes(16));
      await ledger.hold({ jobId, keyId: key.id, model: 'm', price, operatorShareBps: 9500, bodyLength: 1040, maxTokens: 10, now: day });
      await ledger.settle({
        jobId,
        attempt: 0,
        agentId,
        operatorId: op.id,
        promptTokens: 10,
        completionTokens: 10,
        finishReason: 'stop',
        outcome: 'done',
        receipt: '{}',
        now: day + 5,
      });
      expect(await ledger.earnings(op.id, day, day + 86_400_000)).toEqual([
        { day: '2024-10-04', model: 'm', jobs: 1, promptTokens: 10, completionTokens: 10, earned: 38n },
      ]);
      expect((await ledger.receipts(op.id, { limit: 5, before: { endedAt: day + 6, jobId: '~' } })).map((r) => r.jobId)).toEqual([jobId]);
      expect(await ledger.checkInvariants()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });
});

describe('ledger on PostgreSQL', () => {
  ledgerCases(
    {
      async open() {
        const s = schema();
        return {
          store: await openPostgresStore({ connectionString: URL, schema: s }),
          reopen: () => openPostgresStore({ connectionString: URL, schema: s }),
        };
      },
    },
    { runs: 25 },
  );
});

describe('catalog and gateway key on PostgreSQL', () => {
  catalogCases({
    async open() {
      const s = schema();
      return {
        store: await openPostgresStore({ connectionString: URL, schema: s }),
        reopen: () => openPostgresStore({ connectionString: URL, schema: s }),
      };
    },
  });
});
