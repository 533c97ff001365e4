import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nightjarErrors, securityHeaders, staticPages } from '../../src/node/index.js';
import { NightjarError, PAGE_CSP } from '../../src/shared/index.js';

let dir: string;
let app: FastifyInstance;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-web-'));
  await mkdir(path.join(dir, 'chat'));
  await writeFile(path.join(dir, 'chat', 'index.html'), '<!doctype html><title>chat</title>');
  await writeFile(path.join(dir, 'chat', 'app.js'), 'export {};');
  await writeFile(path.join(dir, 'chat', '.env'), 'SECRET=1');
  await writeFile(path.join(dir, 'outside.txt'), 'not served');
  app = Fastify({ logger: false, bodyLimit: 64 });
  await app.register(securityHeaders);
  await app.register(nightjarErrors);
  await app.register(staticPages, { sites: [{ prefix: '/chat/', dir: path.join(dir, 'chat') }] });
  app.get('/boom', async () => {
    throw new Error('database password is hunter2');
  });
  app.get('/busy', async () => {
    throw new NightjarError('NJ_NO_CAPACITY', 'all busy', { retryAfterMs: 1500 });
  });
  app.post('/echo', async (req) => req.body);
  await app.ready();
});

afterEach(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

describe('staticPages and securityHeaders', () => {
  it('serves index.html at the prefix with the one page policy and no framing', async () => {
    const res = await app.inject({ url: '/chat/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['content-security-policy']).toBe(PAGE_CSP);
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['strict-transport-security']).toBeUndefined();
    expect((await app.inject({ url: '/chat/app.js' })).headers['content-type']).toMatch(/javascript/);
  });

  it('redirects the bare prefix, and refuses dotfiles and paths that leave the folder', async () => {
    const bare = await app.inject({ url: '/chat' });
    expect([301, 302]).toContain(bare.statusCode);
    expect(bare.headers.location).toBe('/chat/');
    for (const url of ['/chat/.env', '/chat/../outside.txt', '/chat/%2e%2e/outside.txt', '/chat/nothing.js']) {
      const res = await app.inject({ url });
      expect(res.statusCode, url).toBeGreaterThanOrEqual(400);
      expect(res.body, url).not.toContain('SECRET');
      expect(res.body, url).not.toContain('not served');
    }
  });

  it('puts the security headers on API answers too', async () => {
    const res = await app.inject({ url: '/busy' });
    expect(res.headers['content-security-policy']).toBe(PAGE_CSP);
  });

  it('refuses a prefix that is not /name/ and a folder that does not exist', async () => {
    const bad = Fastify({ logger: false });
    await expect(bad.register(staticPages, { sites: [{ prefix: 'chat', dir }] }).ready()).rejects.toMatchObject({
      code: 'NJ_CONFIG_INVALID',
    });
    await bad.close();
    const missing = Fastify({ logger: false });
    await expect(
      missing.register(staticPages, { sites: [{ prefix: '/x/', dir: path.join(dir, 'missing') }] }).ready(),
    ).rejects.toMatchObject({ code: 'NJ_CONFIG_INVALID' });
    await missing.close();
  });
});

describe('nightjarErrors', () => {
  it('answers a NightjarError with its status, code, message and Retry-After', async () => {
    const res = await app.inject({ url: '/busy' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.json()).toEqual({ error: { code: 'NJ_NO_CAPACITY', message: 'all busy', retryAfterMs: 1500 } });
  });

  it('hides an unexpected failure behind NJ_INTERNAL', async () => {
    const res = await app.inject({ url: '/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: { code: 'NJ_INTERNAL', message: 'internal error' } });
    expect(res.body).not.toContain('hunter2');
  });

  it('maps unknown paths, unreadable and oversized bodies to stable codes', async () => {
    expect((await app.inject({ url: '/nope' })).json()).toEqual({ error: { code: 'NJ_NOT_FOUND', message: 'no such endpoint' } });
    const bad = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: '{"a":' });
    expect([bad.statusCode, bad.json().error.code]).toEqual([400, 'NJ_BAD_REQUEST']);
    const big = await app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ a: 'x'.repeat(100) }),
    });
    expect([big.statusCode, big.json().error.code]).toEqual([413, 'NJ_PAYLOAD_TOO_LARGE']);
  });
});
