/**
 * A gateway a test can kill (SIGKILL) mid-stream: crash-gateway.ts in a child process on a SQLite
 * file, and that file prepared with a priced, catalogued model, an operator, an enrollment token
 * for its agent and a funded client key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openSqliteStore } from '../../../src/gateway/index.js';
import { REAL_FILE, REAL_MODEL, REAL_PRICE } from './net.js';

const CRASH_GATEWAY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-gateway.ts');

/** A gateway in its own process. */
export interface CrashableGateway {
  readonly child: ChildProcess;
  readonly url: string;
  readonly agentUrl: string;
}

/** Starts a gateway in a child process on `file`; resolves with its URLs once it listens. */
export async function startCrashableGateway(file: string): Promise<CrashableGateway> {
  const child = spawn(process.execPath, ['--import', 'tsx', CRASH_GATEWAY, file, '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`the gateway exited (${code})`))));
  exited.catch(() => undefined);
  const line = await Promise.race([new Promise<string>((r) => createInterface({ input: child.stdout! }).once('line', r)), exited]);
  return { child, ...(JSON.parse(line) as { url: string; agentUrl: string }) };
}

/** What {@link prepareBilledLedger} made. */
export interface PreparedLedger {
  readonly operatorId: string;
  /** The client's API key (its secret). */
  readonly key: string;
  readonly keyId: string;
  /** An enrollment token binding one agent to the operator. */
  readonly enroll: string;
}

/** Writes the ledger, the catalogued and priced REAL_MODEL, an operator, its enrollment token and a key funded with `funds`. */
export async function prepareBilledLedger(file: string, funds: bigint): Promise<PreparedLedger> {
  const setup = await openSqliteStore({ path: file });
  const now = Date.now();
  await setup.catalog.addFile(REAL_MODEL.id, REAL_FILE, now);
  await setup.accounts.setPrice(REAL_MODEL.id, REAL_PRICE, now);
  const operator = await setup.accounts.createOperator({ name: 'Ada', now });
  const key = await setup.accounts.createApiKey({ name: 'client', now });
  await setup.ledger.topUp(key.id, funds, now);
  const enroll = await setup.accounts.createEnrollmentToken({ operatorId: operator.id, now, ttlMs: 3600_000 });
  await setup.dispose();
  return { operatorId: operator.id, key: key.key, keyId: key.id, enroll: enroll.token };
}
