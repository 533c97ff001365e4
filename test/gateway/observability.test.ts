/**
 * Metrics in the Prometheus text format, health and readiness, and a graceful shutdown that lets
 * running streams finish while it refuses new work.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/main/agent/index.js';
import { Counter, Histogram, type Gateway } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, startTestGateway, waitFor } from '../helpers/network.js';
import { RawAgent } from './support/raw-agent.js';
import { clientOf, startAgent } from './support/net.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.dispose()));
  await gateway?.close();
  gateway = undefined;
});

const ask = (maxTokens = 16) => ({ model: FAKE_MODEL.id, messages: [{ role: 'user' as const, content: 'hi' }], maxTokens });

describe('metrics', () => {
  it('counts jobs, tokens, time to first token, relay latency and agents, in the text format', async () => {
    gateway = await startTestGateway();
    const gw = gateway;
    agents.push(await startAgent(gw, { engine: new FakeEngine(), model: FAKE_MODEL }));
    const done = new Promise<void>((r) => gw.onJobBilled(() => r()));
    await clientOf(gw, http.fetch).complete(ask());
    await done;
    const res = await http.fetch(`${gw.url}/metrics`);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    for (const line of text.trimEnd().split('\n')) {
      expect(line).toMatch(
        /^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+-]+|[a-z_]+_bucket\{le="\+Inf"\} \d+)$/,
      );
    }
    expect(text).toContain('\nnightjar_jobs_total{code="",outcome="done"} 1\n');
    expect(text).toContain('\nnightjar_tokens_total{kind="prompt"} 6\n');
    expect(text).toContain('\nnightjar_tokens_total{kind="completion"} 6\n');
    expect(text).toContain('\nnightjar_settlements_total{result="settled"} 1\n');
    expect(text).toContain('\nnightjar_time_to_first_token_seconds_count 1\n');
    expect(text).toContain('\nnightjar_relay_latency_seconds_count 7\n'); // six words and the final chunk
    expect(text).toContain('\nnightjar_connected_agents 1\n');
    expect(text).toContain('\nnightjar_routable_agents 1\n');
    expect(text).toContain('\nnightjar_queue_depth 0\n');
    expect(text).toContain('# TYPE nightjar_time_to_first_token_seconds histogram');
  });

  it('asks for the metrics token when one is set', async () => {
    gateway = await startTestGateway({ metricsToken: 'scrape-me' });
    expect((await http.fetch(`${gateway.url}/metrics`)).status).toBe(401);
    expect((await http.fetch(`${gateway.url}/metrics`, { headers: { authorization: 'Bearer scrape-me' } })).status).toBe(200);
  });

  it('escapes label values and fills histogram buckets cumulatively', () => {
    const c = new Counter('x_total', 'help');
    c.inc({ code: 'a"b\\c\nd' }, 2);
    expect(c.render()).toBe('# HELP x_total help\n# TYPE x_total counter\nx_total{code="a\\"b\\\\c\\nd"} 2');
    const h = new Histogram('h_seconds', 'help', [0.1, 1]);
    for (const v of [0.05, 0.5, 5]) h.observe(v);
    expect(h.render().split('\n').slice(2)).toEqual([
      'h_seconds_bucket{le="0.1"} 1',
      'h_seconds_bucket{le="1"} 2',
      'h_seconds_bucket{le="+Inf"} 3',
      'h_seconds_sum 5.55',
      'h_seconds_count 3',
    ]);
  });
});

describe('health, readiness and shutdown', () => {
  it('turns unready and refuses new work while it lets a running stream finish', async () => {
    gateway = await startTestGateway({ shutdownGraceMs: 10_000 });
    const gw = gateway;
    const words = Array.from({ length: 25 }, (_, i) => `w${i} `);
    agents.push(await startAgent(gw, { engine: new FakeEngine({ tokenDelayMs: 40, words }), model: FAKE_MODEL }));
    expect(await (await http.fetch(`${gw.url}/healthz`)).json()).toEqual({ ok: true });
    expect(await (await http.fetch(`${gw.url}/readyz`)).json()).toEqual({ ok: true, agents: 1 });

    const stream = clientOf(gw, http.fetch).chat(ask(25));
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const closing = gw.close();
    const ready = await http.fetch(`${gw.url}/readyz`);
    expect({ status: ready.status, body: await ready.json() }).toEqual({
      status: 503,
      body: { error: { code: 'NJ_SHUTTING_DOWN', message: 'the gateway is shutting down', retryAfterMs: 2000 } },
    });
    const refused = await http.fetch(`${gw.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect({ status: refused.status, code: (await refused.json()).error.code }).toEqual({ status: 503, code: 'NJ_SHUTTING_DOWN' });
    await expect(RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL })).rejects.toMatchObject({ status: 503 });
    for (let n = await it.next(); !n.done; n = await it.next());
    expect((await stream.result).text).toBe(words.join(''));
    await closing;
    await waitFor(() => agents[0]!.linkState !== 'connected', 2000, 'the agent to notice');
  });
});
