/**
 * Secrets off the command line: every command that takes an API key or a token reads it from a
 * private file (`--api-key-file`, `--token-file`, `--enroll-token-file`, `--metrics-token-file`)
 * or the environment; a file others could read is refused with what to do, and the argv flags
 * that remain warn that other users of the machine can see them. The commands run in-process
 * through main(), against a real gateway that requires API keys.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { MAX_SECRET_FILE_BYTES, SECRETS, readSecretFile } from '../../src/cli/secrets.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startNet, type TestNet } from '../client/support/net.js';
import { Output } from './support/output.js';

let net: TestNet | undefined;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-secrets-'));
});
afterEach(async () => {
  await net?.close();
  net = undefined;
  await rm(dir, { recursive: true, force: true });
});
// After the network's afterEach, so the client's sockets close before the gateway does.
const http = perTestFetch();

/** Writes `text` to `name` in the test folder with `mode`; returns its path. */
async function secretFile(name: string, text: string, mode = 0o600): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text, { mode });
  await chmod(file, mode); // whatever the umask left
  return file;
}

interface Run {
  code: number;
  out: Output;
  err: Output;
  /** Requests the command sent to the gateway. */
  requests: number;
}

/** Runs `nightjar …argv` in-process; `stop` aborts it (for the commands that run until Ctrl-C). */
function nightjar(argv: string[], env: Record<string, string> = {}, stop?: AbortSignal): { done: Promise<Run>; out: Output } {
  const out = new Output();
  const err = new Output();
  const run: Run = { code: -1, out, err, requests: 0 };
  const io: CliIo = {
    stdout: out.stream,
    stderr: err.stream,
    stdin: Readable.from([]),
    env: { NIGHTJAR_CLIENT_DATA_DIR: path.join(dir, 'client'), NIGHTJAR_HOME: path.join(dir, 'home'), HOME: dir, ...env },
    cwd: dir,
    signal: stop ?? new AbortController().signal,
    fetch: (input, init) => {
      run.requests++;
      return http.fetch(input, init);
    },
  };
  return { out, done: main(argv, io).then((code) => ({ ...run, code, requests: run.requests })) };
}

/** A gateway that requires API keys, one agent, and a key for it. */
async function keyedNet(): Promise<{ net: TestNet; key: string }> {
  net = await startNet({ allowAnonymous: false });
  await net.addAgent(new FakeEngine({ words: ['Hi'] }));
  const { key } = await net.gateway.store.accounts.createApiKey({ name: 'cli', now: Date.now() });
  return { net, key };
}

const offered = (n: TestNet, ...flags: string[]): string[] => ['models', 'offered', '--gateway', n.gateway.url, ...flags];
const WARNING = new RegExp(
  '^warning: --api-key puts the API key on the command line, where other users of this machine can read it \\(ps\\); ' +
    'use --api-key-file FILE or the NIGHTJAR_API_KEY environment variable instead\\.$',
  'm',
);

describe('a secret file', () => {
  const source = SECRETS.apiKey;

  it('is read as its one line, its line ending dropped, through a symbolic link too', async () => {
    expect(await readSecretFile(await secretFile('a', 'njk_a_b\n'), source)).toBe('njk_a_b');
    expect(await readSecretFile(await secretFile('b', 'njk_a_b\r\n'), source)).toBe('njk_a_b');
    expect(await readSecretFile(await secretFile('c', 'njk_a_b'), source)).toBe('njk_a_b');
    // As a secrets mount lays files out: the link is followed, the file it names is checked.
    await symlink(await secretFile('target', 'njk_c_d\n'), path.join(dir, 'link'));
    expect(await readSecretFile(path.join(dir, 'link'), source)).toBe('njk_c_d');
  });

  // A security test: fails if the mode check is removed (the group- or world-readable file would
  // be read). Shown once by deleting the `info.mode & 0o077` line of readSecretFile.
  it.each(['644', '640', '604', '660'])('is refused with mode %s, saying what to do', async (octal) => {
    const mode = parseInt(octal, 8);
    const file = await secretFile('open', 'njk_a_b\n', mode);
    await expect(readSecretFile(file, source)).rejects.toMatchObject({
      code: 'NJ_KEY_FILE_INSECURE',
      message:
        `--api-key-file: ${file} has mode ${mode.toString(8)}, so other users could read it; it was not used. ` +
        `Make it yours and private (chmod 600 ${file}), or give the API key in NIGHTJAR_API_KEY.`,
    });
    // Through a link, the file it names is what counts.
    await symlink(file, path.join(dir, `link-${mode}`));
    await expect(readSecretFile(path.join(dir, `link-${mode}`), source)).rejects.toMatchObject({ code: 'NJ_KEY_FILE_INSECURE' });
  });

  it.each([
    ['missing', async () => path.join(dir, 'nothing'), 'does not exist'],
    ['a directory', async () => (await mkdir(path.join(dir, 'd'), { mode: 0o700 }), path.join(dir, 'd')), 'is not a regular file'],
    ['empty', async () => secretFile('e', '\n'), 'is empty; it should hold the API key'],
    ['two lines', async () => secretFile('t', 'njk_a\nnjk_b\n'), 'holds more than one line; it should hold the API key alone'],
    ['too large', async () => secretFile('l', 'x'.repeat(MAX_SECRET_FILE_BYTES + 1)), `is larger than ${MAX_SECRET_FILE_BYTES} bytes`],
  ])('is a usage error when %s', async (_what, make, why) => {
    const file = await make();
    const error = await readSecretFile(file, source).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NJ_USAGE' });
    expect((error as Error).message).toContain(`--api-key-file: ${file} ${why}`);
  });
});

describe('the client commands’ API key', () => {
  it('comes from --api-key-file, quietly', async () => {
    const { net, key } = await keyedNet();
    const r = await nightjar(offered(net, '--api-key-file', await secretFile('key', `${key}\n`))).done;
    expect(r.err.text).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.text).toContain(FAKE_MODEL.id);
  });

  it('comes from NIGHTJAR_API_KEY, quietly', async () => {
    const { net, key } = await keyedNet();
    const r = await nightjar(offered(net), { NIGHTJAR_API_KEY: key }).done;
    expect([r.code, r.err.text]).toEqual([0, '']);
  });

  it('still comes from --api-key, with a warning that others can see it', async () => {
    const { net, key } = await keyedNet();
    const r = await nightjar(offered(net, '--api-key', key)).done;
    expect(r.code).toBe(0);
    expect(r.err.text).toMatch(WARNING);
    expect(r.err.text).not.toContain(key);
  });

  // A security test: fails if the mode check is removed (the command would send the key and list
  // the models). Shown once by deleting the `info.mode & 0o077` line of readSecretFile.
  it('is never read from, nor sent for, a file others can read', async () => {
    const { net, key } = await keyedNet();
    const file = await secretFile('key', `${key}\n`, 0o644);
    const r = await nightjar(offered(net, '--api-key-file', file)).done;
    expect(r.code).toBe(1);
    expect(r.err.text).toContain(`error NJ_KEY_FILE_INSECURE: --api-key-file: ${file} has mode 644, so other users could read it`);
    expect(r.err.text).toContain(`chmod 600 ${file}`);
    expect(r.requests).toBe(0);
  });

  it('is given once: --api-key and --api-key-file together are a usage error', async () => {
    const { net, key } = await keyedNet();
    const r = await nightjar(offered(net, '--api-key', key, '--api-key-file', await secretFile('key', key))).done;
    expect(r.code).toBe(2);
    expect(r.err.text).toContain('give the API key once: --api-key or --api-key-file, not both');
  });

  it('reaches the gateway from chat too', async () => {
    const { net, key } = await keyedNet();
    const file = await secretFile('key', key);
    const r = await nightjar(['chat', '--gateway', net.gateway.url, '--api-key-file', file, '--allow-synthetic', '--quiet', 'Hello']).done;
    expect([r.code, r.out.text]).toEqual([0, 'Hi\n']);
    const without = await nightjar(['chat', '--gateway', net.gateway.url, '--allow-synthetic', 'Hello']).done;
    expect(without.err.text).toContain('NJ_UNAUTHORIZED');
  });
});

describe('nightjar proxy --token-file', () => {
  it("requires the file's token from callers, and warns about --token", async () => {
    net = await startNet();
    await net.addAgent(new FakeEngine());
    const token = 'proxy-secret-0123456789';
    const stop = new AbortController();
    const argv = [
      'proxy',
      '--port',
      '0',
      '--gateway',
      net.gateway.url,
      '--no-pin',
      '--token-file',
      await secretFile('token', `${token}\n`),
    ];
    const proxy = nightjar(argv, {}, stop.signal);
    const url = /Nightjar proxy on (http:\/\/\S+),/.exec(await proxy.out.written(/Nightjar proxy on http:\S+,/, 'the proxy'))![1]!;
    expect(proxy.out.text).toContain('API key: the token you gave');
    expect((await http.fetch(`${url}/v1/models`)).status).toBe(401);
    expect((await http.fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    stop.abort();
    expect((await proxy.done).code).toBe(0);
    expect((await proxy.done).err.text).not.toMatch(/warning/);

    const warned = new AbortController();
    const onArgv = nightjar(['proxy', '--port', '0', '--gateway', net.gateway.url, '--no-pin', '--token', token], {}, warned.signal);
    await onArgv.out.written(/Nightjar proxy on/, 'the proxy');
    warned.abort();
    const r = await onArgv.done;
    expect(r.err.text).toContain('warning: --token puts the proxy token on the command line');
    expect(r.err.text).toContain('use --token-file FILE or the NIGHTJAR_PROXY_TOKEN environment variable instead');
  });
});

describe('nightjar gateway --metrics-token-file', () => {
  it.each(['file', 'environment'])('protects /metrics with the token from the %s', async (from) => {
    const token = 'metrics-secret-0123456789';
    const stop = new AbortController();
    const flags = from === 'file' ? ['--metrics-token-file', await secretFile('metrics', token)] : [];
    const env: Record<string, string> = from === 'file' ? {} : { NIGHTJAR_METRICS_TOKEN: token };
    const gateway = nightjar(['gateway', '--memory', '--port', '0', ...flags], env, stop.signal);
    const text = await gateway.out.written(/Nightjar gateway on http:\S+ /, 'the gateway');
    const url = /Nightjar gateway on (http:\/\/\S+) /.exec(text)![1]!;
    try {
      expect((await http.fetch(`${url}/metrics`)).status).toBe(401);
      const ok = await http.fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('nightjar_connected_agents');
    } finally {
      stop.abort();
      expect((await gateway.done).code).toBe(0);
    }
  });

  it('refuses a token file others can read before it starts', async () => {
    const file = await secretFile('metrics', 'metrics-secret', 0o644);
    const r = await nightjar(['gateway', '--memory', '--port', '0', '--metrics-token-file', file]).done;
    expect(r.code).toBe(1);
    expect(r.err.text).toContain(`NJ_KEY_FILE_INSECURE: --metrics-token-file: ${file} has mode 644`);
    expect(r.out.text).toBe('');
  });
});

describe('nightjar serve --enroll-token-file', () => {
  // `serve --enroll-token-file` with a private file, in its own process, is in agent-cli.test.ts.
  it('refuses a token file others can read before anything starts', async () => {
    const file = await secretFile('enroll', 'njen_0_x\n', 0o644);
    const r = await nightjar(['serve', '--gateway', 'http://127.0.0.1:9', '--enroll-token-file', file]).done;
    expect(r.code).toBe(1);
    expect(r.err.text).toContain(`NJ_KEY_FILE_INSECURE: --enroll-token-file: ${file} has mode 644`);
    expect(r.err.text).toContain('or give the enrollment token in NIGHTJAR_ENROLL_TOKEN');
  });

  it('warns about --enroll-token whatever fails next', async () => {
    const r = await nightjar(['serve', '--enroll-token', 'njen_0_x']).done;
    expect(r.err.text).toContain(
      'warning: --enroll-token puts the enrollment token on the command line, where other users of this machine can read it (ps); ' +
        'use --enroll-token-file FILE or the NIGHTJAR_ENROLL_TOKEN environment variable instead.',
    );
    expect(r.code).toBe(2); // no gateway address
  });
});
