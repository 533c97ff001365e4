/**
 * The operator API behind the dashboard: sign-in by token (HttpOnly session cookie) or bearer,
 * the operator's agents live and offline, earnings by day and model, receipts and their CSV
 * export; each operator sees only their own.
 */
import { describe, expect, it } from 'vitest';
import { csvCell } from '../../src/gateway/index.js';
import {
  PAGE_CSP,
  operatorAgentsResponseSchema,
  operatorEarningsResponseSchema,
  operatorMeResponseSchema,
  operatorReceiptsResponseSchema,
  operatorSessionResponseSchema,
} from '../../src/shared/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { REAL_MODEL, billed, billedNetworkPerTest, clientOf, startAgent } from './support/net.js';
import { onceTrue } from '../helpers/events.js';

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
  const [pair, ...attributes] = cookie.split('; ');
  expect(pair).toMatch(/^nj_operator=[A-Za-z0-9_-]{43}$/);
  expect(attributes.sort()).toEqual(['HttpOnly', 'Max-Age=43200', 'Path=/', 'SameSite=Strict']);
  expect(operatorSessionResponseSchema.parse(await res.json())).toEqual({ operator: { id: fx.net.operator.id, name: 'Ada' } });
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

    // Every answer has the shape src/shared/operator-api.ts gives it (which the dashboard reads).
    const me = operatorMeResponseSchema.parse((await get('/v1/operator/me', cookie)).body);
    // Both jobs are inside the pending window (24 hours by default): nothing is payable yet.
    expect(me).toEqual({ operator: { id: fx.net.operator.id, name: 'Ada' }, balance: '34', pending: '34', payable: '0' });
    const { agents: list } = operatorAgentsResponseSchema.parse((await get('/v1/operator/agents', cookie)).body);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({
      agentId: agent.agentId,
      connected: true,
      state: 'serving',
      trust: 'signed',
      model: REAL_MODEL.id,
      routable: true,
      catalogued: true,
      challengeFresh: true,
      jobsDone: 2,
      jobsFailed: 0,
      slots: 2,
    });
    expect(list[0]!.uptimeMs).toBeGreaterThanOrEqual(0);

    const earnings = operatorEarningsResponseSchema.parse((await get('/v1/operator/earnings?days=7', cookie)).body);
    const today = new Date().toISOString().slice(0, 10);
    expect(earnings.days).toHaveLength(7);
    expect(earnings.days.at(-1)).toBe(today);
    expect(earnings.rows).toEqual([{ day: today, model: REAL_MODEL.id, jobs: 2, promptTokens: 12, completionTokens: 12, earned: '34' }]);
    expect({ models: earnings.models, total: earnings.total }).toEqual({ models: [REAL_MODEL.id], total: '34' });

    const page1 = operatorReceiptsResponseSchema.parse((await get('/v1/operator/receipts?limit=1', cookie)).body);
    expect(page1.receipts).toHaveLength(1);
    expect(page1.next).toMatch(/^\d+:[A-Za-z0-9_-]{22}$/);
    const page2 = operatorReceiptsResponseSchema.parse((await get(`/v1/operator/receipts?limit=1&before=${page1.next}`, cookie)).body);
    for (const [query, message] of [
      ['earnings?days=0', 'days must be an integer from 1 to 366'],
      ['earnings?days=1.5', 'days must be an integer from 1 to 366'],
      ['receipts?limit=501', 'limit must be an integer from 1 to 500'],
      ['receipts?before=yesterday', 'before must be a cursor from a previous page'],
      ['receipts.csv?days=367', 'days must be an integer from 1 to 366'],
    ]) {
      expect((await get(`/v1/operator/${query}`, cookie)).body, query).toEqual({ error: { code: 'NJ_BAD_REQUEST', message } });
    }
    expect([page1.receipts[0]!.jobId, page2.receipts[0]!.jobId].sort()).toEqual(results.map((r) => r.jobId).sort());
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
      'job_id,ended_at,model,agent_id,attempt,prompt_tokens,completion_tokens,' +
        'finish_reason,outcome,charged_micro,earned_micro,signed_receipt',
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
    const gw = fx.net.gateway;
    await onceTrue(gw.onAgentDisconnected, () => gw.directory.size === 0, 'the agent to leave', 2000);
    const offline = (await get('/v1/operator/agents', cookie)).body.agents[0];
    expect(offline).toMatchObject({
      agentId: agent.agentId,
      connected: false,
      state: 'offline',
      routable: false,
      catalogued: null,
      uptimeMs: null,
    });
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
    expect((await get('/v1/operator/me', bearer)).body).toEqual({
      operator: { id: other.id, name: 'Grace' },
      balance: '0',
      pending: '0',
      payable: '0',
    });

    const cookie = { cookie: await signIn(fx.net.operator.token) };
    expect((await get('/v1/operator/agents', cookie)).body.agents).toHaveLength(1);
    const out = await http.fetch(`${fx.net.gateway.url}/v1/operator/session`, { method: 'DELETE', headers: cookie });
    expect(out.headers.get('set-cookie')).toMatch(/^nj_operator=; (.*; )?Max-Age=0(;|$)/);
    expect((await get('/v1/operator/agents', cookie)).status).toBe(401);
  });

  it('serves the dashboard under the strict CSP', async () => {
    for (const [path, type] of [
      ['/dashboard/', /^text\/html; charset=utf-8$/],
      ['/dashboard/app.js', /^(text|application)\/javascript; charset=utf-8$/],
      ['/dashboard/app.css', /^text\/css; charset=utf-8$/],
    ] as const) {
      const res = await http.fetch(`${fx.net.gateway.url}${path}`);
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect(res.headers.get('content-type'), path).toMatch(type);
      // The one page policy of every Nightjar page.
      expect(res.headers.get('content-security-policy')).toBe(PAGE_CSP);
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      const body = await res.text();
      if (path === '/dashboard/') expect(body).not.toMatch(/<script>|\sstyle=|\son[a-z]+=/);
    }
  });

  it('marks the session cookie Secure when secureCookies is set', async () => {
    const gateway = await Gateway.start({ port: 0, secureCookies: true, operatorSessionTtlMs: 60_000 });
    try {
      const op = await gateway.store.accounts.createOperator({ name: 'Lin', now: Date.now() });
      const res = await http.fetch(`${gateway.url}/v1/operator/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token: op.token }),
      });
      const [, ...attributes] = res.headers.get('set-cookie')!.split('; ');
      expect(attributes.sort()).toEqual(['HttpOnly', 'Max-Age=60', 'Path=/', 'SameSite=Strict', 'Secure']);
    } finally {
      await gateway.dispose();
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
