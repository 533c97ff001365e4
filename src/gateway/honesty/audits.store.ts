/**
 * Audits: the gateway's record of each re-check of a job's reply (today only of jobs their clients
 * revealed, source `reveal`): pass or fail, the failed checks' reasons and figures, and what the
 * check measured. Never content: no prompt, no reply, no detail sentence that could quote one.
 * One audit per job and source (a database constraint), so a job is revealed once.
 */
import { randomBytes, toHex, type AuditFailureReason } from '../../shared/index.js';
import { intOf, type SqlDriver, type SqlRow } from '../store/sql.js';

/** Where an audit came from. */
export type AuditSource = 'reveal';

/** One failed check of an audit, as stored: its reason and figures. */
export interface StoredFinding {
  reason: AuditFailureReason;
  figures: Readonly<Record<string, number>>;
}

/** An audit to record. */
export interface NewAudit {
  jobId: string;
  agentId: string;
  at: number;
  source: AuditSource;
  pass: boolean;
  findings: readonly StoredFinding[];
  figures: Readonly<Record<string, number>>;
}

/** A recorded audit. */
export interface Audit extends NewAudit {
  id: string;
}

/** One agent's audits, counted. */
export interface AuditCounts {
  agentId: string;
  passed: number;
  failed: number;
}

/** The audits table. */
export interface AuditStore {
  /** Records an audit; resolves with it, or null if the job already has an audit from that source. */
  add(audit: NewAudit): Promise<Audit | null>;
  /** The audit of a job from `source`, or null. */
  get(jobId: string, source: AuditSource): Promise<Audit | null>;
  /** Audits at or after `since`, of one agent or of all, failed only if asked, newest first. */
  list(options: { agentId?: string; since?: number; failedOnly?: boolean; limit?: number }): Promise<Audit[]>;
  /** Passed and failed audits per agent (agents with none are left out). */
  counts(): Promise<AuditCounts[]>;
}

function parseJson<T>(text: unknown, fallback: T): T {
  try {
    return JSON.parse(String(text)) as T;
  } catch {
    // A row written by hand: show it without figures rather than fail the list.
    return fallback;
  }
}

function auditOf(row: SqlRow): Audit {
  return {
    id: String(row.id),
    jobId: String(row.job_id),
    agentId: String(row.agent_id),
    at: intOf(row.at),
    source: String(row.source) as AuditSource,
    pass: intOf(row.pass) === 1,
    findings: parseJson<StoredFinding[]>(row.findings, []),
    figures: parseJson<Record<string, number>>(row.figures, {}),
  };
}

/** {@link AuditStore} on the gateway's database (SQLite or PostgreSQL). */
export class SqlAuditStore implements AuditStore {
  constructor(readonly driver: SqlDriver) {}

  async add(a: NewAudit): Promise<Audit | null> {
    const audit: Audit = {
      ...a,
      id: toHex(randomBytes(12)),
      at: Math.floor(a.at),
      findings: a.findings.map((f) => ({ reason: f.reason, figures: { ...f.figures } })),
    };
    const n = await this.driver.run(
      'INSERT INTO audits (id, job_id, agent_id, at, source, pass, findings, figures) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      [audit.id, a.jobId, a.agentId, audit.at, a.source, a.pass ? 1 : 0, JSON.stringify(audit.findings), JSON.stringify(a.figures)],
    );
    return n === 1 ? audit : null;
  }

  async get(jobId: string, source: AuditSource): Promise<Audit | null> {
    const row = await this.driver.get('SELECT * FROM audits WHERE job_id = ? AND source = ?', [jobId, source]);
    return row ? auditOf(row) : null;
  }

  async list(options: { agentId?: string; since?: number; failedOnly?: boolean; limit?: number }): Promise<Audit[]> {
    const where: string[] = ['at >= ?'];
    const params: (string | number)[] = [Math.floor(options.since ?? 0)];
    if (options.agentId !== undefined) {
      where.push('agent_id = ?');
      params.push(options.agentId);
    }
    if (options.failedOnly) where.push('pass = 0');
    params.push(Math.max(1, Math.min(10_000, Math.floor(options.limit ?? 1000))));
    const rows = await this.driver.all(`SELECT * FROM audits WHERE ${where.join(' AND ')} ORDER BY at DESC, id LIMIT ?`, params);
    return rows.map(auditOf);
  }

  async counts(): Promise<AuditCounts[]> {
    const rows = await this.driver.all(
      `SELECT agent_id, SUM(CASE WHEN pass = 1 THEN 1 ELSE 0 END) AS passed, SUM(CASE WHEN pass = 0 THEN 1 ELSE 0 END) AS failed
         FROM audits GROUP BY agent_id ORDER BY agent_id`,
    );
    return rows.map((r) => ({ agentId: String(r.agent_id), passed: intOf(r.passed), failed: intOf(r.failed) }));
  }
}
