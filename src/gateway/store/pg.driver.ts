/**
 * PostgreSQL under the same stores (the cluster's ledger, and the proof that the embedded
 * default's schema is portable). Statements arrive with `?` placeholders and are rewritten to
 * `$n`; transactions run SERIALIZABLE and are retried on a serialization conflict, which gives
 * the same guarantees as SQLite's single writer.
 */
import pg from 'pg';
import { NightjarError, backoffDelay, resolveBackoff, type BackoffOptions, type ResolvedBackoff } from '../../shared/index.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './sql.js';

/** Options of {@link openPostgresDriver}. */
export interface PostgresDriverOptions {
  /** libpq connection string, e.g. postgres://user@127.0.0.1:5432/nightjar. */
  connectionString: string;
  /** Schema the tables live in (created if missing). Defaults to 'public'. */
  schema?: string;
  /** Pool size. Defaults to 4. */
  maxConnections?: number;
  /** Attempts of a transaction that hits serialization conflicts. Defaults to 16. */
  maxRetries?: number;
  /**
   * The wait between those attempts (full jitter, the one schedule of src/shared/backoff.ts): without
   * it, transactions that conflicted together retry together and conflict again, and a few dozen
   * jobs at once exhaust their attempts. Defaults to 4 ms growing ×2 up to 200 ms.
   */
  retryBackoff?: BackoffOptions;
}

/** The defaults of {@link PostgresDriverOptions.retryBackoff}. */
export const PG_RETRY_BACKOFF: ResolvedBackoff = { initialMs: 4, maxMs: 200, factor: 2 };

/** Rewrites `?` placeholders (outside string literals) to `$1`, `$2`, …. */
export function toPostgresPlaceholders(sql: string): string {
  let n = 0;
  let out = '';
  let quoted = false;
  for (const ch of sql) {
    if (ch === "'") quoted = !quoted;
    out += ch === '?' && !quoted ? `$${++n}` : ch;
  }
  return out;
}

const params = (values: readonly SqlValue[] = []): unknown[] => values.map((v) => (typeof v === 'bigint' ? v.toString() : v));

function executor(client: pg.Pool | pg.PoolClient): SqlExecutor {
  return {
    async all(sql, values) {
      return (await client.query(toPostgresPlaceholders(sql), params(values))).rows as SqlRow[];
    },
    async get(sql, values) {
      return (await client.query(toPostgresPlaceholders(sql), params(values))).rows[0] as SqlRow | undefined;
    },
    async run(sql, values) {
      return (await client.query(toPostgresPlaceholders(sql), params(values))).rowCount ?? 0;
    },
  };
}

/** Connects to PostgreSQL and makes sure the schema exists. */
export async function openPostgresDriver(options: PostgresDriverOptions): Promise<SqlDriver> {
  const schema = options.schema ?? 'public';
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
    throw new NightjarError('NJ_CONFIG_INVALID', 'the PostgreSQL schema name must be a plain lower-case identifier');
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 4,
    options: `-c search_path=${schema}`,
  });
  pool.on('error', () => undefined);
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch (cause) {
    await pool.end();
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot reach PostgreSQL: ${(cause as Error).message}`, { cause });
  }
  const direct = executor(pool);
  const maxRetries = options.maxRetries ?? 16;
  const retryBackoff = resolveBackoff(options.retryBackoff, PG_RETRY_BACKOFF);

  const driver: SqlDriver = {
    dialect: 'postgres',
    ...direct,
    async transaction(fn) {
      for (let attempt = 1; ; attempt++) {
        // After a conflict, off the pool (the connection went back): the others may commit meanwhile.
        if (attempt > 1) await new Promise((r) => setTimeout(r, backoffDelay(attempt - 2, retryBackoff)));
        const client = await pool.connect();
        try {
          await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
          const result = await fn(executor(client));
          await client.query('COMMIT');
          return result;
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          const code = (err as { code?: string }).code;
          if ((code === '40001' || code === '40P01') && attempt < maxRetries) continue;
          throw err;
        } finally {
          client.release();
        }
      }
    },
    async runUnflushed(sql, values) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SET LOCAL synchronous_commit = off');
        const changed = await executor(client).run(sql, values);
        await client.query('COMMIT');
        return changed;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    async script(sql) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(sql);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    async dispose() {
      if (!pool.ended) await pool.end();
    },
    [Symbol.asyncDispose]() {
      return driver.dispose();
    },
  };
  return driver;
}
