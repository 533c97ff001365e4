/**
 * `nightjar gateway` and its admin commands on a real database file: keys, operators,
 * enrollment tokens, prices and the ledger check; secrets printed once; a key made by the CLI
 * works against a gateway started by the CLI on the same file.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NightjarError, silentLogger } from '../../../src/shared/index.js';
import { gatewayCommand } from '../../../src/cli/gateway/gateway-command.js';
import type { Gateway } from '../../../src/gateway/index.js';
import { formatCredits, parseCredits } from '../../../src/shared/index.js';
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

async function run(...argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await gatewayCommand([...argv, '--db', db], {
    stdout: { write: (t: string) => (out += t) },
    logger: () => silentLogger,
    stopped: Promise.resolve(),
  });
  return { code, out };
}

async function fails(...argv: string[]): Promise<NightjarError> {
  const err = await run(...argv).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NightjarError);
  return err as NightjarError;
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
    expect(list).toMatch(new RegExp(`^${id}  acme  3.500001  0\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z  -$`, 'm'));
    expect(list).not.toContain(key);
    expect((await run('keys', 'revoke', id)).out).toBe(`Key ${id} is revoked; requests with it are refused from now on.\n`);
    expect((await run('keys', 'list')).out).not.toMatch(new RegExp(`^${id} .* -$`, 'm'));
    expect((await fails('keys', 'revoke', '000000000000')).code).toBe('NJ_NOT_FOUND');
    expect((await fails('keys', 'create')).message).toBe('keys create needs --name');
    expect((await fails('keys', 'topup', id, '1.0000001')).code).toBe('NJ_USAGE');
    expect((await fails('keys', 'topup', 'nope', '1')).code).toBe('NJ_NOT_FOUND');
  });

  it('creates operators, rotates their tokens, issues enrollment tokens and records payouts', async () => {
    const created = await run('operators', 'create', '--name', 'Ada Lovelace');
    const token = secretIn(created.out, 'njop');
    const id = token.split('_')[1]!;
    expect(created.out).toContain(`Bind an agent to this operator with: nightjar gateway enroll --operator ${id}`);
    const rotated = secretIn((await run('operators', 'token', id)).out, 'njop');
    expect(rotated).not.toBe(token);
    expect((await run('operators', 'list')).out).toMatch(new RegExp(`^${id}  Ada Lovelace  0\\s+0\\s+\\S+$`, 'm'));
    const enroll = await run('enroll', '--operator', id, '--ttl', '2h');
    const en = secretIn(enroll.out, 'njen');
    expect(enroll.out).toMatch(
      new RegExp(`^Enrollment token ${en.split('_')[1]} for operator ${id}, valid until \\S+Z, for one agent\\.$`, 'm'),
    );
    expect((await run('enroll', 'list', '--operator', id)).out).toMatch(new RegExp(`^${en.split('_')[1]}  ${id}  \\S+Z  -\\s+-$`, 'm'));
    expect((await fails('enroll', '--operator', 'nobody')).code).toBe('NJ_NOT_FOUND');
    expect((await fails('enroll', '--operator', id, '--ttl', 'soon')).message).toBe(
      '--ttl takes a duration such as 90s, 30m, 2h or 7d, not "soon"',
    );
    expect((await fails('enroll', 'unbind', 'a'.repeat(32))).code).toBe('NJ_NOT_FOUND');
    const payout = await fails('operators', 'payout', id, '1');
    expect(payout.code).toBe('NJ_INSUFFICIENT_FUNDS');
  });

  it('sets, lists and removes prices, and checks the ledger', async () => {
    expect((await run('prices', 'set', 'llama-3.2-1b', '--prompt', '0.05', '--completion', '0.2')).out).toBe(
      'llama-3.2-1b: 0.05 credits per million prompt tokens, 0.2 per million completion tokens.\n',
    );
    expect((await run('prices', 'list')).out).toMatch(/^llama-3\.2-1b {2}0\.05\s+0\.2\s+\S+Z$/m);
    expect((await fails('prices', 'set', 'Bad Model', '--prompt', '1', '--completion', '1')).code).toBe('NJ_USAGE');
    expect((await run('prices', 'remove', 'llama-3.2-1b')).code).toBe(0);
    expect((await fails('prices', 'remove', 'llama-3.2-1b')).code).toBe('NJ_NOT_FOUND');
    expect((await run('ledger', 'check')).out).toMatch(/^The ledger balances/);
    expect((await fails('keys', 'frobnicate')).message).toBe('unknown command: nightjar gateway keys frobnicate');
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
    let out = '';
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    let listening!: (g: Gateway) => void;
    const started = new Promise<Gateway>((r) => (listening = r));
    const running = gatewayCommand(['--db', db, '--port', '0'], {
      stdout: { write: (t: string) => (out += t) },
      logger: () => silentLogger,
      stopped,
      onListening: (g) => listening(g),
    });
    const gateway = await started;
    expect(out).toBe(
      `Nightjar gateway on ${gateway.url} (agents connect to ${gateway.agentUrl}); ledger in ${db}; operator dashboard at ${gateway.url}/dashboard/. Ctrl-C stops it.\n`,
    );
    const account = await http.fetch(`${gateway.url}/v1/account`, { headers: { authorization: `Bearer ${key}` } });
    expect(await account.json()).toMatchObject({ balance: '1000000', held: '0' });
    // Keys are required on a gateway with a database (no --open).
    expect((await http.fetch(`${gateway.url}/v1/models`)).status).toBe(401);
    stop();
    expect(await running).toBe(0);
  });

  it('prints its usage, with the admin commands', async () => {
    let out = '';
    await gatewayCommand(['--help'], {
      stdout: { write: (t: string) => (out += t) },
      logger: () => silentLogger,
      stopped: Promise.resolve(),
    });
    expect(out).toContain('--open');
    expect(out).toContain('nightjar gateway prices set MODEL --prompt P --completion C');
  });
});
