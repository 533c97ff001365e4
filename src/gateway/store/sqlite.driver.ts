/**
 * The embedded default's database: one SQLite file through better-sqlite3.
 *
 * - WAL journal: readers (an admin command in another process, the dashboard) never block the
 *   writer, and a crash never corrupts the file.
 * - synchronous=FULL: every commit is on disk before the call returns. With NORMAL, WAL mode
 *   keeps the file consistent but may lose the last commits on power loss; for a ledger that
 *   could forget a top-up or a settlement the client was already told about. One fsync per
 *   commit is cheap at an embedded gateway's rate of jobs. The one exception is
 *   `runUnflushed` (who accepted a job): committed with NORMAL, it survives a crash of the
 *   process and reaches the disk with the next commit.
 * - foreign_keys=ON and a busy timeout so the gateway and an admin command can share the file; a
 *   lock held past it fails the statement with NJ_STORE_BUSY (a retry hint, nothing changed).
 *   The wait blocks the event loop (better-sqlite3 is synchronous), so keep the timeout short.
 * - Integers come back as bigint (safe integers), so money never passes through a double.
 * - The file is private to the gateway's user (0600): created so before SQLite opens it, and
 *   tightened if an older gateway left it readable to others. SQLite gives its -wal and -shm
 *   files the database file's mode.
 *
 * better-sqlite3 is synchronous; an async mutex keeps one transaction (or statement) at a time on
 * the connection, so transactions never interleave at an await.
 */
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { NightjarError } from '../../shared/index.js';
import { Mutex, type SqlDriver, type SqlExecutor, type SqlRow, type SqlValue } from './sql.js';

/** Options of {@link openSqliteDriver}. */
export interface SqliteDriverOptions {
  /** File path, or ':memory:' for a database that lives as long as the driver. */
  path: string;
  /** SQLite synchronous level. Defaults to 'FULL' (see the module comment). */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long to wait for another process's write lock. Defaults to 5000 ms. */
  busyTimeoutMs?: number;
}

type Statement = Database.Statement<unknown[], unknown>;

/** The mode of the database file and its -wal and -shm files: read and write for the owner only. */
export const DATABASE_FILE_MODE = 0o600;

/** Creates `file` with {@link DATABASE_FILE_MODE} if missing; takes group and other access from it and its -wal and -shm. */
function makePrivate(file: string): void {
  if (!existsSync(file)) closeSync(openSync(file, 'a', DATABASE_FILE_MODE));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    if (existsSync(f) && (statSync(f).mode & 0o077) !== 0) chmodSync(f, DATABASE_FILE_MODE);
  }
}

/**
 * SQLITE_BUSY (and its extended codes: another connection held the lock past the busy timeout)
 * as NJ_STORE_BUSY with a retry hint; any other error as it is. The statement or transaction
 * did not happen (a failed transaction is rolled back).
 */
function busyOr(err: unknown, waitedMs: number): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY')) return err;
  return new NightjarError('NJ_STORE_BUSY', `the gateway's database was locked by another connection for over ${waitedMs} ms`, {
    cause: err,
    retryAfterMs: 1000,
  });
}

/** Opens (creating if needed) a SQLite database; a file is made private to this user (0600). */
export function openSqliteDriver(options: SqliteDriverOptions): SqlDriver {
  let db: Database.Database;
  try {
    if (options.path !== ':memory:' && options.path !== '') makePrivate(options.path);
    db = new Database(options.path);
  } catch (cause) {
    throw new NightjarError('NJ_CONFIG_INVALID', `cannot open the database file ${options.path}: ${(cause as Error).message}`, { cause });
  }
  db.pragma('journal_mode = WAL');
  const synchronous = options.synchronous ?? 'FULL';
  db.pragma(`synchronous = ${synchronous}`);
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
  db.defaultSafeIntegers(true);
  const cache = new Map<string, Statement>();
  const mutex = new Mutex();
  let closed = false;

  const prepare = (sql: string): Statement => {
    if (closed) throw new NightjarError('NJ_SHUTTING_DOWN', 'the database is closed');
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = db.prepare(sql);
      cache.set(sql, stmt);
    }
    return stmt;
  };
  const bind = (params: readonly SqlValue[] = []): SqlValue[] => [...params];
  const direct: SqlExecutor = {
    all: async (sql, params) => prepare(sql).all(...bind(params)) as SqlRow[],
    get: async (sql, params) => prepare(sql).get(...bind(params)) as SqlRow | undefined,
    run: async (sql, params) => prepare(sql).run(...bind(params)).changes,
  };

  const busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000));
  /** One at a time on the connection; a lock held past the busy timeout becomes NJ_STORE_BUSY. */
  const serial = <T>(fn: () => Promise<T>): Promise<T> =>
    mutex.run(async () => {
      try {
        return await fn();
      } catch (err) {
        throw busyOr(err, busyTimeoutMs);
      }
    });

  const driver: SqlDriver = {
    dialect: 'sqlite',
    all: (sql, params) => serial(() => direct.all(sql, params)),
    get: (sql, params) => serial(() => direct.get(sql, params)),
    run: (sql, params) => serial(() => direct.run(sql, params)),
    runUnflushed: (sql, params) =>
      serial(async () => {
        if (synchronous === 'NORMAL') return direct.run(sql, params);
        // WAL with NORMAL: the commit is in the WAL (a process crash keeps it) but not fsync'd.
        db.pragma('synchronous = NORMAL');
        try {
          return await direct.run(sql, params);
        } finally {
          db.pragma(`synchronous = ${synchronous}`);
        }
      }),
    transaction: (fn) =>
      serial(async () => {
        prepare('BEGIN IMMEDIATE').run();
        try {
          const result = await fn(direct);
          prepare('COMMIT').run();
          return result;
        } catch (err) {
          if (db.inTransaction) prepare('ROLLBACK').run();
          throw err;
        }
      }),
    script: (sql) =>
      serial(async () => {
        if (closed) throw new NightjarError('NJ_SHUTTING_DOWN', 'the database is closed');
        db.exec('BEGIN IMMEDIATE');
        try {
          db.exec(sql);
          db.exec('COMMIT');
        } catch (err) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw err;
        }
      }),
    dispose: () =>
      mutex.run(async () => {
        if (closed) return;
        closed = true;
        cache.clear();
        db.close();
      }),
    [Symbol.asyncDispose]() {
      return driver.dispose();
    },
  };
  return driver;
}
