/**
 * The ledger on real SQLite files (WAL, synchronous=FULL) in a temp dir: behaviour, and the
 * invariants under a property test. The same cases run on PostgreSQL in store.services.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { openSqliteStore } from '../../src/gateway/index.js';
import { ledgerCases } from './support/ledger-cases.js';

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-ledger-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ledger on SQLite', () => {
  ledgerCases(
    {
      async open() {
        const file = path.join(dir, `ledger-${n++}.sqlite`);
        return { store: await openSqliteStore({ path: file }), reopen: () => openSqliteStore({ path: file }) };
      },
    },
    { runs: 40 },
  );
});
