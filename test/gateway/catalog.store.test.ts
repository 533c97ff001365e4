/**
 * The model catalog and the gateway key on real SQLite files in a temp dir. The same cases run on
 * PostgreSQL in store.services.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelCatalog, openSqliteStore } from '../../src/gateway/index.js';
import { toBase64Url } from '../../src/shared/index.js';
import { catalogCases } from './support/catalog-cases.js';
import { FakeClock } from './support/fake-clock.js';

const FILE = { sha256: 'cd'.repeat(32), bytes: 1000, name: 'a.gguf', quantization: 'Q4_K_M', contextLength: 4096 };

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-catalog-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('catalog on SQLite', () => {
  catalogCases({
    async open() {
      const file = path.join(dir, `catalog-${n++}.sqlite`);
      return { store: await openSqliteStore({ path: file }), reopen: () => openSqliteStore({ path: file }) };
    },
  });
});

describe('the gateway’s copy of the catalog (ModelCatalog, on a fake clock)', () => {
  it('reads the store again only when its copy is refreshMs old, and signs again on a change or after refreshMs', async () => {
    const store = await openSqliteStore({ path: path.join(dir, `catalog-${n++}.sqlite`) });
    const clock = new FakeClock(1_000_000);
    const catalog = await ModelCatalog.load({
      store: store.catalog,
      key: await store.catalog.gatewayKey(clock.now()),
      clock,
      refreshMs: 2000,
    });
    try {
      const changes: number[] = [];
      catalog.onChanged(() => changes.push(clock.now()));
      const first = await catalog.signed();
      expect({ models: first.catalog.models, issuedAt: first.catalog.issuedAt }).toEqual({ models: [], issuedAt: 1_000_000 });
      await store.catalog.addFile('m', FILE, clock.now());
      // Within refreshMs: the copy (and its signature) stand; the rule still says "not listed".
      clock.advance(1999);
      expect(await catalog.signed()).toBe(first);
      expect([catalog.lists('m'), catalog.offers('m', FILE.sha256), catalog.offers('other', FILE.sha256)]).toEqual([false, false, false]);
      clock.advance(1);
      const second = await catalog.signed();
      expect({ ids: second.catalog.models.map((m) => m.id), issuedAt: second.catalog.issuedAt, changes }).toEqual({
        ids: ['m'],
        issuedAt: 1_002_000,
        changes: [1_002_000],
      });
      expect([catalog.catalogued('m', FILE.sha256), catalog.offers('m', FILE.sha256), catalog.offers('m', 'ab'.repeat(32))]).toEqual([
        true,
        true,
        false,
      ]);
      // Unchanged, but older than refreshMs: signed again, with a fresh issuedAt; no change event.
      clock.advance(2000);
      const third = await catalog.signed();
      expect({ same: third.catalog.models, issuedAt: third.catalog.issuedAt, changes: changes.length }).toEqual({
        same: second.catalog.models,
        issuedAt: 1_004_000,
        changes: 1,
      });
    } finally {
      catalog.dispose();
      await store.dispose();
    }
  });

  it('moves to the store’s new active key at its next read after a rotation, and re-signs the releases list on a change', async () => {
    const store = await openSqliteStore({ path: path.join(dir, `catalog-${n++}.sqlite`) });
    const clock = new FakeClock(1_000_000);
    const first = await store.catalog.gatewayKey(clock.now());
    const catalog = await ModelCatalog.load({ store: store.catalog, key: first, clock, refreshMs: 2000 });
    try {
      const list = await catalog.signedReleases();
      expect({ releases: list.releases.releases, key: list.releases.gatewayKey }).toEqual({
        releases: [],
        key: toBase64Url(first.publicKey),
      });
      await store.catalog.addRelease({ version: '1.0.0', appHash: 'ab'.repeat(32) }, clock.now());
      const { active } = await store.catalog.rotateKey(clock.now(), 60_000);
      clock.advance(1999);
      expect(await catalog.signedReleases()).toBe(list);
      expect(catalog.gatewayKey.keyId).toBe(first.keyId);
      clock.advance(1);
      const next = await catalog.signedReleases();
      expect(next.releases.releases).toEqual([{ version: '1.0.0', appHash: 'ab'.repeat(32) }]);
      expect(next.releases.gatewayKey).toBe(active.publicKey);
      expect(catalog.gatewayKey.keyId).toBe(active.keyId);
      expect((await catalog.signed()).catalog.gatewayKey).toBe(active.publicKey);
      expect(catalog.rotations.map((r) => r.rotation.oldKey)).toEqual([toBase64Url(first.publicKey)]);
    } finally {
      catalog.dispose();
      await store.dispose();
    }
  });
});
