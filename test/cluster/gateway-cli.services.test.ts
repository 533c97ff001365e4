/**
 * `nightjar gateway --postgres URL --node-id ID` on a real PostgreSQL (a scratch database): the
 * command runs as a cluster node on it, says so without printing the URL, registers its node row
 * while it runs and removes it when stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { openPostgresStore } from '../../src/gateway/index.js';
import { createScratchDatabase, type ScratchDatabase } from './support/pg.js';

let db: ScratchDatabase;
beforeAll(async () => {
  db = await createScratchDatabase();
});
afterAll(async () => {
  await db.drop();
});

function io(signal: AbortSignal, onOut: (out: string) => void): CliIo & { err(): string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (t: string) => onOut((out += t)) },
    stderr: { write: (t: string) => (err += t) },
    stdin: (async function* () {})(),
    env: {},
    cwd: process.cwd(),
    signal,
    err: () => err,
  };
}

describe('nightjar gateway --postgres', () => {
  it('administers the cluster’s database: a key made with --postgres is listed there', async () => {
    const cli = io(new AbortController().signal, () => undefined);
    let out = '';
    const capture = { ...cli, stdout: { write: (t: string) => void (out += t) } };
    expect(await main(['gateway', 'keys', 'create', '--name', 'pg-client', '--credit', '2', '--postgres', db.url], capture)).toBe(0);
    expect(out).toMatch(/^Created API key ([0-9a-f]{12}) \(pg-client\) with 2 credits\./m);
    const id = /Created API key ([0-9a-f]{12})/.exec(out)![1]!;
    out = '';
    expect(await main(['gateway', 'keys', 'list', '--postgres', db.url], capture)).toBe(0);
    expect(
      out
        .split('\n')
        .find((l) => l.startsWith(id))
        ?.split(/\s+/)
        .slice(0, 4),
    ).toEqual([id, 'pg-client', '2', '0']);
    expect(cli.err()).toBe('');
  });

  it('runs as a cluster node on PostgreSQL, its row there while it runs', async () => {
    const stop = new AbortController();
    let listening!: (line: string) => void;
    const started = new Promise<string>((r) => (listening = r));
    const cli = io(stop.signal, (out) => out.endsWith('\n') && listening(out));
    const running = main(['--log-level', 'error', 'gateway', '--postgres', db.url, '--node-id', 'gw-1', '--port', '0'], cli);
    const out = await started;
    expect(out).toMatch(/^Nightjar gateway on http:\/\/127\.0\.0\.1:\d+ .*; cluster node gw-1, ledger in PostgreSQL; operator dashboard/);
    expect(out).not.toContain(db.url);
    const store = await openPostgresStore({ connectionString: db.url });
    try {
      expect((await store.nodes.list()).map((n) => n.nodeId)).toEqual(['gw-1']);
      stop.abort();
      expect(await running).toBe(0);
      expect(cli.err()).toBe('');
      expect(await store.nodes.list()).toEqual([]);
    } finally {
      await store.dispose();
    }
  });
});
