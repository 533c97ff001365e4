/**
 * The disk fills while a model downloads (issue 17): the free-space check before the download
 * passed, then another writer took the space, and a write of the partial file fails with ENOSPC.
 * The write is injected (node:fs/promises' `open` wrapped for `.part` files, so a handle's write
 * fails once a byte budget is spent, after writing what fitted, as a real full disk does); no
 * tmpfs is needed. The user sees NJ_DISK_FULL saying what to do; no half-written model is at a
 * name the agent loads; after space is freed the same pull resumes from its last checkpoint and
 * lands the file, hash checked.
 */
import { createHash } from 'node:crypto';
import type * as FsPromises from 'node:fs/promises';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ModelStore } from '../../src/main/agent/models/store.js';
import { writeSyntheticModel } from '../../src/main/agent/index.js';
import { NightjarError, type CatalogEntry, type DownloadProgress } from '../../src/shared/index.js';
import { perTestFetch } from '../helpers/http-client.js';
import { startModelServer, type ModelServer } from '../main/support/model-server.js';

/** Bytes the disk still takes in `.part` files; Infinity when it has room. */
const disk = vi.hoisted(() => ({ free: Infinity, refused: 0 }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof FsPromises>();
  const open = async (...args: Parameters<typeof real.open>): Promise<Awaited<ReturnType<typeof real.open>>> => {
    const handle = await real.open(...args);
    if (!String(args[0]).endsWith('.part')) return handle;
    const write = handle.write.bind(handle) as (buffer: Uint8Array) => Promise<{ bytesWritten: number; buffer: Uint8Array }>;
    Object.assign(handle, {
      write: async (buffer: Uint8Array) => {
        if (buffer.length <= disk.free) {
          disk.free -= buffer.length;
          return write(buffer);
        }
        // What fits is written, then the disk is full.
        const fits = buffer.subarray(0, disk.free);
        disk.free = 0;
        if (fits.length > 0) await write(fits);
        disk.refused++;
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
      },
    });
    return handle;
  };
  return { ...real, open, default: { ...real, open } };
});

const http = perTestFetch();
let dir: string;
let file: Buffer;
let sha256: string;
let server: ModelServer | null = null;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-diskfull-'));
  const written = await writeSyntheticModel({ path: path.join(dir, 'source.gguf'), shape: 'tiny' });
  file = await readFile(written.path);
  sha256 = createHash('sha256').update(file).digest('hex');
});
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(async () => {
  await server?.close();
  server = null;
  disk.free = Infinity;
});

describe('the disk fills during a model download', () => {
  // Pins the download's handling of a refused write (download.ts diskFullOr): without it the user
  // gets Node's bare "ENOSPC: no space left on device, write" and no 'failed' progress event
  // (checked once: the first expectation then fails). Pins the partial file's checkpoints and
  // the resume from them (prepare() truncates to the durable prefix, so what was half-written past
  // the last checkpoint is never spliced in) and landing only on a matching hash.
  it('NJ_DISK_FULL with what to do, no half-written model, and the pull resumes once there is room', async () => {
    server = await startModelServer(file);
    const models = path.join(dir, 'models');
    const store = new ModelStore({ dir: models });
    const entry: CatalogEntry = {
      id: 'test-model-q8_0',
      name: 'Test model',
      url: server.url,
      sha256,
      bytes: file.length,
      quantization: 'F32',
      contextLength: 4096,
      minMemoryBytes: 0,
      license: 'MIT',
      verified: true,
    };
    const options = { fetch: http.fetch, backoff: { initialMs: 1 }, reserveBytes: 0, progressIntervalMs: 0, checkpointBytes: 64 * 1024 };
    expect(file.length).toBeGreaterThan(300 * 1024);
    disk.free = 200 * 1024 + 123;
    const progress: DownloadProgress[] = [];
    const error = await store.pull(entry, { ...options, onProgress: (p) => progress.push(p) }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(NightjarError);
    expect({ code: (error as NightjarError).code, message: (error as Error).message }).toEqual({
      code: 'NJ_DISK_FULL',
      message: expect.stringMatching(
        /^The disk filled while downloading test-model-q8_0 \(\d+ bytes written\)\. Free disk space and pull it again: it resumes\.$/,
      ),
    });
    expect(disk.refused).toBe(1);
    expect(progress.at(-1)).toMatchObject({ phase: 'failed', error: { code: 'NJ_DISK_FULL' } });
    // Nothing at the model's name: only the partial file and its state.
    const name = store.fileNameFor(entry.id);
    expect((await readdir(models)).filter((f) => f.startsWith(name)).sort()).toEqual([`${name}.part`, `${name}.part.json`]);
    expect(await store.list()).toEqual([]);

    // Space freed: the same pull resumes from its last checkpoint and lands the file.
    disk.free = Infinity;
    const resumed: DownloadProgress[] = [];
    const installed = await store.pull(entry, { ...options, onProgress: (p) => resumed.push(p) });
    expect(installed).toMatchObject({ id: entry.id, sha256, bytes: file.length });
    // It resumes from the bytes written whole before the refused write (the error said how many);
    // the part of that write which fitted was cut off at the resume, not spliced in.
    const kept = Number(/\((\d+) bytes written\)/.exec((error as Error).message)![1]);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(200 * 1024 + 123);
    expect(resumed.find((p) => p.phase === 'hashing-partial')?.resumedFromBytes).toBe(kept);
    expect((await readFile(store.pathOf(installed))).equals(file)).toBe(true);
    expect((await readdir(models)).filter((f) => f.endsWith('.part') || f.endsWith('.part.json'))).toEqual([]);
  });
});
