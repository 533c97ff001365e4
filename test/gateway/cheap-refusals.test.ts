/**
 * Cheap refusals first (issue 17): a request without a valid key, operator token or metrics
 * token, a request over its rate limit and a request for an unknown path are answered before the
 * gateway reads a byte of its body; requests that carry no valid key are limited per address
 * (401, then 429); JSON bodies of API routes are capped at maxApiBodyBytes and depth-scanned
 * before they are parsed; keys and tokens are compared exactly.
 *
 * "Before the body is read" is shown with a raw socket that sends only the request head with a
 * Content-Length of megabytes and no body: the answer arrives although the body never does. A
 * gateway that read the body first would wait for it (and the test would time out).
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LIMITS, NightjarError, PROTOCOL_VERSION, sealRequest } from '../../src/shared/index.js';
import { NightjarClient } from '../../src/client/index.js';
import type { Agent } from '../../src/main/agent/index.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import { perTestFetch } from '../helpers/http-client.js';
import { FAKE_MODEL } from '../helpers/network.js';
import { FakeClock } from './support/fake-clock.js';
import { clientOf, startAgent, startBilledNetwork, tempDir, type BilledNetwork } from './support/net.js';

const http = perTestFetch();
const cleanups: (() => Promise<unknown>)[] = [];
const agentsToStop: Agent[] = [];
afterEach(async () => {
  await Promise.all(agentsToStop.splice(0).map((a) => a.dispose()));
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function network(options: Parameters<typeof startBilledNetwork>[1] = {}): Promise<BilledNetwork> {
  const tmp = await tempDir();
  cleanups.push(() => tmp.remove());
  const n = await startBilledNetwork(tmp.dir, options);
  cleanups.push(() => n.close());
  return n;
}

/** An HTTP answer read off a raw socket. */
interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends only a request head (no body, whatever its Content-Length says) and resolves with the
 * answer; the socket is destroyed once the answer is whole.
 */
function headOnly(url: string, head: string): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    cleanups.push(async () => socket.destroy());
    let data = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = data.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (data.length < end + 4 + length) return;
      socket.destroy();
      resolve({ status: Number(lines[0]!.split(' ')[1]), headers, body: data.subarray(end + 4, end + 4 + length).toString('utf8') });
    });
    socket.write(head.replace(/\n/g, '\r\n') + '\r\n\r\n');
  });
}

const BIG = 5_600_000;

/** `secret` with its last character changed. */
function changedLast(secret: string): string {
  return `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
}

describe('refusals before the body is read', () => {
  it('answers POST /v1/jobs without a key, with a wrong key or over the rate limit before reading its body', async () => {
    // Fails without the onRequest hook on /v1/jobs (authentication back in the handler): the
    // gateway waits for the 5.6 MB body that never comes and no answer arrives.
    const n = await network({ rateLimit: { perSecond: 0.001, burst: 1 } });
    const post = (auth: string) =>
      headOnly(n.gateway.url, `POST /v1/jobs HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: ${BIG}${auth}`);
    const none = await post('');
    expect({ status: none.status, body: JSON.parse(none.body) }).toEqual({
      status: 401,
      body: { error: { code: 'NJ_UNAUTHORIZED', message: 'send an API key as Authorization: Bearer njk_…' } },
    });
    const wrong = await post(`\nAuthorization: Bearer ${changedLast(n.key.key)}`);
    expect({ status: wrong.status, code: JSON.parse(wrong.body).error.code }).toEqual({ status: 401, code: 'NJ_UNAUTHORIZED' });
    // The key's one request is taken by /v1/account; the next POST is over its limit.
    expect((await http.fetch(`${n.gateway.url}/v1/account`, { headers: { authorization: `Bearer ${n.key.key}` } })).status).toBe(200);
    const limited = await post(`\nAuthorization: Bearer ${n.key.key}`);
    expect({ status: limited.status, code: JSON.parse(limited.body).error.code }).toEqual({ status: 429, code: 'NJ_RATE_LIMITED' });
  });

  it('answers an unknown path with 404 before reading its body', async () => {
    // Fails without cheapRefusals' onRequest 404 (src/node/web.ts): fastify reads the body for
    // the not-found handler first, so no answer arrives for the first request (a body under the
    // API limit), and the second is answered 413 instead of 404.
    const n = await network();
    const post = (length: number) =>
      headOnly(n.gateway.url, `POST /v1/nope HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: ${length}`);
    for (const length of [60_000, BIG]) {
      const answer = await post(length);
      expect({ status: answer.status, body: JSON.parse(answer.body) }).toEqual({
        status: 404,
        body: { error: { code: 'NJ_NOT_FOUND', message: 'no such endpoint' } },
      });
    }
  });
});

describe('requests without a valid key, per address', () => {
  it('refuses them with 401 until the address has used its burst, then 429 with Retry-After; a valid key is not affected', async () => {
    // Fails without refuseUnauthenticated (src/gateway/http/callers.ts): every one is a 401, none a 429.
    const clock = new FakeClock();
    const n = await network({ clock, unauthenticatedRateLimit: { perSecond: 1, burst: 3 }, metricsToken: 'metrics-secret-0123456789' });
    const get = (auth?: string) => http.fetch(`${n.gateway.url}/v1/account`, { headers: auth ? { authorization: auth } : {} });
    const statuses: number[] = [];
    for (const auth of [undefined, 'Bearer nope', `Bearer ${n.key.key}x`]) statuses.push((await get(auth)).status);
    expect(statuses).toEqual([401, 401, 401]);
    const limited = await get('Bearer still-nope');
    expect({ status: limited.status, retryAfter: limited.headers.get('retry-after'), body: await limited.json() }).toEqual({
      status: 429,
      retryAfter: '1',
      body: {
        error: { code: 'NJ_RATE_LIMITED', message: 'too many requests without a valid key from this address', retryAfterMs: 1000 },
      },
    });
    // Operator and metrics tokens count against the same address (fails without
    // refuseUnauthenticated in the operator and metrics hooks: these would be 401s).
    expect((await http.fetch(`${n.gateway.url}/v1/operator/me`, { headers: { authorization: 'Bearer njop_x' } })).status).toBe(429);
    expect((await http.fetch(`${n.gateway.url}/v1/operator/me`)).status).toBe(429);
    expect((await http.fetch(`${n.gateway.url}/metrics`, { headers: { authorization: 'Bearer metrics-secret-01234567' } })).status).toBe(
      429,
    );
    expect((await http.fetch(`${n.gateway.url}/metrics`, { headers: { authorization: 'Bearer metrics-secret-0123456789' } })).status).toBe(
      200,
    );
    expect((await get(`Bearer ${n.key.key}`)).status).toBe(200);
    clock.advance(1000);
    expect((await get()).status).toBe(401);
    expect(await n.gateway.metrics.value(n.gateway.metrics.rejected, { limit: 'unauthenticated' })).toBe(4);
  });
});

describe('JSON bodies', () => {
  it('caps the JSON body of API routes at maxApiBodyBytes (413); POST /v1/jobs keeps its own limit', async () => {
    // Fails without the server bodyLimit of maxApiBodyBytes: the sign-in body is read and answered 401.
    const n = await network({ maxApiBodyBytes: 1024 });
    const signIn = await http.fetch(`${n.gateway.url}/v1/operator/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: n.operator.token, pad: 'x'.repeat(2000) }),
    });
    expect({ status: signIn.status, body: await signIn.json() }).toEqual({
      status: 413,
      body: { error: { code: 'NJ_PAYLOAD_TOO_LARGE', message: 'the request body exceeds the limit' } },
    });
    const job = await http.fetch(`${n.gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${n.key.key}` },
      body: JSON.stringify({ v: 1, pad: 'x'.repeat(2000) }),
    });
    expect({ status: job.status, code: (await job.json()).error.code }).toEqual({ status: 400, code: 'NJ_BAD_REQUEST' });
  });

  it('refuses a body nested deeper than maxJsonDepth before parsing it (400)', async () => {
    // Fails without the depth scan in cheapRefusals' JSON parser: JSON.parse reads the body and
    // the job schema answers "job request: …" instead.
    const n = await network();
    const depth = LIMITS.maxJsonDepth + 1;
    const res = await http.fetch(`${n.gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${n.key.key}` },
      body: '['.repeat(depth) + ']'.repeat(depth),
    });
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 400,
      body: { error: { code: 'NJ_BAD_REQUEST', message: `the request body nests deeper than ${LIMITS.maxJsonDepth} levels` } },
    });
    const shallow = await http.fetch(`${n.gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${n.key.key}` },
      body: '['.repeat(depth - 1) + ']'.repeat(depth - 1),
    });
    expect((await shallow.json()).error.message).toMatch(/^job request: /);
  });
});

describe('keys compared exactly', () => {
  it('refuses a key with any character added, removed or changed', async () => {
    // Fails if authenticateApiKey matched on less than the whole key (tried once: the row found by
    // the key's id alone, its hash not compared): the changed key is a 200.
    const n = await network();
    const key = n.key.key;
    const variants = [`${key}x`, key.slice(0, -1), changedLast(key), key.toUpperCase(), `${key.slice(0, -2)} ${key.slice(-1)}`];
    for (const v of variants) {
      const res = await http.fetch(`${n.gateway.url}/v1/account`, { headers: { authorization: `Bearer ${v}` } });
      expect(res.status, JSON.stringify(v)).toBe(401);
    }
  });

  it('has the SDK refuse a key with a space or control character, which HTTP would silently trim', () => {
    // A trailing space in an Authorization header never reaches the gateway: Node's HTTP parser
    // drops whitespace around a field value (RFC 9110 §5.5), so "Bearer KEY " arrives as
    // "Bearer KEY". The client refuses such a key before it sends it.
    // Fails without the check in NightjarClient's constructor: it is built and sends the key trimmed.
    for (const apiKey of ['njk_abc ', ' njk_abc', 'njk_a\tb', 'njk_a\nb']) {
      let error: unknown;
      try {
        new NightjarClient({ gatewayUrl: 'http://127.0.0.1:1', apiKey });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(NightjarError);
      expect({ code: (error as NightjarError).code, message: (error as NightjarError).message }).toEqual({
        code: 'NJ_CONFIG_INVALID',
        message: 'the API key has a space or a character that is not printable ASCII in it; copy the key again exactly',
      });
    }
  });
});

describe('envelopes', () => {
  it('refuses an envelope that names the same agent twice (NJ_BAD_REQUEST, as errors.md says)', async () => {
    // Fails without the uniqueness refinement of envelopeHeaderSchema.recipients: the job is
    // admitted (a 200 and a stream) although the header lists the agent twice.
    const n = await network();
    agentsToStop.push(await startAgent(n.gateway, { engine: new FakeEngine({ slots: 2 }), model: FAKE_MODEL }));
    const [candidate] = await clientOf(n.gateway, http.fetch, n.key.key).candidates(FAKE_MODEL.id);
    const sealed = await sealRequest({
      model: FAKE_MODEL.id,
      messages: [{ role: 'user', content: 'hi' }],
      sampling: { maxTokens: 4 },
      recipients: [candidate!.verified],
      now: Date.now(),
    });
    const { header } = sealed.envelope;
    const envelope = { ...sealed.envelope, header: { ...header, recipients: [header.recipients[0]!, header.recipients[0]!] } };
    const res = await http.fetch(`${n.gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${n.key.key}` },
      body: JSON.stringify({ v: PROTOCOL_VERSION, envelope }),
    });
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 400,
      body: {
        error: { code: 'NJ_BAD_REQUEST', message: 'job request: envelope.header.recipients: each agent may be named only once' },
      },
    });
  });
});
