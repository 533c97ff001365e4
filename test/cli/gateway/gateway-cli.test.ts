/**
 * `nightjar gateway` and its admin commands on a real database file: keys, operators,
 * enrollment tokens, prices and the ledger check; secrets printed once; a key made by the CLI
 * works against a gateway started by the CLI on the same file.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/cli/io.js';
import { main } from '../../../src/cli/main.js';
import { openSqliteStore } from '../../../src/gateway/index.js';
import { NightjarError, formatCredits, parseCredits, toBase64Url } from '../../../src/shared/index.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { tempDir } from '../../gateway/support/net.js';

const http = perTestFetch();
let tmp: Awaited<ReturnType<typeof tempDir>>;
let db: string;
beforeEach(async () => {
  tmp = await tempDir();
  db = path.join(tmp.dir, 'gw.db');
});
afterEach(async () => {
  await tmp.remove();
});

function io(
  signal = new AbortController().signal,
  onOut: (out: string) => void = () => undefined,
): CliIo & { out(): string; err(): string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (t: string) => onOut((out += t)) },
    stderr: { write: (t: string) => (err += t) },
    stdin: (async function* () {})(),
    env: {},
    cwd: tmp.dir,
    signal,
    out: () => out,
    err: () => err,
  };
}

/** `nightjar gateway …` on the test's database, in-process. */
async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const cli = io();
  const code = await main(['gateway', ...argv, '--db', db], cli);
  return { code, out: cli.out(), err: cli.err() };
}

/** A command that fails: its exit code and the NightjarError code and message it printed. */
async function fails(...argv: string[]): Promise<{ exit: number; code: string; message: string }> {
  const r = await run(...argv);
  expect(r.code).not.toBe(0);
  const [, code, message] = /^error (NJ_[A-Z_]+): (.*)\n {2}\S/.exec(r.err) ?? [];
  expect(code, r.err).toBeDefined();
  return { exit: r.code, code: code!, message: message! };
}

const secretIn = (out: string, kind: string): string => new RegExp(`^  (${kind}_[0-9a-f]{12}_[A-Za-z0-9_-]{43})$`, 'm').exec(out)![1]!;

describe('nightjar gateway admin commands', () => {
  it('issues keys shown once, tops them up, lists and revokes them', async () => {
    const created = await run('keys', 'create', '--name', 'acme', '--credit', '2.5');
    expect(created.code).toBe(0);
    const key = secretIn(created.out, 'njk');
    const id = key.split('_')[1]!;
    expect(created.out).toContain(`Created API key ${id} (acme) with 2.5 credits.`);
    expect((await run('keys', 'topup', id, '1.000001')).out).toBe(`Key ${id} now holds 3.500001 credits.\n`);
    const list = (await run('keys', 'list')).out;
    expect(list.split('\n')[0]).toMatch(/^ID\s+NAME\s+BALANCE\s+HELD\s+CREATED\s+REVOKED$/);
    // Dates for people, through formatDateTime.
    expect(list).toMatch(new RegExp(`^${id}  acme  3.500001  0\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d  -$`, 'm'));
    expect(list).not.toContain(key);
    expect((await run('keys', 'revoke', id)).out).toBe(`Key ${id} is revoked; requests with it are refused from now on.\n`);
    expect((await run('keys', 'list')).out).not.toMatch(new RegExp(`^${id} .* -$`, 'm'));
    expect((await fails('keys', 'revoke', '000000000000')).code).toBe('NJ_NOT_FOUND');
    expect(await fails('keys', 'create')).toEqual({ exit: 2, code: 'NJ_USAGE', message: "required option '--name <name>' not specified" });
    expect(await fails('keys', 'topup', id)).toEqual({ exit: 2, code: 'NJ_USAGE', message: "missing required argument 'amount'" });
    expect(await fails('keys', 'topup', id, '1.0000001')).toMatchObject({ exit: 2, code: 'NJ_USAGE' });
    expect((await fails('keys', 'topup', 'nope', '1')).code).toBe('NJ_NOT_FOUND');
  });

  it('creates operators, rotates their tokens, issues enrollment tokens and records payouts', async () => {
    const created = await run('operators', 'create', '--name', 'Ada Lovelace');
    const token = secretIn(created.out, 'njop');
    const id = token.split('_')[1]!;
    expect(created.out).toContain(`Bind an agent to this operator with: nightjar gateway enroll --operator ${id}`);
    const rotated = secretIn((await run('operators', 'token', id)).out, 'njop');
    expect(rotated).not.toBe(token);
    expect((await run('operators', 'list')).out).toMatch(
      new RegExp(`^${id}  Ada Lovelace  0\\s+0\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d$`, 'm'),
    );
    const enroll = await run('enroll', '--operator', id, '--ttl', '2h');
    const en = secretIn(enroll.out, 'njen');
    expect(enroll.out).toMatch(
      new RegExp(
        `^Enrollment token ${en.split('_')[1]} for operator ${id}, valid until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d, for one agent\\.$`,
        'm',
      ),
    );
    expect((await run('enroll', 'list', '--operator', id)).out).toMatch(
      new RegExp(`^${en.split('_')[1]}  ${id}  \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d  -\\s+-$`, 'm'),
    );
    expect(await fails('enroll', '--ttl', '2h')).toMatchObject({
      exit: 2,
      message: "required option '--operator <operator-id>' not specified",
    });
    expect((await fails('enroll', '--operator', 'nobody')).code).toBe('NJ_NOT_FOUND');
    expect((await fails('enroll', '--operator', id, '--ttl', 'soon')).message).toBe(
      '--ttl takes a duration such as 90s, 30m, 2h or 7d, not "soon"',
    );
    expect((await fails('enroll', 'unbind', 'a'.repeat(32))).code).toBe('NJ_NOT_FOUND');
    const payout = await fails('operators', 'payout', id, '1');
    expect(payout).toMatchObject({ exit: 1, code: 'NJ_INSUFFICIENT_FUNDS' });
  });

  it('sets, lists and removes prices, and checks the ledger', async () => {
    expect((await run('prices', 'set', 'llama-3.2-1b', '--prompt', '0.05', '--completion', '0.2')).out).toBe(
      'llama-3.2-1b: 0.05 credits per million prompt tokens, 0.2 per million completion tokens.\n',
    );
    expect((await run('prices', 'list')).out).toMatch(/^llama-3\.2-1b {2}0\.05\s+0\.2\s+\d{4}-\d\d-\d\d \d\d:\d\d$/m);
    expect((await fails('prices', 'set', 'Bad Model', '--prompt', '1', '--completion', '1')).code).toBe('NJ_USAGE');
    expect((await run('prices', 'remove', 'llama-3.2-1b')).code).toBe(0);
    expect((await fails('prices', 'remove', 'llama-3.2-1b')).code).toBe('NJ_NOT_FOUND');
    expect((await run('ledger', 'check')).out).toMatch(/^The ledger balances/);
    expect(await fails('keys', 'frobnicate')).toEqual({ exit: 2, code: 'NJ_USAGE', message: "unknown command 'frobnicate'" });
    expect(await fails('frobnicate')).toEqual({ exit: 2, code: 'NJ_USAGE', message: "unknown command 'frobnicate'" });
  });

  it('catalogues files by sha256 (typed, or read from a local file), lists and removes them, and shows the gateway key', async () => {
    const gguf = path.join(tmp.dir, 'fake-q4_k_m.gguf');
    await writeFile(gguf, 'GGUF and then some weights');
    const sha = createHash('sha256').update('GGUF and then some weights').digest('hex');
    const added = await run('catalog', 'add', 'fake-1b', '--from', gguf, '--quantization', 'Q4_K_M', '--context', '4096');
    expect(added).toEqual({
      code: 0,
      out:
        `Catalogued fake-q4_k_m.gguf (${sha}, 26 B) as fake-1b: jobs for fake-1b now go only to agents serving a file the catalog ` +
        'lists for it, at its price.\n' +
        'fake-1b has no price yet; set one with: nightjar gateway prices set fake-1b --prompt CREDITS --completion CREDITS\n',
      err: '',
    });
    const other = 'ab'.repeat(32);
    const typed = ['--sha256', other, '--bytes', '1000', '--file-name', 'q8.gguf', '--quantization', 'Q8_0', '--context', '4096'];
    expect((await run('catalog', 'add', 'fake-1b', ...typed, '--url', 'https://example.com/q8.gguf')).code).toBe(0);
    const list = (await run('catalog', 'list')).out.split('\n');
    expect(list[0]).toMatch(/^MODEL\s+SHA256\s+SIZE\s+QUANT\s+CONTEXT\s+FILE\s+ADDED$/);
    expect(list[2]).toMatch(new RegExp(`^fake-1b  ${other}  1000 B\\s+Q8_0\\s+4096\\s+q8\\.gguf\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d$`));
    expect(list[1]).toMatch(new RegExp(`^fake-1b  ${sha}  26 B\\s+Q4_K_M\\s+4096\\s+fake-q4_k_m\\.gguf\\s+`));
    // What the CLI wrote is what a gateway on the file signs.
    const store = await openSqliteStore({ path: db });
    try {
      expect((await store.catalog.models())[0]!.files.map((f) => f.sha256)).toEqual([sha, other]); // sorted by sha256: 6bcd… < abab…
    } finally {
      await store.dispose();
    }
    expect(
      await fails('catalog', 'add', 'fake-1b', '--from', gguf, '--sha256', other, '--quantization', 'Q4_K_M', '--context', '1'),
    ).toEqual({
      exit: 2,
      code: 'NJ_USAGE',
      message: `--sha256 differs from the sha256 of ${gguf} (${sha})`,
    });
    expect(await fails('catalog', 'add', 'fake-1b', '--quantization', 'Q4_K_M', '--context', '1')).toMatchObject({
      code: 'NJ_USAGE',
      message: 'catalog add needs --bytes (or --from FILE)',
    });
    expect((await fails('catalog', 'add', 'fake-1b', ...typed.slice(0, 1), 'nothex', ...typed.slice(2))).message).toMatch(
      /^catalog file: sha256: expected 32 bytes of lower-case hex/,
    );
    expect((await run('catalog', 'remove', 'fake-1b', '--sha256', other)).out).toBe(
      'Removed 1 file of fake-1b from the catalog; 1 still is that model.\n',
    );
    expect((await run('catalog', 'remove', 'fake-1b')).out).toBe(
      'Removed 1 file of fake-1b from the catalog; agents serving it are no longer priced for it.\n',
    );
    expect(await fails('catalog', 'remove', 'fake-1b')).toEqual({
      exit: 1,
      code: 'NJ_NOT_FOUND',
      message: 'the catalog lists no file for fake-1b',
    });

    // The key is made on first use (here, before any gateway started) and the same one is shown after; never its seed.
    const shown = await run('key');
    const publicKey = /^ {2}([A-Za-z0-9_-]{43})$/m.exec(shown.out)![1]!;
    expect(shown.out).toMatch(/^Gateway key [0-9a-f]{16} \(Ed25519\), created \d{4}-\d\d-\d\d \d\d:\d\d\.\nIt signs the model catalog/);
    expect((await run('key', 'show')).out).toBe(shown.out);
    const again = await openSqliteStore({ path: db });
    try {
      const key = await again.catalog.gatewayKey(Date.now());
      expect(toBase64Url(key.publicKey)).toBe(publicKey);
      expect(shown.out).not.toContain(toBase64Url(key.seed));
    } finally {
      await again.dispose();
    }
  });

  it('key shows id, public key, created and fingerprint; key rotate retires it with a grace period; releases add|list|remove', async () => {
    const before = await run('key');
    const oldId = /^Gateway key ([0-9a-f]{16}) /.exec(before.out)![1]!;
    const fingerprint = /^ {2}((?:[0-9a-f]{4} ){7}[0-9a-f]{4})$/m.exec(before.out)![1]!;
    expect(fingerprint.replace(/ /g, '').slice(0, 16)).toBe(oldId);
    expect(before.out).toContain('It signs the model catalog, every directory answer and the released-versions list.');
    expect(before.out).not.toContain('RETIRED KEY');

    const rotated = await run('key', 'rotate', '--grace', '7d');
    expect(rotated.code).toBe(0);
    const newId = /^Rotated: gateway key ([0-9a-f]{16}) signs from now on/.exec(rotated.out)![1]!;
    expect(rotated.out).toMatch(
      new RegExp(`Key ${oldId} is retired and signs nothing more; .* until \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d\\.`),
    );
    const after = await run('key');
    expect(after.out).toMatch(new RegExp(`^Gateway key ${newId} `));
    expect(after.out).toMatch(new RegExp(`^RETIRED KEY\\s+CREATED\\s+RETIRED\\s+FOLLOWABLE UNTIL\\n${oldId}  `, 'm'));
    expect((await fails('key', 'rotate', '--grace', 'soon')).code).toBe('NJ_USAGE');

    expect((await run('releases', 'add', '1.4.2', 'cd'.repeat(32))).out).toBe(
      `Listed ${'cd'.repeat(32)} as release 1.4.2; the gateway serves it signed at GET /v1/releases.\n`,
    );
    expect((await run('releases', 'add', '1.4.1', 'ab'.repeat(32))).code).toBe(0);
    const list = (await run('releases', 'list')).out.trimEnd().split('\n');
    expect(list.map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual([
      'VERSION APP',
      `1.4.1 ${'ab'.repeat(32)}`,
      `1.4.2 ${'cd'.repeat(32)}`,
    ]);
    expect((await fails('releases', 'add', '1.0', 'nothex')).message).toMatch(/^release: appHash: expected 32 bytes of lower-case hex/);
    expect((await run('releases', 'remove', 'ab'.repeat(32))).out).toBe(`${'ab'.repeat(32)} is no longer a release.\n`);
    expect(await fails('releases', 'remove', 'ab'.repeat(32))).toMatchObject({
      code: 'NJ_NOT_FOUND',
      message: `no release has app hash ${'ab'.repeat(32)}`,
    });
  });

  it('strikes list shows each agent’s score and each strike with its reason; strikes clear deletes them', async () => {
    expect((await run('strikes', 'list')).out).toBe('No strikes.\n');
    const store = await openSqliteStore({ path: db });
    const now = Date.now();
    for (let i = 0; i < 4; i++) {
      await store.strikes.add({
        agentId: 'cheat',
        reason: 'over-ceiling',
        jobId: `job-${i}`,
        details: { chip: 'Apple M2', measuredTps: 500, ceilingTps: 111.87 },
        at: now - 1000,
      });
    }
    await store.strikes.add({ agentId: 'boaster', reason: 'claim-gap', jobId: 'job-9', details: { factor: 25 }, at: now - 1000 });
    await store.dispose();
    const out = (await run('strikes', 'list')).out;
    expect(out).toMatch(/^cheat\s+4\s+0\.20\s+no \(below the floor\)$/m);
    expect(out).toMatch(/^boaster\s+1\s+0\.80\s+yes, ranked lower$/m);
    expect(out).toMatch(/^cheat\s+\S+ \S+\s+over-ceiling\s+job-0\s+chip=Apple M2 measuredTps=500 ceilingTps=111\.87$/m);
    expect((await run('strikes', 'list', '--agent', 'boaster')).out).not.toContain('cheat');
    // The reasons from outside the timing checks: a failed audit of a revealed job, a disputed count.
    const more = await openSqliteStore({ path: db });
    await more.strikes.add({
      agentId: 'junk',
      reason: 'audit-failed',
      jobId: 'job-7',
      details: { reasons: 'off-distribution', 'off-distribution.rank': 181 },
      at: now - 1000,
    });
    await more.strikes.add({
      agentId: 'junk',
      reason: 'count-disputed',
      jobId: 'job-8',
      details: { claimedCompletionTokens: 16 },
      at: now - 1000,
    });
    await more.dispose();
    const junk = (await run('strikes', 'list', '--agent', 'junk')).out;
    expect(junk).toMatch(/^junk\s+2\s+0\.31\s+yes, ranked lower$/m);
    expect(junk).toMatch(/^junk\s+\S+ \S+\s+audit-failed\s+job-7\s+reasons=off-distribution off-distribution\.rank=181$/m);
    expect(junk).toMatch(/^junk\s+\S+ \S+\s+count-disputed\s+job-8\s+claimedCompletionTokens=16$/m);
    expect((await fails('strikes', 'clear')).code).toBe('NJ_USAGE');
    expect((await run('strikes', 'clear', 'cheat')).out).toMatch(/^Cleared 4 strikes of cheat; /);
    expect((await run('strikes', 'clear', '--all')).out).toMatch(/^Cleared 3 strikes; /);
    expect((await run('strikes', 'list')).out).toBe('No strikes.\n');
  });

  // Fails without --hf (an unknown option) or without the lookup in model-host.ts. The server answers
  // as the Hugging Face Hub's tree API does (GET /api/models/OWNER/NAME/tree/REVISION[/FOLDER]).
  it('catalog add --hf fills size, sha256 and URL from the model host’s API; says what to do when it cannot', async () => {
    const sha = 'cd'.repeat(32);
    const seen: { url: string; auth: string | undefined }[] = [];
    const hub = createServer((req, res) => {
      seen.push({ url: req.url!, auth: req.headers.authorization });
      const reply = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      };
      if (req.url === '/api/models/acme/tiny-GGUF/tree/main') {
        return reply(200, [
          { type: 'file', path: 'README.md', size: 120, oid: 'f'.repeat(40) },
          { type: 'file', path: 'tiny-Q4_K_M.gguf', size: 1234567, oid: 'e'.repeat(40), lfs: { oid: sha, size: 1234567, pointerSize: 1 } },
          { type: 'file', path: 'tiny-Q8_0.gguf', size: 2000000, oid: 'd'.repeat(40), lfs: { oid: 'ef'.repeat(32), size: 2000000 } },
        ]);
      }
      if (req.url === '/api/models/acme/gated/tree/main') return reply(401, { error: 'Access to model acme/gated is restricted.' });
      return reply(404, { error: 'Repository not found' });
    });
    await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
    const hf = async (...argv: string[]): Promise<{ code: number; out: string; err: string }> => {
      const cli = { ...io(), env: { HF_ENDPOINT: endpoint, HF_TOKEN: 'hf_test' } };
      const code = await main(['gateway', 'catalog', 'add', ...argv, '--db', db], cli);
      return { code, out: cli.out(), err: cli.err() };
    };
    try {
      const added = await hf('tiny-1b', '--hf', 'acme/tiny-GGUF', '--file-name', 'tiny-Q4_K_M.gguf', '--context', '8192');
      expect(added.out).toMatch(new RegExp(`^Catalogued tiny-Q4_K_M\\.gguf \\(${sha}, 1\\.2 MB\\) as tiny-1b:`));
      expect(seen.at(-1)).toEqual({ url: '/api/models/acme/tiny-GGUF/tree/main', auth: 'Bearer hf_test' });
      const store = await openSqliteStore({ path: db });
      try {
        expect((await store.catalog.listFiles()).map(({ addedAt: _, ...f }) => f)).toEqual([
          {
            model: 'tiny-1b',
            sha256: sha,
            bytes: 1234567,
            name: 'tiny-Q4_K_M.gguf',
            quantization: 'Q4_K_M',
            contextLength: 8192,
            url: `${endpoint}/acme/tiny-GGUF/resolve/main/tiny-Q4_K_M.gguf`,
          },
        ]);
      } finally {
        await store.dispose();
      }
      const error = (r: { err: string }): string => /^error (NJ_[A-Z_]+: .*)$/m.exec(r.err)?.[1] ?? r.err;
      expect(error(await hf('tiny-1b', '--hf', 'acme/tiny-GGUF', '--file-name', 'tiny-Q2_K.gguf', '--context', '8192'))).toBe(
        'NJ_NOT_FOUND: acme/tiny-GGUF has no file tiny-Q2_K.gguf at main; its GGUF files: tiny-Q4_K_M.gguf, tiny-Q8_0.gguf',
      );
      expect(error(await hf('x', '--hf', 'acme/gated', '--file-name', 'a-Q4_0.gguf', '--context', '1'))).toMatch(
        /^NJ_UNAUTHORIZED: .* refused the lookup of acme\/gated \(HTTP 401\): a gated or private repository needs HF_TOKEN/,
      );
      expect(error(await hf('x', '--hf', 'acme/none', '--file-name', 'a-Q4_0.gguf', '--context', '1', '--revision', 'v2'))).toMatch(
        /^NJ_NOT_FOUND: .* has no repository acme\/none at revision v2$/,
      );
      expect(error(await hf('x', '--hf', 'acme/tiny-GGUF', '--file-name', 'tiny-Q8_0.gguf', '--context', '1', '--sha256', sha))).toBe(
        "NJ_USAGE: --hf reads the file's size, sha256 and URL from the Hub: leave out --sha256",
      );
      expect(error(await hf('x', '--hf', '../etc', '--file-name', 'a.gguf', '--context', '1'))).toBe(
        'NJ_USAGE: --hf takes a repository as owner/name, not "../etc"',
      );
    } finally {
      await new Promise((r) => hub.close(r));
    }
  });

  it('parses and prints amounts exactly', () => {
    expect(parseCredits('0.000001', 'x')).toBe(1n);
    expect(parseCredits('12', 'x')).toBe(12_000_000n);
    expect(formatCredits(12_000_001n)).toBe('12.000001');
    expect(formatCredits(-1_500_000n)).toBe('-1.5');
    for (const bad of ['-1', '1e6', '0.1234567', '', 'abc']) expect(() => parseCredits(bad, 'x')).toThrow(NightjarError);
  });
});

describe('nightjar gateway', () => {
  it('runs on the database file, where a key the CLI issued works', async () => {
    const key = secretIn((await run('keys', 'create', '--name', 'cli', '--credit', '1')).out, 'njk');
    const stop = new AbortController();
    let listening!: (line: string) => void;
    const started = new Promise<string>((r) => (listening = r));
    const cli = io(stop.signal, (out) => out.endsWith('\n') && listening(out));
    const running = main(['--log-level', 'error', 'gateway', '--db', db, '--port', '0'], cli);
    const out = await started;
    const url = /^Nightjar gateway on (http:\/\/127\.0\.0\.1:\d+) /.exec(out)?.[1];
    expect(out).toBe(
      `Nightjar gateway on ${url} (agents connect to ${url!.replace('http', 'ws')}/v1/agent); ledger in ${db}; ` +
        `operator dashboard at ${url}/dashboard/; chat page at ${url}/chat/. Ctrl-C stops it.\n`,
    );
    const account = await http.fetch(`${url}/v1/account`, { headers: { authorization: `Bearer ${key}` } });
    expect(await account.json()).toMatchObject({ balance: '1000000', held: '0' });
    // Keys are required on a gateway with a database (no --open).
    expect((await http.fetch(`${url}/v1/models`)).status).toBe(401);
    stop.abort();
    expect(await running).toBe(0);
    expect(cli.err()).toBe('');
  });

  it('--audit-models hashes the files of DIR at start and re-checks reveals with them; a DIR it cannot read is a usage error', async () => {
    const models = path.join(path.dirname(db), 'models');
    await mkdir(models);
    await writeFile(path.join(models, 'tiny.gguf'), 'not really a model: nothing loads it until a reveal');
    const stop = new AbortController();
    let listening!: (line: string) => void;
    const started = new Promise<string>((r) => (listening = r));
    const cli = io(stop.signal, (out) => out.endsWith('\n') && listening(out));
    const running = main(['--log-level', 'error', 'gateway', '--db', db, '--port', '0', '--audit-models', models], cli);
    expect(await started).toMatch(/^Nightjar gateway on /);
    expect(cli.err()).toBe(`Hashing the model files in ${models} (once, at start)…\nReveals are re-checked against 1 model file.\n`);
    stop.abort();
    expect(await running).toBe(0);
    const missing = io();
    expect(await main(['gateway', '--db', db, '--port', '0', '--audit-models', path.join(models, 'nope')], missing)).toBe(2);
    expect(missing.err()).toMatch(/\nerror NJ_USAGE: --audit-models: cannot read .*nope \(ENOENT\)/);
  });

  // Fails without --config (an unknown option), and without the merge in withConfig (the file's
  // port or db ignored, or the given --port losing to the file's).
  it('--config reads its settings from a JSON file, paths relative to it; flags given win; a bad field is named', async () => {
    const conf = path.join(tmp.dir, 'conf');
    await mkdir(conf);
    const file = path.join(conf, 'gateway.json');
    await writeFile(
      file,
      JSON.stringify({ db: 'ledger.db', port: 1, host: '127.0.0.1', operatorShare: 90, secureCookies: true, cluster: {} }),
    );
    const stop = new AbortController();
    let listening!: (line: string) => void;
    const started = new Promise<string>((r) => (listening = r));
    const cli = io(stop.signal, (out) => out.endsWith('\n') && listening(out));
    const running = main(['--log-level', 'error', 'gateway', '--config', file, '--port', '0'], cli);
    const out = await started;
    expect(out).toMatch(new RegExp(`^Nightjar gateway on http://127\\.0\\.0\\.1:(?!1 )\\d+ .*; ledger in ${conf}/ledger\\.db;`));
    // secureCookies from the file: the dashboard's session cookie is marked Secure.
    const url = /^Nightjar gateway on (\S+) /.exec(out)![1]!;
    const store = await openSqliteStore({ path: path.join(conf, 'ledger.db') });
    const { token } = await store.accounts.createOperator({ name: 'Bea', now: Date.now() });
    await store.dispose();
    const signIn = await http.fetch(`${url}/v1/operator/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
    });
    expect(signIn.status).toBe(200);
    expect(signIn.headers.get('set-cookie')).toMatch(/; Secure/);
    stop.abort();
    expect(await running).toBe(0);

    const bad = async (content: string): Promise<string> => {
      await writeFile(file, content);
      const r = io();
      expect(await main(['gateway', '--config', file], r)).not.toBe(0);
      return r.err();
    };
    expect(await bad(JSON.stringify({ prot: 8787 }))).toMatch(/error NJ_CONFIG_INVALID: .*gateway\.json: .*prot/);
    expect(await bad(JSON.stringify({ cluster: { nodeTtlMs: 'soon' } }))).toMatch(/error NJ_CONFIG_INVALID: .*cluster\.nodeTtlMs/);
    expect(await bad('{ "port": ')).toMatch(/error NJ_CONFIG_INVALID: .*gateway\.json is not valid JSON/);
    const none = io();
    expect(await main(['gateway', '--config', path.join(conf, 'nope.json')], none)).toBe(2);
    expect(none.err()).toMatch(/error NJ_USAGE: --config: .*nope\.json does not exist/);
  });

  it('refuses --postgres with --db or --memory, and --node-id without --postgres', async () => {
    expect(await fails('--postgres', 'postgres://127.0.0.1:1/none')).toMatchObject({
      code: 'NJ_USAGE',
      message: '--postgres excludes --db and --memory',
    });
    expect(await fails('--node-id', 'gw-1')).toMatchObject({
      code: 'NJ_USAGE',
      message: '--node-id names a cluster node: it needs --postgres',
    });
  });

  it('prints its usage, with the admin commands', async () => {
    const help = io();
    expect(await main(['gateway', '--help'], help)).toBe(0);
    expect(help.out()).toContain('--open');
    expect(help.out()).toMatch(/^Administration:\n {2}keys .*\n {2}operators .*\n(?: {3,}.*\n)? {2}enroll .*\n {2}prices .*\n {2}ledger /m);
    const prices = io();
    expect(await main(['gateway', 'prices', 'set', '--help'], prices)).toBe(0);
    expect(prices.out()).toContain('Usage: nightjar gateway prices set [options] <model>');
    expect(prices.out()).toMatch(/--prompt <credits> +per million prompt tokens/);
    expect(prices.out()).toMatch(/--completion <credits> +per million completion tokens/);
    expect(prices.out()).toMatch(/--db <path> +the database file/);
  });
});
