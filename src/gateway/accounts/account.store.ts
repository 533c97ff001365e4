/**
 * Accounts: client API keys, operators (and their dashboard tokens), enrollment tokens that
 * bind an agent identity to an operator once, the agents the gateway has seen, and model
 * prices. Secrets are stored as SHA-256 only (see secrets.ts).
 */
import { NightjarError } from '../../shared/index.js';
import { bigOf, intOf, intOrNull, textOrNull, type SqlDriver, type SqlExecutor, type SqlRow } from '../store/sql.js';
import { issueSecret, secretId, secretMatches, type IssuedSecret, type SecretKind } from './secrets.js';

/** A client API key, without its secret. */
export interface ApiKeyInfo {
  id: string;
  name: string;
  createdAt: number;
  revokedAt: number | null;
}

/** An operator: runs agents, earns their share, signs in to the dashboard. */
export interface OperatorInfo {
  id: string;
  name: string;
  createdAt: number;
}

/** An enrollment token, without its secret. */
export interface EnrollmentInfo {
  id: string;
  operatorId: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  usedBy: string | null;
}

/** An agent the gateway has seen, and its binding. */
export interface AgentRecord {
  agentId: string;
  /** base64url Ed25519 identity key. */
  identityKey: string;
  operatorId: string | null;
  boundAt: number | null;
  firstSeenAt: number;
  lastSeenAt: number;
  model: string | null;
}

/** A model's price, in micro-credits per million tokens. */
export interface Price {
  promptPerMTok: bigint;
  completionPerMTok: bigint;
}

/** A priced model. */
export interface PriceRow extends Price {
  model: string;
  updatedAt: number;
}

/** What an agent presents when it connects. */
export interface AdmitRequest {
  agentId: string;
  identityKey: string;
  /** Enrollment token from the hello frame, if any. */
  enrollToken?: string | undefined;
  model: string | null;
  now: number;
}

/** Storage of accounts. Implemented on SQL by {@link SqlAccountStore}. */
export interface AccountStore {
  /** Issues a client API key; the secret is in the answer only. */
  createApiKey(input: { name: string; now: number }): Promise<ApiKeyInfo & { key: string }>;
  /** The key a secret belongs to, or null if unknown, malformed or revoked. */
  authenticateApiKey(key: string): Promise<ApiKeyInfo | null>;
  /** A key by id, revoked or not. */
  getApiKey(id: string): Promise<ApiKeyInfo | null>;
  /** Every key, oldest first. */
  listApiKeys(): Promise<ApiKeyInfo[]>;
  /** Revokes a key; false if there is no such key. */
  revokeApiKey(id: string, now: number): Promise<boolean>;

  /** Creates an operator; the dashboard token is in the answer only. */
  createOperator(input: { name: string; now: number }): Promise<OperatorInfo & { token: string }>;
  /** The operator a dashboard token belongs to, or null. */
  authenticateOperator(token: string): Promise<OperatorInfo | null>;
  /** An operator by id. */
  getOperator(id: string): Promise<OperatorInfo | null>;
  /** Every operator, oldest first. */
  listOperators(): Promise<OperatorInfo[]>;
  /** Replaces an operator's token (the old one stops working); the new one is in the answer only. */
  rotateOperatorToken(id: string): Promise<string>;

  /** Issues a single-use enrollment token for `operatorId`, valid for `ttlMs`. */
  createEnrollmentToken(input: { operatorId: string; now: number; ttlMs: number }): Promise<EnrollmentInfo & { token: string }>;
  /** Enrollment tokens (one operator's, or all), oldest first. */
  listEnrollmentTokens(operatorId?: string): Promise<EnrollmentInfo[]>;

  /**
   * Records an authenticated agent and returns its operator binding. With an enrollment token,
   * binds it (once): a token already used by another agent, expired or unknown, or an identity
   * already bound to another operator, throws NJ_ENROLL_INVALID. Presenting the token that bound
   * this very agent again is fine (agents send it on every connect).
   */
  admitAgent(request: AdmitRequest): Promise<{ operatorId: string | null; boundNow: boolean }>;
  /** Records that an agent was last seen at `now`. */
  touchAgent(agentId: string, now: number): Promise<void>;
  /** An agent the gateway has seen, with its binding. */
  getAgent(agentId: string): Promise<AgentRecord | null>;
  /** Agents bound to `operatorId`. */
  listAgents(operatorId: string): Promise<AgentRecord[]>;
  /** Removes an agent's binding; false if it had none. */
  unbindAgent(agentId: string): Promise<boolean>;

  /** Sets (or replaces) a model's price. */
  setPrice(model: string, price: Price, now: number): Promise<void>;
  /** A model's price, or null if it has none. */
  getPrice(model: string): Promise<Price | null>;
  /** Every priced model. */
  listPrices(): Promise<PriceRow[]>;
  /** Removes a price (the model is refused until priced again); false if it had none. */
  removePrice(model: string): Promise<boolean>;
}

/** Largest price accepted, in micro-credits per million tokens (one million credits). */
export const MAX_PRICE_PER_MTOK = 1_000_000_000_000n;

const apiKeyOf = (r: SqlRow): ApiKeyInfo => ({
  id: String(r.id),
  name: String(r.name),
  createdAt: intOf(r.created_at),
  revokedAt: intOrNull(r.revoked_at),
});
const operatorOf = (r: SqlRow): OperatorInfo => ({ id: String(r.id), name: String(r.name), createdAt: intOf(r.created_at) });
const enrollmentOf = (r: SqlRow): EnrollmentInfo => ({
  id: String(r.id),
  operatorId: String(r.operator_id),
  createdAt: intOf(r.created_at),
  expiresAt: intOf(r.expires_at),
  usedAt: intOrNull(r.used_at),
  usedBy: textOrNull(r.used_by),
});
const agentOf = (r: SqlRow): AgentRecord => ({
  agentId: String(r.agent_id),
  identityKey: String(r.identity_key),
  operatorId: textOrNull(r.operator_id),
  boundAt: intOrNull(r.bound_at),
  firstSeenAt: intOf(r.first_seen_at),
  lastSeenAt: intOf(r.last_seen_at),
  model: textOrNull(r.model),
});

const MAX_NAME = 128;

function checkName(name: string): string {
  const n = name.trim();
  if (n.length === 0 || n.length > MAX_NAME || [...n].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) {
    throw new NightjarError('NJ_USAGE', `a name must be 1–${MAX_NAME} printable characters`);
  }
  return n;
}

/** {@link AccountStore} on a SQL driver (SQLite or PostgreSQL). */
export class SqlAccountStore implements AccountStore {
  readonly #db: SqlDriver;

  constructor(driver: SqlDriver) {
    this.#db = driver;
  }

  /** Inserts a row keyed by a fresh secret's id, drawing again on the (unlikely) id collision. */
  async #insertSecret(kind: SecretKind, insert: (tx: SqlExecutor, s: IssuedSecret) => Promise<number>): Promise<IssuedSecret> {
    for (let i = 0; i < 5; i++) {
      const s = issueSecret(kind);
      if ((await this.#db.transaction((tx) => insert(tx, s))) === 1) return s;
    }
    throw new NightjarError('NJ_INTERNAL', 'could not draw a unique id');
  }

  async createApiKey(input: { name: string; now: number }): Promise<ApiKeyInfo & { key: string }> {
    const name = checkName(input.name);
    const s = await this.#insertSecret('njk', async (tx, s) => {
      const n = await tx.run('INSERT INTO api_keys (id, key_hash, name, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING', [
        s.id,
        s.hash,
        name,
        input.now,
      ]);
      if (n === 1) {
        await tx.run("INSERT INTO ledger_accounts (id, kind, balance, created_at) VALUES (?, 'client', 0, ?) ON CONFLICT DO NOTHING", [
          `client:${s.id}`,
          input.now,
        ]);
      }
      return n;
    });
    return { id: s.id, name, createdAt: input.now, revokedAt: null, key: s.secret };
  }

  async authenticateApiKey(key: string): Promise<ApiKeyInfo | null> {
    const id = secretId('njk', key);
    if (!id) return null;
    const row = await this.#db.get('SELECT * FROM api_keys WHERE id = ?', [id]);
    if (!row || !secretMatches(key, String(row.key_hash))) return null;
    const info = apiKeyOf(row);
    return info.revokedAt === null ? info : null;
  }

  async getApiKey(id: string): Promise<ApiKeyInfo | null> {
    const row = await this.#db.get('SELECT * FROM api_keys WHERE id = ?', [id]);
    return row ? apiKeyOf(row) : null;
  }

  async listApiKeys(): Promise<ApiKeyInfo[]> {
    return (await this.#db.all('SELECT * FROM api_keys ORDER BY created_at, id')).map(apiKeyOf);
  }

  async revokeApiKey(id: string, now: number): Promise<boolean> {
    const key = await this.getApiKey(id);
    if (!key) return false;
    await this.#db.run('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id]);
    return true;
  }

  async createOperator(input: { name: string; now: number }): Promise<OperatorInfo & { token: string }> {
    const name = checkName(input.name);
    const s = await this.#insertSecret('njop', async (tx, s) => {
      const n = await tx.run('INSERT INTO operators (id, name, token_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING', [
        s.id,
        name,
        s.hash,
        input.now,
      ]);
      if (n === 1) {
        await tx.run("INSERT INTO ledger_accounts (id, kind, balance, created_at) VALUES (?, 'operator', 0, ?) ON CONFLICT DO NOTHING", [
          `operator:${s.id}`,
          input.now,
        ]);
      }
      return n;
    });
    return { id: s.id, name, createdAt: input.now, token: s.secret };
  }

  async authenticateOperator(token: string): Promise<OperatorInfo | null> {
    const id = secretId('njop', token);
    if (!id) return null;
    const row = await this.#db.get('SELECT * FROM operators WHERE id = ?', [id]);
    return row && secretMatches(token, String(row.token_hash)) ? operatorOf(row) : null;
  }

  async getOperator(id: string): Promise<OperatorInfo | null> {
    const row = await this.#db.get('SELECT * FROM operators WHERE id = ?', [id]);
    return row ? operatorOf(row) : null;
  }

  async listOperators(): Promise<OperatorInfo[]> {
    return (await this.#db.all('SELECT * FROM operators ORDER BY created_at, id')).map(operatorOf);
  }

  async rotateOperatorToken(id: string): Promise<string> {
    if (!(await this.getOperator(id))) throw new NightjarError('NJ_NOT_FOUND', `no operator ${id}`);
    // The token keeps its operator's id; its secret part is what changes.
    const fresh = issueSecret('njop', id);
    await this.#db.run('UPDATE operators SET token_hash = ? WHERE id = ?', [fresh.hash, id]);
    return fresh.secret;
  }

  async createEnrollmentToken(input: { operatorId: string; now: number; ttlMs: number }): Promise<EnrollmentInfo & { token: string }> {
    if (!(await this.getOperator(input.operatorId))) throw new NightjarError('NJ_NOT_FOUND', `no operator ${input.operatorId}`);
    if (!Number.isInteger(input.ttlMs) || input.ttlMs < 60_000)
      throw new NightjarError('NJ_USAGE', 'an enrollment token must live at least a minute');
    const expiresAt = input.now + input.ttlMs;
    const s = await this.#insertSecret('njen', (tx, s) =>
      tx.run(
        'INSERT INTO enrollment_tokens (id, token_hash, operator_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
        [s.id, s.hash, input.operatorId, input.now, expiresAt],
      ),
    );
    return { id: s.id, operatorId: input.operatorId, createdAt: input.now, expiresAt, usedAt: null, usedBy: null, token: s.secret };
  }

  async listEnrollmentTokens(operatorId?: string): Promise<EnrollmentInfo[]> {
    const rows = operatorId
      ? await this.#db.all('SELECT * FROM enrollment_tokens WHERE operator_id = ? ORDER BY created_at, id', [operatorId])
      : await this.#db.all('SELECT * FROM enrollment_tokens ORDER BY created_at, id');
    return rows.map(enrollmentOf);
  }

  async admitAgent(request: AdmitRequest): Promise<{ operatorId: string | null; boundNow: boolean }> {
    const { agentId, identityKey, enrollToken, now, model } = request;
    return this.#db.transaction(async (tx) => {
      const existing = await tx.get('SELECT * FROM agents WHERE agent_id = ?', [agentId]);
      if (existing && String(existing.identity_key) !== identityKey) {
        // agentId is derived from the identity key, so this cannot happen for a verified bundle.
        throw new NightjarError('NJ_ENROLL_INVALID', 'this agent id is recorded with another identity key');
      }
      if (existing) {
        await tx.run('UPDATE agents SET last_seen_at = ?, model = ? WHERE agent_id = ?', [now, model, agentId]);
      } else {
        await tx.run('INSERT INTO agents (agent_id, identity_key, first_seen_at, last_seen_at, model) VALUES (?, ?, ?, ?, ?)', [
          agentId,
          identityKey,
          now,
          now,
          model,
        ]);
      }
      let operatorId = existing ? textOrNull(existing.operator_id) : null;
      if (enrollToken === undefined) return { operatorId, boundNow: false };

      const invalid = (why: string): never => {
        throw new NightjarError('NJ_ENROLL_INVALID', `the enrollment token ${why}`);
      };
      const id = secretId('njen', enrollToken);
      const row = id ? await tx.get('SELECT * FROM enrollment_tokens WHERE id = ?', [id]) : undefined;
      if (!row || !secretMatches(enrollToken, String(row.token_hash))) return invalid('is not known to this gateway');
      const token = enrollmentOf(row);
      if (token.usedBy === agentId) return { operatorId, boundNow: false };
      if (token.usedAt !== null) return invalid('was already used by another agent');
      if (now > token.expiresAt) return invalid('has expired');
      if (operatorId !== null && operatorId !== token.operatorId)
        return invalid('is for another operator than the one this agent is bound to');
      await tx.run('UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL', [now, agentId, token.id]);
      operatorId = token.operatorId;
      await tx.run('UPDATE agents SET operator_id = ?, enrollment_id = ?, bound_at = ? WHERE agent_id = ?', [
        operatorId,
        token.id,
        now,
        agentId,
      ]);
      return { operatorId, boundNow: true };
    });
  }

  async touchAgent(agentId: string, now: number): Promise<void> {
    await this.#db.run('UPDATE agents SET last_seen_at = ? WHERE agent_id = ?', [now, agentId]);
  }

  async getAgent(agentId: string): Promise<AgentRecord | null> {
    const row = await this.#db.get('SELECT * FROM agents WHERE agent_id = ?', [agentId]);
    return row ? agentOf(row) : null;
  }

  async listAgents(operatorId: string): Promise<AgentRecord[]> {
    return (await this.#db.all('SELECT * FROM agents WHERE operator_id = ? ORDER BY bound_at, agent_id', [operatorId])).map(agentOf);
  }

  async unbindAgent(agentId: string): Promise<boolean> {
    return (
      (await this.#db.run('UPDATE agents SET operator_id = NULL, bound_at = NULL WHERE agent_id = ? AND operator_id IS NOT NULL', [
        agentId,
      ])) === 1
    );
  }

  async setPrice(model: string, price: Price, now: number): Promise<void> {
    for (const v of [price.promptPerMTok, price.completionPerMTok]) {
      if (v < 0n || v > MAX_PRICE_PER_MTOK)
        throw new NightjarError('NJ_USAGE', `a price must be 0 to ${MAX_PRICE_PER_MTOK} micro-credits per million tokens`);
    }
    await this.#db.run(
      `INSERT INTO prices (model, prompt_per_mtok, completion_per_mtok, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (model) DO UPDATE SET prompt_per_mtok = excluded.prompt_per_mtok, ` +
        'completion_per_mtok = excluded.completion_per_mtok, updated_at = excluded.updated_at',
      [model, price.promptPerMTok, price.completionPerMTok, now],
    );
  }

  async getPrice(model: string): Promise<Price | null> {
    const row = await this.#db.get('SELECT * FROM prices WHERE model = ?', [model]);
    return row ? { promptPerMTok: bigOf(row.prompt_per_mtok), completionPerMTok: bigOf(row.completion_per_mtok) } : null;
  }

  async listPrices(): Promise<PriceRow[]> {
    return (await this.#db.all('SELECT * FROM prices ORDER BY model')).map((r) => ({
      model: String(r.model),
      promptPerMTok: bigOf(r.prompt_per_mtok),
      completionPerMTok: bigOf(r.completion_per_mtok),
      updatedAt: intOf(r.updated_at),
    }));
  }

  async removePrice(model: string): Promise<boolean> {
    return (await this.#db.run('DELETE FROM prices WHERE model = ?', [model])) === 1;
  }
}
