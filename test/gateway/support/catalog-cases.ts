/**
 * Catalog and gateway-key cases shared by the SQLite suite (catalog.store.test.ts) and the
 * PostgreSQL suite (store.services.test.ts): the same behaviour on both databases.
 */
import { expect, it } from 'vitest';
import { LIMITS, NightjarError, fromBase64Url, gatewayKeyIdFor, toBase64Url } from '../../../src/shared/index.js';
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
}
