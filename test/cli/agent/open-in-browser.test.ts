/**
 * openInBrowser and presentDashboard in a process of their own, as `nightjar dashboard` runs them:
 * with an opener that finds no browser (a fake `xdg-open` on PATH that exits 3, as the real one
 * does), the one-time URL is printed; with one that hangs (some wait for the browser), it counts
 * as opened after the wait. In-process the test runner would keep the event loop alive and hide
 * the bug this pins (an unreferenced opener: the process exited before printing anything).
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const DASHBOARD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/cli/agent/dashboard.ts');
let bin: string;
beforeAll(async () => {
  bin = await mkdtemp(path.join(os.tmpdir(), 'nj-opener-'));
});
afterAll(async () => {
  await rm(bin, { recursive: true, force: true });
});

/** Runs presentDashboard in a child process with `opener` as xdg-open; resolves with its stdout and exit code. */
async function present(opener: string, waitMs: number): Promise<{ out: string; code: number | null }> {
  await writeFile(path.join(bin, 'xdg-open'), `#!/bin/sh\n${opener}\n`);
  await chmod(path.join(bin, 'xdg-open'), 0o755);
  const script =
    `const { presentDashboard, openInBrowser } = await import(${JSON.stringify(DASHBOARD)});` +
    `await presentDashboard('http://127.0.0.1:9/ticket', { stdout: process.stdout, openUrl: (u) => openInBrowser(u, 'linux', ${waitMs}) });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { out, code };
}

describe('opening the dashboard in a browser', () => {
  it('prints the one-time URL when the opener finds no browser', async () => {
    expect(await present('exit 3', 3000)).toEqual({
      out: 'Open the dashboard at this one-time address (it works once, within a minute):\n  http://127.0.0.1:9/ticket\n',
      code: 0,
    });
  });

  it('takes an opener still running after the wait as opened, and does not wait for it to end', async () => {
    const started = Date.now();
    expect(await present('sleep 30', 300)).toEqual({ out: 'Opened the dashboard in your browser (http://127.0.0.1:9/).\n', code: 0 });
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
