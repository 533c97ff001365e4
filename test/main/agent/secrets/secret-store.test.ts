/**
 * Where the identity key lives: the keychain store's errors when keytar or the keychain is
 * missing (the real keychain is exercised in keytar.keychain.test.ts), and the opt-in plaintext
 * file store, which refuses a file others could read.
 */
import { chmod, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KeychainSecretStore,
  PlaintextFileSecretStore,
  loadIdentity,
  loadOrCreateIdentity,
  type KeytarApi,
} from '../../../../src/main/agent/secrets/secret-store.js';
import { NightjarError } from '../../../../src/shared/index.js';

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-secrets-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An in-memory stand-in for keytar, for the error paths only. */
function memoryKeytar(): KeytarApi & { items: Map<string, string> } {
  const items = new Map<string, string>();
  return {
    items,
    getPassword: async (s, a) => items.get(`${s}/${a}`) ?? null,
    setPassword: async (s, a, p) => void items.set(`${s}/${a}`, p),
    deletePassword: async (s, a) => items.delete(`${s}/${a}`),
  };
}

describe('the keychain store', () => {
  it('turns a keytar that cannot load into NJ_KEYCHAIN_UNAVAILABLE naming the opt-in file store', async () => {
    const store = new KeychainSecretStore({ load: async () => Promise.reject(new Error("Cannot find module 'keytar'")) });
    const error = await store.get().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NightjarError);
    expect(error).toMatchObject({ code: 'NJ_KEYCHAIN_UNAVAILABLE', message: expect.stringContaining("Cannot find module 'keytar'") });
    expect((error as Error).message).toContain('--key-file');
  });

  it('turns a keychain that refuses (no service, locked) into NJ_KEYCHAIN_UNAVAILABLE', async () => {
    const broken: KeytarApi = {
      getPassword: () => Promise.reject(new Error('Cannot autolaunch D-Bus without X11 $DISPLAY')),
      setPassword: () => Promise.reject(new Error('locked')),
      deletePassword: () => Promise.reject(new Error('locked')),
    };
    const store = new KeychainSecretStore({ load: async () => broken });
    await expect(store.get()).rejects.toMatchObject({ code: 'NJ_KEYCHAIN_UNAVAILABLE', message: expect.stringContaining('D-Bus') });
    await expect(loadOrCreateIdentity(store)).rejects.toMatchObject({ code: 'NJ_KEYCHAIN_UNAVAILABLE' });
  });

  it('creates the identity once and returns the same one after', async () => {
    const keytar = memoryKeytar();
    const store = new KeychainSecretStore({ service: 'NightjarTest', account: 'a', load: async () => keytar });
    const first = await loadOrCreateIdentity(store);
    const again = await loadOrCreateIdentity(store);
    expect(first.created).toBe(true);
    expect(again.created).toBe(false);
    expect(again.identity.agentId).toBe(first.identity.agentId);
    expect(keytar.items.get('NightjarTest/a')).toMatch(/^[0-9a-f]{64}$/);
    expect(store.description).toBe('the OS keychain (service NightjarTest, account a)');
  });

  it('refuses a stored value that is not a seed rather than replacing the identity', async () => {
    const keytar = memoryKeytar();
    keytar.items.set('Nightjar/agent-identity', 'not a seed');
    await expect(loadOrCreateIdentity(new KeychainSecretStore({ load: async () => keytar }))).rejects.toMatchObject({
      code: 'NJ_CONFIG_INVALID',
    });
    expect(keytar.items.get('Nightjar/agent-identity')).toBe('not a seed');
  });
});

describe('the plaintext file store (opt-in)', () => {
  it('creates the key file with mode 0600 and reads it back', async () => {
    const file = path.join(dir, `k${++n}`, 'identity-key.plaintext');
    const store = new PlaintextFileSecretStore(file);
    const { identity, created } = await loadOrCreateIdentity(store);
    expect(created).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    expect((await readFile(file, 'utf8')).trim()).toMatch(/^[0-9a-f]{64}$/);
    expect((await loadIdentity(store))?.agentId).toBe(identity.agentId);
    expect(store.description).toContain('plaintext key file');
  });

  // Security: fails if the mode check in PlaintextFileSecretStore.#check is removed (the key of a
  // group- or world-readable file would then be used).
  it('refuses a key file that others can read', async () => {
    const file = path.join(dir, `k${++n}.key`);
    await writeFile(file, 'ab'.repeat(32) + '\n', { mode: 0o644 });
    await chmod(file, 0o644);
    await expect(new PlaintextFileSecretStore(file).get()).rejects.toMatchObject({
      code: 'NJ_KEY_FILE_INSECURE',
      message: expect.stringContaining('mode 644'),
    });
    await chmod(file, 0o640);
    await expect(new PlaintextFileSecretStore(file).get()).rejects.toMatchObject({ code: 'NJ_KEY_FILE_INSECURE' });
    await chmod(file, 0o600);
    expect(await new PlaintextFileSecretStore(file).get()).toBe('ab'.repeat(32));
  });

  // Security: fails if the symlink check is removed (a link could point the agent at another key).
  it('refuses a key file that is a symbolic link', async () => {
    const target = path.join(dir, `k${++n}.real`);
    await writeFile(target, 'cd'.repeat(32), { mode: 0o600 });
    const link = path.join(dir, `k${n}.link`);
    await symlink(target, link);
    await expect(new PlaintextFileSecretStore(link).get()).rejects.toMatchObject({
      code: 'NJ_KEY_FILE_INSECURE',
      message: expect.stringContaining('symbolic link'),
    });
  });

  it('reports no secret for a missing file, and deletes', async () => {
    const store = new PlaintextFileSecretStore(path.join(dir, `k${++n}.missing`));
    expect(await store.get()).toBeNull();
    expect(await store.delete()).toBe(false);
    await store.set('ef'.repeat(32));
    expect(await store.delete()).toBe(true);
  });
});
