/**
 * `nightjar serve --dashboard` and `nightjar dashboard`, in-process: serve builds the dashboard
 * from source, serves it on the control API's address and opens a one-time URL in the browser
 * (a fake opener here); `nightjar dashboard` gets a fresh one from the running agent, and prints
 * it when no browser opens. The page itself is served without the token; the ticket redeems once.
 */
import http from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../../src/cli/main.js';
import type { CliIo } from '../../../src/cli/io.js';
import { Output } from '../support/output.js';
import { pathsIn } from '../../../src/main/agent/index.js';
import { Gateway } from '../../../src/gateway/index.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'nightjar-dashboard-cli-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function io(
  home: string,
  signal: AbortSignal,
  opened: string[],
  opens: boolean,
): CliIo & { out: () => string; err: () => string; output: Output } {
  const output = new Output();
  let err = '';
  return {
    output,
    stdout: output.stream,
    stderr: { write: (t: string) => (err += t) },
    stdin: (async function* () {})(),
    env: { NIGHTJAR_HOME: home, HOME: tmp },
    cwd: tmp,
    signal,
    openUrl: async (url) => {
      opened.push(url);
      return opens;
    },
    out: () => output.text,
    err: () => err,
  };
}

function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
  body?: string,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('nightjar serve --dashboard', () => {
  it(
    'serves the built dashboard, opens it through a one-time ticket, and `nightjar dashboard` opens it again',
    { timeout: 60_000 },
    async () => {
      const gateway = await Gateway.start({ port: 0 });
      const home = path.join(tmp, 'home');
      const stop = new AbortController();
      const opened: string[] = [];
      const serveIo = io(home, stop.signal, opened, true);
      const serving = main(
        ['serve', '--gateway', gateway.url, '--key-file', path.join(tmp, 'key'), '--dashboard', '--log-level', 'error'],
        serveIo,
      );
      try {
        await serveIo.output.written(/Opened the dashboard in your browser/, 'the dashboard to open', 30_000);
        expect(opened).toHaveLength(1);
        const url = new URL(opened[0]!);
        expect(url.hash).toMatch(/^#ticket=[A-Za-z0-9_-]{43}$/);
        expect(serveIo.out()).toContain(`Opened the dashboard in your browser (${url.origin}/).`);
        expect(serveIo.out()).not.toContain(url.hash.slice(8)); // the ticket is not printed when a browser opened

        const page = await get(`${url.origin}/`);
        expect(page.status).toBe(200);
        expect(page.body).toContain('<script type="module" src="app.js"></script>');
        expect(page.headers['content-security-policy']).toContain("script-src 'self'");
        expect((await get(`${url.origin}/app.js`)).status).toBe(200);

        const redeem = (ticket: string) =>
          get(
            `${url.origin}/v1/dashboard/session`,
            { 'content-type': 'application/json', origin: url.origin },
            'POST',
            JSON.stringify({ ticket }),
          );
        const ticket = url.hash.slice('#ticket='.length);
        const control = JSON.parse(await readFile(pathsIn(path.join(home, 'config'), path.join(home, 'data')).controlFile, 'utf8')) as {
          token: string;
        };
        expect(JSON.parse((await redeem(ticket)).body)).toEqual({ token: control.token });
        expect((await redeem(ticket)).status).toBe(401);

        // Again later, from another terminal; with no browser to open, the one-time URL is printed.
        const again: string[] = [];
        const dashIo = io(home, new AbortController().signal, again, false);
        expect(await main(['dashboard'], dashIo)).toBe(0);
        expect(again).toHaveLength(1);
        expect(dashIo.out()).toBe(`Open the dashboard at this one-time address (it works once, within a minute):\n  ${again[0]}\n`);
        expect((await redeem(new URL(again[0]!).hash.slice('#ticket='.length))).status).toBe(200);
      } finally {
        stop.abort();
        expect(await serving).toBe(0);
        await gateway.dispose();
      }
    },
  );

  it('refuses --dashboard without the control API', async () => {
    const r = io(path.join(tmp, 'home-2'), new AbortController().signal, [], true);
    expect(
      await main(['serve', '--gateway', 'http://127.0.0.1:9', '--key-file', path.join(tmp, 'key2'), '--dashboard', '--no-control'], r),
    ).toBe(2);
    expect(r.err()).toContain('--dashboard needs the control API');
  });

  it('`nightjar dashboard` with no agent running says how to start one', async () => {
    const r = io(path.join(tmp, 'home-3'), new AbortController().signal, [], true);
    expect(await main(['dashboard'], r)).toBe(1);
    expect(r.err()).toContain('NJ_AGENT_NOT_RUNNING');
  });
});
