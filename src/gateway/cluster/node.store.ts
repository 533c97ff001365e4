/**
 * The gateway nodes sharing one database (cluster mode): each node keeps a row with when it
 * started and when it was last seen, refreshed by its heartbeat. A held job names the node that
 * holds its stream (jobs.node_id); a node whose row is stale, or gone, holds nothing any more, and
 * whoever finds it so releases its holds (see node-liveness.ts).
 */
import { intOf, type SqlDriver } from '../store/sql.js';

/** One node's row. */
export interface NodeRecord {
  nodeId: string;
  startedAt: number;
  lastSeenAt: number;
}

/** The gateway_nodes table. */
export interface NodeStore {
  /** Records `nodeId` as started (and seen) at `now`, replacing a row a previous run under the same id left. */
  register(nodeId: string, now: number): Promise<void>;
  /** Marks `nodeId` seen at `now` (re-creating its row if a sweeper removed it); resolves false if it had to. */
  heartbeat(nodeId: string, now: number): Promise<boolean>;
  /**
   * Nodes other than `self` that own held jobs and were not seen since `before` (or have no row at
   * all): their holds are to be released.
   */
  deadOwners(self: string, before: number): Promise<string[]>;
  /** Deletes the rows of nodes other than `self` not seen since `before`; resolves with how many. */
  forgetStale(self: string, before: number): Promise<number>;
  /** Deletes `nodeId`'s row (a graceful stop). */
  remove(nodeId: string): Promise<void>;
  /** Every node's row, oldest first. */
  list(): Promise<NodeRecord[]>;
}

/** {@link NodeStore} on the gateway's database (SQLite or PostgreSQL). */
export class SqlNodeStore implements NodeStore {
  readonly #db: SqlDriver;

  constructor(driver: SqlDriver) {
    this.#db = driver;
  }

  async register(nodeId: string, now: number): Promise<void> {
    await this.#db.run(
      `INSERT INTO gateway_nodes (node_id, started_at, last_seen_at) VALUES (?, ?, ?)
       ON CONFLICT (node_id) DO UPDATE SET started_at = excluded.started_at, last_seen_at = excluded.last_seen_at`,
      [nodeId, now, now],
    );
  }

  async heartbeat(nodeId: string, now: number): Promise<boolean> {
    // A clock that went back never makes a node look older than it was.
    const changed = await this.#db.run('UPDATE gateway_nodes SET last_seen_at = ? WHERE node_id = ? AND last_seen_at <= ?', [
      now,
      nodeId,
      now,
    ]);
    if (changed === 1) return true;
    const row = await this.#db.get('SELECT node_id FROM gateway_nodes WHERE node_id = ?', [nodeId]);
    if (row) return true;
    await this.register(nodeId, now);
    return false;
  }

  async deadOwners(self: string, before: number): Promise<string[]> {
    const rows = await this.#db.all(
      `SELECT DISTINCT j.node_id AS node_id FROM jobs j LEFT JOIN gateway_nodes n ON n.node_id = j.node_id
       WHERE j.status = 'held' AND j.node_id IS NOT NULL AND j.node_id <> ? AND (n.node_id IS NULL OR n.last_seen_at < ?)
       ORDER BY j.node_id`,
      [self, before],
    );
    return rows.map((r) => String(r.node_id));
  }

  async forgetStale(self: string, before: number): Promise<number> {
    return this.#db.run('DELETE FROM gateway_nodes WHERE node_id <> ? AND last_seen_at < ?', [self, before]);
  }

  async remove(nodeId: string): Promise<void> {
    await this.#db.run('DELETE FROM gateway_nodes WHERE node_id = ?', [nodeId]);
  }

  async list(): Promise<NodeRecord[]> {
    const rows = await this.#db.all('SELECT node_id, started_at, last_seen_at FROM gateway_nodes ORDER BY started_at, node_id');
    return rows.map((r) => ({ nodeId: String(r.node_id), startedAt: intOf(r.started_at), lastSeenAt: intOf(r.last_seen_at) }));
  }
}
