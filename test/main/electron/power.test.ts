/**
 * powerMonitor reaching the policy: a fake powerMonitor's events and readings go through the
 * PowerMonitorFeed into a ManualEnvironmentSource, and a real AgentRuntime (scripted gateway on a
 * real socket, fake engine, manual clock) re-decides on each — on battery, the owner back, a
 * locked screen, too hot, a low battery. The Mac is kept awake (Electron's powerSaveBlocker) only
 * while serving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AgentRuntime, ManualEnvironmentSource, type ModelChoice } from '../../../src/main/agent/index.js';
import { ElectronPowerSaveBlocker, PowerMonitorFeed, readPowerMonitor, thermalFromElectron } from '../../../src/main/electron/index.js';
import { DEFAULT_POLICY, generateIdentity } from '../../../src/shared/index.js';
import { FakeEngine } from '../../helpers/fake-engine.js';
import { FAKE_MODEL } from '../../helpers/network.js';
import { ManualClock, tick } from '../support/manual-clock.js';
import { startScriptedGateway, type ScriptedGateway } from '../support/scripted-gateway.js';
import { FakePowerMonitor, FakePowerSaveBlocker } from './support/fakes.js';

let cleanup: (() => Promise<void>) | null = null;
afterEach(async () => {
  await cleanup?.();
  cleanup = null;
});

describe('readings', () => {
  it('map powerMonitor to the policy’s inputs', () => {
    const pm = new FakePowerMonitor();
    pm.idleTime = 42;
    pm.idleState = 'locked';
    pm.onBattery = true;
    pm.thermal = 'fair';
    expect(readPowerMonitor(pm)).toEqual({ idleSeconds: 42, screenLocked: true, onAc: false, thermal: 'fair' });
    pm.idleState = 'idle';
    pm.thermal = 'unknown';
    expect(readPowerMonitor(pm)).toMatchObject({ screenLocked: false, thermal: null });
    expect(thermalFromElectron('critical')).toBe('critical');
  });

  it('follow events and the idle clock until disposed; battery charge is read on power changes', async () => {
    const clock = new ManualClock();
    const pm = new FakePowerMonitor();
    const source = new ManualEnvironmentSource();
    let battery: number | null = 80;
    let pressure: 'normal' | 'critical' = 'normal';
    const feed = new PowerMonitorFeed({
      powerMonitor: pm,
      source,
      clock,
      batteryPercent: async () => battery,
      memoryPressure: async () => pressure,
      idlePollMs: 1000,
      batteryPollMs: 60_000,
      memoryPollMs: 10_000,
    });
    await tick();
    expect(source.sample).toEqual({
      idleSeconds: 0,
      screenLocked: false,
      onAc: true,
      batteryPercent: 80,
      thermal: 'nominal',
      memoryPressure: 'normal',
    });
    pressure = 'critical';
    clock.advance(10_000); // memory pressure is polled every 10 s
    await tick();
    expect(source.sample.memoryPressure).toBe('critical');
    pm.emit('lock-screen');
    expect(source.sample.screenLocked).toBe(true);
    pm.idleTime = 7;
    pm.emit('unlock-screen');
    expect(source.sample).toMatchObject({ screenLocked: false, idleSeconds: 7 });
    battery = 64;
    pm.onBattery = true;
    pm.emit('on-battery');
    await tick();
    expect(source.sample).toMatchObject({ onAc: false, batteryPercent: 64 });
    battery = 61;
    clock.advance(60_000); // on battery, the charge is read again every minute
    await tick();
    expect(source.sample.batteryPercent).toBe(61);
    pm.emit('thermal-state-change', { state: 'serious' });
    expect(source.sample.thermal).toBe('serious');
    pm.idleTime = 12;
    clock.advance(1000);
    expect(source.sample.idleSeconds).toBe(12);
    await tick();
    // After sleep, everything is read again.
    pm.onBattery = false;
    pm.thermal = 'nominal';
    pm.emit('resume');
    expect(source.sample).toMatchObject({ onAc: true, thermal: 'nominal' });

    feed.dispose();
    for (const event of ['lock-screen', 'unlock-screen', 'on-ac', 'on-battery', 'thermal-state-change', 'resume'])
      expect(pm.listenerCount(event), event).toBe(0);
    expect(clock.pending()).toHaveLength(0);
    pm.idleTime = 99;
    clock.advance(5000);
    expect(source.sample.idleSeconds).toBe(12); // no longer polled
  });
});

describe('events reaching the policy', () => {
  async function harness(): Promise<{
    clock: ManualClock;
    pm: FakePowerMonitor;
    runtime: AgentRuntime;
    blocker: FakePowerSaveBlocker;
    gw: ScriptedGateway;
    battery: { percent: number | null };
  }> {
    const clock = new ManualClock();
    const pm = new FakePowerMonitor();
    pm.idleTime = 900;
    const battery = { percent: null as number | null };
    const source = new ManualEnvironmentSource();
    const feed = new PowerMonitorFeed({ powerMonitor: pm, source, clock, batteryPercent: async () => battery.percent });
    const gw = await startScriptedGateway({ now: () => clock.now() });
    const blocker = new FakePowerSaveBlocker();
    const choice: ModelChoice = { served: FAKE_MODEL, load: async () => new FakeEngine({ slots: 2 }) };
    const runtime = new AgentRuntime({
      gatewayUrl: gw.url,
      identity: await generateIdentity(),
      environment: source,
      model: () => choice,
      policy: { ...DEFAULT_POLICY, graceMs: 0, unloadDelayMs: 3600_000 },
      powerSaveBlocker: new ElectronPowerSaveBlocker(blocker),
      clock,
      pollMs: 1000,
      backoff: { initialMs: 100, maxMs: 400 },
    });
    cleanup = async () => {
      feed.dispose();
      // No grace (graceMs 0): the runtime stops without the clock moving.
      await runtime.dispose();
      await gw.close();
    };
    return { clock, pm, runtime, blocker, gw, battery };
  }

  it('on battery, owner back, screen locked, too hot: each re-decides at once; the Mac is kept awake only while serving', async () => {
    const { clock, pm, runtime, blocker } = await harness();
    // Every decision reaches the state (its reason, or the drain it starts): the state event says it.
    const decided = async (reason: string): Promise<void> => {
      await runtime.whenState((s) => s.decision?.reason === reason);
      expect(runtime.decision?.reason).toBe(reason);
    };
    await runtime.start();
    await runtime.whenState('serving');
    expect(runtime.decision).toEqual({ action: 'serve', reason: 'idle' });
    expect([...blocker.started.values()]).toEqual(['prevent-app-suspension']);

    pm.onBattery = true;
    pm.emit('on-battery');
    await decided('on-battery');
    await runtime.whenState('waiting');
    expect(blocker.started.size).toBe(0);

    pm.onBattery = false;
    pm.emit('on-ac');
    await decided('idle');
    await runtime.whenState('serving');
    expect(blocker.started.size).toBe(1);

    // The owner touches the keyboard: the next idle reading (a second later) stops serving.
    pm.idleTime = 2;
    clock.advance(1000);
    await decided('owner-active');
    await runtime.whenState('waiting');
    expect(blocker.started.size).toBe(0);

    // They lock the screen and walk away: serving again at once.
    pm.emit('lock-screen');
    await decided('screen-locked');
    await runtime.whenState('serving');
    pm.emit('unlock-screen');
    await decided('owner-active');

    pm.idleTime = 900;
    clock.advance(1000);
    await decided('idle');
    pm.emit('thermal-state-change', { state: 'serious' });
    await decided('too-hot');
    await runtime.whenState('waiting');
    expect(blocker.started.size).toBe(0);
    pm.emit('thermal-state-change', { state: 'nominal' });
    await decided('idle');
    await runtime.whenState('serving');
    // Held for each of the five serving spells, released between them.
    expect(blocker.log.filter((l) => l.startsWith('start'))).toHaveLength(5);
    expect(blocker.log.filter((l) => l.startsWith('stop'))).toHaveLength(4);
  });

  it('on battery, where allowed, the charge decides', async () => {
    const { pm, runtime, battery } = await harness();
    runtime.setPolicy({ ...runtime.policy, requireAc: false, minBatteryPercent: 50 });
    await runtime.start();
    await runtime.whenState('serving');
    battery.percent = 30;
    pm.onBattery = true;
    pm.emit('on-battery');
    await runtime.whenState((c) => c.decision?.reason === 'battery-low');
    battery.percent = 90;
    pm.emit('on-battery');
    await runtime.whenState((c) => c.state === 'serving' && c.decision?.reason === 'idle');
  });
});
