/**
 * The agent's state machine on an injected clock, against a scripted gateway on a real socket:
 * waiting → loading → serving; preemption when the owner comes back (no new job at once, running
 * jobs aborted at the end of the grace, the engine stopped, the model unloaded after the delay);
 * pause, schedule end and sleep; errors a person can act on; keeping the Mac awake only while
 * serving.
 *
 * Most tests use the fake engine with a per-token delay, so a job runs until it is stopped and
 * the grace period is exact on the manual clock; the real-engine tests at the end show the same on
 * node-llama-cpp.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentRuntime, type ModelChoice } from '../../../../src/main/agent/runtime/runtime.js';
import { ManualEnvironmentSource } from '../../../../src/main/agent/environment/environment.js';
import { NoopPowerSaveBlocker } from '../../../../src/main/agent/environment/power-save.js';
import { ModelStore } from '../../../../src/main/agent/models/store.js';
import { modelChoice } from '../../../../src/main/agent/models/choice.js';
import { loadEngine, writeSyntheticModel, type EngineOptions, type InferenceEngine } from '../../../../src/main/agent/index.js';
import {
  DEFAULT_POLICY,
  NightjarError,
  generateIdentity,
  nextEvent,
  type AgentState,
  type Manual,
  type Policy,
  type Preemption,
} from '../../../../src/shared/index.js';
import { batchedPrefixes } from '../../../helpers/batching.js';
import { FakeEngine } from '../../../helpers/fake-engine.js';
import { FAKE_MODEL } from '../../../helpers/network.js';
import { advanceLive } from '../../support/live-clock.js';
import { ManualClock, tick } from '../../support/manual-clock.js';
import { startScriptedGateway, type ScriptedGateway } from '../../support/scripted-gateway.js';

const AWAY = { idleSeconds: 900, screenLocked: false, onAc: true, batteryPercent: 100, thermal: 'nominal' as const, memoryPressure: null };
const ACTIVE = { idleSeconds: 2 };
const GRACE = 5000;
const UNLOAD = 60_000;

/** A power-save blocker that remembers what it was asked. */
class RecordingBlocker extends NoopPowerSaveBlocker {
  readonly log: string[] = [];
  override acquire(): void {
    if (!this.held) this.log.push('acquire');
    super.acquire();
  }
  override release(): void {
    if (this.held) this.log.push('release');
    super.release();
  }
}

interface Harness {
  clock: ManualClock;
  env: ManualEnvironmentSource;
  gw: ScriptedGateway;
  runtime: AgentRuntime;
  blocker: RecordingBlocker;
  engines: FakeEngine[];
  states: AgentState[];
  preemptions: Preemption[];
  manualSaved: Manual[];
}

let current: Harness | null = null;

async function harness(
  options: { policy?: Partial<Policy>; env?: object; choice?: ModelChoice | null; engine?: () => InferenceEngine } = {},
): Promise<Harness> {
  const clock = new ManualClock();
  const env = new ManualEnvironmentSource({ ...AWAY, ...options.env });
  const gw = await startScriptedGateway({ now: () => clock.now() });
  const blocker = new RecordingBlocker();
  const engines: FakeEngine[] = [];
  const choice: ModelChoice | null =
    options.choice === undefined
      ? {
          served: FAKE_MODEL,
          load: async () => {
            const e = (options.engine?.() as FakeEngine | undefined) ?? new FakeEngine({ slots: 2, tokenDelayMs: 5 });
            engines.push(e);
            return e;
          },
        }
      : options.choice;
  const manualSaved: Manual[] = [];
  const runtime = new AgentRuntime({
    gatewayUrl: gw.url,
    identity: await generateIdentity(),
    environment: env,
    model: () => choice,
    policy: { ...DEFAULT_POLICY, graceMs: GRACE, unloadDelayMs: UNLOAD, ...options.policy },
    powerSaveBlocker: blocker,
    clock,
    pollMs: 1000,
    saveManual: (m) => void manualSaved.push(m),
    backoff: { initialMs: 100, maxMs: 400 },
  });
  const h: Harness = { clock, env, gw, runtime, blocker, engines, states: [], preemptions: [], manualSaved };
  runtime.onState((s) => {
    if (h.states.at(-1) !== s.state) h.states.push(s.state);
  });
  runtime.onPreempted((p) => h.preemptions.push(p));
  current = h;
  return h;
}

afterEach(async () => {
  const h = current;
  current = null;
  if (!h) return;
  const disposed = h.runtime.dispose();
  // A job still running at the end is aborted at once instead of being given its grace.
  h.clock.advance(GRACE);
  await disposed;
  expect(h.runtime.state).toBe('stopped');
  await h.gw.close();
});

/** The next preemption report that satisfies `accept` (subscribe before the owner comes back). */
function nextPreemption(h: Harness, accept: (p: Preemption) => boolean = () => true): Promise<Preemption> {
  return nextEvent(h.runtime.onPreempted, accept, { what: 'a preemption report' });
}

const ask = [{ role: 'user' as const, content: 'Tell me about nightjars.' }];

/** Starts the runtime and waits until it serves; a real engine gets longer to load on a busy machine. */
async function serving(h: Harness, timeoutMs = 10_000): Promise<void> {
  await h.runtime.start();
  await h.runtime.whenState('serving', { timeoutMs });
  await h.gw.waitForFrame((f) => f.type === 'status' && f.state === 'serving', 'a serving heartbeat');
}

describe('states', () => {
  it('waits while the owner is active, then loads and serves once they are away; the gateway hears each state', async () => {
    const h = await harness({ env: ACTIVE });
    await h.runtime.start();
    await h.runtime.whenState('waiting');
    await h.gw.whenConnected();
    expect(h.runtime.reason).toMatchObject({ code: 'owner-active' });
    await h.gw.waitForFrame((f) => f.type === 'status' && f.state === 'waiting', 'a waiting heartbeat');
    expect(h.engines).toHaveLength(0);
    expect(h.blocker.held).toBe(false);

    h.env.set({ idleSeconds: 301, memoryPressure: 'warn' });
    await h.runtime.whenState('serving');
    expect(h.states).toEqual(['waiting', 'loading', 'serving']);
    const beat = await h.gw.waitForFrame((f) => f.type === 'status' && f.state === 'serving', 'a serving heartbeat');
    // The machine's memory pressure travels in the heartbeat (the gateway ranks on it).
    expect(beat).toMatchObject({ freeSlots: 2, totalSlots: 2, memoryPressure: 'warn' });
    expect(h.blocker.held).toBe(true);
    expect(h.runtime.status()).toMatchObject({
      state: 'serving',
      link: 'connected',
      model: { id: FAKE_MODEL.id, loaded: true },
      totalSlots: 2,
    });
  });

  it('polls the machine on the clock: the owner leaving is noticed without any push from the source', async () => {
    const h = await harness({ env: ACTIVE });
    await h.runtime.start();
    await h.runtime.whenState('waiting');
    // The machine changes without telling anyone, as with ioreg: only a poll can notice.
    h.env.read = async () => ({ ...AWAY });
    await tick(20);
    expect(h.runtime.state).toBe('waiting');
    h.clock.advance(1000);
    await h.runtime.whenState('serving');
  });
});

describe('awaiting a state', () => {
  it('whenState resolves at once if the state holds, else at the change that satisfies it, or times out on the clock', async () => {
    const h = await harness({ env: ACTIVE });
    const ready = h.runtime.whenState('serving');
    await h.runtime.start();
    expect(await h.runtime.whenState('waiting')).toMatchObject({ state: 'waiting' });
    const never = h.runtime.whenState('paused', { timeoutMs: 5000 });
    h.clock.advance(5000);
    await expect(never).rejects.toMatchObject({ code: 'NJ_TIMEOUT' });
    h.env.set(AWAY);
    expect(await ready).toMatchObject({ state: 'serving', reason: { code: 'idle' }, decision: { action: 'serve', reason: 'idle' } });
  });
});

describe('preemption', () => {
  const ownerBack =
    'owner back: no new job from that moment, running jobs aborted at the end of the grace (engine stopped), ' +
    'model unloaded after the delay';
  it(ownerBack, async () => {
    const h = await harness();
    await serving(h);
    const long = { maxTokens: 4000, temperature: 0 };
    const jobs = [await h.gw.submit(ask, long), await h.gw.submit(ask, long)];
    await Promise.all(jobs.map((j) => j.chunks(2)));
    const engine = h.engines[0]!;
    expect(engine.busy).toBe(2);

    h.env.set(ACTIVE);
    await h.runtime.whenState('draining');
    expect(h.blocker.held).toBe(true); // still awake: jobs are running
    await h.gw.waitForFrame((f) => f.type === 'status' && f.state === 'draining', 'a draining heartbeat');
    // A job arriving now is declined, even though a slot would be free soon.
    const late = await h.gw.submit(ask, { maxTokens: 4, temperature: 0 });
    expect((await late.ended).declined).toMatchObject({ code: 'NJ_DECLINED' });

    // Running jobs keep going for the whole grace period…
    h.clock.advance(GRACE - 1);
    await tick(30);
    expect(jobs.map((j) => j.outcome.final)).toEqual([null, null]);
    expect(engine.busy).toBe(2);
    // …and are aborted when it ends: each stream still ends with its final chunk and a receipt.
    h.clock.advance(1);
    const ended = await Promise.all(jobs.map((j) => j.ended));
    for (const o of ended) {
      expect(o.final?.finishReason).toBe('cancelled');
      expect(o.receipt?.receipt.finishReason).toBe('cancelled');
      expect(o.receipt?.receipt.completionTokens).toBe(o.final?.usage.completionTokens);
    }
    // The engine stopped generating, not just the sockets.
    expect(engine.busy).toBe(0);
    const generated = engine.generated;
    await tick(30);
    expect(engine.generated).toBe(generated);

    await h.runtime.whenState('waiting');
    await h.runtime.settled();
    expect(h.preemptions[0]).toEqual({
      reason: 'owner-active',
      detectedAt: expect.any(Number),
      jobsAtDetection: 2,
      jobsAborted: 2,
      settledMs: GRACE,
      unloadedMs: null,
    });
    expect(h.blocker.log).toEqual(['acquire', 'release']);
    // The model stays loaded for the unload delay (the owner might leave again), then goes.
    h.clock.advance(UNLOAD - 1);
    await tick(10);
    expect(engine.disposed).toBe(false);
    const unloaded = nextPreemption(h, (p) => p.unloadedMs !== null);
    h.clock.advance(1);
    await unloaded;
    expect(engine.disposed).toBe(true);
    expect(h.preemptions[1]).toMatchObject({ reason: 'owner-active', unloadedMs: GRACE + UNLOAD });
    expect(h.runtime.status().model).toMatchObject({ loaded: false });
    expect(h.runtime.state).toBe('waiting');
  });

  it('jobs that finish within the grace are not aborted', async () => {
    const h = await harness();
    await serving(h);
    const job = await h.gw.submit(ask, { maxTokens: 12, temperature: 0 });
    await job.chunks(1);
    const settled = nextPreemption(h);
    h.env.set(ACTIVE);
    const o = await job.ended;
    expect(o.final).toMatchObject({ finishReason: 'length', usage: { completionTokens: 12 } });
    await settled;
    expect(h.preemptions).toHaveLength(1);
    expect(h.preemptions[0]).toMatchObject({ jobsAtDetection: 1, jobsAborted: 0 });
    expect(h.preemptions[0]!.settledMs).toBeLessThan(GRACE);
  });

  it('with no grace, running jobs are aborted the moment the owner is back', async () => {
    const h = await harness({ policy: { graceMs: 0 } });
    await serving(h);
    const job = await h.gw.submit(ask, { maxTokens: 4000, temperature: 0 });
    await job.chunks(1);
    const settled = nextPreemption(h);
    h.env.set(ACTIVE);
    expect((await job.ended).final?.finishReason).toBe('cancelled');
    await settled;
    expect(h.preemptions).toHaveLength(1);
    expect(h.preemptions[0]).toMatchObject({ jobsAborted: 1, settledMs: 0 });
  });

  it('the owner leaving again before the unload delay serves again without reloading', async () => {
    const h = await harness();
    await serving(h);
    h.env.set(ACTIVE);
    await h.runtime.whenState('waiting');
    await h.runtime.settled();
    h.clock.advance(UNLOAD / 2);
    h.env.set(AWAY);
    await h.runtime.whenState('serving');
    expect(h.engines).toHaveLength(1);
    h.clock.advance(UNLOAD);
    await tick(10);
    expect(h.engines[0]!.disposed).toBe(false);
  });

  it('after a sleep the stale reading stops jobs at once, before a new reading arrives', async () => {
    const h = await harness({ policy: { graceMs: 0 } });
    await serving(h);
    const job = await h.gw.submit(ask, { maxTokens: 4000, temperature: 0 });
    await job.chunks(1);
    // The Mac sleeps for 8 hours; on wake the source has nothing fresh yet.
    h.env.failWith = new Error('ioreg is not answering yet');
    h.clock.jump(8 * 3600_000);
    await h.runtime.whenState((s) => s.state !== 'serving');
    expect(h.runtime.decision).toEqual({ action: 'wait', reason: 'no-reading' });
    expect((await job.ended).final?.finishReason).toBe('cancelled');
    // A fresh reading that says the owner is away serves again.
    h.env.failWith = null;
    h.clock.advance(1000);
    await h.runtime.whenState('serving');
  });
});

describe('pause, schedule and the link', () => {
  it('pause drains, says goodbye (paused) and disconnects; the override is saved; resume serves again', async () => {
    const h = await harness();
    await serving(h);
    const from = h.gw.frames.length;
    await h.runtime.pause();
    await h.runtime.whenState('paused');
    await h.gw.whenConnected(false);
    expect(await h.gw.waitForFrame((f) => f.type === 'goodbye', 'goodbye', from)).toMatchObject({ reason: 'paused' });
    expect(h.manualSaved).toEqual([{ mode: 'paused', until: null }]);
    expect(h.runtime.reason).toMatchObject({ code: 'paused', hint: expect.stringContaining('nightjar resume') });
    expect(h.blocker.held).toBe(false);

    await h.runtime.resume();
    await h.runtime.whenState('serving');
    await h.gw.whenConnected();
    expect(h.gw.connections).toBe(2);
    expect(h.manualSaved.at(-1)).toEqual({ mode: 'auto', until: null });
  });

  it('a pause with an end time ends by itself', async () => {
    const h = await harness();
    await serving(h);
    await h.runtime.pause(h.clock.now() + 30_000);
    await h.runtime.whenState('paused');
    await h.runtime.settled();
    h.clock.advance(30_000);
    await h.runtime.whenState('serving');
    expect(h.runtime.manual).toEqual({ mode: 'auto', until: null });
  });

  it('serve-now serves while the owner is active', async () => {
    const h = await harness({ env: ACTIVE });
    await h.runtime.start();
    await h.runtime.whenState('waiting');
    await h.runtime.serveNow();
    await h.runtime.whenState('serving');
    expect(h.runtime.reason).toMatchObject({ code: 'serve-now' });
  });

  it('at the end of the schedule window: drain, goodbye (schedule), disconnect', async () => {
    const start = new Date(Date.now());
    const hhmm = (d: Date): string => `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
    const end = new Date(start.getTime() + 30 * 60_000);
    const h = await harness({
      policy: {
        timeZone: 'UTC',
        schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: hhmm(start), end: hhmm(end) }],
      },
    });
    await serving(h);
    const from = h.gw.frames.length;
    // Ping by ping: the link's liveness watch runs on this clock too, and the window ends first.
    await advanceLive(h.clock, h.runtime.agent!.link, 31 * 60_000);
    await h.runtime.whenState('waiting');
    await h.gw.whenConnected(false);
    expect(await h.gw.waitForFrame((f) => f.type === 'goodbye', 'goodbye', from)).toMatchObject({ reason: 'schedule' });
    expect(h.runtime.reason).toMatchObject({ code: 'outside-schedule' });
  });
});

describe('errors a person can act on', () => {
  // Fails if the runtime treats a refused enrollment like a dropped connection: it would keep
  // reconnecting with the same used token instead of saying what to do.
  it('a gateway that refuses the enrollment: error NJ_ENROLL_INVALID, goodbye, no reconnecting; linking again serves', async () => {
    const h = await harness();
    await serving(h);
    const from = h.gw.frames.length;
    h.gw.send({ v: 1, type: 'reject', code: 'NJ_ENROLL_INVALID', message: 'this enrollment token was already used' });
    await h.runtime.whenState('error');
    await h.gw.whenConnected(false);
    expect(await h.gw.waitForFrame((f) => f.type === 'goodbye', 'goodbye', from)).toMatchObject({ reason: 'error' });
    expect(h.runtime.reason).toMatchObject({
      code: 'NJ_ENROLL_INVALID',
      message: 'the gateway refused this agent: this enrollment token was already used',
      hint: expect.stringMatching(/\S/),
    });
    expect(h.blocker.held).toBe(false);
    const connections = h.gw.connections;
    for (let i = 0; i < 10; i++) {
      h.clock.advance(60_000);
      await tick(2);
    }
    expect(h.gw.connections).toBe(connections);
    expect(h.runtime.state).toBe('error');

    h.runtime.setGateway(h.gw.url, 'a-fresh-token');
    await h.runtime.whenState('serving');
    await h.gw.whenConnected();
    expect(h.gw.connections).toBe(connections + 1);
  });

  it('no model selected: error NJ_MODEL_NOT_INSTALLED, nothing connected', async () => {
    const h = await harness({ choice: null });
    await h.runtime.start();
    await h.runtime.whenState('error');
    expect(h.runtime.reason).toMatchObject({
      code: 'NJ_MODEL_NOT_INSTALLED',
      message: 'No model is selected for this agent.',
      hint: expect.stringContaining('nightjar models pull'),
    });
    expect(h.gw.connections).toBe(0);
  });

  it('a model that does not fit: error with the figures, retried after the retry delay', async () => {
    let attempts = 0;
    const choice: ModelChoice = {
      served: FAKE_MODEL,
      load: async () => {
        attempts++;
        if (attempts === 1) throw new NightjarError('NJ_MODEL_DOES_NOT_FIT', 'needs 9 GiB; 3 GiB free');
        return new FakeEngine({ slots: 1 });
      },
    };
    const h = await harness({ choice });
    const stopped = nextEvent(h.runtime.onLink, (l) => l === 'stopped');
    await h.runtime.start();
    await h.runtime.whenState('error');
    expect(h.runtime.reason).toMatchObject({ code: 'NJ_MODEL_DOES_NOT_FIT', message: 'needs 9 GiB; 3 GiB free' });
    await stopped;
    await h.runtime.settled();
    await h.gw.whenConnected(false);
    expect(h.runtime.agent?.linkState).toBe('stopped');
    h.clock.advance(300_000);
    await h.runtime.whenState('serving');
    expect(attempts).toBe(2);
  });
});

// ---- on node-llama-cpp -----------------------------------------------------------------------

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-runtime-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function installTiny(store: ModelStore): Promise<void> {
  await writeSyntheticModel({ path: path.join(store.dir, store.fileNameFor('synthetic-tiny')), shape: 'tiny' });
  await store.adopt('synthetic-tiny', { synthetic: true });
}

describe('on node-llama-cpp', { timeout: 90_000 }, () => {
  it('serves several jobs at once on one model; a cancel mid-stream stops the engine, not just the stream', async () => {
    const store = new ModelStore({ dir: path.join(dir, 'concurrent') });
    await installTiny(store);
    const loaded: InferenceEngine[] = [];
    const choice = modelChoice({
      store,
      model: await store.require('synthetic-tiny'),
      slots: 3,
      loadEngine: async (o: EngineOptions) => {
        const e = await loadEngine({ ...o, threads: 1 });
        loaded.push(e);
        return e;
      },
    });
    const h = await harness({ choice });
    await serving(h, 60_000);
    const engine = loaded[0]!;
    const short = { maxTokens: 40, temperature: 0 };
    const jobs = [
      await h.gw.submit(ask, short),
      await h.gw.submit([{ role: 'user', content: 'And owls?' }], short),
      await h.gw.submit(ask, { maxTokens: 4000, temperature: 0 }),
    ];
    const long = jobs[2]!;
    await long.chunks(1);
    h.gw.cancel(long.jobId);
    const [a, b, c] = await Promise.all(jobs.map((j) => j.ended));
    expect(a!.final).toMatchObject({ finishReason: 'length', usage: { completionTokens: 40 } });
    expect(b!.final).toMatchObject({ finishReason: 'length', usage: { completionTokens: 40 } });
    expect(c!.final?.finishReason).toBe('cancelled');
    expect(c!.final!.usage.completionTokens).toBeLessThan(4000);
    expect(c!.receipt?.receipt.completionTokens).toBe(c!.final!.usage.completionTokens);
    // Every sequence is free again: the cancelled generation really stopped in llama.cpp.
    expect(engine.freeSlots).toBe(3);
    // Each concurrent job continues its own prompt, as it does alone (see test/helpers/batching.ts).
    const alone = await engine.generate({ messages: ask, sampling: short });
    expect(batchedPrefixes([a!.text])).toEqual(batchedPrefixes([alone.text]));
  });

  it('owner back with no grace: the running generation stops in the engine; the model is unloaded after the delay', async () => {
    const store = new ModelStore({ dir: path.join(dir, 'preempt') });
    await installTiny(store);
    const loaded: InferenceEngine[] = [];
    const choice = modelChoice({
      store,
      model: await store.require('synthetic-tiny'),
      slots: 2,
      loadEngine: async (o) => {
        const e = await loadEngine({ ...o, threads: 1 });
        loaded.push(e);
        return e;
      },
    });
    const h = await harness({ choice, policy: { graceMs: 0 } });
    await serving(h, 60_000);
    const job = await h.gw.submit(ask, { maxTokens: 4000, temperature: 0 });
    await job.chunks(1);
    h.env.set(ACTIVE);
    const o = await job.ended;
    expect(o.final?.finishReason).toBe('cancelled');
    expect(loaded[0]!.freeSlots).toBe(2);
    await h.runtime.whenState('waiting');
    await h.runtime.settled();
    const unloaded = nextPreemption(h, (p) => p.unloadedMs !== null);
    h.clock.advance(UNLOAD);
    await unloaded;
    // A disposed engine refuses work: the memory went back.
    await expect(loaded[0]!.generate({ messages: ask, sampling: { maxTokens: 1 } })).rejects.toMatchObject({ code: 'NJ_ENGINE_FAILED' });
  });

  // Security: fails if modelChoice().load stops calling store.verify (the altered file would load).
  it('a model file that fails its hash is never loaded; the error says what to do', async () => {
    const store = new ModelStore({ dir: path.join(dir, 'tampered') });
    await installTiny(store);
    const model = await store.require('synthetic-tiny');
    // One byte changes on disk after the install.
    const handle = await open(store.pathOf(model), 'r+');
    await handle.write(Buffer.from([0x42]), 0, 1, 1000);
    await handle.close();
    let loads = 0;
    const choice = modelChoice({
      store: new ModelStore({ dir: store.dir }), // a fresh process: nothing verified yet
      model,
      loadEngine: async () => {
        loads++;
        throw new Error('must not be called');
      },
    });
    const h = await harness({ choice });
    await h.runtime.start();
    await h.runtime.whenState('error');
    expect(loads).toBe(0);
    expect(h.runtime.reason).toMatchObject({
      code: 'NJ_MODEL_FILE_INVALID',
      message: expect.stringContaining('nightjar models rm synthetic-tiny'),
    });
    // Not retried by itself: the owner has to act.
    h.clock.advance(3_600_000);
    await tick(20);
    expect(loads).toBe(0);
  });
});
