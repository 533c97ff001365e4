/**
 * The agent's wrapper around the native addon: optional load, the child-process test-load before
 * the addon is trusted, argument checks, answers checked into typed unions, and what the posture,
 * the platform and the Mac environment source make of them.
 *
 * macOS cannot run here, so a stand-in addon is a CommonJS file written to a temporary folder
 * (require() loads it just as it loads a .node file): it answers as the macOS build is written to
 * answer (native/src/nightjar_native.cc), or crashes, hangs or answers nonsense, as a test needs.
 * The test-loads are real child processes.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MacEnvironmentSource } from '../../../src/main/agent/environment/environment.js';
import {
  AGENT_ENCLAVE_TAG,
  ENCLAVE_MESSAGE_MAX_BYTES,
  childProcessTestLoad,
  defaultNativeAddon,
  findNativeAddon,
  loadNativeAddon,
  unsupportedNativeAddon,
  type NativeAddon,
} from '../../../src/main/agent/native/native.js';
import { detectPlatform, nativePosture, unattestedPosture } from '../../../src/main/agent/platform.js';
import { createLogger } from '../../../src/node/index.js';
import { NightjarError, appHashOf } from '../../../src/shared/index.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-native-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What the macOS build answers on a hardened, signed app with SIP on (see nightjar_native.cc). */
const MAC_ANSWERS: Record<string, unknown> = {
  addonInfo: { version: 1, platform: 'darwin', macos: true },
  denyDebuggerAttach: { supported: true, ok: true, denied: true },
  sipStatus: { supported: true, ok: true, enabled: true, mask: 0 },
  codeSigning: {
    supported: true,
    ok: true,
    signed: true,
    valid: true,
    validityStatus: 0,
    teamId: 'ABCDE12345',
    identifier: 'network.nightjar.app',
    flags: 0x10000,
    hardenedRuntime: true,
    cdhash: 'ab'.repeat(20),
  },
  secureEnclaveKey: { supported: true, ok: true, created: false, publicKey: { bytes: [4, ...new Array<number>(64).fill(7)] } },
  secureEnclaveSign: { supported: true, ok: true, signature: { bytes: [0x30, 0x44, ...new Array<number>(68).fill(1)] } },
  secureEnclaveDelete: { supported: true, ok: true, deleted: true },
  hidIdleTime: { supported: true, ok: true, idleSeconds: 321.5 },
  thermalState: { supported: true, ok: true, state: 'fair' },
  chipName: { supported: true, ok: true, chip: 'Apple M2 Pro' },
  coreCounts: { supported: true, ok: true, performance: 8, efficiency: 4 },
};

/**
 * Writes a stand-in addon: each call answers `answers[name]` ({ bytes: [...] } becomes a Buffer;
 * { throws: "…" } throws), and every call is recorded in its exported `calls`. `onLoad` runs when
 * it is required (in the test-load child and in this process alike).
 */
async function fakeAddon(name: string, answers: Record<string, unknown>, onLoad = ''): Promise<string> {
  const file = path.join(dir, `${name}.cjs`);
  await writeFile(
    file,
    `${onLoad}
const answers = ${JSON.stringify(answers)};
const calls = [];
const revive = (v) => v && typeof v === 'object' && !Array.isArray(v)
  ? (Array.isArray(v.bytes) ? Buffer.from(v.bytes) : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revive(x)])))
  : v;
module.exports = { calls };
for (const [call, answer] of Object.entries(answers)) {
  module.exports[call] = (...args) => {
    calls.push([call, ...args.map((a) => (a instanceof Uint8Array ? a.length : a))]);
    if (answer && answer.throws) throw new TypeError(answer.throws);
    return revive(answer);
  };
}
`,
  );
  return file;
}

/** The calls a stand-in addon recorded in this process. */
function callsOf(file: string): unknown[][] {
  return (createRequire(import.meta.url)(file) as { calls: unknown[][] }).calls;
}

function logLines(): { lines: { level: string; msg: string; reason?: string }[]; logger: ReturnType<typeof createLogger> } {
  const lines: { level: string; msg: string; reason?: string }[] = [];
  const logger = createLogger({ write: (line) => lines.push(JSON.parse(line) as { level: string; msg: string }), level: 'debug' });
  return { lines, logger };
}

function expectBadRequest(call: () => unknown, message: string): void {
  let error: unknown;
  try {
    call();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(NightjarError);
  expect((error as NightjarError).code).toBe('NJ_BAD_REQUEST');
  expect((error as NightjarError).message).toBe(message);
}

describe('optional load', () => {
  it('a missing addon makes every call answer unsupported, with the reason', async () => {
    const addon = await loadNativeAddon({ path: path.join(dir, 'nowhere.node') });
    const reason = 'the native addon is not built (npm ci builds it when a C++ toolchain is installed; `npm run build:native` retries)';
    expect(addon.load).toEqual({ loaded: false, path: path.join(dir, 'nowhere.node'), reason });
    for (const answer of [addon.sipStatus(), addon.codeSigning(), addon.hidIdleTime(), addon.secureEnclaveKey('t')]) {
      expect(answer).toEqual({ supported: false, reason });
    }
    expect((await loadNativeAddon({ path: null })).load).toMatchObject({ loaded: false, path: null });
  });

  it('off macOS the default addon is not loaded at all (no child process), and says why', async () => {
    let tested = 0;
    const addon = await defaultNativeAddon('linux', { testLoad: async () => ((tested += 1), { ok: false, reason: 'unused' }) });
    expect(tested).toBe(0);
    expect(addon.load).toEqual({ loaded: false, path: null, reason: 'the native calls answer only on macOS (this is linux)' });
    expect(addon.thermalState()).toEqual({ supported: false, reason: 'the native calls answer only on macOS (this is linux)' });
  });

  it('finds the built addon above a folder, and through app.asar in app.asar.unpacked', async () => {
    const resources = path.join(dir, 'Nightjar.app/Contents/Resources');
    const unpacked = path.join(resources, 'app.asar.unpacked/native/build/Release');
    await mkdir(unpacked, { recursive: true });
    await writeFile(path.join(unpacked, 'nightjar_native.node'), '');
    expect(findNativeAddon(path.join(resources, 'app.asar/dist/src/main/agent/native'))).toBe(path.join(unpacked, 'nightjar_native.node'));
    expect(findNativeAddon(path.join(dir, 'elsewhere'))).toBeNull();
  });
});

describe('the child-process test-load', () => {
  // Fails without the test-load: shown once by having loadNativeAddon skip it — the addon's crash
  // then took down the test's own process ("Worker exited unexpectedly") instead of failing here.
  it('an addon that crashes the child is unusable, logged, and the agent survives', async () => {
    const crasher = await fakeAddon('crasher', MAC_ANSWERS, "process.kill(process.pid, 'SIGSEGV');");
    const { lines, logger } = logLines();
    const addon = await loadNativeAddon({ path: crasher, logger });
    expect(addon.load).toEqual({
      loaded: false,
      path: crasher,
      reason: 'the native addon is unusable: the test-load child crashed (SIGSEGV)',
    });
    expect(addon.sipStatus()).toEqual({ supported: false, reason: 'the native addon is unusable: the test-load child crashed (SIGSEGV)' });
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 'warn', msg: 'native addon unusable', reason: 'the test-load child crashed (SIGSEGV)' }),
    );
  });

  it('a file that is not a loadable addon is unusable', async () => {
    const garbage = path.join(dir, 'garbage.node');
    await writeFile(garbage, 'not an ELF or Mach-O file');
    const addon = await loadNativeAddon({ path: garbage });
    expect(addon.load).toEqual({
      loaded: false,
      path: garbage,
      reason: 'the native addon is unusable: the test-load child failed (exit 1)',
    });
  });

  it('a child that hangs is killed after timeoutMs and the addon is unusable', async () => {
    const hanger = await fakeAddon('hanger', MAC_ANSWERS, 'for (;;) {}');
    const addon = await loadNativeAddon({ path: hanger, testLoad: childProcessTestLoad({ timeoutMs: 300 }) });
    expect(addon.load).toMatchObject({
      loaded: false,
      reason: 'the native addon is unusable: the test-load child was killed after 300 ms',
    });
  });

  it('an addon of another version, or one missing calls, is unusable', async () => {
    const old = await fakeAddon('old', { ...MAC_ANSWERS, addonInfo: { version: 0, platform: 'darwin', macos: true } });
    expect((await loadNativeAddon({ path: old })).load).toMatchObject({
      loaded: false,
      reason: 'the native addon is version 0, this agent needs 1: run `npm run build:native`',
    });
    const partial = { ...MAC_ANSWERS };
    delete partial.coreCounts;
    delete partial.chipName;
    const lacking = await fakeAddon('lacking', partial);
    expect((await loadNativeAddon({ path: lacking })).load).toMatchObject({
      loaded: false,
      reason: 'the native addon is unusable: the addon lacks chipName, coreCounts',
    });
  });

  it('a test-load handed in decides, and one that throws counts as unusable', async () => {
    const mac = await fakeAddon('mac-handed', MAC_ANSWERS);
    const refused = await loadNativeAddon({ path: mac, testLoad: async () => ({ ok: false, reason: 'utility process died' }) });
    expect(refused.load).toMatchObject({ loaded: false, reason: 'the native addon is unusable: utility process died' });
    const threw = await loadNativeAddon({
      path: mac,
      testLoad: async () => {
        throw new Error('spawn failed');
      },
    });
    expect(threw.load).toMatchObject({ loaded: false, reason: 'the native addon is unusable: spawn failed' });
    expect((await loadNativeAddon({ path: mac, testLoad: null })).load).toMatchObject({
      loaded: false,
      reason: 'the native addon was not loaded: no test-load is available in this process',
    });
  });
});

describe('answers and arguments', () => {
  let mac: string;
  let addon: NativeAddon;
  beforeAll(async () => {
    mac = await fakeAddon('mac', MAC_ANSWERS);
    addon = await loadNativeAddon({ path: mac });
  });

  it('loads a good addon after its test-load and gives typed answers', () => {
    expect(addon.load).toEqual({ loaded: true, path: mac, info: { version: 1, platform: 'darwin', macos: true } });
    expect(addon.sipStatus()).toEqual({ supported: true, ok: true, enabled: true, mask: 0 });
    expect(addon.codeSigning()).toMatchObject({ supported: true, ok: true, hardenedRuntime: true, teamId: 'ABCDE12345' });
    const key = addon.secureEnclaveKey(AGENT_ENCLAVE_TAG);
    expect(key.supported && key.ok && key.publicKey.length).toBe(65);
    const signature = addon.secureEnclaveSign(AGENT_ENCLAVE_TAG, new Uint8Array([1, 2, 3]));
    expect(signature.supported && signature.ok && signature.signature[0]).toBe(0x30);
    expect(addon.secureEnclaveDelete(AGENT_ENCLAVE_TAG)).toEqual({ supported: true, ok: true, deleted: true });
    expect(addon.hidIdleTime()).toEqual({ supported: true, ok: true, idleSeconds: 321.5 });
    expect(addon.thermalState()).toEqual({ supported: true, ok: true, state: 'fair' });
    expect(addon.chipName()).toEqual({ supported: true, ok: true, chip: 'Apple M2 Pro' });
    expect(addon.coreCounts()).toEqual({ supported: true, ok: true, performance: 8, efficiency: 4 });
    expect(addon.denyDebuggerAttach()).toEqual({ supported: true, ok: true, denied: true });
  });

  // Fails without checkTag/checkMessage: shown once with checkTag's test removed ("expected undefined to be an
  // instance of NightjarError": the bad tag went through to the addon).
  it('refuses bad arguments with NJ_BAD_REQUEST before they reach the addon, loaded or not', () => {
    const before = callsOf(mac).length;
    const tagMessage = (call: string): string => `${call}: the tag must be 1 to 128 printable ASCII characters without spaces`;
    for (const target of [addon, unsupportedNativeAddon('absent')]) {
      expectBadRequest(() => target.secureEnclaveKey(''), tagMessage('secureEnclaveKey'));
      expectBadRequest(() => target.secureEnclaveKey('x'.repeat(129)), tagMessage('secureEnclaveKey'));
      expectBadRequest(() => target.secureEnclaveKey('with space'), tagMessage('secureEnclaveKey'));
      expectBadRequest(() => target.secureEnclaveKey(42 as unknown as string), tagMessage('secureEnclaveKey'));
      expectBadRequest(() => target.secureEnclaveDelete('ünïcode'), tagMessage('secureEnclaveDelete'));
      expectBadRequest(
        () => target.secureEnclaveSign('tag', 'text' as unknown as Uint8Array),
        'secureEnclaveSign: the message must be a Uint8Array',
      );
      expectBadRequest(
        () => target.secureEnclaveSign('tag', new Uint8Array(ENCLAVE_MESSAGE_MAX_BYTES + 1)),
        `secureEnclaveSign: the message is ${ENCLAVE_MESSAGE_MAX_BYTES + 1} bytes; the limit is ${ENCLAVE_MESSAGE_MAX_BYTES}`,
      );
    }
    expect(callsOf(mac).length).toBe(before);
    // At the limits the call goes through.
    expect(addon.secureEnclaveKey('x'.repeat(128))).toMatchObject({ supported: true, ok: true });
    expect(addon.secureEnclaveSign('t', new Uint8Array(ENCLAVE_MESSAGE_MAX_BYTES))).toMatchObject({ supported: true, ok: true });
    expect(callsOf(mac).slice(before)).toEqual([
      ['secureEnclaveKey', 'x'.repeat(128)],
      ['secureEnclaveSign', 't', ENCLAVE_MESSAGE_MAX_BYTES],
    ]);
  });

  it('passes macOS refusals through and turns nonsense or a throw into unsupported', async () => {
    const odd = await fakeAddon('odd', {
      ...MAC_ANSWERS,
      sipStatus: { supported: true, ok: false, status: 1, error: 'csr_get_active_config failed' },
      codeSigning: { supported: true, ok: true, signed: 'yes' },
      secureEnclaveKey: { supported: true, ok: true, created: true, publicKey: { bytes: [2, 1, 2, 3] } },
      secureEnclaveSign: { throws: 'boom' },
      thermalState: { supported: true, ok: true, state: 'lukewarm' },
      hidIdleTime: { supported: true, ok: true, idleSeconds: -1 },
      coreCounts: 'eight',
    });
    const a = await loadNativeAddon({ path: odd });
    expect(a.load.loaded).toBe(true);
    expect(a.sipStatus()).toEqual({ supported: true, ok: false, status: 1, error: 'csr_get_active_config failed' });
    const malformed = (call: string): unknown => ({ supported: false, reason: `the addon's ${call} answered something malformed` });
    expect(a.codeSigning()).toEqual(malformed('codeSigning'));
    expect(a.secureEnclaveKey('t')).toEqual(malformed('secureEnclaveKey'));
    expect(a.thermalState()).toEqual(malformed('thermalState'));
    expect(a.hidIdleTime()).toEqual(malformed('hidIdleTime'));
    expect(a.coreCounts()).toEqual(malformed('coreCounts'));
    expect(a.secureEnclaveSign('t', new Uint8Array(1))).toEqual({ supported: false, reason: "the addon's secureEnclaveSign threw: boom" });
  });
});

describe('what the agent makes of it', () => {
  it('a hardened Mac: posture from the addon, appHash measured from the cdhash', async () => {
    const file = await fakeAddon('posture', MAC_ANSWERS);
    const posture = nativePosture(await loadNativeAddon({ path: file }), '0.1.0');
    const cdhash = (MAC_ANSWERS.codeSigning as { cdhash: string }).cdhash;
    expect(posture).toEqual({
      sip: true,
      hardenedRuntime: true,
      debuggerDenied: true,
      secureEnclave: true,
      appVersion: '0.1.0',
      appHash: appHashOf(cdhash),
    });
    // SHA-256("nightjar/app-hash/v1\n" ‖ the 20 cdhash bytes), as docs/protocol.md says.
    expect(posture.appHash).toBe(createHash('sha256').update('nightjar/app-hash/v1\n').update(Buffer.from(cdhash, 'hex')).digest('hex'));
    expect(callsOf(file).map((c) => c[0])).toEqual(['addonInfo', 'sipStatus', 'codeSigning', 'denyDebuggerAttach', 'secureEnclaveKey']);
    expect(callsOf(file).at(-1)).toEqual(['secureEnclaveKey', AGENT_ENCLAVE_TAG]);
  });

  it('a Mac with SIP off, an invalid signature, a debugger attached and no enclave key says so', async () => {
    const file = await fakeAddon('weak', {
      ...MAC_ANSWERS,
      sipStatus: { supported: true, ok: true, enabled: false, mask: 0x2 },
      codeSigning: { ...(MAC_ANSWERS.codeSigning as object), valid: false, validityStatus: -67061 },
      denyDebuggerAttach: { supported: true, ok: false, status: 16, error: 'a debugger is attached to this process already' },
      secureEnclaveKey: { supported: true, ok: false, status: -34018, error: 'SecKeyCreateRandomKey: A required entitlement is missing.' },
    });
    expect(nativePosture(await loadNativeAddon({ path: file }), '0.1.0')).toEqual({
      sip: false,
      hardenedRuntime: false,
      debuggerDenied: false,
      secureEnclave: false,
      appVersion: '0.1.0',
      appHash: null,
    });
  });

  it('denyDebugger: false leaves PT_DENY_ATTACH alone and reports the debugger as allowed', async () => {
    const file = await fakeAddon('no-deny', MAC_ANSWERS);
    const posture = nativePosture(await loadNativeAddon({ path: file }), '0.1.0', { denyDebugger: false });
    expect(posture.debuggerDenied).toBe(false);
    expect(callsOf(file).map((c) => c[0])).not.toContain('denyDebuggerAttach');
  });

  it('without the addon (or off macOS) the posture and the platform are what they were', () => {
    const absent = unsupportedNativeAddon('absent');
    expect(nativePosture(absent, '0.1.0')).toEqual(unattestedPosture('0.1.0'));
    expect(detectPlatform(absent)).toEqual(detectPlatform());
  });

  it('the chip name comes from the addon when it answers', async () => {
    const file = await fakeAddon('chip', MAC_ANSWERS);
    expect(detectPlatform(await loadNativeAddon({ path: file })).chip).toBe('Apple M2 Pro');
  });

  it('the Mac environment source takes idle time and heat from the addon, and asks ioreg and pmset when it cannot', async () => {
    const ran: string[] = [];
    const run = async (file: string, args: readonly string[]): Promise<string> => {
      ran.push([file, ...args].join(' '));
      if (args.includes('IOHIDSystem')) return '"HIDIdleTime" = 5000000000';
      if (args.includes('therm')) return 'CPU_Speed_Limit \t= 40\n';
      return '';
    };
    const file = await fakeAddon('env', MAC_ANSWERS);
    const withAddon = await new MacEnvironmentSource({ run, native: await loadNativeAddon({ path: file }) }).read();
    expect(withAddon).toMatchObject({ idleSeconds: 321.5, thermal: 'fair' });
    expect(ran.some((r) => r.includes('IOHIDSystem') || r.includes('therm'))).toBe(false);

    ran.length = 0;
    const failing = await fakeAddon('env-failing', {
      ...MAC_ANSWERS,
      hidIdleTime: { supported: true, ok: false, status: -1, error: 'IOServiceGetMatchingService found no IOHIDSystem' },
    });
    const fallback = await new MacEnvironmentSource({ run, native: await loadNativeAddon({ path: failing }) }).read();
    expect(fallback).toMatchObject({ idleSeconds: 5, thermal: 'fair' });
    expect(ran.filter((r) => r.includes('IOHIDSystem'))).toHaveLength(1);

    ran.length = 0;
    const without = await new MacEnvironmentSource({ run, native: unsupportedNativeAddon('absent') }).read();
    expect(without).toMatchObject({ idleSeconds: 5, thermal: 'critical' });
    expect(ran.filter((r) => r.includes('IOHIDSystem') || r.includes('therm'))).toHaveLength(2);
  });
});
