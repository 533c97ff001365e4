/**
 * Dashboard sign-ins on the gateway's database (migration 10), so that every node of a cluster
 * accepts a session any node issued and a sign-out on one ends it on all. A row holds the SHA-256
 * of the session token (never the token: a copy of the database cannot sign anyone in), the
 * operator, when it was made and when it expires. Expired rows are refused on sight, deleted at the
 * next sign-in and by the retention sweep.
 */
import { intOf, type SqlDriver } from '../store/sql.js';

/** The operator_sessions table. */
export interface OperatorSessionStore {
  /**
   * Records a session (by its token's hash) for `operatorId`, expiring at `expiresAt`. First deletes
   * the expired sessions, then as many of the oldest as it takes to keep at most `maxSessions`
   * (the new one included), in one transaction.
   */
  create(tokenHash: string, operatorId: string, now: number, expiresAt: number, maxSessions: number): Promise<void>;
  /** The operator of the session whose token hashes to `tokenHash`, or null if none or expired at `now`. */
  operatorOf(tokenHash: string, now: number): Promise<string | null>;
  /** Deletes a session (a sign-out); resolves true if there was one. */
  delete(tokenHash: string): Promise<boolean>;
  /** Deletes every session expired at `now`; resolves with how many. */
  sweepExpired(now: number): Promise<number>;
  /** Sessions stored (expired ones not swept yet included). */
  count(): Promise<number>;
}

/** {@link OperatorSessionStore} on the gateway's database (SQLite or PostgreSQL). */
export class SqlOperatorSessionStore implements OperatorSessionStore {
  readonly #db: SqlDriver;

  constructor(driver: SqlDriver) {
    this.#db = driver;
  }

  async create(tokenHash: string, operatorId: string, now: number, expiresAt: number, maxSessions: number): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await tx.run('DELETE FROM operator_sessions WHERE expires_at <= ?', [now]);
      const kept = intOf((await tx.get('SELECT COUNT(*) AS n FROM operator_sessions'))?.n);
      const excess = kept - Math.max(0, maxSessions - 1);
      if (excess > 0) {
        await tx.run(
          'DELETE FROM operator_sessions WHERE token_hash IN ' +
            '(SELECT token_hash FROM operator_sessions ORDER BY created_at, token_hash LIMIT ?)',
          [excess],
        );
      }
      await tx.run('INSERT INTO operator_sessions (token_hash, operator_id, created_at, expires_at) VALUES (?, ?, ?, ?)', [
        tokenHash,
        operatorId,
        now,
        expiresAt,
      ]);
    });
  }

  async operatorOf(tokenHash: string, now: number): Promise<string | null> {
    const row = await this.#db.get('SELECT operator_id FROM operator_sessions WHERE token_hash = ? AND expires_at > ?', [tokenHash, now]);
    return row ? String(row.operator_id) : null;
  }

  async delete(tokenHash: string): Promise<boolean> {
    return (await this.#db.run('DELETE FROM operator_sessions WHERE token_hash = ?', [tokenHash])) > 0;
  }

  async sweepExpired(now: number): Promise<number> {
    return this.#db.run('DELETE FROM operator_sessions WHERE expires_at <= ?', [now]);
  }

  async count(): Promise<number> {
    return intOf((await this.#db.get('SELECT COUNT(*) AS n FROM operator_sessions'))?.n);
  }
}
