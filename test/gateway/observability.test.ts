/**
 * Metrics in the Prometheus text format, health and readiness, and a graceful shutdown that lets
 * running streams finish while it refuses new work.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/main/agent/index.js';
import { CLOSE_CODES, PROTOCOL_VERSION, randomBytes, toBase64Url } from '../../src/shared/index.js';
import { Gateway, GatewayMetrics } from '../../src/gateway/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL, agentServing, startTestGateway } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { RawAgent } from './support/raw-agent.js';
import { onceTrue } from '../helpers/events.js';
import { billed, clientOf, startAgent, startBilledNetwork, tempDir } from './support/net.js';

const http = perTestFetch();
let gateway: Gateway | undefined;
const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.dispose()));
  await gateway?.dispose();
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
    // prom-client separates metric families with a blank line, which the format allows.
    for (const line of text
      .trimEnd()
      .split('\n')
      .filter((l) => l !== '')) {
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

  it('escapes label values and fills histogram buckets cumulatively', async () => {
    const metrics = new GatewayMetrics();
    metrics.attemptsFailed.inc({ code: 'a"b\\c\nd' }, 2);
    for (const v of [0.05, 0.5, 5]) metrics.ttft.observe(v);
    const lines = (await metrics.render()).split('\n');
    expect(lines).toContain('nightjar_attempts_failed_total{code="a\\"b\\\\c\\nd"} 2');
    expect(await metrics.value(metrics.attemptsFailed, { code: 'a"b\\c\nd' })).toBe(2);
    const buckets = lines.filter((l) => l.startsWith('nightjar_time_to_first_token_seconds'));
    expect(buckets).toEqual([
      'nightjar_time_to_first_token_seconds_bucket{le="0.025"} 0',
      'nightjar_time_to_first_token_seconds_bucket{le="0.05"} 1',
      'nightjar_time_to_first_token_seconds_bucket{le="0.1"} 1',
      'nightjar_time_to_first_token_seconds_bucket{le="0.25"} 1',
      'nightjar_time_to_first_token_seconds_bucket{le="0.5"} 2',
      'nightjar_time_to_first_token_seconds_bucket{le="1"} 2',
      'nightjar_time_to_first_token_seconds_bucket{le="2.5"} 2',
      'nightjar_time_to_first_token_seconds_bucket{le="5"} 3',
      'nightjar_time_to_first_token_seconds_bucket{le="10"} 3',
      'nightjar_time_to_first_token_seconds_bucket{le="30"} 3',
      'nightjar_time_to_first_token_seconds_bucket{le="60"} 3',
      'nightjar_time_to_first_token_seconds_bucket{le="+Inf"} 3',
      'nightjar_time_to_first_token_seconds_sum 5.55',
      'nightjar_time_to_first_token_seconds_count 3',
    ]);
  });

  it("keeps each gateway's figures in a registry of its own", async () => {
    const a = new GatewayMetrics();
    const b = new GatewayMetrics();
    a.jobs.inc({ code: '', outcome: 'done' });
    expect(await a.value(a.jobs, { code: '', outcome: 'done' })).toBe(1);
    expect(await b.value(b.jobs, { code: '', outcome: 'done' })).toBe(0);
    expect(await b.render()).not.toContain('process_cpu');
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
    const closing = gw.dispose();
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
    const agent = agents[0]!;
    await onceTrue(agent.onLink, () => agent.linkState !== 'connected', 'the agent to notice', 2000);
  });

  // Every wait of the shutdown runs on the gateway's clock: with a fake clock that stands still,
  // a stream that never ends holds dispose() until the clock passes shutdownGraceMs, however long
  // that takes in real time (a Date.now() deadline would cut it after 10 s of real time instead).
  it('lets a stuck stream run for shutdownGraceMs on its own clock, then cancels it, cuts the agent and releases the hold', async () => {
    const clock = new FakeClock();
    const tmp = await tempDir();
    const net = await startBilledNetwork(tmp.dir, {
      clock,
      heartbeatMs: 3_600_000,
      challengeIntervalMs: 3_600_000,
      jobTimeouts: { acceptMs: 600_000 },
    });
    try {
      const gw = net.gateway;
      const raw = await RawAgent.connect({ url: gw.agentUrl, model: FAKE_MODEL });
      await agentServing(gw, raw.agentId);
      const isBilled = billed(gw);
      const jobFrame = raw.next('job');
      const stream = clientOf(gw, http.fetch, net.key.key).chat(ask());
      stream.result.catch(() => undefined);
      const job = await jobFrame;
      raw.send({ v: PROTOCOL_VERSION, type: 'accepted', jobId: job.jobId, attempt: job.attempt, replySalt: toBase64Url(randomBytes(16)) });
      const cancel = raw.next('cancel');
      const closing = gw.dispose();
      clock.advance(9_999);
      await new Promise((r) => setTimeout(r, 50));
      expect(gw.activeJobs).toBe(1);
      clock.advance(1);
      expect(await cancel).toMatchObject({ jobId: job.jobId, reason: 'the gateway is shutting down' });
      clock.advance(2000); // the wait for the cancelled job's receipt, which never comes
      await closing;
      expect((await raw.closed).code).toBe(CLOSE_CODES.goingAway);
      await isBilled(job.jobId);
      expect(await net.store.ledger.job(job.jobId)).toMatchObject({ status: 'released' });
      // The store was handed in: it outlives the gateway.
      await expect(net.store.ping()).resolves.toBeUndefined();
    } finally {
      await net.close();
      await tmp.remove();
    }
  });

  it('disposes the store it opened itself', async () => {
    const own = await Gateway.start({ port: 0 });
    const store = own.store;
    await expect(store.ping()).resolves.toBeUndefined();
    await own.dispose();
    await expect(store.ping()).rejects.toThrow();
  });
});
