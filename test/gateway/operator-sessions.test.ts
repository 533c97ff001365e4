/**
 * Operator dashboard sessions on a real SQLite file (migration 10): the token is stored only as
 * its SHA-256; a session expires on the injected clock; at most maxSessions are kept (the oldest
 * go first); a sign-out deletes the row; the retention sweep deletes expired rows. Two gateways'
 * worth of OperatorSessions on one store see the same sessions (what a cluster relies on; the
 * PostgreSQL cluster test is test/cluster/limits.services.test.ts).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256, silentLogger, toHex, utf8 } from '../../src/shared/index.js';
import { OperatorSessions, openSqliteStore, type GatewayStore } from '../../src/gateway/index.js';
import { JobRetention } from '../../src/gateway/retention.js';
import { FakeClock } from './support/fake-clock.js';
import { tempDir } from './support/net.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
let store: GatewayStore;
let file: string;
let operatorId: string;
beforeEach(async () => {
  tmp = await tempDir();
  file = path.join(tmp.dir, 'sessions.db');
  store = await openSqliteStore({ path: file });
  operatorId = (await store.accounts.createOperator({ name: 'Ada', now: 1 })).id;
});
afterEach(async () => {
  await store.dispose();
  await tmp.remove();
});

const sessionsOn = (clock: FakeClock, maxSessions = 10, ttlMs = 60_000): OperatorSessions =>
  new OperatorSessions({ store: store.sessions, clock, ttlMs, maxSessions });

describe('operator sessions in the store', () => {
  // Fails if the token were stored as issued: the database file would contain it.
  it('stores only the token’s hash, and any instance on the store accepts and signs out a session', async () => {
    const clock = new FakeClock();
    const [a, b] = [sessionsOn(clock), sessionsOn(clock)];
    const token = await a.create(operatorId);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await b.operatorOf(token)).toBe(operatorId);
    const rows = await store.driver.all('SELECT * FROM operator_sessions');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ token_hash: toHex(sha256(utf8(token))), operator_id: operatorId });
    expect(Object.values(rows[0]!).map(String)).not.toContain(token);
    await store.dispose();
    expect((await readFile(file)).includes(Buffer.from(token))).toBe(false);
    store = await openSqliteStore({ path: file });
    const [c, d] = [sessionsOn(clock), sessionsOn(clock)];
    expect(await c.operatorOf(token)).toBe(operatorId); // a restart keeps it
    await d.delete(token);
    expect(await c.operatorOf(token)).toBeNull();
    expect(await c.size()).toBe(0);
  });

  // Fails without the expiry check in SqlOperatorSessionStore.operatorOf: the session outlives its TTL.
  it('refuses an expired session, and the retention sweep deletes it', async () => {
    const clock = new FakeClock();
    const sessions = sessionsOn(clock, 10, 60_000);
    const token = await sessions.create(operatorId);
    clock.advance(59_999);
    expect(await sessions.operatorOf(token)).toBe(operatorId);
    clock.advance(1);
    expect(await sessions.operatorOf(token)).toBeNull();
    expect(await sessions.size()).toBe(1);
    const retention = new JobRetention({
      ledger: store.ledger,
      clock,
      logger: silentLogger,
      jobRetentionDays: 1,
      releasedJobRetentionDays: 1,
      sweepMs: 0,
      sessions: store.sessions,
    });
    await retention.sweep();
    await retention.dispose();
    expect(await sessions.size()).toBe(0);
  });

  // Fails without the trim in SqlOperatorSessionStore.create: a fourth sign-in makes four rows.
  it('keeps at most maxSessions, dropping the oldest, and refuses malformed tokens without a lookup', async () => {
    const clock = new FakeClock();
    const sessions = sessionsOn(clock, 3);
    const tokens: string[] = [];
    for (let i = 0; i < 4; i++) {
      tokens.push(await sessions.create(operatorId));
      clock.advance(1);
    }
    expect(await sessions.size()).toBe(3);
    expect(await sessions.operatorOf(tokens[0]!)).toBeNull();
    for (const t of tokens.slice(1)) expect(await sessions.operatorOf(t)).toBe(operatorId);
    expect(await sessions.operatorOf('x'.repeat(44))).toBeNull();
    expect(await sessions.operatorOf("' OR 1=1 --")).toBeNull();
  });
});
