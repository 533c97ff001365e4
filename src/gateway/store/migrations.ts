/**
 * The gateway's schema, as numbered migrations in the SQL that SQLite and PostgreSQL both
 * accept: TEXT, INTEGER and BIGINT columns, CHECK, UNIQUE and REFERENCES constraints, plain
 * indexes; ids are text chosen by the gateway (no AUTOINCREMENT / SERIAL, which differ);
 * times are BIGINT milliseconds; money is BIGINT micro-credits. A test applies these to a real
 * PostgreSQL (test/gateway/store.services.test.ts).
 *
 * Append only: a released migration is never edited; change the schema with a new one.
 *
 * A step SQLite can only take by rebuilding a table (dropping a constraint) is written as a
 * function of the driver, which reads the table's current definition and returns each
 * database's script, so that the rebuild keeps whatever earlier migrations made of the table.
 */
import type { SqlDriver } from './sql.js';

/** One schema step: its SQL, or a function that writes it for the database at hand. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string | ((driver: SqlDriver) => Promise<string>);
}

/** The foreign key from ledger_transfers.job_id to jobs, as version 1 wrote it. */
const TRANSFER_JOB_FK = /\s+REFERENCES\s+"?jobs"?\s*\(\s*"?job_id"?\s*\)/i;

/**
 * Drops the foreign key from ledger_transfers.job_id to jobs, so that the retention sweep can
 * delete old job rows while every transfer, the money record, stays as it is. PostgreSQL drops
 * the constraint; SQLite, which cannot, rebuilds the table from its current definition without
 * it (copying every row unchanged) and recreates its indexes.
 */
async function transfersWithoutJobForeignKey(driver: SqlDriver): Promise<string> {
  if (driver.dialect === 'postgres') return 'ALTER TABLE ledger_transfers DROP CONSTRAINT IF EXISTS ledger_transfers_job_id_fkey;';
  const create = await transfersDefinition(driver);
  if (!TRANSFER_JOB_FK.test(create)) return 'SELECT 1;';
  return (await rebuildTransfers(driver, create.replace(TRANSFER_JOB_FK, ''))).join('\n');
}

/** SQLite: the current CREATE TABLE statement of ledger_transfers. */
async function transfersDefinition(driver: SqlDriver): Promise<string> {
  const table = await driver.get("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger_transfers'");
  return String(table?.sql ?? '');
}

/**
 * SQLite, which cannot alter a constraint: the statements that rebuild ledger_transfers as
 * `create` (its current definition, edited), copying every row unchanged and recreating its indexes.
 */
async function rebuildTransfers(driver: SqlDriver, create: string): Promise<string[]> {
  const indexes = await driver.all(
    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_transfers' AND sql IS NOT NULL",
  );
  const rebuilt = create.replace(/^CREATE TABLE\s+"?ledger_transfers"?/i, 'CREATE TABLE ledger_transfers_rebuilt');
  return [
    `${rebuilt};`,
    'INSERT INTO ledger_transfers_rebuilt SELECT * FROM ledger_transfers;',
    'DROP TABLE ledger_transfers;',
    'ALTER TABLE ledger_transfers_rebuilt RENAME TO ledger_transfers;',
    ...indexes.map((r) => `${String(r.sql)};`),
  ];
}

/**
 * `common` followed by what widens the transfer kinds' CHECK from `from` to `to`: PostgreSQL
 * replaces the constraint; SQLite rebuilds the table from its current definition (nothing when
 * that definition no longer holds `from`).
 */
async function withTransferKinds(driver: SqlDriver, common: string, from: string, to: string): Promise<string> {
  if (driver.dialect === 'postgres') {
    return `${common}
ALTER TABLE ledger_transfers DROP CONSTRAINT IF EXISTS ledger_transfers_kind_check;
ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_kind_check CHECK (${to});`;
  }
  const create = await transfersDefinition(driver);
  if (!create.includes(from)) return common;
  return [common, ...(await rebuildTransfers(driver, create.replace(from, to)))].join('\n');
}

/** The transfer kinds version 1 allowed, as its CHECK wrote them. */
const TRANSFER_KINDS_V1 = "kind IN ('topup', 'hold', 'settle-operator', 'settle-platform', 'release', 'payout')";
/** Version 7's: a dispute returns the inflated part of a charge from the operator and the platform to the client. */
const TRANSFER_KINDS_V7 =
  "kind IN ('topup', 'hold', 'settle-operator', 'settle-platform', 'release', 'payout', 'dispute-operator', 'dispute-platform')";

/**
 * Version 7: the client's countersignatures, the pending window and disputes on jobs, and two more
 * transfer kinds. PostgreSQL replaces the kind CHECK; SQLite, which cannot, rebuilds the transfers
 * table from its current definition with the wider list (copying every row unchanged).
 */
async function countersignatures(driver: SqlDriver): Promise<string> {
  const common = `
ALTER TABLE jobs ADD COLUMN payable_at BIGINT;
ALTER TABLE jobs ADD COLUMN disputed_at BIGINT;
ALTER TABLE jobs ADD COLUMN dispute TEXT;

CREATE TABLE job_countersigns (
  job_id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  reply_digest TEXT NOT NULL,
  completion_tokens BIGINT NOT NULL CHECK (completion_tokens >= 0),
  chunks BIGINT NOT NULL CHECK (chunks >= 0),
  received TEXT NOT NULL CHECK (received IN ('done', 'broken')),
  mac TEXT NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE INDEX jobs_operator_payable ON jobs (operator_id, payable_at);
`;
  return withTransferKinds(driver, common, TRANSFER_KINDS_V1, TRANSFER_KINDS_V7);
}

/** Version 8's: a forfeit returns a job's shares from the operator and the platform to the client. */
const TRANSFER_KINDS_V8 =
  "kind IN ('topup', 'hold', 'settle-operator', 'settle-platform', 'release', 'payout', 'dispute-operator', 'dispute-platform', " +
  "'forfeit-operator', 'forfeit-platform')";

/**
 * Version 8: audits (the gateway's re-checks of revealed jobs: pass or fail with the findings'
 * reasons and figures, never content), one per job and source, the forfeit time on jobs, and two
 * more transfer kinds. The kind CHECK is widened as version 7 did it: PostgreSQL replaces it,
 * SQLite rebuilds the transfers table from its current definition.
 */
async function audits(driver: SqlDriver): Promise<string> {
  const common = `
CREATE TABLE audits (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  at BIGINT NOT NULL,
  source TEXT NOT NULL CHECK (source IN ('reveal')),
  pass INTEGER NOT NULL CHECK (pass IN (0, 1)),
  findings TEXT NOT NULL,
  figures TEXT NOT NULL,
  UNIQUE (job_id, source)
);
CREATE INDEX audits_agent_at ON audits (agent_id, at);
CREATE INDEX audits_at ON audits (at);
ALTER TABLE jobs ADD COLUMN forfeited_at BIGINT;
`;
  return withTransferKinds(driver, common, TRANSFER_KINDS_V7, TRANSFER_KINDS_V8);
}

/** Every migration, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'accounts, agents, prices, jobs and the double-entry ledger',
    sql: `
CREATE TABLE operators (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);

CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  operator_id TEXT NOT NULL REFERENCES operators (id),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  used_by TEXT
);

CREATE TABLE agents (
  agent_id TEXT PRIMARY KEY,
  identity_key TEXT NOT NULL,
  operator_id TEXT REFERENCES operators (id),
  enrollment_id TEXT REFERENCES enrollment_tokens (id),
  bound_at BIGINT,
  first_seen_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL,
  model TEXT
);
CREATE INDEX agents_operator ON agents (operator_id);

CREATE TABLE prices (
  model TEXT PRIMARY KEY,
  prompt_per_mtok BIGINT NOT NULL CHECK (prompt_per_mtok >= 0),
  completion_per_mtok BIGINT NOT NULL CHECK (completion_per_mtok >= 0),
  updated_at BIGINT NOT NULL
);

CREATE TABLE ledger_accounts (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('client', 'operator', 'platform', 'holds', 'external')),
  balance BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  CHECK (kind = 'external' OR balance >= 0)
);

CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  client_key_id TEXT REFERENCES api_keys (id),
  model TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('held', 'settled', 'released')),
  hold_amount BIGINT NOT NULL CHECK (hold_amount >= 0),
  prompt_price BIGINT NOT NULL,
  completion_price BIGINT NOT NULL,
  operator_share_bps INTEGER NOT NULL CHECK (operator_share_bps BETWEEN 0 AND 10000),
  body_length INTEGER NOT NULL,
  max_tokens INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  ended_at BIGINT,
  outcome TEXT,
  agent_id TEXT,
  operator_id TEXT REFERENCES operators (id),
  attempt INTEGER,
  prompt_tokens BIGINT,
  completion_tokens BIGINT,
  charged BIGINT,
  operator_amount BIGINT,
  platform_amount BIGINT,
  finish_reason TEXT,
  receipt TEXT
);
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_operator_ended ON jobs (operator_id, ended_at);
CREATE INDEX jobs_client ON jobs (client_key_id, status);

CREATE TABLE ledger_transfers (
  id TEXT PRIMARY KEY,
  job_id TEXT REFERENCES jobs (job_id),
  kind TEXT NOT NULL CHECK (kind IN ('topup', 'hold', 'settle-operator', 'settle-platform', 'release', 'payout')),
  debit TEXT NOT NULL REFERENCES ledger_accounts (id),
  credit TEXT NOT NULL REFERENCES ledger_accounts (id),
  amount BIGINT NOT NULL CHECK (amount > 0),
  created_at BIGINT NOT NULL,
  memo TEXT,
  CHECK (debit <> credit),
  UNIQUE (job_id, kind)
);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit);
`,
  },
  {
    version: 2,
    name: 'the gateway signing key and the model catalog',
    // One active key (retired_at NULL) signs; retired ones stay so that what they signed can be
    // told apart later. The seed is the private half: it is read only to sign, never served or logged.
    sql: `
CREATE TABLE gateway_keys (
  key_id TEXT PRIMARY KEY,
  public_key TEXT NOT NULL UNIQUE,
  seed TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  retired_at BIGINT
);

CREATE TABLE catalog_files (
  model TEXT NOT NULL,
  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
  bytes BIGINT NOT NULL CHECK (bytes > 0),
  name TEXT NOT NULL,
  quantization TEXT NOT NULL,
  context_length INTEGER NOT NULL CHECK (context_length > 0),
  url TEXT,
  added_at BIGINT NOT NULL,
  PRIMARY KEY (model, sha256)
);
`,
  },
  {
    version: 3,
    name: 'late settlement: request digest, completion bound and the late settlement time on jobs',
    sql: `
ALTER TABLE jobs ADD COLUMN request_digest TEXT;
ALTER TABLE jobs ADD COLUMN completion_bound BIGINT;
ALTER TABLE jobs ADD COLUMN settled_late_at BIGINT;
`,
  },
  {
    version: 4,
    name: 'job rows may be swept while their ledger transfers stay (no foreign key from transfers to jobs)',
    sql: transfersWithoutJobForeignKey,
  },
  {
    version: 5,
    name: 'gateway key rotation statements and the released-versions list',
    // rotation: on a key that replaced another, the statement (JSON) the old key signed naming it.
    // grace_until: on a retired key, until when clients may still follow its rotation statement.
    sql: `
ALTER TABLE gateway_keys ADD COLUMN rotation TEXT;
ALTER TABLE gateway_keys ADD COLUMN grace_until BIGINT;

CREATE TABLE gateway_releases (
  app_hash TEXT PRIMARY KEY CHECK (length(app_hash) = 64),
  version TEXT NOT NULL,
  added_at BIGINT NOT NULL
);
`,
  },
  {
    version: 6,
    name: 'strikes: what the honesty checks caught of each agent',
    // details: JSON of numbers (rates, sizes, chip name) that explain the strike, never content.
    sql: `
CREATE TABLE strikes (
  id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  at BIGINT NOT NULL,
  reason TEXT NOT NULL,
  job_id TEXT,
  details TEXT NOT NULL
);
CREATE INDEX strikes_agent_at ON strikes (agent_id, at);
CREATE INDEX strikes_at ON strikes (at);
`,
  },
  {
    version: 7,
    name: 'client countersignatures, pending earnings and disputes',
    sql: countersignatures,
  },
  {
    version: 8,
    name: 'audits of revealed jobs, forfeits',
    sql: audits,
  },
  {
    version: 9,
    name: 'gateway nodes and the node that owns each held job',
    // Many nodes on one database: each heartbeats its row; a held job names its node, and whoever
    // finds that node's row stale (or gone) releases the job (src/gateway/cluster/node-liveness.ts).
    sql: `
CREATE TABLE gateway_nodes (
  node_id TEXT PRIMARY KEY,
  started_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL
);
CREATE INDEX gateway_nodes_last_seen ON gateway_nodes (last_seen_at);
ALTER TABLE jobs ADD COLUMN node_id TEXT;
CREATE INDEX jobs_node_status ON jobs (node_id, status);
`,
  },
  {
    version: 10,
    name: 'operator dashboard sessions',
    // Sign-ins every node accepts (src/gateway/operator/operator-session.store.ts): the token's
    // SHA-256 only, never the token; expired rows are swept by the retention sweep and at sign-in.
    sql: `
CREATE TABLE operator_sessions (
  token_hash TEXT PRIMARY KEY,
  operator_id TEXT NOT NULL REFERENCES operators (id),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX operator_sessions_expires ON operator_sessions (expires_at);
CREATE INDEX operator_sessions_created ON operator_sessions (created_at);
`,
  },
  {
    version: 11,
    name: 'shared balances summed from transfers',
    // The holds, platform and operator accounts' balances are summed from their transfers when read
    // (ledger.store.ts, SUMMED_KINDS): their rows, updated by every job's transaction before, stay
    // at 0 from here on. Every node of a cluster must run a version that reads them so.
    sql: `
UPDATE ledger_accounts SET balance = 0 WHERE kind IN ('holds', 'platform', 'operator');
`,
  },
];

/** Applies every migration not applied yet, each in its own transaction; returns the versions applied. */
export async function migrate(driver: SqlDriver, now: number): Promise<number[]> {
  await driver.script(`CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
);`);
  const done = new Set((await driver.all('SELECT version FROM schema_migrations')).map((r) => Number(r.version)));
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (done.has(m.version)) continue;
    try {
      const sql = typeof m.sql === 'string' ? m.sql : await m.sql(driver);
      // Version and name are ours, not input: safe to inline, and a script cannot bind parameters.
      await driver.script(
        `${sql}\nINSERT INTO schema_migrations (version, name, applied_at) ` +
          `VALUES (${m.version}, '${m.name.replace(/'/g, "''")}', ${Math.floor(now)});`,
      );
    } catch (err) {
      // Another process (an admin command next to a starting gateway) may have applied it first.
      const row = await driver.get('SELECT version FROM schema_migrations WHERE version = ?', [m.version]);
      if (row) continue;
      throw err;
    }
    applied.push(m.version);
  }
  return applied;
}
