/**
 * Scratch PostgreSQL for the cluster suites (127.0.0.1:5432, trust auth; NIGHTJAR_TEST_PG points
 * elsewhere): one database per test run, created from `test` and dropped at the end.
 */
import pg from 'pg';
import { randomBytes, toHex } from '../../../src/shared/index.js';

/** The server's maintenance database, where scratch databases are created and dropped. */
export const PG_URL = process.env.NIGHTJAR_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A scratch database: its URL, and drop() to remove it. */
export interface ScratchDatabase {
  readonly url: string;
  drop(): Promise<void>;
}

/** Creates an empty database with a fresh name. */
export async function createScratchDatabase(prefix = 'nj_cluster'): Promise<ScratchDatabase> {
  const name = `${prefix}_${toHex(randomBytes(5))}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
