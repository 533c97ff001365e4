/**
 * The built addon itself (native/build/Release/nightjar_native.node, built by `npm ci`), loaded
 * here on Linux: every call of the stub answers unsupported, and the C++ checks its arguments
 * (throwing TypeError/RangeError, never crashing) before it answers anything. Under CI=1 the
 * addon must have been built: a missing file fails the test instead of skipping it.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  NATIVE_CALLS,
  childProcessTestLoad,
  findNativeAddon,
  loadNativeAddon,
  type NativeAddon,
} from '../../../src/main/agent/native/native.js';

const root = path.resolve(import.meta.dirname, '../../..');
const built = findNativeAddon(root);
const inCi = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const NOT_BUILT =
  'native/build/Release/nightjar_native.node is not built (npm ci builds it; `npm run build:native` retries). ' +
  'Skipped outside CI; under CI=1 this fails.';

/** The raw binding, loaded in this process as the wrapper does after a test-load. */
type Raw = Record<(typeof NATIVE_CALLS)[number], (...args: unknown[]) => unknown>;

describe('the built addon', () => {
  it('is built by npm ci (required when CI=1) and sits where the wrapper looks for it', (ctx) => {
    if (built === null) {
      if (inCi) expect.fail(`CI=1: ${NOT_BUILT}`);
      ctx.skip(NOT_BUILT);
    }
    expect(built).toBe(path.join(root, 'native/build/Release/nightjar_native.node'));
  });

  it('survives the child-process test-load and loads in this process', async (ctx) => {
    if (built === null) return ctx.skip(NOT_BUILT);
    const probe = await childProcessTestLoad()(built);
    expect(probe).toEqual({ ok: true, info: { version: 1, platform: process.platform, macos: process.platform === 'darwin' } });
    const addon = await loadNativeAddon({ path: built });
    expect(addon.load).toEqual({
      loaded: true,
      path: built,
      info: { version: 1, platform: process.platform, macos: process.platform === 'darwin' },
    });
  });

  it.skipIf(process.platform === 'darwin')('answers unsupported for every call off macOS, through the wrapper', async (ctx) => {
    if (built === null) return ctx.skip(NOT_BUILT);
    const addon: NativeAddon = await loadNativeAddon({ path: built });
    const reason = `macOS only: this build of the addon is for ${process.platform}`;
    const unsupported = { supported: false, reason };
    expect(addon.denyDebuggerAttach()).toEqual(unsupported);
    expect(addon.sipStatus()).toEqual(unsupported);
    expect(addon.codeSigning()).toEqual(unsupported);
    expect(addon.secureEnclaveKey('network.nightjar.test')).toEqual(unsupported);
    expect(addon.secureEnclaveSign('network.nightjar.test', new Uint8Array(32))).toEqual(unsupported);
    expect(addon.secureEnclaveDelete('network.nightjar.test')).toEqual(unsupported);
    expect(addon.hidIdleTime()).toEqual(unsupported);
    expect(addon.thermalState()).toEqual(unsupported);
    expect(addon.chipName()).toEqual(unsupported);
    expect(addon.coreCounts()).toEqual(unsupported);
  });

  it('exports exactly the calls the wrapper knows', (ctx) => {
    if (built === null) return ctx.skip(NOT_BUILT);
    const raw = createRequire(import.meta.url)(built) as Raw;
    expect(Object.keys(raw).sort()).toEqual([...NATIVE_CALLS].sort());
  });

  // Fails without the C++ checks (ReadTag, ReadMessage, CheckArgCount): the stub answers instead of throwing. Shown once with
  // ReadTag's length check removed: "expected function to throw an error, but it didn't".
  it.skipIf(process.platform === 'darwin')('checks arguments in C++ too: a bad one throws, nothing crashes', (ctx) => {
    if (built === null) return ctx.skip(NOT_BUILT);
    const raw = createRequire(import.meta.url)(built) as Raw;
    expect(() => raw.sipStatus('extra')).toThrow(new TypeError('expected 0 argument(s), got 1'));
    expect(() => raw.secureEnclaveKey()).toThrow(new TypeError('expected 1 argument(s), got 0'));
    expect(() => raw.secureEnclaveKey(42)).toThrow(new TypeError('tag must be a string'));
    expect(() => raw.secureEnclaveKey('')).toThrow(new RangeError('tag must be 1 to 128 bytes'));
    expect(() => raw.secureEnclaveKey('x'.repeat(129))).toThrow(new RangeError('tag must be 1 to 128 bytes'));
    expect(() => raw.secureEnclaveKey('has space')).toThrow(new RangeError('tag must be printable ASCII without spaces'));
    expect(() => raw.secureEnclaveKey('tag\u00e9')).toThrow(new RangeError('tag must be printable ASCII without spaces'));
    expect(() => raw.secureEnclaveDelete(null)).toThrow(new TypeError('tag must be a string'));
    expect(() => raw.secureEnclaveSign('t', 'text')).toThrow(new TypeError('message must be a Uint8Array'));
    expect(() => raw.secureEnclaveSign('t', new Uint16Array(4))).toThrow(new TypeError('message must be a Uint8Array'));
    expect(() => raw.secureEnclaveSign('t', new Uint8Array(1024 * 1024 + 1))).toThrow(new RangeError('message must be at most 1 MiB'));
    // At the limits it answers (unsupported here).
    expect(raw.secureEnclaveKey('x'.repeat(128))).toMatchObject({ supported: false });
    expect(raw.secureEnclaveSign('t', new Uint8Array(1024 * 1024))).toMatchObject({ supported: false });
    expect(raw.secureEnclaveSign('t', Buffer.alloc(0))).toMatchObject({ supported: false });
    expect(raw.addonInfo()).toEqual({ version: 1, platform: process.platform, macos: false });
  });
});
