/**
 * The README's first command, as a person runs it: `nightjar up` in its own process starts a
 * gateway and an agent on a synthetic model it writes on first run, prints how to chat, serves
 * `nightjar chat` from another process, and stops cleanly on Ctrl-C (SIGINT).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Output } from '../cli/support/output.js';
import { perTestFetch } from '../helpers/http-client.js';

const root = path.resolve(import.meta.dirname, '../..');
const entry = path.join(root, 'src/cli/run.ts');

function nightjar(args: string[], cwd: string): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}

function collect(child: ChildProcess): { out: () => string; err: () => string; stdout: Output; exit: Promise<number | null> } {
  const stdout = Output.of(child.stdout!);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return { out: () => stdout.text, err: () => err, stdout, exit };
}

const http = perTestFetch();
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-up-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('nightjar up', () => {
  it('runs a local network, serves a chat from another process, and stops on Ctrl-C', async () => {
    const up = nightjar(['up', '--port', '0', '--dir', path.join(dir, 'dev')], root);
    const upOut = collect(up);
    await upOut.stdout.written(/Press Ctrl-C to stop/, 'up to start', 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${upOut.err()}`);
    });
    expect(upOut.out()).toMatch(/Writing a synthetic model/);
    expect((await stat(path.join(dir, 'dev/models/synthetic-tiny.gguf'))).size).toBeGreaterThan(100_000);
    const url = /gateway {2}(http:\/\/127\.0\.0\.1:\d+)/.exec(upOut.out())?.[1];
    expect(url).toBeDefined();
    // The printed command, with the prompt on stdin.
    expect(upOut.out()).toContain(`chat --gateway ${url} --allow-synthetic`);

    // The browser chat page and the operator dashboard are served, with a token to sign in.
    expect(upOut.out()).toContain(`or in a browser: ${url}/chat/`);
    expect(upOut.out()).toMatch(new RegExp(`Operator dashboard: ${url}/dashboard/ — sign in with njop_`));
    for (const page of ['/chat/', '/dashboard/']) {
      const res = await http.fetch(`${url}${page}`);
      expect(res.status, page).toBe(200);
      expect(await res.text()).toMatch(/<!doctype html>/i);
    }

    const chat = nightjar(['chat', '--gateway', url!, '--allow-synthetic', '--max-tokens', '24'], root);
    const chatOut = collect(chat);
    chat.stdin!.end('Hello, Nightjar\n');
    expect(await chatOut.exit).toBe(0);
    expect(chatOut.out().trim().length).toBeGreaterThan(0);
    expect(chatOut.err()).toMatch(/24 completion tokens · finish: length · receipt verified/);

    up.kill('SIGINT');
    expect(await upOut.exit).toBe(0);
    expect(upOut.err()).toMatch(/agent stopped/);
    expect(upOut.err()).toMatch(/gateway stopped/);
  }, 120_000);
});
