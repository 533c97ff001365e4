/**
 * The browser chat page countersigns what it received (issue 13: "The SDK, CLI, proxy and chat
 * page do it by default"), in real headless Chromium against a real billed gateway on SQLite and a
 * real agent bound to an operator. An honest reply is countersigned and stands; a reply whose
 * receipt claims more completion tokens than the page received is disputed, and the page's key
 * gets the difference back.
 *
 * Both tests fail without the page's countersignature (`countersign: false` in
 * src/client/web/main.ts, tried once): nothing is stored, and the inflated receipt settles as claimed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { launchChromium } from '../helpers/chromium.js';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildChatPage } from '../../src/client/index.js';
import type { Agent, GenerateRequest, GenerateResult } from '../../src/main/agent/index.js';
import { onceTrue } from '../helpers/events.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { REAL_MODEL, billed, startAgent, startBilledNetwork, tempDir, type BilledNetwork } from '../gateway/support/net.js';

/** A FakeEngine whose usage claims `extra` completion tokens it never generated. */
class InflatingEngine extends FakeEngine {
  constructor(
    readonly extra: number,
    words: string[],
  ) {
    super({ words });
  }
  override async generate(request: GenerateRequest): Promise<GenerateResult> {
    const result = await super.generate(request);
    return { ...result, usage: { ...result.usage, completionTokens: result.usage.completionTokens + this.extra } };
  }
}

let pageDir: string;
let tmp: Awaited<ReturnType<typeof tempDir>>;
let net: BilledNetwork | undefined;
let agent: Agent | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  pageDir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-page-cs-'));
  await buildChatPage(path.join(pageDir, 'chat'));
}, 60_000);
afterAll(async () => {
  await rm(pageDir, { recursive: true, force: true });
});
afterEach(async () => {
  await browser?.close();
  await agent?.dispose();
  await net?.close();
  await tmp?.remove();
  browser = agent = net = undefined;
});

/** A billed network serving the page, an operator's agent on `engine`, and one reply asked for in the page with the network's key. */
async function replyInPage(engine: FakeEngine): Promise<{ jobId: string; text: string }> {
  tmp = await tempDir();
  net = await startBilledNetwork(tmp.dir, { sites: [{ prefix: '/chat/', dir: path.join(pageDir, 'chat') }] });
  agent = await startAgent(net.gateway, { engine, enrollToken: await net.enrollToken() });
  const jobs: string[] = [];
  net.gateway.onJobBilled(({ jobId }) => jobs.push(jobId));
  const settled = billed(net.gateway);
  browser = await launchChromium();
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${net.gateway.url}/chat/`);
  await page.fill('#api-key', net.key.key);
  await page.dispatchEvent('#api-key', 'change');
  await page.waitForSelector(`#model option[value="${REAL_MODEL.id}"]`, { state: 'attached' });
  await page.fill('#prompt', 'Say hello.');
  await page.press('#prompt', 'Enter');
  await page.waitForSelector('.message.assistant[data-receipt="verified"]', { timeout: 20_000 });
  const text = (await page.$eval('.message.assistant .body', (e) => e.textContent)) ?? '';
  await onceTrue(net.gateway.onJobBilled, () => jobs.length > 0, 'the page’s job to be billed', 10_000);
  const jobId = jobs[0]!;
  await settled(jobId);
  return { jobId, text };
}

/** Waits (up to 10 s) for the page's countersignature of `jobId` to be stored; resolves with the count it states, or null. */
async function countersignedCount(jobId: string): Promise<number | null> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const row = await net!.store.driver.get('SELECT completion_tokens FROM job_countersigns WHERE job_id = ?', [jobId]);
    if (row) return Number(row.completion_tokens);
    if (Date.now() > deadline) return null;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the chat page countersigns its replies', () => {
  it('a receipt that claims more than the page received is disputed, and the key gets the difference back', async () => {
    const { jobId, text } = await replyInPage(new InflatingEngine(40, ['Hello', ' there']));
    expect(text).toBe('Hello there');
    expect(await countersignedCount(jobId)).toBe(12);
    const job = await net!.store.ledger.job(jobId);
    // 11 bytes of text + 1 for the end token: what the page counted, against 2 + 40 claimed.
    expect(job?.dispute).toMatchObject({ claimedCompletionTokens: 42, countedCompletionTokens: 12, broken: false, digestDiffers: false });
    expect(BigInt(job!.dispute!.refunded)).toBeGreaterThan(0n);
  });

  it('an honest reply is countersigned and stands as settled', async () => {
    const { jobId, text } = await replyInPage(new FakeEngine({ words: ['Hello', ' there'] }));
    expect(text).toBe('Hello there');
    // 11 bytes of text + 1 for the end token, and the receipt's 2 tokens are within it.
    expect(await countersignedCount(jobId)).toBe(12);
    const job = await net!.store.ledger.job(jobId);
    expect(job?.status).toBe('settled');
    expect(job?.disputedAt).toBeNull();
  });
});
