/**
 * Where the policy's inputs come from. macOS cannot run here, so the Mac source is fed the text
 * ioreg and pmset print (written after their documented layout, not captured on a Mac here);
 * the Linux source reads a sysfs tree built in a temporary directory. The caffeinate blocker is
 * driven through a fake spawn.
 */
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LinuxEnvironmentSource,
  MacEnvironmentSource,
  ManualEnvironmentSource,
  parseHidIdleTime,
  parsePmsetBatt,
  parsePmsetTherm,
  parseScreenLocked,
  thermalFromCelsius,
} from '../../../../src/main/agent/environment/environment.js';
import {
  parseVmPressureLevel,
  pressureFromMeminfo,
  pressureFromPsi,
  readMemoryPressure,
} from '../../../../src/main/agent/environment/memory-pressure.js';
import { CaffeinateBlocker } from '../../../../src/main/agent/environment/power-save.js';

const IOREG_HID = `+-o IOHIDSystem  <class IOHIDSystem, id 0x100000421, registered, matched, active, busy 0 (0 ms), retain 24>
    {
      "HIDIdleTime" = 123456789012
      "HIDParameters" = {"HIDIdleTime"=1}
    }`;
const IOREG_ROOT_LOCKED =
  `+-o Root  <class IORegistryEntry, id 0x100000100, retain 32>
    {
      "IOConsoleUsers" = ({"kCGSSessionOnConsoleKey"=Yes,"kCGSessionLoginDoneKey"=Yes,` +
  `"CGSSessionScreenIsLocked"=Yes,"kCGSSessionUserNameKey"="ada"})
    }`;
const PMSET_AC = "Now drawing from 'AC Power'\n -InternalBattery-0 (id=1234567)\t100%; charged; 0:00 remaining present: true\n";
const PMSET_BATTERY =
  "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1234567)\t42%; discharging; 3:10 remaining present: true\n";
const PMSET_DESKTOP = "Now drawing from 'AC Power'\n";
const THERM_COOL =
  'Note: No thermal warning level has been recorded\n' +
  'Note: No performance warning level has been recorded\n' +
  'Note: No CPU power status has been recorded\n';
const THERM_LIMITED = 'CPU_Power_notify: CPU_Scheduler_Limit \t= 100\n CPU_Available_CPUs \t= 8\n CPU_Speed_Limit \t= 70\n';
const psi = (some: number, full: number): string =>
  `some avg10=${some.toFixed(2)} avg60=0.00 avg300=0.00 total=1234\nfull avg10=${full.toFixed(2)} avg60=0.00 avg300=0.00 total=99\n`;
const meminfo = (totalKib: number, availableKib: number): string =>
  `MemTotal:       ${totalKib} kB\nMemFree:          1000 kB\nMemAvailable:   ${availableKib} kB\nBuffers:            0 kB\n`;

describe('macOS readings', () => {
  it('parses idle time, lock, power and heat', () => {
    expect(parseHidIdleTime(IOREG_HID)).toBeCloseTo(123.456, 3);
    expect(parseHidIdleTime('nothing')).toBeNull();
    expect(parseScreenLocked(IOREG_ROOT_LOCKED)).toBe(true);
    expect(parseScreenLocked(IOREG_ROOT_LOCKED.replace('CGSSessionScreenIsLocked"=Yes,', ''))).toBe(false);
    expect(parsePmsetBatt(PMSET_AC)).toEqual({ onAc: true, batteryPercent: 100 });
    expect(parsePmsetBatt(PMSET_BATTERY)).toEqual({ onAc: false, batteryPercent: 42 });
    expect(parsePmsetBatt(PMSET_DESKTOP)).toEqual({ onAc: true, batteryPercent: null });
    expect(parsePmsetTherm(THERM_COOL)).toBe('nominal');
    expect(parsePmsetTherm(THERM_LIMITED)).toBe('serious');
    expect(parsePmsetTherm(THERM_LIMITED.replace('= 70', '= 90'))).toBe('fair');
    expect(parsePmsetTherm(THERM_LIMITED.replace('= 70', '= 30'))).toBe('critical');
  });

  it('runs the commands without a shell and combines them', async () => {
    const calls: string[] = [];
    const outputs: Record<string, string> = {
      '/usr/sbin/ioreg -c IOHIDSystem -d 4 -r -k HIDIdleTime': IOREG_HID,
      '/usr/sbin/ioreg -n Root -d1': IOREG_ROOT_LOCKED,
      '/usr/bin/pmset -g batt': PMSET_BATTERY,
      '/usr/bin/pmset -g therm': THERM_COOL,
      '/usr/sbin/sysctl -n kern.memorystatus_vm_pressure_level': '2\n',
    };
    const source = new MacEnvironmentSource({
      run: async (file, args) => {
        const key = [file, ...args].join(' ');
        calls.push(key);
        return outputs[key]!;
      },
    });
    expect(await source.read()).toEqual({
      idleSeconds: 123.456,
      screenLocked: true,
      onAc: false,
      batteryPercent: 42,
      thermal: 'nominal',
      memoryPressure: 'warn',
    });
    expect(calls.sort()).toEqual(Object.keys(outputs).sort());
  });

  it('fails the reading when idle time cannot be read (the agent then waits, never guesses)', async () => {
    const source = new MacEnvironmentSource({ run: async (file) => (file.endsWith('ioreg') ? Promise.reject(new Error('no ioreg')) : '') });
    await expect(source.read()).rejects.toThrow('no ioreg');
  });

  it('reports unknown for the optional parts that fail', async () => {
    const source = new MacEnvironmentSource({
      run: async (file, args) => (args.includes('IOHIDSystem') ? IOREG_HID : Promise.reject(new Error('x'))),
    });
    expect(await source.read()).toEqual({
      idleSeconds: 123.456,
      screenLocked: null,
      onAc: null,
      batteryPercent: null,
      thermal: null,
      memoryPressure: null,
    });
  });

  it("maps the kernel's memory pressure level: 1 normal, 2 warn, 4 critical", () => {
    expect(['1', '2', '4\n', '0', '', 'x'].map(parseVmPressureLevel)).toEqual(['normal', 'warn', 'critical', null, null, null]);
  });
});

describe('Linux readings', () => {
  let sys: string;
  beforeAll(async () => {
    sys = await mkdtemp(path.join(os.tmpdir(), 'nightjar-sys-'));
  });
  afterAll(async () => {
    await rm(sys, { recursive: true, force: true });
  });

  async function put(rel: string, value: string): Promise<void> {
    await mkdir(path.dirname(path.join(sys, rel)), { recursive: true });
    await writeFile(path.join(sys, rel), value + '\n');
  }

  it('reads AC, battery and the hottest zone; idle time is unknown', async () => {
    await put('class/power_supply/AC/type', 'Mains');
    await put('class/power_supply/AC/online', '0');
    await put('class/power_supply/BAT0/type', 'Battery');
    await put('class/power_supply/BAT0/capacity', '37');
    await put('class/power_supply/BAT0/status', 'Discharging');
    await put('class/thermal/thermal_zone0/temp', '45000');
    await put('class/thermal/thermal_zone1/temp', '91500');
    await put('proc/pressure/memory', psi(12, 0.5));
    const linux = new LinuxEnvironmentSource({ sysRoot: sys, procRoot: path.join(sys, 'proc') });
    expect(await linux.read()).toEqual({
      idleSeconds: null,
      screenLocked: null,
      onAc: false,
      batteryPercent: 37,
      thermal: 'serious',
      memoryPressure: 'warn',
    });
    await put('class/power_supply/AC/online', '1');
    expect(await new LinuxEnvironmentSource({ sysRoot: sys }).read()).toMatchObject({ onAc: true });
  });

  it('a server with no power supplies and no zones reports unknowns', async () => {
    const bare = new LinuxEnvironmentSource({ sysRoot: path.join(sys, 'nothing'), procRoot: path.join(sys, 'nothing') });
    expect(await bare.read()).toEqual({
      idleSeconds: null,
      screenLocked: null,
      onAc: null,
      batteryPercent: null,
      thermal: null,
      memoryPressure: null,
    });
    expect([thermalFromCelsius(79.9), thermalFromCelsius(80), thermalFromCelsius(99), thermalFromCelsius(100)]).toEqual([
      'nominal',
      'fair',
      'serious',
      'critical',
    ]);
  });

  it('memory pressure from PSI: stalls over the last 10 s; from MemAvailable where PSI is missing', async () => {
    expect([psi(0, 0), psi(9.99, 0), psi(10, 0), psi(39, 9), psi(40, 0), psi(5, 10)].map(pressureFromPsi)).toEqual([
      'normal',
      'normal',
      'warn',
      'warn',
      'critical',
      'critical',
    ]);
    expect(pressureFromPsi('garbage')).toBeNull();
    expect([meminfo(1000, 500), meminfo(1000, 149), meminfo(1000, 49)].map(pressureFromMeminfo)).toEqual(['normal', 'warn', 'critical']);
    expect(pressureFromMeminfo('MemTotal: 0 kB')).toBeNull();
    const proc = path.join(sys, 'proc-nopsi');
    await put('proc-nopsi/meminfo', meminfo(16_000_000, 400_000));
    expect(await readMemoryPressure({ platform: 'linux', procRoot: proc })).toBe('critical');
    // PSI wins where present.
    await put('proc-nopsi/pressure/memory', psi(0.1, 0));
    expect(await readMemoryPressure({ platform: 'linux', procRoot: proc })).toBe('normal');
    expect(await readMemoryPressure({ platform: 'win32' })).toBeNull();
  });

  it('reads this machine without failing', async () => {
    const reading = await new LinuxEnvironmentSource().read();
    expect(reading.idleSeconds).toBeNull();
    // This machine has /proc/meminfo at least.
    expect(['normal', 'warn', 'critical']).toContain(reading.memoryPressure);
  });
});

describe('the manual source', () => {
  it('tells subscribers about every change', async () => {
    const source = new ManualEnvironmentSource({ idleSeconds: 1 });
    let calls = 0;
    const subscription = source.onChange(() => calls++);
    source.set({ screenLocked: true });
    subscription.dispose();
    source.set({ screenLocked: false });
    expect(calls).toBe(1);
    expect(await source.read()).toMatchObject({ idleSeconds: 1, screenLocked: false, onAc: null });
  });
});

describe('keeping the Mac awake', () => {
  class FakeChild extends EventEmitter {
    exitCode: number | null = null;
    signalCode: NodeJS.Signals | null = null;
    kill(signal: NodeJS.Signals): boolean {
      this.signalCode = signal;
      this.emit('exit', null, signal);
      return true;
    }
  }

  it('runs caffeinate -i -w <pid> while held and stops it on release', () => {
    const spawned: { command: string; args: readonly string[]; child: FakeChild }[] = [];
    const blocker = new CaffeinateBlocker({
      pid: 4242,
      spawn: (command, args) => {
        const child = new FakeChild();
        spawned.push({ command, args, child });
        return child as unknown as ChildProcess;
      },
    });
    blocker.acquire();
    blocker.acquire();
    expect(spawned.map((s) => [s.command, s.args])).toEqual([['/usr/bin/caffeinate', ['-i', '-w', '4242']]]);
    expect(blocker.held).toBe(true);
    blocker.release();
    expect(spawned[0]!.child.signalCode).toBe('SIGTERM');
    expect(blocker.held).toBe(false);
    blocker.release();
    blocker.acquire();
    expect(spawned).toHaveLength(2);
    // caffeinate dying on its own is noticed.
    spawned[1]!.child.emit('exit', 1, null);
    expect(blocker.held).toBe(false);
  });
});
