/**
 * The app's test-load of the native addon. Electron cannot run here, so its utilityProcess.fork
 * is stood in for twice: by a real Node child (child_process.fork, with `process.parentPort`
 * shimmed onto `process.send`) that runs the real probe module, native-probe.ts; and by a small
 * scripted fake for the cases a real child cannot be made to show on cue (a timeout on the
 * manual clock).
 */
import { fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findNativeAddon, loadNativeAddon } from '../../../src/main/agent/index.js';
import { utilityProcessTestLoad, type UtilityForkLike, type UtilityProcessLike } from '../../../src/main/electron/index.js';
import { ManualClock } from '../support/manual-clock.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const PROBE = path.join(ROOT, 'src/main/electron/native-probe.ts');
let dir: string;
let shim: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-utility-'));
  shim = path.join(dir, 'parent-port.cjs');
  // What Electron gives a utility process: process.parentPort.postMessage reaches the parent's 'message'.
  await writeFile(shim, 'process.parentPort = { postMessage: (m) => process.send(m) };\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** utilityProcess.fork played by a real Node child running the real probe (TypeScript through tsx). */
const nodeFork: UtilityForkLike = (modulePath, args) => {
  const child = fork(modulePath, args, { execArgv: ['--require', shim, '--import', 'tsx'], stdio: 'ignore' });
  const like = new EventEmitter();
  child.on('message', (m) => like.emit('message', m));
  child.on('exit', (code) => like.emit('exit', code ?? -1));
  return Object.assign(like, { kill: () => child.kill() }) as unknown as UtilityProcessLike;
};

async function crasher(): Promise<string> {
  const file = path.join(dir, 'crasher.cjs');
  await writeFile(file, "process.kill(process.pid, 'SIGSEGV');\n");
  return file;
}

describe('utilityProcessTestLoad', () => {
  it('a real child running native-probe loads the built addon and the app then trusts it', async (ctx) => {
    const built = findNativeAddon(ROOT);
    if (built === null) return ctx.skip('the addon is not built (test/main/native/addon.test.ts requires it under CI=1)');
    const testLoad = utilityProcessTestLoad({ fork: nodeFork, probeModule: PROBE });
    expect(await testLoad(built)).toEqual({
      ok: true,
      info: { version: 1, platform: process.platform, macos: process.platform === 'darwin' },
    });
    expect((await loadNativeAddon({ path: built, testLoad })).load).toMatchObject({ loaded: true, path: built });
  });

  // Fails without the exit check: shown once by counting an exit as a good test-load (the first assertion
  // failed; loading the crasher in this process would then end it, as native-wrapper.test.ts shows).
  it('an addon that crashes the utility process is unusable and the app survives', async () => {
    const file = await crasher();
    const testLoad = utilityProcessTestLoad({ fork: nodeFork, probeModule: PROBE });
    expect(await testLoad(file)).toEqual({ ok: false, reason: 'the test-load process exited (code -1) before answering' });
    const addon = await loadNativeAddon({ path: file, testLoad });
    expect(addon.load).toEqual({
      loaded: false,
      path: file,
      reason: 'the native addon is unusable: the test-load process exited (code -1) before answering',
    });
  });

  it('a utility process that never answers is killed after timeoutMs (on the injected clock)', async () => {
    const clock = new ManualClock();
    let killed = 0;
    const child = Object.assign(new EventEmitter(), { kill: () => ((killed += 1), true) });
    const forked: { modulePath: string; args: string[]; options: unknown }[] = [];
    const testLoad = utilityProcessTestLoad({
      fork: (modulePath, args, options) => (forked.push({ modulePath, args, options }), child as unknown as UtilityProcessLike),
      probeModule: '/app/native-probe.js',
      timeoutMs: 2000,
      clock,
    });
    const result = testLoad('/app/addon.node');
    expect(forked).toEqual([
      {
        modulePath: '/app/native-probe.js',
        args: ['/app/addon.node'],
        options: { serviceName: 'Nightjar native test-load', stdio: 'ignore' },
      },
    ]);
    clock.advance(1999);
    expect(killed).toBe(0);
    clock.advance(1);
    expect(await result).toEqual({ ok: false, reason: 'the test-load process was killed after 2000 ms' });
    expect(killed).toBe(1);
    // A late message changes nothing.
    child.emit('message', { info: { version: 1, platform: 'darwin', macos: true }, calls: [] });
    expect(killed).toBe(1);
  });

  it('judges the report: a malformed one or one missing calls is unusable; the process is ended once it answers', async () => {
    const clock = new ManualClock();
    const children: (EventEmitter & { killed: number })[] = [];
    const testLoad = utilityProcessTestLoad({
      fork: () => {
        const c = Object.assign(new EventEmitter(), { killed: 0, kill: () => ((c.killed += 1), true) });
        children.push(c);
        return c as unknown as UtilityProcessLike;
      },
      probeModule: '/app/native-probe.js',
      clock,
    });
    const malformed = testLoad('/a.node');
    children[0]!.emit('message', 'hello');
    expect(await malformed).toEqual({ ok: false, reason: 'the test-load child answered something malformed' });
    const lacking = testLoad('/b.node');
    children[1]!.emit('message', { info: { version: 1, platform: 'darwin', macos: true }, calls: ['addonInfo'] });
    expect(await lacking).toMatchObject({ ok: false, reason: expect.stringMatching(/^the addon lacks denyDebuggerAttach, sipStatus/) });
    expect(children.map((c) => c.killed)).toEqual([1, 1]);
    expect(clock.pending()).toEqual([]);
  });
});
