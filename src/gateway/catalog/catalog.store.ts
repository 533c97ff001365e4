/**
 * The gateway's model catalog and signing key, in the gateway's database (SQLite or PostgreSQL).
 *
 * Why the key lives in the store rather than in a key file: every node of a cluster must sign
 * with the one key clients pin, and the store is the one thing the nodes share; it is backed up
 * with the ledger it vouches for; and an admin command (`nightjar gateway key`) on the same
 * database shows the very key the running gateway signs with. The cost: whoever can read the
 * database can read the seed, so the database is to be guarded like the key (it already holds the
 * ledger and the hashes of every secret). The seed is read only to sign; it is never served,
 * printed or logged.
 */
import {
  LIMITS,
  NightjarError,
  createRotation,
  fromBase64Url,
  releaseSchema,
  signedGatewayRotationSchema,
  gatewayCatalogFileSchema,
  gatewayKeyFromSeed,
  generateGatewayKey,
  modelIdSchema,
  describeIssues,
  toBase64Url,
  type GatewayCatalogFile,
  type GatewayCatalogModel,
  type GatewayKeyPair,
  type Release,
  type SignedGatewayRotation,
} from '../../shared/index.js';
import { intOf, textOrNull, type SqlDriver, type SqlRow } from '../store/sql.js';

/** One catalogued file, as stored. */
export interface CatalogFileRow extends GatewayCatalogFile {
  /** The model id the file is. */
  model: string;
  /** When it was added (or last replaced). */
  addedAt: number;
}

/** The public half of the gateway's key, as admin commands show it. */
export interface GatewayKeyInfo {
  keyId: string;
  /** base64url Ed25519 public key. */
  publicKey: string;
  createdAt: number;
}

/** A gateway key as `nightjar gateway key` lists it: the active one, or a retired one and its grace period. */
export interface GatewayKeyRow extends GatewayKeyInfo {
  /** When it stopped signing, or null for the active key. */
  retiredAt: number | null;
  /** Until when clients may follow its rotation statement to its successor (retired keys). */
  graceUntil: number | null;
}

/** One release, as stored. */
export interface ReleaseRow extends Release {
  addedAt: number;
}

/** Storage of the catalog, the gateway key and the released-versions list. Implemented on SQL by {@link SqlCatalogStore}. */
export interface CatalogStore {
  /** Adds a file to a model id (or replaces the entry of that same file); true if it was new. Throws NJ_USAGE past a bound. */
  addFile(model: string, file: GatewayCatalogFile, now: number): Promise<boolean>;
  /** Removes one file of a model, or every file of it without `sha256`; resolves with how many went. */
  removeFile(model: string, sha256?: string): Promise<number>;
  /** Every catalogued file, by model id then sha256. */
  listFiles(): Promise<CatalogFileRow[]>;
  /** The catalog's models, each with its files, sorted as the signed catalog is. */
  models(): Promise<GatewayCatalogModel[]>;
  /** The gateway's active signing key, created (once, even with several nodes starting) if there is none. */
  gatewayKey(now: number): Promise<GatewayKeyPair>;
  /** The active key's public half, or null before the gateway first started. */
  gatewayKeyInfo(): Promise<GatewayKeyInfo | null>;
  /**
   * Makes a new active key; the old one is retired (it signs nothing more) and signs a rotation
   * statement naming the new one, which clients may follow until `now + graceMs`.
   */
  rotateKey(now: number, graceMs: number): Promise<{ retired: GatewayKeyInfo; active: GatewayKeyInfo }>;
  /** Every key, the active one first, then retired ones newest first. */
  listKeys(): Promise<GatewayKeyRow[]>;
  /** The rotation statements still in their grace period at `now`, oldest first. */
  rotations(now: number): Promise<SignedGatewayRotation[]>;
  /** Adds an app hash as a release of `version` (or renames its version); true if it was new. Throws NJ_USAGE past a bound. */
  addRelease(release: Release, now: number): Promise<boolean>;
  /** Removes an app hash from the releases; resolves with how many went (0 or 1). */
  removeRelease(appHash: string): Promise<number>;
  /** Every release, sorted by appHash as the signed list is. */
  listReleases(): Promise<ReleaseRow[]>;
}

const fileOf = (r: SqlRow): CatalogFileRow => {
  const url = textOrNull(r.url);
  return {
    model: String(r.model),
    sha256: String(r.sha256),
    bytes: intOf(r.bytes),
    name: String(r.name),
    quantization: String(r.quantization),
    contextLength: intOf(r.context_length),
    ...(url === null ? {} : { url }),
    addedAt: intOf(r.added_at),
  };
};

/** {@link CatalogStore} on a SQL driver (SQLite or PostgreSQL). */
export class SqlCatalogStore implements CatalogStore {
  readonly #db: SqlDriver;

  constructor(driver: SqlDriver) {
    this.#db = driver;
  }

  async addFile(model: string, file: GatewayCatalogFile, now: number): Promise<boolean> {
    const id = modelIdSchema.safeParse(model);
    if (!id.success) throw new NightjarError('NJ_USAGE', 'a model id uses a-z, 0-9 and ._:/-, at most 128 characters');
    const checked = gatewayCatalogFileSchema.safeParse(file);
    if (!checked.success) throw new NightjarError('NJ_USAGE', `catalog file: ${describeIssues(checked.error)}`);
    const f = checked.data;
    return this.#db.transaction(async (tx) => {
      const exists = await tx.get('SELECT 1 AS ok FROM catalog_files WHERE model = ? AND sha256 = ?', [id.data, f.sha256]);
      if (!exists) {
        const files = intOf((await tx.get('SELECT COUNT(*) AS n FROM catalog_files WHERE model = ?', [id.data]))?.n);
        if (files >= LIMITS.maxFilesPerCatalogModel) {
          throw new NightjarError('NJ_USAGE', `${id.data} already has ${files} files, the most a catalog entry may list; remove one first`);
        }
        const models = intOf((await tx.get('SELECT COUNT(DISTINCT model) AS n FROM catalog_files'))?.n);
        if (files === 0 && models >= LIMITS.maxCatalogModels) {
          throw new NightjarError('NJ_USAGE', `the catalog already lists ${models} model ids, the most it may; remove one first`);
        }
      }
      await tx.run(
        `INSERT INTO catalog_files (model, sha256, bytes, name, quantization, context_length, url, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (model, sha256) DO UPDATE SET bytes = excluded.bytes, name = excluded.name, quantization = excluded.quantization, ` +
          'context_length = excluded.context_length, url = excluded.url, added_at = excluded.added_at',
        [id.data, f.sha256, f.bytes, f.name, f.quantization, f.contextLength, f.url ?? null, now],
      );
      return !exists;
    });
  }

  async removeFile(model: string, sha256?: string): Promise<number> {
    return sha256 === undefined
      ? this.#db.run('DELETE FROM catalog_files WHERE model = ?', [model])
      : this.#db.run('DELETE FROM catalog_files WHERE model = ? AND sha256 = ?', [model, sha256]);
  }

  async listFiles(): Promise<CatalogFileRow[]> {
    // Ids and hex digests are ASCII: byte order (SQLite's and PostgreSQL's "C" order) is the signed order.
    const rows = (await this.#db.all('SELECT * FROM catalog_files')).map(fileOf);
    return rows.sort((a, b) => cmp(a.model, b.model) || cmp(a.sha256, b.sha256));
  }

  async models(): Promise<GatewayCatalogModel[]> {
    const byModel = new Map<string, GatewayCatalogFile[]>();
    for (const row of await this.listFiles()) {
      const files = byModel.get(row.model) ?? [];
      const { sha256, bytes, name, quantization, contextLength, url } = row;
      files.push({ sha256, bytes, name, quantization, contextLength, ...(url === undefined ? {} : { url }) });
      byModel.set(row.model, files);
    }
    return [...byModel].map(([id, files]) => ({ id, files }));
  }

  async gatewayKey(now: number): Promise<GatewayKeyPair> {
    const fresh = await generateGatewayKey();
    const seed = await this.#db.transaction(async (tx) => {
      const row = await tx.get('SELECT seed FROM gateway_keys WHERE retired_at IS NULL ORDER BY created_at DESC, key_id LIMIT 1');
      if (row) return String(row.seed);
      const text = toBase64Url(fresh.seed);
      await tx.run('INSERT INTO gateway_keys (key_id, public_key, seed, created_at) VALUES (?, ?, ?, ?)', [
        fresh.keyId,
        toBase64Url(fresh.publicKey),
        text,
        now,
      ]);
      return text;
    });
    return gatewayKeyFromSeed(fromBase64Url(seed));
  }

  async gatewayKeyInfo(): Promise<GatewayKeyInfo | null> {
    const row = await this.#db.get(
      'SELECT key_id, public_key, created_at FROM gateway_keys WHERE retired_at IS NULL ORDER BY created_at DESC, key_id LIMIT 1',
    );
    return row ? { keyId: String(row.key_id), publicKey: String(row.public_key), createdAt: intOf(row.created_at) } : null;
  }

  async rotateKey(now: number, graceMs: number): Promise<{ retired: GatewayKeyInfo; active: GatewayKeyInfo }> {
    await this.gatewayKey(now);
    const fresh = await generateGatewayKey();
    return this.#db.transaction(async (tx) => {
      const row = await tx.get(
        'SELECT key_id, public_key, seed, created_at FROM gateway_keys WHERE retired_at IS NULL ORDER BY created_at DESC, key_id LIMIT 1',
      );
      if (!row) throw new NightjarError('NJ_INTERNAL', 'the gateway has no active key to rotate');
      const old = await gatewayKeyFromSeed(fromBase64Url(String(row.seed)));
      const graceUntil = now + graceMs;
      const statement = await createRotation({ oldKey: old, newKey: fresh.publicKey, rotatedAt: now, graceUntil });
      await tx.run('UPDATE gateway_keys SET retired_at = ?, grace_until = ? WHERE retired_at IS NULL', [now, graceUntil]);
      const publicKey = toBase64Url(fresh.publicKey);
      await tx.run('INSERT INTO gateway_keys (key_id, public_key, seed, created_at, rotation) VALUES (?, ?, ?, ?, ?)', [
        fresh.keyId,
        publicKey,
        toBase64Url(fresh.seed),
        now,
        JSON.stringify(statement),
      ]);
      return {
        retired: { keyId: old.keyId, publicKey: String(row.public_key), createdAt: intOf(row.created_at) },
        active: { keyId: fresh.keyId, publicKey, createdAt: now },
      };
    });
  }

  async listKeys(): Promise<GatewayKeyRow[]> {
    const rows = await this.#db.all('SELECT key_id, public_key, created_at, retired_at, grace_until FROM gateway_keys');
    const keys = rows.map((r) => ({
      keyId: String(r.key_id),
      publicKey: String(r.public_key),
      createdAt: intOf(r.created_at),
      retiredAt: r.retired_at === null || r.retired_at === undefined ? null : intOf(r.retired_at),
      graceUntil: r.grace_until === null || r.grace_until === undefined ? null : intOf(r.grace_until),
    }));
    // Active first, then newest first.
    return keys.sort((a, b) => Number(a.retiredAt !== null) - Number(b.retiredAt !== null) || b.createdAt - a.createdAt);
  }

  async rotations(now: number): Promise<SignedGatewayRotation[]> {
    const rows = await this.#db.all('SELECT rotation FROM gateway_keys WHERE rotation IS NOT NULL ORDER BY created_at, key_id');
    const out: SignedGatewayRotation[] = [];
    for (const r of rows) {
      const parsed = signedGatewayRotationSchema.safeParse(JSON.parse(String(r.rotation)));
      if (parsed.success && parsed.data.rotation.graceUntil >= now) out.push(parsed.data);
    }
    return out.slice(-LIMITS.maxGatewayRotations);
  }

  async addRelease(release: Release, now: number): Promise<boolean> {
    const checked = releaseSchema.safeParse(release);
    if (!checked.success) throw new NightjarError('NJ_USAGE', `release: ${describeIssues(checked.error)}`);
    const r = checked.data;
    return this.#db.transaction(async (tx) => {
      const exists = await tx.get('SELECT 1 AS ok FROM gateway_releases WHERE app_hash = ?', [r.appHash]);
      if (!exists) {
        const n = intOf((await tx.get('SELECT COUNT(*) AS n FROM gateway_releases'))?.n);
        if (n >= LIMITS.maxReleases)
          throw new NightjarError('NJ_USAGE', `the list already names ${n} releases, the most it may; remove one first`);
      }
      await tx.run(
        'INSERT INTO gateway_releases (app_hash, version, added_at) VALUES (?, ?, ?) ' +
          'ON CONFLICT (app_hash) DO UPDATE SET version = excluded.version, added_at = excluded.added_at',
        [r.appHash, r.version, now],
      );
      return !exists;
    });
  }

  async removeRelease(appHash: string): Promise<number> {
    return this.#db.run('DELETE FROM gateway_releases WHERE app_hash = ?', [appHash]);
  }

  async listReleases(): Promise<ReleaseRow[]> {
    const rows = (await this.#db.all('SELECT app_hash, version, added_at FROM gateway_releases')).map((r) => ({
      version: String(r.version),
      appHash: String(r.app_hash),
      addedAt: intOf(r.added_at),
    }));
    return rows.sort((a, b) => cmp(a.appHash, b.appHash));
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
