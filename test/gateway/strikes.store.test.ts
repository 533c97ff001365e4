/** The strikes and audits tables on SQLite (the same cases run on PostgreSQL in store.services.test.ts). */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { openSqliteStore } from '../../src/gateway/index.js';
import { auditCases, strikeCases } from './support/strike-cases.js';

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-strikes-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('strikes on SQLite', () => {
  strikeCases({
    async open() {
      const file = path.join(dir, `strikes-${n++}.sqlite`);
      return { store: await openSqliteStore({ path: file }), reopen: () => openSqliteStore({ path: file }) };
    },
  });
});

describe('audits on SQLite', () => {
  auditCases({
    async open() {
      const file = path.join(dir, `audits-${n++}.sqlite`);
      return { store: await openSqliteStore({ path: file }), reopen: () => openSqliteStore({ path: file }) };
    },
  });
});
