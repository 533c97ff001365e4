/**
 * Retention of job rows (issue 17): the gateway sweeps released job rows after
 * releasedJobRetentionDays and settled ones after jobRetentionDays, at start and every
 * retentionSweepMs on its injected clock, and leaves the ledger's transfers and balances as they
 * were. Migration 2 makes that possible on a database an older gateway wrote: SQLite rebuilds
 * ledger_transfers without its foreign key to jobs, every row and index kept. (The ledger's own
 * sweep cases run on SQLite and PostgreSQL in support/ledger-cases.ts.)
 */
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, SqlLedgerStore, migrate, openSqliteDriver, type SweepResult } from '../../src/gateway/index.js';
import { nextEvent } from '../../src/shared/index.js';
import { FakeClock } from './support/fake-clock.js';

/** The migrations an older gateway had applied before migration 4 (the transfers' foreign key to jobs dropped). */
const BEFORE_FK_DROP = MIGRATIONS.filter((m) => m.version < 4);
import { startBilledNetwork, tempDir } from './support/net.js';

const DAY = 86_400_000;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the retention sweep', () => {
  it('deletes released rows after releasedJobRetentionDays and settled rows after jobRetentionDays, on the injected clock', async () => {
    // Fails without JobRetention in Gateway.start: no sweep event ever fires, and the rows stay.
    const clock = new FakeClock();
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    // One sweep every two days; each advance below passes exactly one.
    const net = await startBilledNetwork(tmp.dir, { clock, retentionSweepMs: 2 * DAY, jobRetentionDays: 3, releasedJobRetentionDays: 1 });
    cleanups.push(() => net.close());
    const { ledger } = net.store;
    const first = nextEvent(net.gateway.onJobsSwept);
    clock.advance(0);
    expect(await first).toEqual({ settled: 0, released: 0 });

    const price = { promptPerMTok: 1_000_000n, completionPerMTok: 1_000_000n };
    const t0 = clock.now();
    const hold = (jobId: string) =>
      ledger.hold({ jobId, keyId: net.key.id, model: 'm', price, operatorShareBps: 9500, bodyLength: 2064, maxTokens: 10, now: t0 });
    await hold('refused-job-0000000000');
    await ledger.release('refused-job-0000000000', 'declined', t0);
    await hold('settled-job-0000000000');
    await ledger.settle({
      jobId: 'settled-job-0000000000',
      attempt: 0,
      agentId: 'a'.repeat(32),
      operatorId: net.operator.id,
      promptTokens: 1,
      completionTokens: 1,
      finishReason: 'stop',
      outcome: 'done',
      receipt: '{}',
      now: t0,
    });
    const balances = await ledger.accounts();

    const next = (): Promise<SweepResult> => nextEvent(net.gateway.onJobsSwept);
    let swept = next();
    clock.advance(2 * DAY);
    expect(await swept).toEqual({ settled: 0, released: 1 });
    expect(await ledger.job('refused-job-0000000000')).toBeNull();
    expect(await ledger.job('settled-job-0000000000')).not.toBeNull();
    swept = next();
    clock.advance(2 * DAY);
    expect(await swept).toEqual({ settled: 1, released: 0 });
    expect(await ledger.job('settled-job-0000000000')).toBeNull();
    expect(await ledger.accounts()).toEqual(balances);
    expect(await ledger.checkInvariants()).toEqual([]);
  });
});

describe('migration 4 on a database an older gateway wrote', () => {
  it('rebuilds ledger_transfers without the foreign key to jobs, keeping every row and index', async () => {
    // Fails without migration 4: the foreign key to jobs is still there afterwards.
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const driver = openSqliteDriver({ path: path.join(tmp.dir, 'old.db') });
    cleanups.push(() => driver.dispose());
    await driver.script(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);
${BEFORE_FK_DROP.map((m) => m.sql as string).join('\n')}
${BEFORE_FK_DROP.map((m) => `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${m.version}, 'v', 1);`).join('\n')}`);
    const ledger = new SqlLedgerStore(driver);
    await driver.run("INSERT INTO api_keys (id, key_hash, name, created_at) VALUES ('k1', 'h1', 'client', 1)");
    await ledger.topUp('k1', 1_000_000n, 1);
    const price = { promptPerMTok: 1_000_000n, completionPerMTok: 1_000_000n };
    await ledger.hold({ jobId: 'job-1', keyId: 'k1', model: 'm', price, operatorShareBps: 9500, bodyLength: 2064, maxTokens: 10, now: 2 });
    await ledger.release('job-1', 'declined', 3);
    const transfers = await driver.all('SELECT * FROM ledger_transfers ORDER BY id');
    const fks = async () => (await driver.all('PRAGMA foreign_key_list(ledger_transfers)')).map((r) => String(r.table)).sort();
    expect(await fks()).toEqual(['jobs', 'ledger_accounts', 'ledger_accounts']);

    expect(await migrate(driver, 4)).toEqual(MIGRATIONS.filter((m) => m.version >= 4).map((m) => m.version));
    expect(await fks()).toEqual(['ledger_accounts', 'ledger_accounts']);
    expect(await driver.all('SELECT * FROM ledger_transfers ORDER BY id')).toEqual(transfers);
    const indexes = (
      await driver.all("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_transfers' ORDER BY name")
    ).map((r) => String(r.name));
    expect(indexes).toEqual(expect.arrayContaining(['ledger_transfers_credit', 'ledger_transfers_debit']));
    expect(await ledger.sweepJobs({ settledBefore: 10, releasedBefore: 10 })).toEqual({ settled: 0, released: 1 });
    expect(await ledger.checkInvariants()).toEqual([]);
  });
});
