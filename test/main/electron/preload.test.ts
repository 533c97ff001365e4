/**
 * The preload bridge's surface, pinned: the method list equals the control contract's methods,
 * and the preload script — built into its real bundle and evaluated with a fake contextBridge and
 * ipcRenderer, the way a sandboxed renderer runs it — exposes exactly those functions plus one
 * `onEvent`, each on its own fixed channel, requires nothing but 'electron', and never hands the
 * page an IpcRendererEvent.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BRIDGE_METHODS, EVENT_CHANNEL, ipcChannel } from '../../../src/main/electron/index.js';
import { CONTROL_METHODS } from '../../../src/shared/index.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-preload-'));
  // The same options tools/build-web.ts uses for dist/app/preload.cjs.
  await build({
    entryPoints: [path.join(ROOT, 'src/main/electron/preload.ts')],
    outfile: path.join(dir, 'preload.cjs'),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'chrome140',
    external: ['electron'],
    logLevel: 'silent',
  });
  bundle = await readFile(path.join(dir, 'preload.cjs'), 'utf8');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Loaded {
  exposed: Map<string, Record<string, unknown>>;
  invoked: { channel: string; args: unknown[] }[];
  listeners: Map<string, Set<(...args: unknown[]) => void>>;
  required: string[];
}

/** Runs the preload bundle in a fresh context with fake electron modules. */
function load(): Loaded {
  const loaded: Loaded = { exposed: new Map(), invoked: [], listeners: new Map(), required: [] };
  const ipcRenderer = {
    invoke: (channel: string, ...args: unknown[]) => {
      loaded.invoked.push({ channel, args });
      return Promise.resolve({ ok: true, value: channel });
    },
    on: (channel: string, listener: (...args: unknown[]) => void) => {
      let set = loaded.listeners.get(channel);
      if (!set) loaded.listeners.set(channel, (set = new Set()));
      set.add(listener);
    },
    removeListener: (channel: string, listener: (...args: unknown[]) => void) => {
      loaded.listeners.get(channel)?.delete(listener);
    },
    // What a generic bridge would use; the preload must not expose anything like it.
    send: () => {
      throw new Error('send must not be used');
    },
  };
  const contextBridge = {
    exposeInMainWorld: (key: string, api: Record<string, unknown>) => loaded.exposed.set(key, api),
  };
  const module = { exports: {} };
  vm.runInNewContext(bundle, {
    module,
    exports: module.exports,
    require: (name: string) => {
      loaded.required.push(name);
      if (name === 'electron') return { contextBridge, ipcRenderer };
      throw new Error(`a sandboxed preload cannot require ${name}`);
    },
  });
  return loaded;
}

describe('the bridge surface', () => {
  it('is pinned: one function per control method, in the contract’s order, on nightjar:<method>', () => {
    expect(BRIDGE_METHODS).toEqual([
      'status',
      'pause',
      'resume',
      'serveNow',
      'getPolicy',
      'setPolicy',
      'listModels',
      'downloadModel',
      'selectModel',
      'removeModel',
      'earnings',
      'receipts',
      'link',
    ]);
    expect([...BRIDGE_METHODS]).toEqual(Object.keys(CONTROL_METHODS));
    expect(BRIDGE_METHODS.map(ipcChannel)).toEqual(BRIDGE_METHODS.map((m) => `nightjar:${m}`));
    expect(EVENT_CHANNEL).toBe('nightjar:event');
  });
});

describe('the preload script, as bundled', () => {
  it('requires only electron and exposes exactly the methods plus onEvent, frozen, as window.nightjar', () => {
    const { exposed, required } = load();
    expect(required).toEqual(['electron']);
    expect([...exposed.keys()]).toEqual(['nightjar']);
    const api = exposed.get('nightjar')!;
    expect(Object.keys(api).sort()).toEqual([...BRIDGE_METHODS, 'onEvent'].sort());
    expect(Object.values(api).every((v) => typeof v === 'function')).toBe(true);
    expect(Object.isFrozen(api)).toBe(true);
    // The bundle holds no generic channel: every invoke names one of the fixed channels.
    expect(bundle).not.toMatch(/ipcRenderer\.send\b|sendSync|sendToHost/);
  });

  it('invokes each method on its own channel with exactly the input given', async () => {
    const { exposed, invoked } = load();
    const api = exposed.get('nightjar') as Record<string, (input: unknown) => Promise<unknown>>;
    for (const method of BRIDGE_METHODS) {
      expect(await api[method]!({ probe: method })).toEqual({ ok: true, value: `nightjar:${method}` });
    }
    expect(invoked).toEqual(BRIDGE_METHODS.map((m) => ({ channel: `nightjar:${m}`, args: [{ probe: m }] })));
  });

  // Security: fails if the relay passes Electron's IpcRendererEvent (which carries `sender`) to the page.
  it('onEvent hands the listener the event data only, and its unsubscribe removes exactly that listener', () => {
    const { exposed, listeners } = load();
    const onEvent = exposed.get('nightjar')!.onEvent as (l: (...args: unknown[]) => void) => () => void;
    const got: unknown[][] = [];
    const off = onEvent((...args) => got.push(args));
    expect(listeners.get(EVENT_CHANNEL)?.size).toBe(1);
    const relay = [...listeners.get(EVENT_CHANNEL)!][0]!;
    relay({ sender: { send: () => undefined }, ports: [] }, { type: 'link', link: 'connected' });
    expect(got).toEqual([[{ type: 'link', link: 'connected' }]]);
    off();
    expect(listeners.get(EVENT_CHANNEL)?.size).toBe(0);
    expect(() => onEvent('not a function' as never)).toThrow('onEvent takes a function');
    // Nothing listens on any other channel.
    expect([...listeners.keys()]).toEqual([EVENT_CHANNEL]);
  });
});
