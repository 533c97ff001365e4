/**
 * The operator API behind the dashboard: sign-in by token (HttpOnly session cookie) or bearer,
 * the operator's agents live and offline, earnings by day and model, receipts and their CSV
 * export; each operator sees only their own.
 */
import { describe, expect, it } from 'vitest';
import { csvCell } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { waitFor } from '../helpers/network.js';
import { REAL_MODEL, billed, billedNetworkPerTest, clientOf, startAgent } from './support/net.js';

const http = perTestFetch();
const fx = billedNetworkPerTest();

async function signIn(token: string): Promise<string> {
  const res = await http.fetch(`${fx.net.gateway.url}/v1/operator/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  expect(res.status).toBe(200);
  const cookie = res.headers.get('set-cookie')!;
  expect(cookie).toMatch(/^nj_operator=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
  expect(await res.json()).toEqual({ operator: { id: fx.net.operator.id, name: 'Ada' } });
  return cookie.split(';')[0]!;
}

const get = async (path: string, headers: Record<string, string>) => {
  const res = await http.fetch(`${fx.net.gateway.url}${path}`, { headers });
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    body: res.headers.get('content-type')?.startsWith('application/json') ? await res.json() : await res.text(),
  };
};

describe('operator API', () => {
  it('signs in with the operator token and shows agents, earnings, receipts and a CSV export', async () => {
    const agent = await startAgent(fx.net.gateway, { engine: new FakeEngine(), enrollToken: await fx.net.enrollToken() });
    fx.agents.push(agent);
    const isBilled = billed(fx.net.gateway);
    const client = clientOf(fx.net.gateway, http.fetch, fx.net.key.key);
    const results = [];
    for (let i = 0; i < 2; i++) {
      const r = await client.complete({ model: REAL_MODEL.id, messages: [{ role: 'user', content: 'hi' }], maxTokens: 16 });
      await isBilled(r.jobId);
      results.push(r);
    }
    const cookie = { cookie: await signIn(fx.net.operator.token) };

    expect((await get('/v1/operator/me', cookie)).body).toEqual({ operator: { id: fx.net.operator.id, name: 'Ada' }, balance: '34' });
    const { agents: list } = (await get('/v1/operator/agents', cookie)).body;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({
      agentId: agent.agentId,
      connected: true,
      state: 'serving',
      trust: 'signed',
      model: REAL_MODEL.id,
      routable: true,
      challengeFresh: true,
      jobsDone: 2,
      jobsFailed: 0,
      slots: 2,
    });
    expect(list[0].uptimeMs).toBeGreaterThanOrEqual(0);

    const earnings = (await get('/v1/operator/earnings?days=7', cookie)).body;
    const today = new Date().toISOString().slice(0, 10);
    expect(earnings.days).toHaveLength(7);
    expect(earnings.days.at(-1)).toBe(today);
    expect(earnings.rows).toEqual([{ day: today, model: REAL_MODEL.id, jobs: 2, promptTokens: 12, completionTokens: 12, earned: '34' }]);
    expect({ models: earnings.models, total: earnings.total }).toEqual({ models: [REAL_MODEL.id], total: '34' });

    const page1 = (await get('/v1/operator/receipts?limit=1', cookie)).body;
    expect(page1.receipts).toHaveLength(1);
    expect(page1.next).toMatch(/^\d+:[A-Za-z0-9_-]{22}$/);
    const page2 = (await get(`/v1/operator/receipts?limit=1&before=${page1.next}`, cookie)).body;
    expect([page1.receipts[0].jobId, page2.receipts[0].jobId].sort()).toEqual(results.map((r) => r.jobId).sort());
    expect(page2.receipts[0]).toMatchObject({
      agentId: agent.agentId,
      model: REAL_MODEL.id,
      promptTokens: 6,
      completionTokens: 6,
      finishReason: 'stop',
      outcome: 'done',
      charged: '18',
      earned: '17',
    });

    const csv = await http.fetch(`${fx.net.gateway.url}/v1/operator/receipts.csv`, { headers: cookie });
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(csv.headers.get('content-disposition')).toMatch(/^attachment; filename="nightjar-receipts-\d{4}-\d{2}-\d{2}\.csv"$/);
    const lines = (await csv.text()).trimEnd().split('\r\n');
    expect(lines[0]).toBe(
      'job_id,ended_at,model,agent_id,attempt,prompt_tokens,completion_tokens,finish_reason,outcome,charged_micro,earned_micro,signed_receipt',
    );
    expect(lines).toHaveLength(3);
    // A jobId that starts with "-" is written "'-…" so that a spreadsheet does not run it.
    const id = results[0]!.jobId.startsWith('-') ? `'${results[0]!.jobId}` : results[0]!.jobId;
    const row = lines.find((l) => l.startsWith(id))!;
    expect(row).toMatch(
      new RegExp(`^${id},\\d{4}-\\d{2}-\\d{2}T[^,]+,${REAL_MODEL.id},${agent.agentId},0,6,6,stop,done,18,17,"\\{""receipt"":`),
    );

    // Offline agents stay listed, with when they were last seen.
    await agent.dispose();
    fx.agents.pop();
    await waitFor(() => fx.net.gateway.directory.size === 0, 2000, 'agent to leave');
    const offline = (await get('/v1/operator/agents', cookie)).body.agents[0];
    expect(offline).toMatchObject({ agentId: agent.agentId, connected: false, state: 'offline', routable: false, uptimeMs: null });
  });

  it('refuses without a valid session or token, and shows each operator only their own', async () => {
    const attempts: Record<string, string>[] = [
      {},
      { cookie: 'nj_operator=forged' },
      { authorization: 'Bearer njop_000000000000_' + 'A'.repeat(43) },
    ];
    for (const headers of attempts) {
      const res = await get('/v1/operator/agents', headers);
      expect({ status: res.status, body: res.body }).toEqual({
        status: 401,
        body: { error: { code: 'NJ_UNAUTHORIZED', message: 'sign in with an operator token' } },
      });
    }
    const bad = await http.fetch(`${fx.net.gateway.url}/v1/operator/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'guess' }),
    });
    expect(bad.status).toBe(401);
    // A cross-site form cannot sign anyone in: only JSON is read.
    const form = await http.fetch(`${fx.net.gateway.url}/v1/operator/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${fx.net.operator.token}`,
    });
    expect({ status: form.status, cookie: form.headers.get('set-cookie') }).toEqual({ status: 400, cookie: null });

    fx.agents.push(await startAgent(fx.net.gateway, { engine: new FakeEngine(), enrollToken: await fx.net.enrollToken() }));
    const other = await fx.net.store.accounts.createOperator({ name: 'Grace', now: Date.now() });
    const bearer = { authorization: `Bearer ${other.token}` };
    expect((await get('/v1/operator/agents', bearer)).body).toEqual({ agents: [] });
    expect((await get('/v1/operator/me', bearer)).body).toEqual({ operator: { id: other.id, name: 'Grace' }, balance: '0' });

    const cookie = { cookie: await signIn(fx.net.operator.token) };
    expect((await get('/v1/operator/agents', cookie)).body.agents).toHaveLength(1);
    const out = await http.fetch(`${fx.net.gateway.url}/v1/operator/session`, { method: 'DELETE', headers: cookie });
    expect(out.headers.get('set-cookie')).toMatch(/^nj_operator=; .*Max-Age=0$/);
    expect((await get('/v1/operator/agents', cookie)).status).toBe(401);
  });

  it('serves the dashboard under the strict CSP', async () => {
    for (const [path, type] of [
      ['/dashboard/', 'text/html; charset=utf-8'],
      ['/dashboard/app.js', 'text/javascript; charset=utf-8'],
      ['/dashboard/app.css', 'text/css; charset=utf-8'],
    ] as const) {
      const res = await http.fetch(`${fx.net.gateway.url}${path}`);
      expect({ path, status: res.status, type: res.headers.get('content-type') }).toEqual({ path, status: 200, type });
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      const body = await res.text();
      if (path === '/dashboard/') expect(body).not.toMatch(/<script>|\sstyle=|\son[a-z]+=/);
    }
  });

  it('quotes CSV cells and defuses spreadsheet formulas', () => {
    expect(['plain', 12, null, 'a,b', 'say "hi"', '=1+1', '-2', '@x', 'line\nbreak'].map(csvCell)).toEqual([
      'plain',
      '12',
      '',
      '"a,b"',
      '"say ""hi"""',
      "'=1+1",
      "'-2",
      "'@x",
      '"line\nbreak"',
    ]);
  });
});
