/**
 * The operator dashboard in a real headless Chromium: sign in with the operator token, see the
 * live agent and its earnings after jobs ran through it, export receipts as CSV, sign out. The
 * page runs under the gateway's strict CSP; any console error or CSP violation fails the test.
 * Screenshots go to test-results/ (gitignored).
 *
 * Run with `npm run test:browser` (needs /usr/bin/chromium).
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { launchChromium } from '../helpers/chromium.js';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/main/agent/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { closableFetch } from '../helpers/http-client.js';
import { REAL_MODEL, billed, clientOf, startAgent, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';

const RESULTS = path.resolve(import.meta.dirname, '../../test-results');
let tmp: Awaited<ReturnType<typeof tempDir>>;
let net: BilledNetwork;
let agent: Agent;
/** Serves a file the catalog does not list under REAL_MODEL's id: shown, never routed. */
let uncatalogued: Agent;
let browser: Browser;

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true });
  tmp = await tempDir();
  net = await startBilledNetwork(tmp.dir);
  agent = await startAgent(net.gateway, { engine: new FakeEngine(), enrollToken: await net.enrollToken() });
  const fakeFile = { ...REAL_MODEL, sha256: 'ee'.repeat(32) };
  uncatalogued = await startAgent(net.gateway, { engine: new FakeEngine(), model: fakeFile, enrollToken: await net.enrollToken() });
  const http = closableFetch();
  try {
    const isBilled = billed(net.gateway);
    const client = clientOf(net.gateway, http.fetch, net.key.key);
    for (let i = 0; i < 3; i++) {
      const r = await client.complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 16 });
      await isBilled(r.jobId);
    }
  } finally {
    await http.close();
  }
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await agent?.dispose();
  await uncatalogued?.dispose();
  await net?.close();
  await tmp?.remove();
});

describe('operator dashboard in Chromium', () => {
  it('signs in, shows the live agent and its earnings, exports receipts, signs out', async () => {
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 1000 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    try {
      await page.goto(`${net.gateway.url}/dashboard/`);
      await page.locator('#sign-in').waitFor({ state: 'visible' });
      await page.screenshot({ path: path.join(RESULTS, 'dashboard-sign-in.png') });

      await page.fill('#token', 'njop_000000000000_' + 'A'.repeat(43));
      await page.click('button[type=submit]');
      await expect.poll(() => page.textContent('#sign-in-error')).toBe('That operator token is not valid.');
      problems.length = 0; // the 401 behind that message is logged by the browser as a failed request

      await page.fill('#token', net.operator.token);
      await page.click('button[type=submit]');
      await page.locator('body[data-ready="true"]').waitFor();
      expect(await page.textContent('#operator-name')).toBe('Ada');

      const row = page.locator(`#agents tr[data-agent-id="${agent.agentId}"]`);
      await row.waitFor();
      const cells = await row.locator('td').allTextContents();
      expect(cells.slice(0, 4)).toEqual([agent.agentId.slice(0, 12), 'serving', 'signed', REAL_MODEL.id]);
      expect(cells[5]).toBe('1.00'); // honesty score, no strikes
      expect(cells[6]).toBe('–'); // no audits
      expect(cells[8]).toBe('3'); // jobs done
      const other = await page.locator(`#agents tr[data-agent-id="${uncatalogued.agentId}"] td`).allTextContents();
      expect(other.slice(0, 4)).toEqual([
        uncatalogued.agentId.slice(0, 12),
        'file not in catalog',
        'signed',
        `${REAL_MODEL.id} (not in catalog)`,
      ]);
      expect(other[8]).toBe('0'); // never routed, though it claims the same id
      expect(await page.textContent('#online')).toBe('2');

      // Three jobs at 17 micro-credits each to the operator.
      expect(await page.textContent('#balance')).toBe('0.000051');
      expect(await page.textContent('#earned')).toBe('0.000051');
      const bars = page.locator(`#chart rect[data-model="${REAL_MODEL.id}"]`);
      expect(await bars.count()).toBe(1);
      expect(await bars.first().getAttribute('data-day')).toBe(new Date().toISOString().slice(0, 10));
      expect(await page.locator('#chart .legend').textContent()).toBe(REAL_MODEL.id);
      expect(await page.locator('#receipts tbody tr').count()).toBe(3);
      await page.screenshot({ path: path.join(RESULTS, 'dashboard.png'), fullPage: true });

      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
      expect(download.suggestedFilename()).toMatch(/^nightjar-receipts-\d{4}-\d{2}-\d{2}\.csv$/);
      const csv = (await readFile((await download.path())!, 'utf8')).trimEnd().split('\r\n');
      expect(csv[0]).toMatch(/^job_id,ended_at,model,agent_id,/);
      expect(csv).toHaveLength(4);

      await page.click('#sign-out');
      await page.locator('#sign-in').waitFor({ state: 'visible' });
      await page.reload();
      await page.locator('#sign-in').waitFor({ state: 'visible' });
      expect(problems.filter((p) => !/401/.test(p))).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
