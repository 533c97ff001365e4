/**
 * The menu-bar dashboard in a real headless Chromium, driven against real parts: a gateway
 * (port 0, in-memory store, synthetic models allowed) with an operator and an enrollment token,
 * a real AgentService started unlinked in a temp home with the real node-llama-cpp engine, its
 * loopback control server serving the built renderer as `nightjar serve --dashboard` does, and a
 * local file server holding the synthetic tiny model half-way until the test has watched the
 * download progress.
 *
 * The page is opened through a one-time ticket, runs under the dashboard CSP, and the test fails
 * on any console error, page error or CSP violation. Shown: onboarding (link with the token,
 * pick a model that fits, the download's progress, selected when done), pause and resume, jobs
 * run through the gateway with the client SDK and their earnings and receipts appearing, the
 * availability editor (an overnight window saved and read back), the security screen, and a used
 * ticket refused. Screenshots of every screen in light and dark mode go to test-results/app/.
 *
 * Run with `npm run test:browser` (needs /usr/bin/chromium).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { launchChromium } from '../helpers/chromium.js';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NightjarClient } from '../../src/client/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { buildDashboard } from '../../src/cli/agent/dashboard.js';
import { AgentService, DEFAULT_CONFIG, ManualEnvironmentSource, pathsIn, writeSyntheticModel } from '../../src/main/agent/index.js';
import { formatCredits, generateIdentity, nextEvent } from '../../src/shared/index.js';
import { closableFetch } from '../helpers/http-client.js';
import { agentServing } from '../helpers/network.js';
import { startGatedFileServer } from './support/gated-file-server.js';

const RESULTS = path.resolve(import.meta.dirname, '../../test-results/app');
const MODEL_ID = 'nightjar-tiny';
const GiB = 1024 ** 3;

let tmp: string;
let dashboardDir: string;
let modelFile: Buffer;
let browser: Browser;

beforeAll(async () => {
  await mkdir(RESULTS, { recursive: true });
  tmp = await mkdtemp(path.join(os.tmpdir(), 'nightjar-dashboard-'));
  dashboardDir = path.join(tmp, 'dashboard');
  await buildDashboard(dashboardDir, { minify: false });
  modelFile = await readFile((await writeSyntheticModel({ path: path.join(tmp, 'source.gguf'), shape: 'tiny' })).path);
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await rm(tmp, { recursive: true, force: true });
});

/** Collects console errors, page errors and CSP violations. */
async function watch(page: Page): Promise<string[]> {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page: ${e.message}`));
  await page.exposeFunction('__cspViolation', (directive: string, blocked: string) =>
    problems.push(`csp: ${directive} blocked ${blocked}`),
  );
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window as unknown as { __cspViolation: (d: string, b: string) => void }).__cspViolation(e.violatedDirective, e.blockedURI);
    });
  });
  return problems;
}

/** Polls what the page shows: events and fetches on a busy 2-core machine may take a few seconds. */
function poll<T>(fn: () => Promise<T> | T): ReturnType<typeof expect.poll<T>> {
  return expect.poll(fn, { timeout: 20_000, interval: 100 });
}

/** Shows a screen through the navigation, like a person would. */
async function show(page: Page, screen: string): Promise<void> {
  await page.click(`#nav a[data-screen="${screen}"]`);
  await page.locator(`#main[data-screen="${screen}"] h1`).waitFor();
}

/** Screenshots the page in light and dark mode. */
async function shoot(page: Page, name: string): Promise<void> {
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    await page.screenshot({ path: path.join(RESULTS, `${name}-${colorScheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

describe('the dashboard in Chromium against a real agent and gateway', () => {
  it(
    'onboards, downloads with progress, pauses and resumes, shows earnings after jobs, edits availability',
    { timeout: 240_000 },
    async () => {
      const http = closableFetch();
      const gateway = await Gateway.start({ port: 0, allowSynthetic: true });
      const files = await startGatedFileServer(modelFile);
      const operator = await gateway.store.accounts.createOperator({ name: 'Ada', now: Date.now() });
      const { token: enrollToken } = await gateway.store.accounts.createEnrollmentToken({
        operatorId: operator.id,
        now: Date.now(),
        ttlMs: 3600_000,
      });
      const catalogFile = path.join(tmp, 'catalog.json');
      const sha256 = createHash('sha256').update(modelFile).digest('hex');
      await writeFile(
        catalogFile,
        JSON.stringify({
          v: 1,
          models: [
            {
              id: MODEL_ID,
              name: 'Nightjar tiny (synthetic)',
              url: files.url,
              sha256,
              bytes: modelFile.length,
              quantization: 'F32',
              contextLength: 512,
              minMemoryBytes: 256 * 1024 ** 2,
              license: 'MIT',
              verified: true,
            },
            {
              id: 'huge-405b',
              name: 'Huge 405B (Q4_K_M)',
              url: 'https://models.example/huge.gguf',
              sha256: 'ab'.repeat(32),
              bytes: 240 * GiB,
              quantization: 'Q4_K_M',
              contextLength: 131072,
              minMemoryBytes: 256 * GiB,
              license: 'Llama 3.1',
              verified: true,
            },
          ],
        }),
      );
      const home = path.join(tmp, 'home');
      const service = await AgentService.start({
        paths: pathsIn(path.join(home, 'config'), path.join(home, 'data')),
        config: {
          ...DEFAULT_CONFIG,
          catalogFile,
          model: { ...DEFAULT_CONFIG.model, slots: 2, threads: 1, contextLength: 512 },
          earnings: { operatorShare: 0.95, prices: { [MODEL_ID]: { promptPerMTok: '2000000', completionPerMTok: '6000000' } } },
        },
        gatewayUrl: null,
        identity: await generateIdentity(),
        environment: new ManualEnvironmentSource({
          idleSeconds: 900,
          screenLocked: false,
          onAc: true,
          batteryPercent: null,
          thermal: 'nominal',
        }),
        memoryProbe: async () => ({ totalBytes: 16 * GiB, availableBytes: 10 * GiB, swapFreeBytes: 0 }),
        backoff: { initialMs: 50, maxMs: 500 },
        fetch: http.fetch,
        dashboardDir,
      });
      const context = await browser.newContext({ viewport: { width: 1180, height: 900 } });
      try {
        const page = await context.newPage();
        const problems = await watch(page);
        const dashboardUrl = service.control!.dashboardUrl();
        await page.goto(dashboardUrl);
        await page.locator('body[data-ready="true"]').waitFor();

        // The ticket left the address bar before anything else happened, and the page is served strictly.
        expect(new URL(page.url()).hash).not.toContain('ticket');
        expect(await page.evaluate(() => document.body.dataset.transport)).toBe('http');

        // ---- Onboarding: an unlinked agent opens on Set up, and says why it cannot serve.
        await page.locator('#main[data-screen="setup"]').waitFor();
        expect(await page.textContent('#state-pill')).toBe('Needs attention');
        expect(await page.textContent('#step-link .link-state')).toBe('Not linked yet.');
        expect(await page.getAttribute(`li[data-model="${MODEL_ID}"]`, 'data-fit')).toBe('fits');
        expect(await page.getAttribute('li[data-model="huge-405b"]', 'data-fit')).toBe('too-big');
        expect(await page.locator('li[data-model="huge-405b"] [data-action="download"]').isDisabled()).toBe(true);
        expect(await page.textContent('[data-field="memory"]')).toBe('This Mac has 16 GB of memory, 10 GB free now.');
        await shoot(page, '1-setup');

        // A wrong address is refused with what to do; nothing is saved.
        await page.fill('#gateway-url', 'not a url');
        await page.click('#link');
        await poll(() => page.textContent('#toast')).toContain('must be a URL');
        problems.splice(0); // the 400 behind that message is logged by the browser as a failed request

        await page.fill('#gateway-url', gateway.url);
        await page.fill('#enroll-token', enrollToken);
        await page.click('#link');
        await poll(() => page.textContent('#step-link .link-state')).toContain(`Linked to ${gateway.agentUrl}`);
        expect(await page.inputValue('#enroll-token')).toBe(''); // the token does not linger in the page

        // Pick the model that fits: the download holds half-way, so its progress is on screen.
        await page.click(`li[data-model="${MODEL_ID}"] [data-action="download"]`);
        const bar = page.locator(`.download[data-model="${MODEL_ID}"][data-phase="downloading"] progress`);
        await bar.waitFor();
        await poll(async () =>
          Number((await bar.getAttribute('value')) ?? (await bar.evaluate((b: HTMLProgressElement) => b.value))),
        ).toBeGreaterThan(0);
        const value = await bar.evaluate((b: HTMLProgressElement) => b.value);
        expect(value).toBeLessThan(modelFile.length);
        expect(await bar.evaluate((b: HTMLProgressElement) => b.max)).toBe(modelFile.length);
        await shoot(page, '2-setup-downloading');
        files.release();

        // Downloaded, verified, selected ("Download and use"); the agent loads it, connects and is welcomed.
        await page.locator(`#main li[data-model="${MODEL_ID}"][data-selected="true"]`).waitFor({ timeout: 60_000 });
        await service.runtime.whenState('serving');
        if (service.runtime.status().gateway.trust === null)
          await nextEvent(service.runtime.onLink, () => service.runtime.status().gateway.trust !== null, { what: 'the welcome' });
        await poll(() => page.textContent('#step-link .link-state')).toContain(`operator ${operator.id}, trusted as signed`);
        await page.locator('[data-field="ready"]').waitFor();
        expect(await page.textContent('#state-pill')).toBe('Serving');
        await shoot(page, '3-setup-done');

        // ---- Status: pause and resume from the dashboard reach the agent.
        await page.click('#to-status');
        await page.locator('#main[data-screen="status"]').waitFor();
        expect(await page.textContent('[data-field="model"]')).toBe(`${MODEL_ID} · synthetic`);
        expect(await page.textContent('[data-field="link"]')).toBe('connected');
        await page.click('#pause');
        await service.runtime.whenState('paused');
        await poll(() => page.textContent('#state-pill')).toBe('Paused');
        expect(await page.textContent('[data-field="reason"]')).toBe(service.runtime.reason!.message);
        await shoot(page, '4-status-paused');
        await page.click('#resume');
        await service.runtime.whenState('serving');
        // Serve now overrides the schedule until the owner goes back to it.
        await page.click('#serve-now');
        await service.runtime.whenState((c) => c.decision?.reason === 'serve-now');
        expect(service.runtime.manual.mode).toBe('serve-now');
        await page.click('#back-to-schedule');
        await service.runtime.whenState((c) => c.decision?.reason === 'idle');
        expect(service.runtime.manual.mode).toBe('auto');
        await page.locator('#pause').waitFor();
        await agentServing(gateway, service.runtime.agentId, 10_000);
        await poll(() => page.textContent('#state-pill')).toBe('Serving');

        // ---- Jobs through the gateway with the client SDK: earnings and receipts appear.
        const client = new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch });
        const jobs = 3;
        for (let i = 0; i < jobs; i++) {
          const r = await client.complete({
            model: MODEL_ID,
            messages: [{ role: 'user', content: `Say something, ${i}` }],
            maxTokens: 12,
            temperature: 0,
          });
          expect(r.receipt.model).toBe(MODEL_ID);
        }
        // Each receipt was in the agent's log before the gateway (and so the client) heard of it.
        expect(service.receipts.receipts).toHaveLength(jobs);
        await poll(() => page.textContent('[data-field="jobs-served"]')).toBe(String(jobs));
        expect(Number(await page.textContent('[data-field="tokens-per-second"]'))).toBeGreaterThan(0);
        const summary = await service.handlers.earnings({ days: 31 });
        expect(summary.totals.jobs).toBe(jobs);
        await poll(() => page.textContent('[data-field="today"]')).toBe(`${formatCredits(summary.totals.microCredits)} credits`);
        await shoot(page, '5-status-serving');

        await show(page, 'earnings');
        await poll(() => page.locator('#receipts tbody tr').count()).toBe(jobs);
        expect(await page.textContent('#today [data-field="credits"]')).toBe(formatCredits(summary.totals.microCredits));
        expect(await page.textContent('#today [data-field="jobs"]')).toBe(String(jobs));
        expect(await page.textContent('#month [data-field="credits"]')).toBe(formatCredits(summary.totals.microCredits));
        const today = summary.rows[0]!.date;
        expect(await page.locator(`#chart rect[data-day="${today}"][data-model="${MODEL_ID}"]`).count()).toBe(1);
        expect(await page.textContent(`#by-model tr[data-model="${MODEL_ID}"] td:nth-of-type(1)`)).toBe(String(jobs));
        const newest = service.receipts.receipts.at(-1)!.receipt;
        expect(await page.locator(`#receipts tr[data-job="${newest.jobId}"]`).count()).toBe(1);
        await shoot(page, '6-earnings');

        // ---- Models.
        await show(page, 'models');
        await page.locator(`#installed li[data-model="${MODEL_ID}"][data-selected="true"]`).waitFor();
        await shoot(page, '7-models');

        // ---- Availability: add an overnight window, save, read it back from the agent; then remove it.
        await show(page, 'availability');
        await page.locator('#policy-form').waitFor();
        await page.locator('[data-field="any-time"]').waitFor();
        await page.click('#add-window');
        const row = page.locator('fieldset.window').first();
        await row.locator('[data-day="sat"]').check();
        await row.locator('[data-day="sun"]').check();
        await row.locator('[data-field="start"]').fill('23:30');
        await row.locator('[data-field="end"]').fill('06:45');
        expect(await row.locator('[data-field="window-text"]').textContent()).toBe('Every day 23:30 → 06:45 the next day');
        expect(await row.getAttribute('data-overnight')).toBe('true');
        await page.fill('#idle-minutes', '10');
        await page.selectOption('#max-thermal', 'nominal');
        await shoot(page, '8-availability');
        await page.click('#save-policy');
        await poll(() => page.textContent('#toast')).toBe('Availability saved.');
        expect(await service.handlers.getPolicy({})).toMatchObject({
          idleSeconds: 600,
          maxThermal: 'nominal',
          schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '23:30', end: '06:45' }],
        });
        // A bad value is caught in the page, with the field named.
        await page.uncheck('#require-ac');
        await page.fill('#min-battery', '120');
        await page.click('#save-policy');
        expect(await page.textContent('#policy-problems')).toBe('Battery floor: enter a number from 0 to 100.');
        await page.fill('#min-battery', '40');
        await page.check('#require-ac');
        await row.locator('[data-action="remove-window"]').click();
        await page.click('#save-policy');
        await poll(async () => (await service.handlers.getPolicy({})).schedule).toEqual([]);

        // ---- Security.
        await show(page, 'security');
        expect(await page.textContent('[data-field="trust-level"]')).toBe('Signed');
        expect(await page.getAttribute('li[data-check="gateway-tls"]', 'data-result')).toBe('ok');
        expect(await page.getAttribute('li[data-check="gateway-admission"]', 'data-result')).toBe('ok');
        expect(await page.getAttribute('li[data-check="model"]', 'data-result')).toBe('warn');
        expect(await page.textContent('li[data-check="model"] .action')).toBe('What to do: Pick a real model on the Models screen.');
        await shoot(page, '9-security');

        // Keyboard: the navigation is reachable and moves focus to the screen's heading.
        await page.focus('#nav a[data-screen="status"]');
        await page.keyboard.press('Enter');
        await page.locator('#main[data-screen="status"]').waitFor();
        expect(await page.evaluate(() => document.activeElement?.tagName)).toBe('H1');

        // A used ticket opens nothing: the page says what to do.
        const again = await context.newPage();
        const againProblems = await watch(again);
        await again.goto(dashboardUrl);
        await again.locator('body[data-ready="error"]').waitFor();
        expect(await again.textContent('[data-field="fatal"]')).toBe('This dashboard link was already used or has expired.');
        await shoot(again, '0-used-ticket');
        expect(againProblems.filter((p) => !p.includes('401'))).toEqual([]);

        expect(problems).toEqual([]);
      } finally {
        await context.close();
        await service.dispose();
        await gateway.dispose();
        await files.close();
        await http.close();
      }
    },
  );
});
