/**
 * The gateway's storage in one handle: accounts, ledger, model catalog, signing key, strikes, audits,
 * nodes and operator sessions on one database, migrated on open.
 */
import { SqlAccountStore, type AccountStore } from '../accounts/account.store.js';
import { SqlCatalogStore, type CatalogStore } from '../catalog/catalog.store.js';
import { SqlAuditStore, type AuditStore } from '../honesty/audits.store.js';
import { SqlStrikeStore, type StrikeStore } from '../honesty/strikes.store.js';
import { SqlNodeStore, type NodeStore } from '../cluster/node.store.js';
import { SqlLedgerStore, type LedgerStore } from '../ledger/ledger.store.js';
import { SqlOperatorSessionStore, type OperatorSessionStore } from '../operator/operator-session.store.js';
import { migrate } from './migrations.js';
import { openPostgresDriver, type PostgresDriverOptions } from './pg.driver.js';
import type { SqlDriver } from './sql.js';
import { openSqliteDriver, type SqliteDriverOptions } from './sqlite.driver.js';

/** Accounts, ledger and catalog over one database. */
export interface GatewayStore extends AsyncDisposable {
  readonly accounts: AccountStore;
  readonly ledger: LedgerStore;
  /** The model catalog and the gateway's signing key. */
  readonly catalog: CatalogStore;
  /** Strikes the honesty checks recorded against agents. */
  readonly strikes: StrikeStore;
  /** The gateway's audits of revealed jobs. */
  readonly audits: AuditStore;
  /** The gateway nodes sharing the database (cluster mode) and their heartbeats. */
  readonly nodes: NodeStore;
  /** The operator dashboard's sign-ins (every node sees the same). */
  readonly sessions: OperatorSessionStore;
  readonly driver: SqlDriver;
  /** A cheap query, for readiness checks. */
  ping(): Promise<void>;
  /** Closes the database. */
  dispose(): Promise<void>;
}

/** Wraps a driver (already migrated) as a store. */
export function storeOn(driver: SqlDriver): GatewayStore {
  const store: GatewayStore = {
    accounts: new SqlAccountStore(driver),
    ledger: new SqlLedgerStore(driver),
    catalog: new SqlCatalogStore(driver),
    strikes: new SqlStrikeStore(driver),
    audits: new SqlAuditStore(driver),
    nodes: new SqlNodeStore(driver),
    sessions: new SqlOperatorSessionStore(driver),
    driver,
    async ping() {
      await driver.get('SELECT 1 AS ok');
    },
    dispose: () => driver.dispose(),
    [Symbol.asyncDispose]() {
      return store.dispose();
    },
  };
  return store;
}

/** Opens (creating and migrating if needed) the embedded default's SQLite store. */
export async function openSqliteStore(options: SqliteDriverOptions & { now?: number }): Promise<GatewayStore> {
  return migratedStore(openSqliteDriver(options), options.now);
}

/** Opens (migrating if needed) a store on PostgreSQL. */
export async function openPostgresStore(options: PostgresDriverOptions & { now?: number }): Promise<GatewayStore> {
  return migratedStore(await openPostgresDriver(options), options.now);
}

/** Brings `driver`'s schema up to date and builds the store on it; closes the driver on failure. */
async function migratedStore(driver: SqlDriver, now = Date.now()): Promise<GatewayStore> {
  try {
    await migrate(driver, now);
  } catch (err) {
    await driver.dispose();
    throw err;
  }
  return storeOn(driver);
}
