/**
 * The one seam between the gateway's stores and a database: a few async calls that SQLite
 * (embedded default) and PostgreSQL (cluster) both implement. Statements are written once, in
 * the SQL both accept, with `?` placeholders; a driver rewrites them for its database.
 */

/** A value a statement can bind. Money is bigint; times and counts are numbers. */
export type SqlValue = string | number | bigint | null;

/** One result row; integer columns may come back as number, bigint or (PostgreSQL) string. */
export type SqlRow = Readonly<Record<string, unknown>>;

/** Runs statements, inside or outside a transaction. */
export interface SqlExecutor {
  /** Every row of a query. */
  all(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]>;
  /** The first row of a query, if any. */
  get(sql: string, params?: readonly SqlValue[]): Promise<SqlRow | undefined>;
  /** Runs a statement; resolves with the number of rows it changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

/** A database connection (or pool) the stores run on. */
export interface SqlDriver extends SqlExecutor, AsyncDisposable {
  /** Which database this is. */
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one serializable transaction: committed if it resolves, rolled back if it
   * throws. `fn` may be run again after a serialization conflict, so it must only touch the
   * database through `tx`.
   */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * Runs one statement in a commit that need not be flushed to disk before it returns: it survives
   * a crash of this process, though not necessarily of the machine, and the next flushed commit
   * carries it to disk. For records whose loss costs little and whose flush would cost a job its
   * own fsync (who accepted a job: SQLite synchronous=NORMAL for the one commit, PostgreSQL
   * synchronous_commit=off). Resolves with the number of rows it changed.
   */
  runUnflushed(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /** Runs a script of several statements (migrations), in one transaction. */
  script(sql: string): Promise<void>;
  /** Closes the connection. */
  dispose(): Promise<void>;
}

/** An integer column as a JS number (counts, times, sizes: all far below 2^53). */
export function intOf(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  if (value === null || value === undefined) return 0;
  throw new TypeError(`expected an integer column, got ${typeof value}`);
}

/** An integer column as bigint (money). */
export function bigOf(value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  if (value === null || value === undefined) return 0n;
  throw new TypeError(`expected an integer column, got ${typeof value}`);
}

/** A nullable integer column. */
export function intOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : intOf(value);
}

/** A nullable text column. */
export function textOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

/** Serializes async work: one holder at a time, first come first served. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `fn` once every earlier holder has finished. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
