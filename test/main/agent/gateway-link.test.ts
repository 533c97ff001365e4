/**
 * The agent's link to the gateway: reconnecting after the gateway dies, within the backoff bound
 * (the delays are drawn on an injected clock, so "within the bound" is checked exactly, not
 * timed); heartbeats with the measured figures; box-key rotation with a new signed bundle and a
 * grace period for the old key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, AgentStateStore } from '../../../src/main/agent/index.js';
import { NightjarClient } from '../../../src/client/index.js';
import { backoffDelay, generateIdentity, nextEvent, resolveBackoff, silentLogger } from '../../../src/shared/index.js';
import { FakeEngine } from '../../helpers/fake-engine.js';
import { perTestFetch } from '../../helpers/http-client.js';
import { FAKE_MODEL, agentListed, agentServing, startTestGateway } from '../../helpers/network.js';
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
    clock.advance(3600_000);
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
    clock.advance(60_000);
    expect(agent.boxKeyIds).toEqual([fresh.bundle.boxKeyId]);
    const stale = await gw.submit(ask, { maxTokens: 2 }, { bundle: old, created: clock.now() });
    expect((await stale.ended).declined).toMatchObject({ code: 'NJ_NOT_A_RECIPIENT' });
    const current = await gw.submit(ask, { maxTokens: 2 }, { created: clock.now() });
    expect((await current.ended).receipt).not.toBeNull();
    // And it keeps rotating.
    const again = gw.frames.length;
    clock.advance(3600_000);
    await gw.waitForFrame((f) => f.type === 'bundle', 'the second rotation', again);
    await tick(5);
  });
});
