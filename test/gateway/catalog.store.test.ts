/**
 * The model catalog and the gateway key on real SQLite files in a temp dir. The same cases run on
 * PostgreSQL in store.services.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { openSqliteStore } from '../../src/gateway/index.js';
import { catalogCases } from './support/catalog-cases.js';

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-catalog-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('catalog on SQLite', () => {
  catalogCases({
    async open() {
      const file = path.join(dir, `catalog-${n++}.sqlite`);
      return { store: await openSqliteStore({ path: file }), reopen: () => openSqliteStore({ path: file }) };
    },
  });
});
