/**
 * The chat page builder (the page itself runs in Chromium in chat-page.browser.test.ts): it writes
 * a page with no inline script or style — the gateway's CSP would block them — and a bundle that
 * imports nothing at run time.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildChatPage } from '../../src/client/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-page-build-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('buildChatPage', () => {
  it('writes the page, its style sheet, its icon and one self-contained script', async () => {
    const built = await buildChatPage(path.join(dir, 'out'));
    expect(built.files).toEqual(['index.html', 'chat.css', 'chat.js', 'favicon.svg']);
    expect((await readdir(built.dir)).sort()).toEqual(['chat.css', 'chat.js', 'favicon.svg', 'index.html']);
    const html = await readFile(path.join(built.dir, 'index.html'), 'utf8');
    // Every script has a src of this origin; there is no <style> element and no style attribute.
    expect(html.match(/<script[^>]*>/g)).toEqual(['<script type="module" src="chat.js">']);
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
    const js = await readFile(path.join(built.dir, 'chat.js'), 'utf8');
    expect(js).not.toMatch(/^\s*import\s|\bimport\(["']/m);
    expect(js).toContain('jitless');
  });
});
