import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/gateway/index.js';
import { PAGE_CSP } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';

let dir: string;
let gateway: Gateway;
const http = perTestFetch();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-sites-'));
  await mkdir(path.join(dir, 'site'));
  await writeFile(path.join(dir, 'site/index.html'), '<!doctype html><title>chat</title>');
  await writeFile(path.join(dir, 'site/app.js'), 'console.log(1)');
  await writeFile(path.join(dir, 'secret.txt'), 'outside the site');
  gateway = await Gateway.start({ port: 0, sites: [{ prefix: '/chat/', dir: path.join(dir, 'site') }] });
});
afterAll(async () => {
  await gateway.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('static sites', () => {
  it('serves the page and its assets with a strict CSP', async () => {
    const res = await http.fetch(`${gateway.url}/chat/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toBe(PAGE_CSP);
    expect(PAGE_CSP).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(await res.text()).toContain('<title>chat</title>');
    const js = await http.fetch(`${gateway.url}/chat/app.js`);
    expect(js.headers.get('content-type')).toMatch(/^(text|application)\/javascript; charset=utf-8$/);
    await js.text();
  });

  it('never serves a file outside the folder', async () => {
    for (const p of ['/chat/../secret.txt', '/chat/%2e%2e/secret.txt', '/chat/..%2fsecret.txt', '/chat/nope.js']) {
      const res = await http.fetch(`${gateway.url}${p}`);
      const body = await res.text();
      expect(res.status, p).toBe(404);
      expect(body).not.toContain('outside the site');
      expect(JSON.parse(body).error.code).toBe('NJ_NOT_FOUND');
    }
  });
});
