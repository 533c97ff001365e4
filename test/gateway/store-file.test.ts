/**
 * The gateway's SQLite file and its -wal and -shm files are private to the gateway's user
 * (0600), whatever the umask, and a file an older gateway left readable is tightened on open.
 */
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/gateway/index.js';
import { tempDir } from './support/net.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const modeOf = (file: string): string => (statSync(file).mode & 0o777).toString(8);

describe('the database file', () => {
  it('is created 0600, and so are its -wal and -shm files', async () => {
    // Fails without makePrivate in openSqliteDriver: under the usual umask 022 all three are 644.
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const old = process.umask(0o022);
    cleanups.push(async () => process.umask(old));
    const file = path.join(tmp.dir, 'gateway.db');
    const store = await openSqliteStore({ path: file });
    cleanups.push(() => store.dispose());
    await store.accounts.createApiKey({ name: 'k', now: Date.now() });
    expect([modeOf(file), modeOf(`${file}-wal`), modeOf(`${file}-shm`)]).toEqual(['600', '600', '600']);
  });

  it('is tightened to 0600 when an older gateway left it readable to others', async () => {
    // Fails without the chmod in makePrivate: the file keeps its 644.
    const tmp = await tempDir();
    cleanups.push(() => tmp.remove());
    const file = path.join(tmp.dir, 'gateway.db');
    const first = await openSqliteStore({ path: file });
    await first.dispose();
    writeFileSync(`${file}-wal`, '');
    for (const f of [file, `${file}-wal`]) chmodSync(f, 0o644);
    const store = await openSqliteStore({ path: file });
    cleanups.push(() => store.dispose());
    expect([modeOf(file), modeOf(`${file}-wal`)]).toEqual(['600', '600']);
  });
});
