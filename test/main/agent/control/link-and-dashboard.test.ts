/**
 * What the dashboard needs from the agent beyond PR 3's control API, over real sockets: an agent
 * started unlinked says so (NJ_NOT_LINKED) and is linked through the `link` method to a real
 * gateway with an enrollment token (operator, trust and a refused token in `status.gateway`);
 * status carries the security posture; listModels carries this machine's memory; and the
 * control server serves the built dashboard without the token but hands the token only for a
 * one-time ticket redeemed from its own origin.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentService,
  DEFAULT_CONFIG,
  ManualEnvironmentSource,
  ModelStore,
  gatewaySocketUrl,
  loadConfig,
  pathsIn,
  writeSyntheticModel,
  type AgentConfig,
} from '../../../../src/main/agent/index.js';
import { Gateway } from '../../../../src/gateway/index.js';
import { ControlClient, PAGE_CSP, generateIdentity, nextEvent, systemClock } from '../../../../src/shared/index.js';
import { FakeEngine } from '../../../helpers/fake-engine.js';
import { startModelServer } from '../../support/model-server.js';
import { perTestFetch } from '../../../helpers/http-client.js';
import { agentServing } from '../../../helpers/network.js';

const fetcher = perTestFetch();
let root: string;
let dashboardDir: string;
let n = 0;
let service: AgentService | null = null;
let gateway: Gateway | null = null;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'nightjar-link-'));
  dashboardDir = path.join(root, 'dashboard');
  await mkdir(dashboardDir);
  await writeFile(path.join(dashboardDir, 'index.html'), '<!doctype html><title>d</title><script type="module" src="app.js"></script>');
  await writeFile(path.join(dashboardDir, 'app.js'), 'export {};');
  await writeFile(path.join(dashboardDir, 'notes.txt'), 'not served: not a dashboard file type');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  await service?.dispose();
  await gateway?.dispose();
  service = gateway = null;
});

interface StartOptions {
  gatewayUrl?: string | null;
  config?: Partial<AgentConfig>;
  dashboard?: boolean;
  /** Added to the real time the agent's clock reads. */
  skew?: { ms: number };
}

async function start(options: StartOptions = {}): Promise<{ service: AgentService; client: ControlClient; configFile: string }> {
  const base = path.join(root, `a${++n}`);
  const paths = pathsIn(path.join(base, 'config'), path.join(base, 'data'));
  const store = new ModelStore({ dir: paths.modelsDir });
  await writeSyntheticModel({ path: path.join(store.dir, store.fileNameFor('synthetic-tiny')), shape: 'tiny' });
  await store.adopt('synthetic-tiny', { synthetic: true });
  service = await AgentService.start({
    paths,
    config: { ...DEFAULT_CONFIG, ...options.config, model: { ...DEFAULT_CONFIG.model, selected: 'synthetic-tiny', slots: 2 } },
    gatewayUrl: options.gatewayUrl === undefined ? null : options.gatewayUrl,
    identity: await generateIdentity(),
    environment: new ManualEnvironmentSource({
      idleSeconds: 900,
      onAc: true,
      thermal: 'nominal',
      screenLocked: false,
      batteryPercent: null,
    }),
    loadEngine: async () => new FakeEngine({ slots: 2 }),
    memoryProbe: async () => ({ totalBytes: 16 * 1024 ** 3, availableBytes: 9 * 1024 ** 3, swapFreeBytes: 0 }),
    backoff: { initialMs: 50, maxMs: 200 },
    fetch: fetcher.fetch,
    ...(options.dashboard ? { dashboardDir } : {}),
    ...(options.skew ? { clock: { ...systemClock, now: () => Date.now() + options.skew!.ms } } : {}),
  });
  const file = JSON.parse(await readFile(paths.controlFile, 'utf8')) as { url: string; token: string };
  return {
    service,
    client: new ControlClient({ baseUrl: file.url, token: file.token, fetch: fetcher.fetch }),
    configFile: paths.configFile,
  };
}

/** The gateway's welcome, as the standing in status shows it (subscribe before linking). */
function welcome(s: AgentService): Promise<unknown> {
  return nextEvent(s.runtime.onLink, () => s.runtime.status().gateway.trust !== null, { what: 'the welcome' });
}

async function enrollToken(g: Gateway): Promise<{ token: string; operatorId: string }> {
  const operator = await g.store.accounts.createOperator({ name: 'Ada', now: Date.now() });
  const { token } = await g.store.accounts.createEnrollmentToken({ operatorId: operator.id, now: Date.now(), ttlMs: 3600_000 });
  return { token, operatorId: operator.id };
}

function raw(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers: { host: `127.0.0.1:${port}`, ...options.headers },
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('gatewaySocketUrl', () => {
  it('turns an http(s) address into the agent endpoint and refuses the rest', () => {
    expect(gatewaySocketUrl('https://gw.example')).toBe('wss://gw.example/v1/agent');
    expect(gatewaySocketUrl(' http://127.0.0.1:8787/ ')).toBe('ws://127.0.0.1:8787/v1/agent');
    expect(gatewaySocketUrl('wss://gw.example/custom#x')).toBe('wss://gw.example/custom');
    for (const bad of ['gw.example', 'ftp://gw.example', 'https://user:pw@gw.example', '']) {
      expect(() => gatewaySocketUrl(bad), bad).toThrow(expect.objectContaining({ code: 'NJ_BAD_REQUEST' }));
    }
  });
});

describe('linking', () => {
  it('an unlinked agent waits in error NJ_NOT_LINKED with what to do, then links with an enrollment token', async () => {
    gateway = await Gateway.start({ port: 0, allowSynthetic: true });
    const { token, operatorId } = await enrollToken(gateway);
    const { service: s, client, configFile } = await start();
    await s.runtime.whenState('error');
    const before = await client.call('status', {});
    expect(before).toMatchObject({
      state: 'error',
      gatewayUrl: null,
      reason: {
        code: 'NJ_NOT_LINKED',
        message: 'This machine is not linked to a gateway yet.',
        hint: expect.stringContaining('Link this Mac'),
      },
      gateway: { enrollToken: false, operator: null, trust: null, rejected: null },
    });

    const welcomed = welcome(s);
    const after = await client.call('link', { gatewayUrl: gateway.url, enrollToken: token });
    expect(after.gatewayUrl).toBe(gateway.agentUrl);
    await s.runtime.whenState('serving');
    await welcomed;
    expect((await client.call('status', {})).gateway).toEqual({ enrollToken: true, operator: operatorId, trust: 'signed', rejected: null });
    expect((await loadConfig(configFile)).gateway).toEqual({ url: gateway.url, enrollToken: token });
    expect((await gateway.store.accounts.getAgent(s.runtime.agentId))?.operatorId).toBe(operatorId);
  });

  const refusedThenRelinked =
    'a refused enrollment token: status.gateway.rejected, the agent in error saying what to do; relinking with a good one serves';
  it(refusedThenRelinked, async () => {
    gateway = await Gateway.start({ port: 0, allowSynthetic: true });
    const { service: s, client } = await start();
    const refused = nextEvent(s.runtime.onLink, () => s.runtime.status().gateway.rejected !== null, { what: 'the refusal' });
    await client.call('link', { gatewayUrl: gateway.url, enrollToken: 'njen_000000000000_' + 'A'.repeat(43) });
    await refused;
    expect(s.runtime.status().gateway.rejected).toMatchObject({ code: 'NJ_ENROLL_INVALID', message: expect.stringContaining('not known') });
    // Reconnecting with the same token cannot help: the agent stops and says so.
    await s.runtime.whenState((c) => c.state === 'error' && c.reason?.code === 'NJ_ENROLL_INVALID');
    expect(s.runtime.status().reason).toMatchObject({ code: 'NJ_ENROLL_INVALID', hint: expect.stringMatching(/\S/) });

    const { token } = await enrollToken(gateway);
    const welcomed = welcome(s);
    await client.call('link', { gatewayUrl: gateway.url, enrollToken: token });
    await s.runtime.whenState('serving');
    await welcomed;
    expect(s.runtime.status().gateway.trust).toBe('signed');
    expect(s.runtime.status().gateway.rejected).toBeNull();
    await agentServing(gateway!, s.runtime.agentId, 10_000);
  });

  it('refuses an address that is not a URL, and one where no gateway answers, saving nothing', async () => {
    const { client, configFile, service: s } = await start();
    await expect(client.call('link', { gatewayUrl: 'gateway.example' })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
      message: expect.stringContaining('must be a URL'),
    });
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await expect(client.call('link', { gatewayUrl: `http://127.0.0.1:${port}` })).rejects.toMatchObject({ code: 'NJ_GATEWAY_UNREACHABLE' });
    await expect(client.call('link', { gatewayUrl: 'https://gw.example', enrollToken: 'has space' })).rejects.toMatchObject({
      code: 'NJ_BAD_REQUEST',
    });
    expect((await loadConfig(configFile)).gateway.url).toBeNull();
    expect(s.runtime.gatewayUrl).toBeNull();
  });
});

describe('what the dashboard shows', () => {
  it('status carries the security posture; listModels carries this machine’s memory', async () => {
    const { client } = await start({ config: { keys: { store: 'plaintext-file', file: null } } });
    const status = await client.call('status', {});
    expect(status.security).toMatchObject({
      keyStore: 'plaintext-file',
      platform: { os: process.platform, arch: process.arch, memoryBytes: os.totalmem() },
      posture: { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appHash: null },
    });
    expect((await client.call('listModels', {})).memory).toEqual({ totalBytes: 16 * 1024 ** 3, availableBytes: 9 * 1024 ** 3 });
  });
});

describe('downloads', () => {
  it('says done only once the model is installed, so selecting it on that event works', async () => {
    const file = await readFile((await writeSyntheticModel({ path: path.join(root, `source-${++n}.gguf`), shape: 'tiny', seed: 3 })).path);
    const server = await startModelServer(file);
    try {
      const catalogFile = path.join(root, `catalog-${n}.json`);
      const sha256 = createHash('sha256').update(file).digest('hex');
      await writeFile(
        catalogFile,
        JSON.stringify({
          v: 1,
          models: [
            {
              id: 'local-tiny',
              name: 'Local tiny',
              url: server.url,
              sha256,
              bytes: file.length,
              quantization: 'F32',
              contextLength: 4096,
              minMemoryBytes: 0,
              license: 'MIT',
              verified: true,
            },
          ],
        }),
      );
      const { service: s } = await start({ config: { catalogFile } });
      const selected = new Promise<unknown>((resolve) => {
        s.onEvent((e) => {
          if (e.type === 'download' && e.progress.phase === 'done')
            resolve(
              Promise.resolve(s.handlers.selectModel({ id: 'local-tiny' })).then(
                (m) => m.selected,
                (err: unknown) => err,
              ),
            );
        });
      });
      s.download('local-tiny');
      expect(await selected).toBe('local-tiny');
      expect((await s.handlers.listModels({})).downloads).toEqual([]);
      // The file is the synthetic generator's: installed as synthetic, whatever the catalog calls it.
      expect((await s.store.get('local-tiny'))?.synthetic).toBe(true);
    } finally {
      await service?.dispose();
      service = null;
      await server.close();
    }
  });
});

describe('the dashboard on the control server', () => {
  it('serves its files without the token under a strict CSP, and nothing else', async () => {
    const { service: s } = await start({ dashboard: true });
    const { port } = s.control!;
    for (const p of ['/', '/index.html', '/app.js']) {
      const r = await raw(port, { path: p });
      expect(r.status, p).toBe(200);
      expect(r.headers['content-security-policy']).toBe(PAGE_CSP);
      expect(r.headers).toMatchObject({
        'x-frame-options': 'DENY',
        'x-content-type-options': 'nosniff',
        'cross-origin-resource-policy': 'same-origin',
        'referrer-policy': 'no-referrer',
      });
    }
    expect((await raw(port, { path: '/' })).headers['content-type']).toBe('text/html; charset=utf-8');
    // A JavaScript MIME type, which strict MIME checking (nosniff) accepts for a module script.
    expect((await raw(port, { path: '/app.js' })).headers['content-type']).toMatch(/^(text|application)\/javascript; charset=utf-8$/);
    // Not a dashboard file, outside the folder, or the API: the token is still required.
    // Security: fails if the pages gate (control/guards.ts) is removed — the static files plugin
    // would serve notes.txt, also reached as /v1/../notes.txt, which climbs out of the API's prefix.
    for (const p of ['/notes.txt', '/v1/../notes.txt', '/v1/%2e%2e/notes.txt', '/../index.html', '/%2e%2e/control.json', '/v1/events']) {
      expect((await raw(port, { path: p })).status, p).toBe(401);
    }
    // DNS rebinding is refused for the pages too.
    expect((await raw(port, { path: '/', headers: { host: `attacker.example:${port}` } })).status).toBe(403);
  });

  // Security: fails if the session endpoint stops deleting a redeemed ticket, or stops checking Origin or expiry.
  it('hands the token for a ticket once, within its minute, to its own origin only', async () => {
    const skew = { ms: 0 };
    const { service: s } = await start({ dashboard: true, skew });
    const { port, token } = s.control!;
    const origin = `http://127.0.0.1:${port}`;
    const redeem = (ticket: string, extra: Record<string, string> = { origin }) =>
      raw(port, {
        method: 'POST',
        path: '/v1/dashboard/session',
        headers: { 'content-type': 'application/json', ...extra },
        body: JSON.stringify({ ticket }),
      });
    const ticketOf = (url: string): string => {
      expect(url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${port}/#ticket=[A-Za-z0-9_-]{43}$`));
      return url.split('#ticket=')[1]!;
    };

    const first = ticketOf(s.control!.dashboardUrl());
    expect((await redeem(first, {})).status).toBe(403); // no Origin: not a page of this origin
    expect((await redeem(first, { origin: 'https://attacker.example' })).status).toBe(403);
    const ok = await redeem(first);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ token });
    const again = await redeem(first);
    expect(again.status).toBe(401);
    expect(JSON.parse(again.body).error.code).toBe('NJ_DASHBOARD_TICKET');

    const late = ticketOf(s.control!.dashboardUrl());
    skew.ms += 60_001;
    expect((await redeem(late)).status).toBe(401);
    expect((await redeem('made-up')).status).toBe(401);

    // A holder of the token (the CLI) may ask for a fresh URL.
    const fresh = await raw(port, {
      method: 'POST',
      path: '/v1/dashboard/ticket',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: '{}',
    });
    expect(fresh.status).toBe(200);
    expect((await redeem(ticketOf((JSON.parse(fresh.body) as { url: string }).url))).status).toBe(200);
    expect(
      (await raw(port, { method: 'POST', path: '/v1/dashboard/ticket', headers: { 'content-type': 'application/json' }, body: '{}' }))
        .status,
    ).toBe(401);
  });

  it('an agent without a dashboard has no ticket to give', async () => {
    const { service: s } = await start();
    expect(() => s.control!.dashboardUrl()).toThrow(expect.objectContaining({ code: 'NJ_NOT_FOUND' }));
    expect((await raw(s.control!.port, { path: '/' })).status).toBe(401);
    const { port, token } = s.control!;
    const r = await raw(port, {
      method: 'POST',
      path: '/v1/dashboard/ticket',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: '{}',
    });
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body).error.code).toBe('NJ_NOT_FOUND');
  });
});
