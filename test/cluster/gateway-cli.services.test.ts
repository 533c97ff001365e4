/**
 * `nightjar gateway --postgres URL --node-id ID` on a real PostgreSQL (a scratch database): the
 * command runs as a cluster node on it, says so without printing the URL, registers its node row
 * while it runs and removes it when stopped.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { openPostgresStore } from '../../src/gateway/index.js';
import { createScratchDatabase, type ScratchDatabase } from './support/pg.js';

/** A free TCP port on loopback. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** Whether something accepts TCP connections on loopback at `port`. */
function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

/** Runs the node until `started` matches its first line; resolves with that line, stops it, returns its exit code and stderr. */
async function runNode(argv: string[]): Promise<{ line: string; code: number; err: string }> {
  const stop = new AbortController();
  let listening!: (line: string) => void;
  const started = new Promise<string>((r) => (listening = r));
  const cli = io(stop.signal, (out) => out.endsWith('\n') && listening(out));
  const running = main(argv, cli);
  const line = await Promise.race([started, running.then((code) => `exited ${code}`)]);
  stop.abort();
  return { line, code: await running, err: cli.err() };
}

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

  // Fails without --config (an unknown option) or without natsToken reaching the NATS connection
  // (the server refuses the node: "cannot reach NATS").
  it('runs a cluster node from a config file, on a NATS that requires a token read from a private file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nj-conf-'));
    const port = await freePort();
    const nats = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', path.join(dir, 'js'), '--auth', 'sesame'], {
      stdio: 'ignore',
    });
    try {
      await expect.poll(() => accepting(port), { timeout: 5000 }).toBe(true);
      const token = path.join(dir, 'nats.token');
      await writeFile(token, 'sesame\n');
      await chmod(token, 0o600);
      const config = path.join(dir, 'gateway.json');
      const write = (extra: object): Promise<void> =>
        writeFile(
          config,
          JSON.stringify({
            postgres: db.url,
            nodeId: 'gw-conf',
            nats: `nats://127.0.0.1:${port}`,
            port: 0,
            cluster: { nodeTtlMs: 20_000 },
            ...extra,
          }),
        );
      await write({ natsTokenFile: 'nats.token' });
      const ok = await runNode(['--log-level', 'error', 'gateway', '--config', config]);
      expect(ok.line).toMatch(/^Nightjar gateway on http:\/\/127\.0\.0\.1:\d+ .*; cluster node gw-conf, ledger in PostgreSQL;/);
      expect(ok.code).toBe(0);
      expect(ok.err).toBe('');

      await writeFile(token, 'wrong\n');
      const refused = await runNode(['--log-level', 'error', 'gateway', '--config', config]);
      expect(refused.line).toBe('exited 1');
      expect(refused.err).toMatch(/error NJ_CONFIG_INVALID: cannot reach NATS/);
      expect(refused.err).not.toContain('wrong');
    } finally {
      nats.kill();
      await new Promise((r) => nats.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
