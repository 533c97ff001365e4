/**
 * A gateway in a process of its own, for a test to kill (SIGKILL) mid-stream: it opens the SQLite
 * ledger at argv[2], listens on port argv[3] (0: any), prints its URLs as one JSON line, and runs
 * until it is killed. Nothing it holds in memory survives; what the ledger committed does.
 */
import { Gateway, openSqliteStore } from '../../../src/gateway/index.js';

const [file, port] = process.argv.slice(2);
if (!file) throw new Error('usage: crash-gateway.ts DB [PORT]');
const store = await openSqliteStore({ path: file });
const gateway = await Gateway.start({ port: Number(port ?? 0), store, allowSynthetic: true });
process.stdout.write(JSON.stringify({ url: gateway.url, agentUrl: gateway.agentUrl }) + '\n');
