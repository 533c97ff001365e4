/**
 * The package, checked without a Mac: electron-builder.yml loads and passes electron-builder's
 * own schema validation (the same call `electron-builder` makes before building), and its
 * security-relevant settings are pinned — hardened runtime, the entitlements (allow-jit only),
 * LSUIElement, the fuses, the unpacked native binaries. The icons are the committed script's
 * output, at the sizes macOS wants, and the tray icons are template images (black + alpha).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import type { FuseConfig } from '@electron/fuses';
import { describe, expect, it } from 'vitest';
import { NATIVE_ADDON_RELATIVE_PATH } from '../../../src/main/agent/native/native.js';
import { makeIcons } from '../../../tools/make-icons.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
/** The marker @electron/fuses looks for in the Electron binary; the fuse wire follows it. */
const SENTINEL = 'dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX';

interface BuilderConfig {
  appId: string;
  productName: string;
  extraMetadata: { main: string };
  /** electron-builder normalises the list into one file set. */
  files: { filter: string[] }[];
  asar: boolean;
  asarUnpack: string[];
  mac: {
    target: { target: string; arch: string[] }[];
    hardenedRuntime: boolean;
    entitlements: string;
    entitlementsInherit: string;
    icon: string;
    extendInfo: Record<string, unknown>;
  };
  electronFuses: Record<string, boolean>;
}

async function loadConfig(): Promise<BuilderConfig> {
  const { getConfig, validateConfiguration } = (await import('app-builder-lib/out/util/config/config.js')) as unknown as {
    getConfig(dir: string, file: string, extra: null): Promise<unknown>;
    validateConfiguration(config: unknown, logger: unknown): Promise<void>;
  };
  const { DebugLogger } = (await import('builder-util')) as unknown as { DebugLogger: new (enabled: boolean) => unknown };
  const config = await getConfig(ROOT, 'electron-builder.yml', null);
  await validateConfiguration(config, new DebugLogger(false));
  return config as BuilderConfig;
}

describe('electron-builder.yml', () => {
  it('passes electron-builder’s schema and builds Nightjar for arm64 Macs as dmg and zip', async () => {
    const c = await loadConfig();
    expect(c.appId).toBe('network.nightjar.app');
    expect(c.productName).toBe('Nightjar');
    expect(c.mac.target).toEqual([
      { target: 'dmg', arch: ['arm64'] },
      { target: 'zip', arch: ['arm64'] },
    ]);
    expect(c.extraMetadata.main).toBe('dist/src/main/electron/main.js');
    expect(c.files[0]!.filter).toEqual(
      expect.arrayContaining(['dist/src/main/electron/**', 'dist/app/**', 'assets/trayTemplate.png', 'assets/trayTemplate@2x.png']),
    );
    // The gateway, the client and the CLI are not part of the app.
    expect(c.files[0]!.filter.filter((f) => /gateway|client|cli/.test(f))).toEqual([]);
    expect(c.mac.icon).toBe('assets/icon.png');
  });

  it('is hardened: hardened runtime, a menu-bar-only app, every fuse that matters set', async () => {
    const c = await loadConfig();
    expect(c.mac.hardenedRuntime).toBe(true);
    expect(c.mac.extendInfo.LSUIElement).toBe(true);
    expect(c.asar).toBe(true);
    expect(c.electronFuses).toEqual({
      runAsNode: false,
      enableCookieEncryption: true,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
      loadBrowserProcessSpecificV8Snapshot: false,
      grantFileProtocolExtraPrivileges: false,
    });
  });

  // The fuses are flipped by electron-builder's own code (PlatformPackager.generateFuseConfig, then
  // @electron/fuses' flipFuses, as its addElectronFuses does) in a stand-in for the Electron binary:
  // the fuse sentinel followed by Electron's default V1 wire, "10110001". Read back with
  // getCurrentFuseWire, each fuse is what electron-builder.yml asks. Fails if a fuse name in the
  // yml is one electron-builder does not map (it is skipped silently, and the default stays).
  it('flips the fuses in an Electron binary as electron-builder does, and reads them back', async () => {
    const c = await loadConfig();
    const fuses = await import('@electron/fuses');
    const { PlatformPackager } = (await import('app-builder-lib')) as unknown as {
      PlatformPackager: {
        prototype: { generateFuseConfig(options: Record<string, boolean>): Promise<FuseConfig> };
      };
    };
    const dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-fuses-'));
    try {
      const binary = path.join(dir, 'Electron');
      const defaults = Buffer.from('10110001', 'latin1');
      await writeFile(
        binary,
        Buffer.concat([Buffer.alloc(4096, 7), Buffer.from(SENTINEL, 'latin1'), Buffer.from([1, 8]), defaults, Buffer.alloc(4096, 9)]),
      );
      const config = await PlatformPackager.prototype.generateFuseConfig.call({}, c.electronFuses);
      await fuses.flipFuses(binary, config);
      const wire = await fuses.getCurrentFuseWire(binary);
      const F = fuses.FuseV1Options;
      // A fuse's state is its byte in the wire: '1' enabled, '0' disabled.
      const on = (b: boolean): number => (b ? '1' : '0').charCodeAt(0);
      expect(wire[F.RunAsNode]).toBe(on(false));
      expect(wire[F.EnableCookieEncryption]).toBe(on(true));
      expect(wire[F.EnableNodeOptionsEnvironmentVariable]).toBe(on(false));
      expect(wire[F.EnableNodeCliInspectArguments]).toBe(on(false));
      expect(wire[F.EnableEmbeddedAsarIntegrityValidation]).toBe(on(true));
      expect(wire[F.OnlyLoadAppFromAsar]).toBe(on(true));
      expect(wire[F.LoadBrowserProcessSpecificV8Snapshot]).toBe(on(false));
      expect(wire[F.GrantFileProtocolExtraPrivileges]).toBe(on(false));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('unpacks the native binaries (node-llama-cpp, keytar, Nightjar’s addon) so they load and are signed', async () => {
    const c = await loadConfig();
    // node-llama-cpp's own Electron template (templates/packed/electron-typescript-react.json) unpacks the first three.
    expect(c.asarUnpack).toEqual([
      'node_modules/node-llama-cpp/bins',
      'node_modules/node-llama-cpp/llama/localBuilds',
      'node_modules/@node-llama-cpp/*',
      'node_modules/keytar/**/*.node',
      'native/build/Release/*.node',
    ]);
    // The addon npm ci built is packaged, where the agent's findNativeAddon looks for it (in app.asar.unpacked).
    expect(c.files[0]!.filter).toContain(NATIVE_ADDON_RELATIVE_PATH);
    expect(path.dirname(NATIVE_ADDON_RELATIVE_PATH) + '/*.node').toBe('native/build/Release/*.node');
  });

  it('entitles V8’s JIT and nothing else: no get-task-allow, no library-validation or DYLD exceptions', async () => {
    const c = await loadConfig();
    expect(c.mac.entitlements).toBe('assets/entitlements.mac.plist');
    expect(c.mac.entitlementsInherit).toBe('assets/entitlements.mac.plist');
    const plist = await readFile(path.join(ROOT, c.mac.entitlements), 'utf8');
    const keys = [...plist.matchAll(/<key>([^<]+)<\/key>\s*<(true|false)\/>/g)].map((m) => [m[1], m[2]]);
    expect(keys).toEqual([['com.apple.security.cs.allow-jit', 'true']]);
  });
});

interface Png {
  width: number;
  height: number;
  rgba: Uint8Array;
}

function decodePng(bytes: Buffer): Png {
  expect(bytes.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let offset = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  while (offset < bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString('ascii', offset + 4, offset + 8);
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([data[8], data[9]]).toEqual([8, 6]); // 8-bit RGBA
    } else if (type === 'IDAT') idat.push(data);
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (1 + width * 4)]).toBe(0);
    rgba.set(raw.subarray(y * (1 + width * 4) + 1, (y + 1) * (1 + width * 4)), y * width * 4);
  }
  return { width, height, rgba };
}

describe('icons', () => {
  it('are template images for the tray (16 and 32 px, black + alpha) and a 1024 px app icon', async () => {
    for (const [name, size] of [
      ['trayTemplate.png', 16],
      ['trayTemplate@2x.png', 32],
    ] as const) {
      const png = decodePng(await readFile(path.join(ROOT, 'assets', name)));
      expect([png.width, png.height], name).toEqual([size, size]);
      const alphas = new Set<number>();
      for (let i = 0; i < png.rgba.length; i += 4) {
        expect([png.rgba[i], png.rgba[i + 1], png.rgba[i + 2]]).toEqual([0, 0, 0]);
        alphas.add(png.rgba[i + 3]!);
      }
      expect(alphas.has(0) && alphas.has(255)).toBe(true); // a shape, anti-aliased
      expect(alphas.size).toBeGreaterThan(4);
    }
    const icon = decodePng(await readFile(path.join(ROOT, 'assets/icon.png')));
    expect([icon.width, icon.height]).toEqual([1024, 1024]);
    expect(icon.rgba[3]).toBe(0); // transparent corner, macOS rounded-square grid
    expect(icon.rgba[(512 * 1024 + 512) * 4 + 3]).toBe(255);
  });

  it('are exactly what tools/make-icons.ts draws', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-icons-'));
    try {
      for (const file of await makeIcons(dir)) {
        expect(await readFile(file), path.basename(file)).toEqual(await readFile(path.join(ROOT, 'assets', path.basename(file))));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
