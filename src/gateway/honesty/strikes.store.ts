/**
 * Strikes: the gateway's record of an agent caught doing what it cannot honestly do (a decode
 * faster than its chip allows for the model it claims, a claimed speed far above the measured
 * one). A strike holds numbers only (rates, sizes, the chip's name): never a prompt, a reply or a
 * secret. The score routing uses is computed from them (score.ts).
 */
import { randomBytes, toHex } from '../../shared/index.js';
import { intOf, textOrNull, type SqlDriver, type SqlRow } from '../store/sql.js';

/**
 * Why an agent was struck: `over-ceiling` (a decode faster than its chip allows for the claimed
 * file), `claim-gap` (a claimed speed far above the measured one), `audit-failed` (the gateway's
 * re-check of a job its client revealed found the reply dishonest), `count-disputed` (the client's
 * countersignature disputed the receipt's count or reply digest).
 */
export type StrikeReason = 'over-ceiling' | 'claim-gap' | 'audit-failed' | 'count-disputed';

/** Every strike reason, for the CLI and the operator API. */
export const STRIKE_REASONS: readonly StrikeReason[] = ['over-ceiling', 'claim-gap', 'audit-failed', 'count-disputed'];

/** A strike to record. */
export interface NewStrike {
  agentId: string;
  reason: StrikeReason;
  /** The job that showed it; null when no single job did. */
  jobId: string | null;
  /** Numbers that explain it (rates, sizes, chip, the failed checks' reasons), never content. */
  details: Readonly<Record<string, number | string>>;
  at: number;
}

/** A recorded strike. */
export interface Strike extends NewStrike {
  id: string;
}

/** The strikes table. */
export interface StrikeStore {
  /** Records a strike; returns it with its id. */
  add(strike: NewStrike): Promise<Strike>;
  /** Strikes at or after `since`, of one agent or of all, newest first. */
  list(options: { agentId?: string; since?: number; limit?: number }): Promise<Strike[]>;
  /** Deletes an agent's strikes (or everyone's, with no agent); resolves with how many went. */
  clear(agentId?: string): Promise<number>;
}

function strikeOf(row: SqlRow): Strike {
  let details: Record<string, number | string> = {};
  try {
    details = JSON.parse(String(row.details)) as Record<string, number | string>;
  } catch {
    // A row written by hand: show it without details rather than fail the list.
  }
  return {
    id: String(row.id),
    agentId: String(row.agent_id),
    reason: String(row.reason) as StrikeReason,
    jobId: textOrNull(row.job_id),
    details,
    at: intOf(row.at),
  };
}

/** {@link StrikeStore} on the gateway's database (SQLite or PostgreSQL). */
export class SqlStrikeStore implements StrikeStore {
  constructor(readonly driver: SqlDriver) {}

  async add(s: NewStrike): Promise<Strike> {
    const strike: Strike = { ...s, id: toHex(randomBytes(12)) };
    await this.driver.run('INSERT INTO strikes (id, agent_id, at, reason, job_id, details) VALUES (?, ?, ?, ?, ?, ?)', [
      strike.id,
      s.agentId,
      Math.floor(s.at),
      s.reason,
      s.jobId,
      JSON.stringify(s.details),
    ]);
    return strike;
  }

  async list(options: { agentId?: string; since?: number; limit?: number }): Promise<Strike[]> {
    const where: string[] = ['at >= ?'];
    const params: (string | number)[] = [Math.floor(options.since ?? 0)];
    if (options.agentId !== undefined) {
      where.push('agent_id = ?');
      params.push(options.agentId);
    }
    params.push(Math.max(1, Math.floor(options.limit ?? 1000)));
    const rows = await this.driver.all(
      `SELECT id, agent_id, at, reason, job_id, details FROM strikes WHERE ${where.join(' AND ')} ORDER BY at DESC, id LIMIT ?`,
      params,
    );
    return rows.map(strikeOf);
  }

  async clear(agentId?: string): Promise<number> {
    return agentId === undefined
      ? this.driver.run('DELETE FROM strikes')
      : this.driver.run('DELETE FROM strikes WHERE agent_id = ?', [agentId]);
  }
}
