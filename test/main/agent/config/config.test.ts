/**
 * The config file: the platform's place for it, defaults for what it leaves out, and errors that
 * name the bad field; the state file for the owner's override.
 */
import { mkdtemp, rm, stat, writeFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_CONFIG,
  loadConfig,
  loadStateFile,
  parseConfig,
  saveConfig,
  saveStateFile,
  updateConfig,
} from '../../../../src/main/agent/config/config.js';
import { platformPaths } from '../../../../src/main/agent/config/paths.js';
import { NightjarError } from '../../../../src/shared/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('where the files go', () => {
  it('macOS: everything under ~/Library/Application Support/Nightjar', () => {
    const p = platformPaths({ platform: 'darwin', env: {}, home: '/Users/ada' });
    expect(p.configFile).toBe('/Users/ada/Library/Application Support/Nightjar/config.json');
    expect(p.modelsDir).toBe('/Users/ada/Library/Application Support/Nightjar/models');
    expect(p.receiptsFile).toBe('/Users/ada/Library/Application Support/Nightjar/receipts.jsonl');
    expect(p.controlFile).toBe('/Users/ada/Library/Application Support/Nightjar/control.json');
  });

  it('Linux: XDG config and data homes, with their defaults', () => {
    expect(platformPaths({ platform: 'linux', env: {}, home: '/home/ada' })).toMatchObject({
      configFile: '/home/ada/.config/nightjar/config.json',
      modelsDir: '/home/ada/.local/share/nightjar/models',
      receiptsFile: '/home/ada/.local/share/nightjar/receipts.jsonl',
    });
    expect(platformPaths({ platform: 'linux', env: { XDG_CONFIG_HOME: '/cfg', XDG_DATA_HOME: '/data' }, home: '/home/ada' })).toMatchObject(
      {
        configFile: '/cfg/nightjar/config.json',
        modelsDir: '/data/nightjar/models',
      },
    );
    // A relative XDG path is invalid by the spec and ignored.
    expect(platformPaths({ platform: 'linux', env: { XDG_CONFIG_HOME: 'rel' }, home: '/home/ada' }).configDir).toBe(
      '/home/ada/.config/nightjar',
    );
  });

  it('NIGHTJAR_HOME puts config and data under one directory', () => {
    expect(platformPaths({ platform: 'darwin', env: { NIGHTJAR_HOME: '/tmp/nj' }, home: '/Users/ada' })).toMatchObject({
      configFile: '/tmp/nj/config/config.json',
      modelsDir: '/tmp/nj/data/models',
    });
  });
});

describe('the config file', () => {
  it('is the default config when missing', async () => {
    expect(await loadConfig(path.join(dir, 'missing.json'))).toEqual(DEFAULT_CONFIG);
  });

  it('fills in what a file leaves out', () => {
    const c = parseConfig({ policy: { idleSeconds: 60 }, model: { selected: 'qwen2.5-0.5b-instruct-q4_k_m' } }, 'config.json');
    expect(c.policy).toEqual({ ...DEFAULT_CONFIG.policy, idleSeconds: 60 });
    expect(c.model).toEqual({ ...DEFAULT_CONFIG.model, selected: 'qwen2.5-0.5b-instruct-q4_k_m' });
    expect(c.keys).toEqual(DEFAULT_CONFIG.keys);
  });

  it.each([
    [{ policy: { idleSeconds: -1 } }, /config\.json: policy\.idleSeconds: /],
    [{ policy: { schedule: [{ days: ['mon'], start: '25:00', end: '07:00' }] } }, /policy\.schedule\.0\.start: expected HH:MM/],
    [{ policy: { schedule: [{ days: ['monday'], start: '22:00', end: '07:00' }] } }, /policy\.schedule\.0\.days\.0/],
    [{ policy: { timeZone: 'Mars/Olympus_Mons' } }, /policy\.timeZone: expected an IANA time zone/],
    [{ policy: { idleSecs: 5 } }, /policy: Unrecognized key: "idleSecs"/],
    [{ model: { slots: 0 } }, /model\.slots/],
    [{ gateway: { url: 'gopher://x' } }, /gateway\.url: expected an http\(s\):\/\/ or ws\(s\):\/\/ URL/],
    [{ keys: { store: 'sticky-note' } }, /keys\.store/],
    [{ earnings: { prices: { 'Bad Id': { promptPerMTok: '1', completionPerMTok: '1' } } } }, /earnings\.prices/],
    [{ earnings: { prices: { 'a-model': { promptPerMTok: 1, completionPerMTok: '1' } } } }, /earnings\.prices\.a-model\.promptPerMTok/],
    [{ colour: 'blue' }, /Unrecognized key: "colour"/],
  ])('names the bad field: %j', (value, message) => {
    let error: unknown;
    try {
      parseConfig(value, 'config.json');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NightjarError);
    expect((error as NightjarError).code).toBe('NJ_CONFIG_INVALID');
    expect((error as NightjarError).message).toMatch(message);
  });

  it('says which file is not JSON', async () => {
    const file = path.join(dir, 'bad.json');
    await writeFile(file, '{ "policy": ');
    await expect(loadConfig(file)).rejects.toMatchObject({
      code: 'NJ_CONFIG_INVALID',
      message: expect.stringContaining(`${file} is not valid JSON`),
    });
  });

  it('saves atomically with mode 0600 and reads back what it saved', async () => {
    const file = path.join(dir, 'saved', 'config.json');
    await updateConfig(file, (c) => ({ ...c, model: { ...c.model, selected: 'synthetic-tiny', slots: 2 } }));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const c = await loadConfig(file);
    expect(c.model).toMatchObject({ selected: 'synthetic-tiny', slots: 2 });
    await expect(saveConfig(file, { ...c, boxKeyRotationHours: 0 })).rejects.toMatchObject({ code: 'NJ_CONFIG_INVALID' });
    expect(JSON.parse(await readFile(file, 'utf8')).boxKeyRotationHours).toBe(24);
  });
});

describe('the state file', () => {
  it('remembers the override; a missing or broken file means none', async () => {
    const file = path.join(dir, 'state.json');
    expect(await loadStateFile(file)).toEqual({ manual: { mode: 'auto', until: null } });
    await saveStateFile(file, { manual: { mode: 'paused', until: 123 } });
    expect(await loadStateFile(file)).toEqual({ manual: { mode: 'paused', until: 123 } });
    await writeFile(file, 'nope');
    expect(await loadStateFile(file)).toEqual({ manual: { mode: 'auto', until: null } });
  });
});
