/**
 * The native addon's test-load inside the menu-bar app. Electron's binary is not a Node runtime
 * once the runAsNode fuse is off, so the agent's child-process test-load cannot run there; an
 * Electron utility process (a Node child Electron itself starts) loads the addon instead
 * (native-probe.ts). A crash, an exit before answering, or no answer in time means "unusable",
 * never a crash of the app.
 */
import { judgeTestLoad, type TestLoad, type TestLoadResult } from '../agent/index.js';
import { systemClock, withDefaults, type Clock } from '../../shared/index.js';

/** A utility process as the test-load uses it (Electron's UtilityProcess satisfies it). */
export interface UtilityProcessLike {
  on(event: 'message', listener: (message: unknown) => void): unknown;
  on(event: 'exit', listener: (code: number) => void): unknown;
  kill(): boolean;
}

/** electron.utilityProcess.fork, narrowed. */
export type UtilityForkLike = (modulePath: string, args: string[], options: { serviceName: string; stdio: 'ignore' }) => UtilityProcessLike;

/** Options of {@link utilityProcessTestLoad}. */
export interface UtilityProcessTestLoadOptions {
  /** electron.utilityProcess.fork. Required. */
  fork: UtilityForkLike;
  /** The built native-probe.js (dist/src/main/electron/native-probe.js in the app). Required. */
  probeModule: string;
  /** How long the utility process may take to answer before it is killed. Defaults to 10 000 ms. */
  timeoutMs?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
}

const UTILITY_TEST_LOAD_DEFAULTS = { timeoutMs: 10_000, clock: systemClock };

/** A {@link TestLoad} that loads the addon in an Electron utility process first. */
export function utilityProcessTestLoad(options: UtilityProcessTestLoadOptions): TestLoad {
  const o = withDefaults(UTILITY_TEST_LOAD_DEFAULTS, options);
  return (addonPath) =>
    new Promise<TestLoadResult>((resolve) => {
      let settled = false;
      const child = o.fork(o.probeModule, [addonPath], { serviceName: 'Nightjar native test-load', stdio: 'ignore' });
      const finish = (result: TestLoadResult): void => {
        if (settled) return;
        settled = true;
        o.clock.clearTimeout(timer);
        child.kill();
        resolve(result);
      };
      const timer = o.clock.setTimeout(
        () => finish({ ok: false, reason: `the test-load process was killed after ${o.timeoutMs} ms` }),
        o.timeoutMs,
      );
      child.on('message', (message) => finish(judgeTestLoad(message)));
      child.on('exit', (code) => finish({ ok: false, reason: `the test-load process exited (code ${code}) before answering` }));
    });
}
