/**
 * The control API of a running agent (AgentService), over real sockets: every typed method, the
 * event stream, and the checks that keep it to this machine's own processes — token, Host
 * (DNS rebinding) and Origin.
 */
import http from 'node:http';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentService,
  DEFAULT_CONFIG,
  ManualEnvironmentSource,
  ModelStore,
  loadConfig,
  pathsIn,
  writeSyntheticModel,
  type AgentConfig,
  type AgentPaths,
} from '../../../../src/main/agent/index.js';
import { ControlClient, Emitter, generateIdentity, nextEvent, type ControlEvent } from '../../../../src/shared/index.js';
import { FakeEngine } from '../../../helpers/fake-engine.js';
import { perTestFetch } from '../../../helpers/http-client.js';
import { startModelServer, type ModelServer } from '../../support/model-server.js';
import { startScriptedGateway, type ScriptedGateway } from '../../support/scripted-gateway.js';

const fetcher = perTestFetch();
let root: string;
let n = 0;
let service: AgentService | null = null;
let gw: ScriptedGateway | null = null;
let modelServer: ModelServer | null = null;
let modelFile: Buffer;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'nightjar-control-'));
  modelFile = await readFile((await writeSyntheticModel({ path: path.join(root, 'source.gguf'), shape: 'tiny' })).path);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  await service?.dispose();
  await gw?.close();
  await modelServer?.close();
  service = gw = modelServer = null;
});

async function start(config: Partial<AgentConfig> = {}): Promise<{ service: AgentService; paths: AgentPaths; client: ControlClient }> {
  const base = path.join(root, `a${++n}`);
  const paths = pathsIn(path.join(base, 'config'), path.join(base, 'data'));
  const store = new ModelStore({ dir: paths.modelsDir });
  await writeSyntheticModel({ path: path.join(store.dir, store.fileNameFor('synthetic-tiny')), shape: 'tiny' });
  await store.adopt('synthetic-tiny', { synthetic: true });
  gw = await startScriptedGateway();
  const full: AgentConfig = {
    ...DEFAULT_CONFIG,
    ...config,
    model: { ...DEFAULT_CONFIG.model, selected: 'synthetic-tiny', slots: 2, ...config.model },
  };
  service = await AgentService.start({
    paths,
    config: full,
    gatewayUrl: gw.url,
    identity: await generateIdentity(),
    environment: new ManualEnvironmentSource({
      idleSeconds: 900,
      onAc: true,
      thermal: 'nominal',
      screenLocked: false,
      batteryPercent: null,
    }),
    loadEngine: async () => new FakeEngine({ slots: 2 }),
    memoryProbe: async () => ({ totalBytes: 64 * 1024 ** 3, availableBytes: 32 * 1024 ** 3, swapFreeBytes: 0 }),
    fetch: fetcher.fetch,
  });
  const file = JSON.parse(await readFile(paths.controlFile, 'utf8')) as { url: string; token: string };
  return { service, paths, client: new ControlClient({ baseUrl: file.url, token: file.token, fetch: fetcher.fetch }) };
}

/** Reads a client's event stream: what came so far, and the first event (come or to come) that matches. */
function eventLog(client: ControlClient, signal: AbortSignal) {
  const events: ControlEvent[] = [];
  const arrived = new Emitter<ControlEvent>();
  const reading = (async () => {
    for await (const e of client.events(signal)) {
      events.push(e);
      arrived.fire(e);
    }
  })();
  const seen = async (accept: (e: ControlEvent) => boolean, what: string): Promise<ControlEvent> =>
    events.find(accept) ?? nextEvent(arrived.event, accept, { what });
  return { events, reading, seen };
}

/** A raw request, so Host, Origin and content type can be anything. */
function raw(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'POST',
        path: options.path ?? '/v1/status',
        headers: options.headers,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(options.method === 'GET' || options.method === 'OPTIONS' ? undefined : (options.body ?? '{}'));
  });
}

describe('the control file', () => {
  it('holds the address and a 32-byte token, readable by the owner only, and goes when the agent stops', async () => {
    const { service: s, paths } = await start();
    expect((await stat(paths.controlFile)).mode & 0o777).toBe(0o600);
    const file = JSON.parse(await readFile(paths.controlFile, 'utf8')) as { v: number; url: string; token: string; pid: number };
    expect(file).toMatchObject({ v: 1, url: s.control!.url, pid: process.pid });
    expect(Buffer.from(file.token, 'base64url')).toHaveLength(32);
    expect(s.control!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await s.dispose();
    await expect(stat(paths.controlFile)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('methods', () => {
  it('status, pause, resume and serve-now', async () => {
    const { service: s, client } = await start();
    await s.runtime.whenState('serving');
    expect(await client.call('status', {})).toMatchObject({
      v: 1,
      state: 'serving',
      model: { id: 'synthetic-tiny', loaded: true },
      totalSlots: 2,
      link: 'connected',
    });
    await client.call('pause', {});
    await s.runtime.whenState('paused');
    expect(await client.call('status', {})).toMatchObject({
      state: 'paused',
      manual: { mode: 'paused', until: null },
      reason: { code: 'paused' },
    });
    await client.call('resume', {});
    await s.runtime.whenState('serving');
    expect((await client.call('serveNow', { until: Date.now() + 60_000 })).manual).toMatchObject({ mode: 'serve-now' });
  });

  it('policy: read, change (saved to config.json), and a bad value refused with the field named', async () => {
    const { client, paths } = await start();
    expect((await client.call('getPolicy', {})).idleSeconds).toBe(300);
    const next = await client.call('setPolicy', { idleSeconds: 60, schedule: [{ days: ['sat', 'sun'], start: '00:00', end: '00:00' }] });
    expect(next).toMatchObject({ idleSeconds: 60, requireAc: true });
    expect((await loadConfig(paths.configFile)).policy).toEqual(next);
    await expect(client.call('setPolicy', { idleSeconds: -5 })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringContaining('setPolicy: idleSeconds'),
    });
  });

  it('models: list, select, remove, with errors a person can act on', async () => {
    const { client, service: s } = await start();
    const models = await client.call('listModels', {});
    expect(models.selected).toBe('synthetic-tiny');
    expect(models.installed.map((m) => m.id)).toEqual(['synthetic-tiny']);
    expect(models.catalog.length).toBeGreaterThan(3);
    await expect(client.call('selectModel', { id: 'nope' })).rejects.toMatchObject({ code: 'NJ_MODEL_NOT_INSTALLED' });
    await expect(client.call('removeModel', { id: 'synthetic-tiny' })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringContaining('select another one first'),
    });
    // A second model, selected: the agent drains, unloads and loads it.
    await writeSyntheticModel({ path: path.join(s.store.dir, s.store.fileNameFor('synthetic-tiny-2')), shape: 'tiny', seed: 2 });
    await s.store.adopt('synthetic-tiny-2', { synthetic: true });
    await s.runtime.whenState('serving');
    expect((await client.call('selectModel', { id: 'synthetic-tiny-2' })).selected).toBe('synthetic-tiny-2');
    await s.runtime.whenState((c) => c.state === 'serving' && s.runtime.agent?.model.id === 'synthetic-tiny-2');
    await gw!.whenBundle((b) => b.bundle.models[0]?.id === 'synthetic-tiny-2');
    expect((await client.call('removeModel', { id: 'synthetic-tiny' })).installed.map((m) => m.id)).toEqual(['synthetic-tiny-2']);
  });

  it('earnings and receipts from the agent’s own log', async () => {
    const {
      client,
      service: s,
      paths,
    } = await start({
      earnings: { operatorShare: 0.5, prices: { 'synthetic-tiny': { promptPerMTok: '1000000', completionPerMTok: '2000000' } } },
    });
    await s.runtime.whenState('serving');
    await gw!.whenBundle(() => true);
    const job = await gw!.submit([{ role: 'user', content: 'hi' }], { maxTokens: 4 });
    const outcome = await job.ended;
    const page = await client.call('receipts', {});
    expect(page.total).toBe(1);
    expect(page.receipts[0]).toEqual(outcome.receipt);
    const earnings = await client.call('earnings', { days: 7 });
    const { promptTokens, completionTokens } = outcome.receipt!.receipt;
    expect(earnings.totals).toEqual({
      jobs: 1,
      promptTokens,
      completionTokens,
      microCredits: String(Math.floor((promptTokens * 1 + completionTokens * 2) * 0.5)),
    });
    expect(earnings.priceSource).toBe('config');
    // Recorded (and fsync'd) before the gateway heard of it.
    expect((await readFile(paths.receiptsFile, 'utf8')).trim()).toBe(JSON.stringify(outcome.receipt));
  });

  it('refuses malformed input and unknown methods', async () => {
    const { client, service: s } = await start();
    await expect(client.call('receipts', { limit: 0 })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringContaining('receipts: limit'),
    });
    const r = await raw(s.control!.port, {
      path: '/v1/format-disk',
      headers: { authorization: `Bearer ${s.control!.token}`, 'content-type': 'application/json', host: `127.0.0.1:${s.control!.port}` },
    });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toEqual({ error: { code: 'NJ_BAD_REQUEST', message: 'No such control method.' } });
  });
});

describe('events', () => {
  it('streams state changes, job counts and receipts', async () => {
    const { client, service: s } = await start();
    await s.runtime.whenState('serving');
    const abort = new AbortController();
    const { events, reading, seen } = eventLog(client, abort.signal);
    await seen((e) => e.type === 'state', 'the initial state');
    expect(events[0]).toMatchObject({ type: 'state', state: 'serving' });
    await (
      await gw!.submit([{ role: 'user', content: 'hi' }], { maxTokens: 3 })
    ).ended;
    await seen((e) => e.type === 'receipt', 'a receipt event');
    expect(events.find((e) => e.type === 'receipt')).toMatchObject({
      model: 'synthetic-tiny',
      completionTokens: 3,
      finishReason: 'length',
    });
    expect(events.some((e) => e.type === 'jobs' && e.activeJobs === 1)).toBe(true);
    await client.call('pause', {});
    await seen((e) => e.type === 'state' && e.state === 'paused', 'a paused event');
    abort.abort();
    await reading;
  });

  it('streams download progress for a model pulled through the API', async () => {
    const sha256 = createHash('sha256').update(modelFile).digest('hex');
    modelServer = await startModelServer(modelFile);
    const catalogFile = path.join(root, `catalog-${++n}.json`);
    await writeFile(
      catalogFile,
      JSON.stringify({
        v: 1,
        models: [
          {
            id: 'local-tiny',
            name: 'Local tiny',
            url: modelServer.url,
            sha256,
            bytes: modelFile.length,
            quantization: 'F32',
            contextLength: 4096,
            minMemoryBytes: 0,
            license: 'MIT',
            verified: true,
          },
        ],
      }),
    );
    const { client, service: s } = await start({ catalogFile });
    const abort = new AbortController();
    const { events, reading, seen } = eventLog(client, abort.signal);
    await seen(() => true, 'the stream');
    await client.call('downloadModel', { id: 'local-tiny' });
    await seen((e) => e.type === 'download' && e.progress.phase === 'done', 'the download to finish');
    const phases = events.flatMap((e) => (e.type === 'download' ? [e.progress.phase] : []));
    expect(phases[0]).toBe('starting');
    expect(phases).toContain('verifying');
    await s.runtime.whenState((c) => c.state !== 'loading');
    expect((await client.call('listModels', {})).installed.map((m) => m.id)).toContain('local-tiny');
    await expect(client.call('downloadModel', { id: 'qwen2.5-0.5b-instruct-q4_k_m' })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringContaining('no sha256'),
    });
    abort.abort();
    await reading;
  });
});

describe('who may call', () => {
  // Security: fails if the token check in the onRequest hook is removed.
  it('refuses a request without the token, with a wrong one, and with one of another length', async () => {
    const { service: s } = await start();
    const port = s.control!.port;
    const host = `127.0.0.1:${port}`;
    for (const authorization of [undefined, `Bearer ${'A'.repeat(43)}`, `Bearer ${s.control!.token}x`, s.control!.token, 'Basic abc']) {
      const r = await raw(port, { headers: { host, 'content-type': 'application/json', ...(authorization ? { authorization } : {}) } });
      expect(r.status, String(authorization)).toBe(401);
      expect(JSON.parse(r.body).error.code).toBe('NJ_CONTROL_UNAUTHORIZED');
    }
    // The event stream too.
    expect((await raw(port, { method: 'GET', path: '/v1/events', headers: { host } })).status).toBe(401);
    const ok = await raw(port, { headers: { host, 'content-type': 'application/json', authorization: `Bearer ${s.control!.token}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers['cache-control']).toBe('no-store');
  });

  // Security: fails if the Host check is removed: a page on attacker.example that rebinds its name
  // to 127.0.0.1 reaches this port, but its requests say Host: attacker.example.
  it('refuses a Host header that is not the loopback address (DNS rebinding), even with the token', async () => {
    const { service: s } = await start();
    const { port, token } = s.control!;
    for (const host of [`attacker.example:${port}`, 'attacker.example', `127.0.0.1:${port + 1}`, `127.0.0.1.attacker.example:${port}`]) {
      const r = await raw(port, { headers: { host, authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      expect(r.status, host).toBe(403);
      expect(JSON.parse(r.body).error.code).toBe('NJ_CONTROL_FORBIDDEN');
    }
    for (const host of [`localhost:${port}`, `[::1]:${port}`]) {
      expect(
        (await raw(port, { headers: { host, authorization: `Bearer ${token}`, 'content-type': 'application/json' } })).status,
        host,
      ).toBe(200);
    }
  });

  // Security: fails if the Origin check is removed.
  it('refuses a cross-site Origin, accepts its own', async () => {
    const { service: s } = await start();
    const { port, token } = s.control!;
    const headers = { host: `127.0.0.1:${port}`, authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    for (const origin of ['https://attacker.example', 'null', `http://127.0.0.1:${port + 1}`]) {
      const r = await raw(port, { headers: { ...headers, origin } });
      expect(r.status, origin).toBe(403);
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
    }
    expect((await raw(port, { headers: { ...headers, origin: `http://127.0.0.1:${port}` } })).status).toBe(200);
    // A CORS preflight is never approved.
    const preflight = await raw(port, {
      method: 'OPTIONS',
      headers: { host: headers.host, origin: 'https://attacker.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBeGreaterThanOrEqual(400);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('takes JSON only: a form post (what a page could send without a preflight) is refused', async () => {
    const { service: s } = await start();
    const { port, token } = s.control!;
    const r = await raw(port, {
      path: '/v1/pause',
      headers: { host: `127.0.0.1:${port}`, authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
      body: '{}',
    });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(s.runtime.manual.mode).toBe('auto');
  });
});
