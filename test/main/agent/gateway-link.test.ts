/**
 * The agent's link to the gateway: reconnecting after the gateway dies, within the backoff bound
 * (the delays are drawn on an injected clock, so "within the bound" is checked exactly, not
 * timed); the default timing, a refused upgrade's Retry-After as a floor, the failure count kept
 * across short connections, an attempt cut at the handshake timeout; a reconnect storm of many
 * real agents against a real gateway that stops and comes back (timed for real); heartbeats with
 * the measured figures; box-key rotation with a new signed bundle and a grace period for the old key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, AgentStateStore, LINK_BACKOFF, retryAfterFloor } from '../../../src/main/agent/index.js';
import { NightjarClient } from '../../../src/client/index.js';
import { Emitter, backoffDelay, generateIdentity, nextEvent, resolveBackoff, silentLogger } from '../../../src/shared/index.js';
import { FakeEngine } from '../../helpers/fake-engine.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { FAKE_MODEL, agentListed, agentServing, startTestGateway } from '../../helpers/network.js';
import { percentile, reconnectStorm } from '../../helpers/reconnect-storm.js';
import { advanceLive } from '../support/live-clock.js';
import { ManualClock, tick } from '../support/manual-clock.js';
import { startScriptedGateway, type ScriptedGateway } from '../support/scripted-gateway.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const http = perTestFetch();
const ROOT = path.resolve(import.meta.dirname, '../../..');
const ENTRY = path.join(ROOT, 'src/cli/run.ts');
const ask = [{ role: 'user' as const, content: 'Hello' }];

describe('backoff', () => {
  // The link reconnects on src/shared's one backoff: retry n waits within min(max, initial × factor^n).
  it('draws each delay uniformly within min(max, initial × factor^retry)', () => {
    const backoff = resolveBackoff({ initialMs: 100, maxMs: 2000 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 60 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (retry, r) => {
        const bound = Math.min(2000, 100 * 2 ** Math.min(retry, 30));
        const d = backoffDelay(retry, backoff, () => r);
        return d >= 0 && d <= bound;
      }),
    );
    expect(backoffDelay(3, backoff, () => 0.999999)).toBe(800);
    expect(backoffDelay(30, backoff, () => 0.999999)).toBe(2000);
  });
});

/** An agent on `url` whose link runs on `clock` and draws its jitter from `random`; started. */
async function timedAgent(url: string, clock: ManualClock, random: () => number): Promise<Agent> {
  const agent = await Agent.create({
    gatewayUrl: url,
    identity: await generateIdentity(),
    engine: new FakeEngine(),
    model: FAKE_MODEL,
    clock,
    random,
    stopGraceMs: 0,
  });
  cleanups.push(() => agent.dispose());
  agent.start();
  return agent;
}

/** Resolves at the link's next change to `state`. */
const linkState = (agent: Agent, state: string): Promise<unknown> =>
  nextEvent(agent.onLink, (s) => s === state, { what: `the link ${state}` });

/** A port nothing listens on (a gateway that is down: every attempt is refused at once). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function listening(server: Server | net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

describe('reconnect timing', () => {
  it('defaults to 500 ms growing ×2 up to 5 s, so the fleet is back within 5 s of the gateway answering again', async () => {
    expect(LINK_BACKOFF).toEqual({ initialMs: 500, maxMs: 5000, factor: 2 });
    const clock = new ManualClock();
    // The highest draw each time: the delays are the ceilings.
    const agent = await timedAgent(`ws://127.0.0.1:${await deadPort()}/v1/agent`, clock, () => 0.999999);
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const waiting = linkState(agent, 'waiting');
      if (i > 0) clock.advance(delays.at(-1)!);
      await waiting;
      delays.push(agent.link.retryDelayMs!);
    }
    expect(delays).toEqual([500, 1000, 2000, 4000, 5000, 5000, 5000]);
  });

  it.each([
    ['a count of seconds', '3', 3000],
    ['zero', '0', 0],
    ['nothing', undefined, 0],
    ['garbage', 'soon', 0],
    ['a negative count', '-5', 0],
    ['more than the cap', '86400', 60_000],
    ['the first of several', ['2', '9'], 2000],
  ])('reads a Retry-After of %s', (_what, header, ms) => {
    expect(retryAfterFloor(header, Date.now(), 60_000)).toBe(ms);
  });

  it('reads a Retry-After HTTP date against the clock, a past one as none', () => {
    const now = Date.parse('2026-12-01T10:00:00Z');
    expect(retryAfterFloor('Tue, 01 Dec 2026 10:00:07 GMT', now, 60_000)).toBe(7000);
    expect(retryAfterFloor('Tue, 01 Dec 2026 09:59:00 GMT', now, 60_000)).toBe(0);
  });

  // Fails if the link ignores Retry-After (each wait would be the draw alone: 250, 500, …), or
  // honours it on a status that does not ask to wait (404), or takes an unbounded one.
  it("waits at least a refused upgrade's Retry-After (429 and 503), the jittered backoff added on top", async () => {
    const clock = new ManualClock();
    const answers = [
      ['429 Too Many Requests', 'Retry-After: 3'],
      ['503 Service Unavailable', 'Retry-After: 2'],
      ['429 Too Many Requests', () => `Retry-After: ${new Date(clock.now() + 4000).toUTCString()}`],
      ['429 Too Many Requests', 'Retry-After: 86400'],
      ['404 Not Found', 'Retry-After: 7'],
      ['429 Too Many Requests', null],
    ] as const;
    const floors: number[] = [];
    let n = 0;
    const server = createServer();
    server.on('upgrade', (_req, socket: net.Socket) => {
      const [status, header] = answers[Math.min(n++, answers.length - 1)]!;
      const line = typeof header === 'function' ? header() : header;
      if (line?.includes('GMT')) floors.push(Date.parse(line.slice('Retry-After: '.length)) - clock.now());
      socket.end(`HTTP/1.1 ${status}\r\n${line ? `${line}\r\n` : ''}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    });
    const port = await listening(server);
    const agent = await timedAgent(`ws://127.0.0.1:${port}/v1/agent`, clock, () => 0.5);
    const delays: number[] = [];
    for (let i = 0; i < answers.length; i++) {
      const waiting = linkState(agent, 'waiting');
      if (i > 0) clock.advance(delays.at(-1)!);
      await waiting;
      delays.push(agent.link.retryDelayMs!);
    }
    // Half of each ceiling (500, 1000, 2000, 4000, 5000, 5000) on top of the floor asked for.
    expect(delays).toEqual([3000 + 250, 2000 + 500, floors[0]! + 1000, 60_000 + 2000, 2500, 2500]);
    expect(floors[0]).toBeGreaterThan(3000);
  });

  it("honours the real gateway's refusal past its handshake cap", async () => {
    const gateway = await startTestGateway({ maxPendingHandshakes: 0 });
    cleanups.push(() => gateway.dispose());
    const clock = new ManualClock();
    // The lowest draw: the wait is the floor alone (the gateway says Retry-After: 1).
    const agent = await timedAgent(gateway.agentUrl, clock, () => 0);
    await linkState(agent, 'waiting');
    expect(agent.link.retryDelayMs).toBe(1000);
  });

  // Fails if the count restarts at every welcome: a gateway that takes agents and drops them at
  // once would call its whole fleet back within the first 500 ms every time.
  it('counts failures on across a connection that did not stay up, and afresh after one that did', async () => {
    const clock = new ManualClock();
    const gw = await startScriptedGateway({ now: () => clock.now() });
    cleanups.push(() => gw.close());
    const agent = await timedAgent(gw.url, clock, () => 0.999999);
    const drop = async (): Promise<number> => {
      const waiting = linkState(agent, 'waiting');
      gw.terminate();
      await waiting;
      return agent.link.retryDelayMs!;
    };
    const reconnect = async (delay: number): Promise<void> => {
      const connected = linkState(agent, 'connected');
      clock.advance(delay);
      await connected;
    };
    await gw.whenConnected();
    const first = await drop();
    expect(first).toBe(500);
    await reconnect(first);
    // Ping by ping, so the link stays up (its liveness watch runs on this clock too).
    await advanceLive(clock, agent.link, 29_999); // up, but not for stableAfterMs (30 s)
    expect(agent.linkState).toBe('connected');
    const second = await drop();
    expect(second).toBe(1000);
    await reconnect(second);
    await advanceLive(clock, agent.link, 30_000);
    expect(agent.linkState).toBe('connected');
    expect(await drop()).toBe(500);
  });

  // Fails without the attempt timer: the link would wait in 'connecting' for as long as the
  // operating system keeps the socket (minutes for a black-holed address), whatever its backoff.
  it('cuts an attempt the gateway never answers at the handshake timeout, and retries', async () => {
    const held: net.Socket[] = [];
    const accepted = new Emitter<void>();
    const silent = net.createServer((socket) => {
      held.push(socket);
      accepted.fire();
    });
    const port = await listening(silent);
    cleanups.push(async () => {
      for (const s of held) s.destroy();
    });
    const clock = new ManualClock();
    const tcp = nextEvent(accepted.event, undefined, { what: 'the TCP connection' });
    const agent = await timedAgent(`ws://127.0.0.1:${port}/v1/agent`, clock, () => 0.999999);
    await tcp;
    clock.advance(9_999);
    expect(agent.linkState).toBe('connecting');
    const waiting = linkState(agent, 'waiting');
    clock.advance(1);
    await waiting;
    expect(agent.link.retryDelayMs).toBe(500);
  });
});

describe('a reconnect storm', () => {
  // 150 real agents with the default timing on one real gateway with its default caps, stopped and
  // started again on its port 6 s later (long enough for the agents to reach the 5 s cap, as in
  // any outage that matters). Timed for real: the fleet serves again within the cap (plus the
  // handshake), and its handshakes are spread over it. A fleet that came back together would put
  // up to all of them in one 100 ms; full jitter at the cap puts about 4 % of a large fleet there
  // (2 × 100 ms / 5 s), and for 150 agents the busiest 100 ms held 5–9 % in eight runs (a
  // simulation of the draws puts 12 % at its 99.9th percentile). Spread that way, 150 agents from
  // one address stayed under the gateway's 16 unfinished handshakes per address: none was refused.
  it('serves again within 6 s of the gateway coming back, at most a fifth of the fleet in any 100 ms', async () => {
    const f = await reconnectStorm({ agents: 150, outageMs: 6000, timeoutMs: 15_000 });
    const seconds = (ms: number): string => (ms / 1000).toFixed(2);
    const summary =
      `median ${seconds(percentile(f.servingMs, 0.5))} s, last ${seconds(f.servingMs.at(-1)!)} s, ` +
      `busiest 100 ms ${f.peakPer100Ms} agents, ${f.refused} refused`;
    expect(f.servingMs, summary).toHaveLength(150);
    expect(f.servingMs.at(-1)!, summary).toBeLessThanOrEqual(6000);
    expect(f.peakPer100Ms, summary).toBeLessThanOrEqual(30);
    // Spread, not merely late: some come back at once, some only towards the cap.
    expect(f.connectedMs[0]!, summary).toBeLessThan(1000);
    expect(f.connectedMs.at(-1)!, summary).toBeGreaterThan(2500);
  }, 30_000);
});

describe('gateway killed and restarted', () => {
  /** `nightjar gateway` in its own process, so it can be killed with SIGKILL. */
  async function gatewayProcess(port: number): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', ENTRY, 'gateway', '--port', String(port), '--memory', '--allow-synthetic', '--log-level', 'warn'],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NODE_OPTIONS: '' },
      },
    );
    let out = '';
    const listening = new Promise<void>((resolve) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (/gateway on (http:\/\/127\.0\.0\.1:\d+)/.test(out)) resolve();
      });
      child.once('exit', () => resolve());
    });
    child.stderr!.resume();
    await listening;
    const url = /gateway on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    if (!url) throw new Error(`the gateway did not start: ${out}`);
    return { url, child };
  }

  async function kill(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  it('after SIGKILL and a restart on the same port, the agent reconnects within the backoff bound and serves again', async () => {
    const clock = new ManualClock();
    const first = await gatewayProcess(0);
    const port = Number(new URL(first.url).port);
    let second: ChildProcess | null = null;
    const engine = new FakeEngine({ slots: 2 });
    const agent = await Agent.create({
      gatewayUrl: `ws://127.0.0.1:${port}/v1/agent`,
      identity: await generateIdentity(),
      engine,
      model: FAKE_MODEL,
      clock,
      backoff: { initialMs: 200, maxMs: 1000 },
      stopGraceMs: 0,
    });
    cleanups.push(async () => {
      await agent.dispose();
      await kill(first.child);
      if (second) await kill(second);
    });
    const link = (state: string): Promise<unknown> => nextEvent(agent.onLink, (s) => s === state, { what: `the link ${state}` });
    const connected = link('connected');
    agent.start();
    await connected;

    let waiting = link('waiting');
    await kill(first.child);
    // The gateway is gone; each attempt fails and waits at most its bound, never more than maxMs.
    for (const bound of [200, 400, 800, 1000]) {
      await waiting;
      const delay = agent.link.retryDelayMs!;
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(bound);
      waiting = link('waiting');
      clock.advance(delay);
    }

    // The gateway comes back on the same port: the next attempt, within the bound, connects.
    const restarted = await gatewayProcess(port);
    second = restarted.child;
    await waiting;
    expect(agent.link.retryDelayMs!).toBeLessThanOrEqual(1000);
    const reconnected = link('connected');
    clock.advance(agent.link.retryDelayMs!);
    await reconnected;

    // The gateway (another process: no event of its reaches this one) lists the agent once the
    // first heartbeat, sent right after the welcome, is in. A request that overtakes it is
    // answered NJ_NO_CAPACITY with a retry hint, and the SDK's retry (on by default) sends it again.
    const retries: string[] = [];
    const client = new NightjarClient({ gatewayUrl: restarted.url, trust: { allowSynthetic: true }, fetch: http.fetch });
    const chat = client.chat({ model: FAKE_MODEL.id, messages: ask, maxTokens: 6, onRetry: (r) => retries.push(r.error.code) });
    const result = await chat.result;
    expect(retries.every((code) => code === 'NJ_NO_CAPACITY')).toBe(true);
    expect(result.text).toBe('Hello from a fake engine.');
    expect(result.receipt.agentId).toBe(agent.agentId);
  }, 60_000);

  it('a rotated bundle is accepted by the real gateway and keeps the identity', async () => {
    const gateway = await startTestGateway();
    const agent = await Agent.create({
      gatewayUrl: gateway.agentUrl,
      identity: await generateIdentity(),
      engine: new FakeEngine(),
      model: FAKE_MODEL,
      stopGraceMs: 0,
    });
    cleanups.push(async () => {
      await agent.dispose();
      await gateway.dispose();
    });
    agent.start();
    await agentServing(gateway, agent.agentId, 10_000);
    const before = gateway.directory.get(agent.agentId)!.bundle.bundle.boxKeyId;
    const rotated = agentListed(gateway, agent.agentId, (s) => s.bundle.bundle.boxKeyId !== before, 'the new bundle at the gateway');
    await agent.rotateBoxKey();
    await rotated;
    expect(gateway.directory.get(agent.agentId)!.bundle.bundle.boxKeyId).toBe(agent.bundle.bundle.boxKeyId);
    const client = new NightjarClient({ gatewayUrl: gateway.url, trust: { allowSynthetic: true }, fetch: http.fetch });
    expect((await client.chat({ model: FAKE_MODEL.id, messages: ask, maxTokens: 3 }).result).usage.completionTokens).toBe(3);
  });
});

async function scriptedAgent(
  clock: ManualClock,
  options: { heartbeatMs?: number } = {},
): Promise<{ gw: ScriptedGateway; agent: Agent; engine: FakeEngine }> {
  const gw = await startScriptedGateway({ now: () => clock.now(), ...options });
  const engine = new FakeEngine({ slots: 3 });
  const agent = await Agent.create({
    gatewayUrl: gw.url,
    identity: await generateIdentity(),
    engine,
    model: FAKE_MODEL,
    clock,
    boxKeyRotationMs: 3600_000,
    previousBoxKeyGraceMs: 60_000,
    stopGraceMs: 0,
  });
  cleanups.push(async () => {
    await agent.dispose();
    await gw.close();
  });
  const connected = nextEvent(agent.onLink, (s) => s === 'connected');
  agent.start();
  await connected;
  return { gw, agent, engine };
}

describe('heartbeats', () => {
  it('carry the state, free and total slots, and the measured tokens/s and time to first token', async () => {
    const clock = new ManualClock();
    const { gw } = await scriptedAgent(clock, { heartbeatMs: 1000 });
    const first = await gw.waitForFrame((f) => f.type === 'status', 'the first heartbeat');
    expect(first).toMatchObject({ state: 'serving', model: FAKE_MODEL.id, freeSlots: 3, totalSlots: 3, tokensPerSecond: 0, ttftMs: 0 });
    const job = await gw.submit(ask, { maxTokens: 6, temperature: 0 });
    await job.ended;
    const from = gw.frames.length;
    clock.advance(1000);
    const beat = await gw.waitForFrame((f) => f.type === 'status', 'a heartbeat after the job', from);
    expect(beat).toMatchObject({ state: 'serving', freeSlots: 3, totalSlots: 3, ttftMs: 1 });
    expect((beat as { tokensPerSecond: number }).tokensPerSecond).toBeGreaterThan(0);
  });
});

describe('a state owned by someone else', () => {
  // Fails if the agent beats on every change of the state's reason, or stops beating on a change
  // of state: the runtime owns the state and the agent only reads it.
  it('beats on each change of state (not of its reason), takes jobs only while serving, and never writes it', async () => {
    const clock = new ManualClock();
    const gw = await startScriptedGateway({ now: () => clock.now() });
    const state = new AgentStateStore({ clock, logger: silentLogger });
    state.set('waiting');
    const agent = await Agent.create({
      gatewayUrl: gw.url,
      identity: await generateIdentity(),
      engine: new FakeEngine({ slots: 2 }),
      model: FAKE_MODEL,
      clock,
      state,
      stopGraceMs: 0,
    });
    cleanups.push(async () => {
      await agent.dispose();
      await gw.close();
    });
    const connected = nextEvent(agent.onLink, (s) => s === 'connected');
    agent.start(); // connects; the state is not the agent's to set
    await connected;
    expect(state.state).toBe('waiting');
    const first = await gw.waitForFrame((f) => f.type === 'status', 'the first heartbeat');
    expect(first).toMatchObject({ state: 'waiting', freeSlots: 0, totalSlots: 2 });
    const declined = await gw.submit(ask, { maxTokens: 2 });
    expect((await declined.ended).declined).toMatchObject({ code: 'NJ_DECLINED' });

    const from = gw.frames.length;
    state.set('waiting', { code: 'on-battery', message: 'On battery.', hint: null });
    state.set('serving');
    await gw.waitForFrame((f) => f.type === 'status' && f.state === 'serving', 'the serving beat', from);
    const served = await gw.submit(ask, { maxTokens: 2 });
    expect((await served.ended).receipt).not.toBeNull();
    const beats = gw.frames.slice(from).filter((f) => f.type === 'status');
    // One for the change to serving; the job's start and end beat too. The reason alone sent none.
    expect(beats.map((f) => (f as { state: string }).state)).toEqual(['serving', 'serving', 'serving']);
    await agent.dispose();
    expect(state.state).toBe('serving');
  });
});

describe('a key rotated during the handshake', () => {
  // Fails if the link forgets a bundle re-signed between its hello and the gateway's welcome: the
  // gateway would keep routing envelopes to a key the agent lets go after its grace period.
  it('goes to the gateway right after the welcome', async () => {
    const clock = new ManualClock();
    const gw = await startScriptedGateway({ now: () => clock.now() });
    const agent = await Agent.create({
      gatewayUrl: gw.url,
      identity: await generateIdentity(),
      engine: new FakeEngine(),
      model: FAKE_MODEL,
      clock,
    });
    cleanups.push(async () => {
      await agent.dispose();
      await gw.close();
    });
    const hello = gw.waitForFrame((f) => f.type === 'hello', 'the hello');
    agent.start();
    const presented = ((await hello) as { bundle: { bundle: { boxKeyId: string } } }).bundle.bundle.boxKeyId;
    await agent.rotateBoxKey();
    expect(agent.bundle.bundle.boxKeyId).not.toBe(presented);
    await gw.whenBundle((b) => b.bundle.boxKeyId === agent.bundle.bundle.boxKeyId);
  });
});

describe('beats when a job starts and ends', () => {
  // Fails if the agent beats as soon as the job frame arrives: that beat would come before the
  // accepted frame, costing the job's first token the time to build and send it.
  it('tells the gateway of the taken slot once the job is generating, and of the free one when it ends', async () => {
    const clock = new ManualClock();
    const { gw } = await scriptedAgent(clock, { heartbeatMs: 60_000 });
    await gw.waitForFrame((f) => f.type === 'status', 'the first heartbeat');
    const from = gw.frames.length;
    const job = await gw.submit(ask, { maxTokens: 6, temperature: 0 });
    await job.ended;
    await gw.waitForFrame((f) => f.type === 'status' && f.freeSlots === 3, 'the beat after the job', from);
    const seen = gw.frames.slice(from).map((f) => (f.type === 'status' ? `status ${f.freeSlots}` : f.type));
    expect(seen.filter((t) => t.startsWith('status'))).toEqual(['status 2', 'status 3']);
    expect(seen.indexOf('status 2')).toBeGreaterThan(seen.indexOf('accepted'));
    expect(seen.indexOf('status 3')).toBeGreaterThan(seen.indexOf('done'));
  });
});

describe('box-key rotation', () => {
  it('rotates on the clock with a new signed bundle; the old key opens envelopes for the grace period only', async () => {
    const clock = new ManualClock();
    const { gw, agent } = await scriptedAgent(clock);
    const old = gw.bundle!;
    const from = gw.frames.length;
    await advanceLive(clock, agent.link, 3600_000);
    await gw.waitForFrame((f) => f.type === 'bundle', 'the rotated bundle', from);
    await gw.whenBundle((b) => b.bundle.boxKeyId !== old.bundle.boxKeyId);
    const fresh = gw.bundle!;
    expect(fresh.bundle.agentId).toBe(old.bundle.agentId);
    expect(fresh.bundle.identityKey).toBe(old.bundle.identityKey);
    expect(fresh.bundle.notAfter - fresh.bundle.notBefore).toBeGreaterThan(3600_000);
    expect(agent.boxKeyIds).toEqual([fresh.bundle.boxKeyId, old.bundle.boxKeyId]);

    // Sealed for the old key just before the rotation: still served.
    const late = await gw.submit(ask, { maxTokens: 2 }, { bundle: old, created: clock.now() });
    expect((await late.ended).receipt).not.toBeNull();
    // After the grace period the old key is gone.
    await advanceLive(clock, agent.link, 60_000);
    expect(agent.boxKeyIds).toEqual([fresh.bundle.boxKeyId]);
    const stale = await gw.submit(ask, { maxTokens: 2 }, { bundle: old, created: clock.now() });
    expect((await stale.ended).declined).toMatchObject({ code: 'NJ_NOT_A_RECIPIENT' });
    const current = await gw.submit(ask, { maxTokens: 2 }, { created: clock.now() });
    expect((await current.ended).receipt).not.toBeNull();
    // And it keeps rotating.
    const again = gw.frames.length;
    await advanceLive(clock, agent.link, 3600_000);
    await gw.waitForFrame((f) => f.type === 'bundle', 'the second rotation', again);
    await tick(5);
  });
});
