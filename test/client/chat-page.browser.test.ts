/**
 * The browser chat page in real headless Chromium, served by a real gateway under its strict CSP,
 * talking to a real agent. Everything the gateway sends and receives is recorded by a TCP proxy
 * in front of it (the page and the agent both connect through it). A two-turn conversation with
 * a canary prompt and a canary reply must round-trip — shown in the page, with the serving agent
 * and its trust — while the capture holds no trace of either canary. The control sends the same
 * kind of canary in the clear from the same page and shows the search finds it: the test fails if
 * the page stops encrypting.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { launchChromium } from '../helpers/chromium.js';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildChatPage } from '../../src/client/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { Agent } from '../../src/main/agent/index.js';
import { createLogger } from '../../src/node/index.js';
import { generateIdentity, randomBytes, toHex } from '../../src/shared/index.js';
import { FAKE_MODEL, agentServing } from '../helpers/network.js';
import { startRecordingProxy, tracesOf, type RecordingProxy } from '../helpers/recording-proxy.js';
import { RecordingEngine } from './support/engines.js';
import { onceTrue } from '../helpers/events.js';

const SCREENSHOTS = path.resolve(import.meta.dirname, '../../test-results');
const promptCanary = `CANARY-PROMPT-${toHex(randomBytes(12))}`;
const replyCanary = `CANARY-REPLY-${toHex(randomBytes(12))}`;

let dir: string;
let gateway: Gateway;
let wire: RecordingProxy;
let agent: Agent;
let engine: RecordingEngine;
let browser: Browser;
const gatewayLog: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-page-'));
  await buildChatPage(path.join(dir, 'chat'));
  await mkdir(SCREENSHOTS, { recursive: true });
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// A fresh network and browser per test: the browser's keep-alive connections end with them.
beforeEach(async () => {
  gatewayLog.length = 0;
  gateway = await Gateway.start({
    port: 0,
    allowSynthetic: true,
    sites: [{ prefix: '/chat/', dir: path.join(dir, 'chat') }],
    logger: createLogger({ level: 'debug', write: (l) => gatewayLog.push(l) }),
  });
  wire = await startRecordingProxy(Number(new URL(gateway.url).port));
  engine = new RecordingEngine({ words: ['Here', ' it', ' is: ', replyCanary, '.'] });
  agent = await Agent.create({
    gatewayUrl: `ws://127.0.0.1:${wire.port}/v1/agent`,
    identity: await generateIdentity(),
    engine,
    model: FAKE_MODEL,
    stopGraceMs: 100,
  });
  agent.start();
  await agentServing(gateway, agent.agentId, 10_000);
  browser = await launchChromium();
}, 60_000);

afterEach(async () => {
  await browser?.close();
  await agent?.dispose();
  await wire?.close();
  await gateway?.dispose();
});

/** Console errors and CSP violations the page reports. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  return problems;
}

async function ask(page: Page, text: string, turn: number): Promise<void> {
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  await page.waitForSelector(`.message.assistant:nth-of-type(${turn * 2})[data-receipt="verified"]`, { timeout: 20_000 });
}

describe('the browser chat page', () => {
  it('chats end to end in the page: the gateway sees no trace of the canary prompt or reply', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`http://127.0.0.1:${wire.port}/chat/`);

    // Synthetic models hide behind an explicit checkbox.
    await page.waitForFunction(() => document.querySelector('#status')?.textContent?.includes('synthetic'));
    expect(await page.$$eval('#model option', (o) => o.length)).toBe(0);
    await page.check('#synthetic');
    await page.waitForSelector(`#model option[value="${FAKE_MODEL.id}"]`, { state: 'attached' });

    await ask(page, `Please repeat ${promptCanary} back to me.`, 1);
    await ask(page, 'And once more?', 2);
    const replies = await page.$$eval('.message.assistant', (els) =>
      els.map((e) => ({
        body: e.querySelector('.body')?.textContent ?? '',
        meta: e.querySelector('.meta')?.textContent ?? '',
        agent: (e as HTMLElement).dataset.agent,
        trust: (e as HTMLElement).dataset.trust,
      })),
    );
    await page.screenshot({ path: path.join(SCREENSHOTS, 'chat-page.png'), fullPage: true });

    expect(replies).toHaveLength(2);
    for (const r of replies) {
      expect(r.body).toBe(`Here it is: ${replyCanary}.`);
      expect(r.agent).toBe(agent.agentId);
      expect(r.trust).toBe('signed');
      expect(r.meta).toMatch(new RegExp(`^agent ${agent.agentId.slice(0, 8)} · signed · receipt verified ✓ · \\d+ \\+ 5 tokens · stop$`));
    }
    // The agent got the canary prompt, and the whole conversation on the second turn.
    expect(engine.conversations.at(-1)).toEqual([
      { role: 'user', content: `Please repeat ${promptCanary} back to me.` },
      { role: 'assistant', content: `Here it is: ${replyCanary}.` },
      { role: 'user', content: 'And once more?' },
    ]);
    expect(problems).toEqual([]);

    // Everything the gateway sent and received: the page itself, its API calls, the agent's frames.
    const capture = wire.capture();
    expect(capture.toString('latin1')).toContain('GET /chat/chat.js');
    expect(capture.toString('latin1')).toContain('POST /v1/jobs');
    expect(tracesOf(promptCanary, capture)).toEqual([]);
    expect(tracesOf(replyCanary, capture)).toEqual([]);
    expect(tracesOf(promptCanary, gatewayLog.join('\n'))).toEqual([]);
    expect(tracesOf(replyCanary, gatewayLog.join('\n'))).toEqual([]);

    // Control: had the page sent the canary in the clear, this capture and search would show it.
    const leak = `CANARY-LEAK-${toHex(randomBytes(12))}`;
    await page.evaluate(async (text) => {
      await fetch('/v1/jobs', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ v: 1, prompt: text }),
      });
    }, leak);
    expect(tracesOf(leak, wire.capture()).length).toBeGreaterThan(0);
    await context.close();
  });

  it('Stop cancels the reply in the page and at the agent; it does not join the conversation', async () => {
    const slow = new RecordingEngine({ tokenDelayMs: 10, words: ['la '] });
    const slowAgent = await Agent.create({
      gatewayUrl: gateway.agentUrl,
      identity: await generateIdentity(),
      engine: slow,
      model: { ...FAKE_MODEL, id: 'synthetic-slow' },
      stopGraceMs: 100,
    });
    slowAgent.start();
    try {
      await agentServing(gateway, slowAgent.agentId, 10_000);
      const context = await browser.newContext();
      const page = await context.newPage();
      const problems = watch(page);
      await page.goto(`${gateway.url}/chat/`);
      await page.check('#synthetic');
      await page.waitForSelector('#model option[value="synthetic-slow"]', { state: 'attached' });
      await page.selectOption('#model', 'synthetic-slow');
      await page.fill('#prompt', 'Sing forever.');
      await page.press('#prompt', 'Enter');
      await page.waitForFunction(() => (document.querySelector('.message.assistant .body')?.textContent ?? '').includes('la la'));
      await page.click('#stop');
      await page.waitForSelector('.message.assistant.failed');
      expect(await page.textContent('.message.assistant .meta')).toBe('stopped — not part of the conversation');
      await onceTrue(slow.onEnded, () => slow.busy === 0, 'the engine to stop');
      // Stopped well before the page's 512-token limit.
      expect(slow.generated).toBeLessThan(512);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'chat-page-stopped.png'), fullPage: true });
      // The next request carries no trace of the stopped turn.
      await page.fill('#prompt', 'Something else.');
      await page.press('#prompt', 'Enter');
      await onceTrue(slow.onStarted, () => slow.conversations.length === 2, 'the next request');
      expect(slow.conversations[1]).toEqual([{ role: 'user', content: 'Something else.' }]);
      await page.click('#stop');
      expect(problems).toEqual([]);
      await context.close();
    } finally {
      await slowAgent.dispose();
    }
  });
});
