/**
 * The models directory (list, remove, adopt, re-verify before load), the catalog format, and the
 * memory-fit check.
 */
import { mkdtemp, open, rm, writeFile, mkdir, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelStore } from '../../../../src/main/agent/models/store.js';
import { modelChoice, plannedContextLength } from '../../../../src/main/agent/models/choice.js';
import { BUILT_IN_CATALOG, loadCatalogFile, mergeCatalogs, parseCatalog } from '../../../../src/main/agent/models/catalog.js';
import { checkMemoryFit, parseMeminfo, parseVmStat, type MemoryInfo } from '../../../../src/main/agent/models/memory.js';
import { estimateEngineMemory } from '../../../../src/main/agent/engine/estimate.js';
import { writeSyntheticModel, type InferenceEngine } from '../../../../src/main/agent/index.js';
import { catalogSchema } from '../../../../src/shared/index.js';
import { FakeEngine } from '../../../helpers/fake-engine.js';

let dir: string;
let n = 0;
const GiB = 1024 ** 3;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-store-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function storeWithTiny(): Promise<ModelStore> {
  const store = new ModelStore({ dir: path.join(dir, `s${++n}`) });
  await writeSyntheticModel({ path: path.join(store.dir, store.fileNameFor('synthetic-tiny')), shape: 'tiny' });
  await store.adopt('synthetic-tiny', { synthetic: true });
  return store;
}

describe('the models directory', () => {
  it('lists adopted models with what their manifest says, and removes them', async () => {
    const store = await storeWithTiny();
    const [m] = await store.list();
    expect(m).toMatchObject({ id: 'synthetic-tiny', file: 'synthetic-tiny.gguf', synthetic: true, source: null, contextLength: 4096 });
    expect(m!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await store.remove('synthetic-tiny')).toBe(true);
    expect(await store.list()).toEqual([]);
    expect(await store.remove('synthetic-tiny')).toBe(false);
  });

  it('keeps model ids with slashes and colons in safe file names', async () => {
    const store = new ModelStore({ dir: path.join(dir, `s${++n}`) });
    expect(store.fileNameFor('org/model:q4')).toBe('org_model_q4.gguf');
  });

  it('ignores a GGUF without a manifest and a manifest that does not parse', async () => {
    const store = await storeWithTiny();
    await writeFile(path.join(store.dir, 'stray.gguf'), 'GGUF');
    await writeFile(path.join(store.dir, 'broken.model.json'), '{"id": 3}');
    expect((await store.list()).map((m) => m.id)).toEqual(['synthetic-tiny']);
  });

  it('hashes the file again before a load in a new process, and refuses a file that changed', async () => {
    const store = await storeWithTiny();
    const model = await store.require('synthetic-tiny');
    const fresh = new ModelStore({ dir: store.dir });
    await fresh.verify(model);
    const handle = await open(fresh.pathOf(model), 'r+');
    await handle.write(Buffer.from([1]), 0, 1, 5000);
    await handle.close();
    await expect(fresh.verify(model)).rejects.toMatchObject({ code: 'NJ_MODEL_FILE_INVALID' });
  });

  it('notices a change even when size and time are put back (a new process hashes again)', async () => {
    const store = await storeWithTiny();
    const model = await store.require('synthetic-tiny');
    const file = store.pathOf(model);
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([7]), 0, 1, 4000);
    await handle.close();
    await utimes(file, new Date(model.installedAt), new Date(model.installedAt));
    await expect(new ModelStore({ dir: store.dir }).verify(model)).rejects.toMatchObject({ code: 'NJ_MODEL_FILE_INVALID' });
  });

  it('says a missing file is missing', async () => {
    const store = await storeWithTiny();
    const model = await store.require('synthetic-tiny');
    await rm(store.pathOf(model));
    await expect(store.verify(model)).rejects.toMatchObject({ code: 'NJ_MODEL_FILE_INVALID', message: expect.stringContaining('missing') });
  });

  it('lists partial downloads', async () => {
    const store = new ModelStore({ dir: path.join(dir, `s${++n}`) });
    await mkdir(store.dir, { recursive: true });
    await writeFile(path.join(store.dir, 'x.gguf.part'), Buffer.alloc(10));
    expect(await store.partials()).toEqual([{ file: 'x.gguf.part', bytes: 10 }]);
  });
});

describe('loading an installed model', () => {
  const plenty: MemoryInfo = { totalBytes: 64 * GiB, availableBytes: 32 * GiB, swapFreeBytes: 0 };

  it('checks hash and memory, then loads with the options given', async () => {
    const store = await storeWithTiny();
    const model = await store.require('synthetic-tiny');
    let given: unknown;
    const choice = modelChoice({
      store,
      model,
      slots: 3,
      contextLength: 512,
      memoryProbe: async () => plenty,
      loadEngine: async (o) => {
        given = o;
        return new FakeEngine() as InferenceEngine;
      },
    });
    expect(choice.served).toEqual({ id: 'synthetic-tiny', sha256: model.sha256, synthetic: true, contextLength: 512 });
    await choice.load();
    expect(given).toMatchObject({ modelPath: store.pathOf(model), slots: 3, contextLength: 512 });
  });

  it('refuses a model that does not fit, and one that needs swap unless swap is allowed', async () => {
    const store = await storeWithTiny();
    const model = await store.require('synthetic-tiny');
    const tight: MemoryInfo = { totalBytes: 8 * GiB, availableBytes: 1000, swapFreeBytes: 0 };
    const swappy: MemoryInfo = { totalBytes: 8 * GiB, availableBytes: 1000, swapFreeBytes: 8 * GiB };
    const load = async (): Promise<InferenceEngine> => new FakeEngine();
    await expect(modelChoice({ store, model, memoryProbe: async () => tight, loadEngine: load }).load()).rejects.toMatchObject({
      code: 'NJ_MODEL_DOES_NOT_FIT',
      message: expect.stringContaining('does not fit'),
    });
    await expect(modelChoice({ store, model, memoryProbe: async () => swappy, loadEngine: load }).load()).rejects.toMatchObject({
      code: 'NJ_MODEL_DOES_NOT_FIT',
      message: expect.stringContaining('allowSwap'),
    });
    await expect(
      modelChoice({ store, model, memoryProbe: async () => swappy, allowSwap: true, loadEngine: load }).load(),
    ).resolves.toBeInstanceOf(FakeEngine);
  });

  it('plans the context the engine will use', () => {
    const base = {
      id: 'm',
      file: 'm.gguf',
      sha256: 'a'.repeat(64),
      bytes: 1,
      source: null,
      synthetic: false,
      installedAt: 0,
      minMemoryBytes: null,
      license: null,
    };
    expect(plannedContextLength({ ...base, contextLength: 131072 }, null)).toBe(4096);
    expect(plannedContextLength({ ...base, contextLength: 2048 }, null)).toBe(2048);
    expect(plannedContextLength({ ...base, contextLength: null }, 8192)).toBe(8192);
  });

  it('estimates more memory for more slots and longer contexts', async () => {
    const store = await storeWithTiny();
    const file = store.pathOf(await store.require('synthetic-tiny'));
    const one = await estimateEngineMemory({ modelPath: file, slots: 1, contextLength: 1024 });
    const four = await estimateEngineMemory({ modelPath: file, slots: 4, contextLength: 4096 });
    expect(one.modelBytes).toBeGreaterThan(0);
    expect(four.contextBytes).toBeGreaterThan(one.contextBytes);
    expect(four.totalBytes).toBe(Math.ceil((four.modelBytes + four.contextBytes) * 1.1));
  });
});

describe('memory', () => {
  it('reads Linux MemAvailable and SwapFree', () => {
    const text =
      'MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    9000000 kB\n' +
      'SwapTotal: 2000000 kB\nSwapFree:        1500000 kB\n';
    expect(parseMeminfo(text)).toEqual({ totalBytes: 16000000 * 1024, availableBytes: 9000000 * 1024, swapFreeBytes: 1500000 * 1024 });
  });

  it('reads macOS vm_stat (free + inactive + speculative + purgeable pages) and vm.swapusage', () => {
    // Written after the layout macOS prints for `vm_stat` and `sysctl vm.swapusage` (16 KiB pages on
    // Apple Silicon); not captured on a Mac here.
    const vmStat = [
      'Mach Virtual Memory Statistics: (page size of 16384 bytes)',
      'Pages free:                               10000.',
      'Pages active:                            200000.',
      'Pages inactive:                           50000.',
      'Pages speculative:                         5000.',
      'Pages throttled:                              0.',
      'Pages wired down:                        100000.',
      'Pages purgeable:                           2000.',
    ].join('\n');
    const swap = 'vm.swapusage: total = 2048.00M  used = 512.00M  free = 1536.00M  (encrypted)';
    expect(parseVmStat(vmStat, swap, 16 * GiB)).toEqual({
      totalBytes: 16 * GiB,
      availableBytes: 67000 * 16384,
      swapFreeBytes: 1536 * 1024 ** 2,
    });
  });

  it('judges fit against free memory, swap and the catalog minimum', () => {
    const info: MemoryInfo = { totalBytes: 16 * GiB, availableBytes: 6 * GiB, swapFreeBytes: 2 * GiB };
    expect(checkMemoryFit({ requiredBytes: 5 * GiB, minMemoryBytes: null, info }).verdict).toBe('fits');
    expect(checkMemoryFit({ requiredBytes: 6 * GiB, minMemoryBytes: null, info }).verdict).toBe('fits');
    expect(checkMemoryFit({ requiredBytes: 7 * GiB, minMemoryBytes: null, info }).verdict).toBe('needs-swap');
    expect(checkMemoryFit({ requiredBytes: 9 * GiB, minMemoryBytes: null, info })).toMatchObject({
      verdict: 'does-not-fit',
      message: 'The model does not fit: it needs about 9.0 GiB; 6.0 GiB of 16.0 GiB memory is free, 2.0 GiB swap.',
    });
    expect(checkMemoryFit({ requiredBytes: 1, minMemoryBytes: 32 * GiB, info }).verdict).toBe('does-not-fit');
  });
});

describe('the catalog', () => {
  it('the built-in catalog is valid: real public URLs, no invented hashes', () => {
    expect(catalogSchema.parse(BUILT_IN_CATALOG)).toEqual(BUILT_IN_CATALOG);
    for (const m of BUILT_IN_CATALOG.models) {
      expect(m.url).toMatch(/^https:\/\/huggingface\.co\/[^/]+\/[^/]+\/resolve\/main\/[^/]+\.gguf$/);
      expect(m.verified).toBe(false);
      expect(m.sha256).toBeNull();
    }
  });

  it('names the bad field of a catalog file, and refuses duplicates and a verified entry without a hash', async () => {
    const entry = { ...BUILT_IN_CATALOG.models[0]!, id: 'extra-model' };
    expect(() => parseCatalog({ v: 1, models: [{ ...entry, contextLength: 0 }] }, 'cat.json')).toThrow(
      /cat\.json: models\.0\.contextLength/,
    );
    expect(() => parseCatalog({ v: 1, models: [entry, entry] }, 'cat.json')).toThrow(/appears twice/);
    expect(() => parseCatalog({ v: 1, models: [{ ...entry, verified: true }] }, 'cat.json')).toThrow(/marked verified but has no sha256/);
    expect(() => parseCatalog({ v: 1, models: [{ ...entry, url: 'ftp://x/y.gguf' }] }, 'cat.json')).toThrow(/models\.0\.url/);
    const file = path.join(dir, 'catalog.json');
    await writeFile(file, JSON.stringify({ v: 1, models: [{ ...entry, sha256: 'ab'.repeat(32), bytes: 10, verified: true }] }));
    const extra = await loadCatalogFile(file);
    const merged = mergeCatalogs(BUILT_IN_CATALOG, extra);
    expect(merged).toHaveLength(BUILT_IN_CATALOG.models.length + 1);
    expect(merged.at(-1)).toMatchObject({ id: 'extra-model', verified: true });
  });
});
