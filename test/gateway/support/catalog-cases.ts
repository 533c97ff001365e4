/**
 * Catalog, gateway-key (rotation) and released-versions cases shared by the SQLite suite (catalog.store.test.ts) and the
 * PostgreSQL suite (store.services.test.ts): the same behaviour on both databases.
 */
import { expect, it } from 'vitest';
import {
  LIMITS,
  NightjarError,
  followRotations,
  fromBase64Url,
  gatewayKeyIdFor,
  toBase64Url,
  verifyRotation,
} from '../../../src/shared/index.js';
import type { StoreFactory } from './ledger-cases.js';

const FILE = { sha256: 'cd'.repeat(32), bytes: 1000, name: 'a.gguf', quantization: 'Q4_K_M', contextLength: 4096 };

async function usageError(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NightjarError);
  expect((err as NightjarError).code).toBe('NJ_USAGE');
  return (err as NightjarError).message;
}

/** Registers the catalog cases against `factory`. */
export function catalogCases(factory: StoreFactory): void {
  it('adds, replaces, lists in the signed order and removes catalog files; a restart keeps them', async () => {
    const { store, reopen } = await factory.open();
    try {
      const c = store.catalog;
      expect(await c.addFile('qwen', FILE, 10)).toBe(true);
      expect(await c.addFile('qwen', { ...FILE, sha256: 'ab'.repeat(32), url: 'https://example.com/b.gguf' }, 11)).toBe(true);
      expect(await c.addFile('llama', { ...FILE, sha256: 'ef'.repeat(32) }, 12)).toBe(true);
      // The same file again replaces its entry.
      expect(await c.addFile('qwen', { ...FILE, name: 'renamed.gguf' }, 13)).toBe(false);
      expect((await c.listFiles()).map((f) => [f.model, f.sha256.slice(0, 2), f.addedAt])).toEqual([
        ['llama', 'ef', 12],
        ['qwen', 'ab', 11],
        ['qwen', 'cd', 13],
      ]);
      expect(await c.models()).toEqual([
        { id: 'llama', files: [{ ...FILE, sha256: 'ef'.repeat(32) }] },
        {
          id: 'qwen',
          files: [
            { ...FILE, sha256: 'ab'.repeat(32), url: 'https://example.com/b.gguf' },
            { ...FILE, name: 'renamed.gguf' },
          ],
        },
      ]);
      expect(await c.removeFile('qwen', 'ab'.repeat(32))).toBe(1);
      expect(await c.removeFile('qwen', 'ab'.repeat(32))).toBe(0);
      const again = await reopen();
      try {
        expect((await again.catalog.models()).map((m) => [m.id, m.files.length])).toEqual([
          ['llama', 1],
          ['qwen', 1],
        ]);
        expect(await again.catalog.removeFile('llama')).toBe(1);
        expect((await again.catalog.models()).map((m) => m.id)).toEqual(['qwen']);
      } finally {
        await again.dispose();
      }
    } finally {
      await store.dispose();
    }
  });

  it('refuses a malformed entry and one past the catalog’s bounds', async () => {
    const { store } = await factory.open();
    try {
      const c = store.catalog;
      expect(await usageError(c.addFile('Bad Id', FILE, 1))).toBe('a model id uses a-z, 0-9 and ._:/-, at most 128 characters');
      expect(await usageError(c.addFile('m', { ...FILE, sha256: 'xyz' }, 1))).toMatch(/^catalog file: sha256: expected 32 bytes/);
      expect(await usageError(c.addFile('m', { ...FILE, bytes: 0 }, 1))).toMatch(/^catalog file: bytes: /);
      expect(await usageError(c.addFile('m', { ...FILE, url: 'ftp://x/y' }, 1))).toMatch(/^catalog file: url: expected an http\(s\) URL/);
      for (let i = 0; i < LIMITS.maxFilesPerCatalogModel; i++)
        await c.addFile('m', { ...FILE, sha256: i.toString(16).padStart(64, '0') }, 1);
      expect(await usageError(c.addFile('m', { ...FILE, sha256: 'f'.repeat(64) }, 1))).toBe(
        `m already has ${LIMITS.maxFilesPerCatalogModel} files, the most a catalog entry may list; remove one first`,
      );
      expect((await c.listFiles()).length).toBe(LIMITS.maxFilesPerCatalogModel);
    } finally {
      await store.dispose();
    }
  });

  it('creates the gateway key once and returns the same one after, across a restart; the seed is never in the public info', async () => {
    const { store, reopen } = await factory.open();
    try {
      expect(await store.catalog.gatewayKeyInfo()).toBeNull();
      // Two nodes starting at once still agree on one key.
      const [a, b] = await Promise.all([store.catalog.gatewayKey(5), store.catalog.gatewayKey(6)]);
      expect(toBase64Url(b.publicKey)).toBe(toBase64Url(a.publicKey));
      const info = (await store.catalog.gatewayKeyInfo())!;
      expect(info).toEqual({ keyId: a.keyId, publicKey: toBase64Url(a.publicKey), createdAt: expect.any(Number) });
      expect(gatewayKeyIdFor(fromBase64Url(info.publicKey))).toBe(info.keyId);
      expect(JSON.stringify(info)).not.toContain(toBase64Url(a.seed));
      const again = await reopen();
      try {
        expect((await again.catalog.gatewayKey(7)).seed).toEqual(a.seed);
        expect(await again.driver.all('SELECT key_id FROM gateway_keys')).toHaveLength(1);
      } finally {
        await again.dispose();
      }
    } finally {
      await store.dispose();
    }
  });

  it('rotates the key: the old one retired with its grace, the new one active, named by a statement the old key signed', async () => {
    const { store, reopen } = await factory.open();
    try {
      const c = store.catalog;
      const first = await c.gatewayKey(100);
      const { retired, active } = await c.rotateKey(200, 1000);
      expect(retired.keyId).toBe(first.keyId);
      const second = await c.gatewayKey(300);
      expect(second.keyId).toBe(active.keyId);
      expect(second.keyId).not.toBe(first.keyId);
      expect(await c.gatewayKeyInfo()).toEqual(active);
      await c.rotateKey(400, 5000);
      const keys = await c.listKeys();
      expect(keys.map((k) => [k.retiredAt, k.graceUntil])).toEqual([
        [null, null],
        [400, 5400],
        [200, 1200],
      ]);
      expect(keys[2]!.keyId).toBe(first.keyId);
      // Statements oldest first, each while its grace lasts; the chain leads from the first key to the active one.
      const all = await c.rotations(1200);
      expect(all.map((r) => r.rotation.rotatedAt)).toEqual([200, 400]);
      expect((await verifyRotation(all[0]!, { now: 1200 })).oldKey).toBe(toBase64Url(first.publicKey));
      expect(await followRotations(first.publicKey, fromBase64Url(keys[0]!.publicKey), all, { now: 1200 })).toHaveLength(2);
      expect((await c.rotations(1201)).map((r) => r.rotation.rotatedAt)).toEqual([400]);
      const again = await reopen();
      try {
        expect((await again.catalog.gatewayKey(500)).keyId).toBe(keys[0]!.keyId);
        expect(await again.catalog.rotations(0)).toEqual(all);
      } finally {
        await again.dispose();
      }
    } finally {
      await store.dispose();
    }
  });

  it('adds, renames, lists by appHash and removes releases; refuses a malformed one', async () => {
    const { store } = await factory.open();
    try {
      const c = store.catalog;
      expect(await c.addRelease({ version: '1.4.2', appHash: 'cd'.repeat(32) }, 10)).toBe(true);
      expect(await c.addRelease({ version: '1.4.1', appHash: 'ab'.repeat(32) }, 11)).toBe(true);
      expect(await c.addRelease({ version: '1.4.2-1', appHash: 'cd'.repeat(32) }, 12)).toBe(false);
      expect(await c.listReleases()).toEqual([
        { version: '1.4.1', appHash: 'ab'.repeat(32), addedAt: 11 },
        { version: '1.4.2-1', appHash: 'cd'.repeat(32), addedAt: 12 },
      ]);
      expect(await c.removeRelease('ab'.repeat(32))).toBe(1);
      expect(await c.removeRelease('ab'.repeat(32))).toBe(0);
      expect(await usageError(c.addRelease({ version: '1.0', appHash: 'AB'.repeat(32) }, 1))).toMatch(/^release: appHash/);
      expect(await usageError(c.addRelease({ version: ' ', appHash: 'ab'.repeat(32) }, 1))).toMatch(/^release: version/);
    } finally {
      await store.dispose();
    }
  });
}
