/**
 * The embedded default's schema on a real PostgreSQL (127.0.0.1:5432, database `test`): the same
 * migrations apply, and the same ledger cases and invariant checks pass on both databases. Each
 * run works in schemas of its own and drops them afterwards.
 *
 * Run with `npm run test:services`. Set NIGHTJAR_TEST_PG to point elsewhere.
 */
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import {
  MIGRATIONS,
  SqlLedgerStore,
  openPostgresDriver,
  openPostgresStore,
  migrate,
  toPostgresPlaceholders,
} from '../../src/gateway/index.js';
import { randomBytes, toBase64Url, toHex } from '../../src/shared/index.js';
import { catalogCases } from './support/catalog-cases.js';
import { auditCases, strikeCases } from './support/strike-cases.js';

/** The migrations an older gateway had applied before migration 4 (the transfers' foreign key to jobs dropped). */
const BEFORE_FK_DROP = MIGRATIONS.filter((m) => m.version < 4);
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
        'audits',
        'catalog_files',
        'enrollment_tokens',
        'gateway_keys',
        'gateway_nodes',
        'gateway_releases',
        'job_countersigns',
        'jobs',
        'ledger_accounts',
        'ledger_transfers',
        'operator_sessions',
        'operators',
        'prices',
        'schema_migrations',
        'strikes',
      ]);
    } finally {
      await driver.dispose();
    }
  });

  it('drops the foreign key from transfers to jobs on an older database (migration 4), keeping every transfer', async () => {
    // Fails without migration 4: the constraint is still there, and sweeping a job row with transfers is refused.
    const driver = await openPostgresDriver({ connectionString: URL, schema: schema() });
    try {
      await driver.script(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);
${BEFORE_FK_DROP.map((m) => m.sql as string).join('\n')}
${BEFORE_FK_DROP.map((m) => `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${m.version}, 'v', 1);`).join('\n')}`);
      const ledger = new SqlLedgerStore(driver);
      await driver.run("INSERT INTO api_keys (id, key_hash, name, created_at) VALUES ('k1', 'h1', 'client', 1)");
      await ledger.topUp('k1', 1_000_000n, 1);
      const price = { promptPerMTok: 1_000_000n, completionPerMTok: 1_000_000n };
      await ledger.hold({
        jobId: 'job-1',
        keyId: 'k1',
        model: 'm',
        price,
        operatorShareBps: 9500,
        bodyLength: 2064,
        maxTokens: 10,
        now: 2,
      });
      await ledger.release('job-1', 'declined', 3);
      const transfers = await driver.all('SELECT * FROM ledger_transfers ORDER BY id');
      const fks = async () =>
        (
          await driver.all(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'ledger_transfers'::regclass AND contype = 'f' ORDER BY conname",
          )
        ).map((r) => String(r.conname));
      expect(await fks()).toEqual(['ledger_transfers_credit_fkey', 'ledger_transfers_debit_fkey', 'ledger_transfers_job_id_fkey']);
      expect(await migrate(driver, 4)).toEqual(MIGRATIONS.filter((m) => m.version >= 4).map((m) => m.version));
      expect(await fks()).toEqual(['ledger_transfers_credit_fkey', 'ledger_transfers_debit_fkey']);
      expect(await driver.all('SELECT * FROM ledger_transfers ORDER BY id')).toEqual(transfers);
      expect(await ledger.sweepJobs({ settledBefore: 10, releasedBefore: 10 })).toEqual({ settled: 0, released: 1 });
      expect(await ledger.checkInvariants()).toEqual([]);
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

describe('strikes on PostgreSQL', () => {
  strikeCases({
    async open() {
      const s = schema();
      return {
        store: await openPostgresStore({ connectionString: URL, schema: s }),
        reopen: () => openPostgresStore({ connectionString: URL, schema: s }),
      };
    },
  });
});

describe('audits on PostgreSQL', () => {
  auditCases({
    async open() {
      const s = schema();
      return {
        store: await openPostgresStore({ connectionString: URL, schema: s }),
        reopen: () => openPostgresStore({ connectionString: URL, schema: s }),
      };
    },
  });
});

describe('concurrent jobs on PostgreSQL', () => {
  // Fails as the ledger was before migration 11 and the retry backoff (16 of 24 jobs failed): the
  // holds, platform and operator balances were cached in rows every hold and settlement updated,
  // SERIALIZABLE aborted all but one of the transactions that did so at once, and the losers
  // retried at once, together, eight times.
  it('holds and settles 24 jobs of 24 keys for one operator at once, every one of them', async () => {
    const store = await openPostgresStore({ connectionString: URL, schema: schema(), maxConnections: 12 });
    try {
      const now = Date.now();
      const operator = await store.accounts.createOperator({ name: 'Ada', now });
      const price = { promptPerMTok: 1_000_000n, completionPerMTok: 2_000_000n };
      const keys = [];
      for (let i = 0; i < 24; i++) {
        const key = await store.accounts.createApiKey({ name: `k${i}`, now });
        await store.ledger.topUp(key.id, 1_000_000n, now);
        keys.push(key.id);
      }
      const outcomes = await Promise.allSettled(
        keys.map(async (keyId, i) => {
          const jobId = toBase64Url(randomBytes(16));
          await store.ledger.hold({ jobId, keyId, model: 'm', price, operatorShareBps: 9500, bodyLength: 1024, maxTokens: 64, now });
          await store.ledger.assign(jobId, `agent-${i}`, 0);
          return store.ledger.settle({
            jobId,
            attempt: 0,
            agentId: `agent-${i}`,
            operatorId: operator.id,
            promptTokens: 100,
            completionTokens: 50,
            finishReason: 'stop',
            outcome: 'done',
            receipt: '{}',
            now,
          });
        }),
      );
      expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason))).toEqual([]);
      expect(outcomes.map((o) => (o as PromiseFulfilledResult<{ status: string }>).value.status)).toEqual(Array(24).fill('settled'));
      expect(await store.ledger.checkInvariants()).toEqual([]);
      // 100 prompt + 50 completion tokens: 100 + 100 micro-credits a job, 95 % to the operator.
      expect(await store.ledger.balance(`operator:${operator.id}`)).toBe(24n * 190n);
      expect(await store.ledger.balance('holds')).toBe(0n);
      expect((await store.ledger.accounts()).find((a) => a.id === 'platform:revenue')?.balance).toBe(24n * 10n);
    } finally {
      await store.dispose();
    }
  });
});
