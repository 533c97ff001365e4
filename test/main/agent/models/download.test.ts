/**
 * Model downloads against a local HTTP server serving a synthetic GGUF file: whole downloads with
 * progress, resume after the server drops the connection, resume after the downloading process
 * is killed with SIGKILL, corrupted bytes rejected by the hash, servers that ignore ranges, a full
 * disk, and never a partial file where the agent looks for models.
 */
import { spawn } from 'node:child_process';
import { readFile, readdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { downloadFile, partialPaths } from '../../../../src/main/agent/models/download.js';
import { ModelStore } from '../../../../src/main/agent/models/store.js';
import { modelChoice } from '../../../../src/main/agent/models/choice.js';
import { BUILT_IN_CATALOG } from '../../../../src/main/agent/models/catalog.js';
import { loadEngine, writeSyntheticModel } from '../../../../src/main/agent/index.js';
import { NightjarError, type CatalogEntry, type DownloadProgress } from '../../../../src/shared/index.js';
import { perTestFetch } from '../../../helpers/http-client.js';
import { startModelServer, type ModelServer } from '../../support/model-server.js';

const ROOT = path.resolve(import.meta.dirname, '../../../..');
const http = perTestFetch();

let dir: string;
let file: Buffer;
let sha256: string;
let server: ModelServer | null = null;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-download-'));
  const written = await writeSyntheticModel({ path: path.join(dir, 'source.gguf'), shape: 'tiny' });
  file = await readFile(written.path);
  sha256 = createHash('sha256').update(file).digest('hex');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await server?.close();
  server = null;
});

/** A fresh models directory and a catalog entry pointing at the server. */
function setup(url: string, entry: Partial<CatalogEntry> = {}): { store: ModelStore; entry: CatalogEntry } {
  const store = new ModelStore({ dir: path.join(dir, `models-${++n}`) });
  return {
    store,
    entry: {
      id: 'test-model-q8_0',
      name: 'Test model',
      url,
      sha256,
      bytes: file.length,
      quantization: 'F32',
      contextLength: 4096,
      minMemoryBytes: 0,
      license: 'MIT',
      verified: true,
      ...entry,
    },
  };
}

const quick = { fetch: http.fetch, backoff: { initialMs: 1 }, reserveBytes: 0, progressIntervalMs: 0 };

async function files(d: string): Promise<string[]> {
  return (await readdir(d).catch(() => [] as string[])).sort();
}

describe('downloads', () => {
  it('downloads, checks the hash while streaming, reports progress, and lands by rename with a manifest', async () => {
    server = await startModelServer(file);
    const { store, entry } = setup(server.url);
    const progress: DownloadProgress[] = [];
    const installed = await store.pull(entry, { ...quick, onProgress: (p) => progress.push(p) });
    // The file served is the synthetic tiny model: its metadata says so, and a pull keeps that
    // (a synthetic file must never reach a bundle as a real model).
    expect(installed).toMatchObject({ id: entry.id, sha256, bytes: file.length, source: server.url, synthetic: true });
    expect(await readFile(store.pathOf(installed))).toEqual(file);
    expect(await files(store.dir)).toEqual(['test-model-q8_0.gguf', 'test-model-q8_0.model.json']);
    expect(progress[0]).toMatchObject({ phase: 'starting', receivedBytes: 0 });
    expect(progress.at(-1)).toMatchObject({ phase: 'done', receivedBytes: file.length, totalBytes: file.length });
    expect(progress.map((p) => p.phase)).toContain('verifying');
    const received = progress.filter((p) => p.phase === 'downloading').map((p) => p.receivedBytes);
    expect(received).toEqual([...received].sort((a, b) => a - b));
    expect((await store.list()).map((m) => m.id)).toEqual([entry.id]);
    expect(server.requests).toHaveLength(1);
  });

  it('resumes with Range after the server drops the connection mid-file, twice', async () => {
    server = await startModelServer(file, { dropAfterBytes: 40_000, dropTimes: 2 });
    const { store, entry } = setup(server.url);
    const installed = await store.pull(entry, quick);
    expect(await readFile(store.pathOf(installed))).toEqual(file);
    // Each resume asks for the rest from where the bytes on disk end (at most where the server cut).
    const from = server.requests.map((r) => (r.range === null ? null : Number(/^bytes=(\d+)-$/.exec(r.range)?.[1])));
    expect(from[0]).toBeNull();
    expect(from[1]).toBeGreaterThan(0);
    expect(from[1]).toBeLessThanOrEqual(40_000);
    expect(from[2]).toBeGreaterThan(from[1]!);
    expect(from[2]).toBeLessThanOrEqual(80_000);
    expect(server.requests.slice(1).map((r) => r.ifRange)).toEqual(['"v1"', '"v1"']);
    expect(server.requests.map((r) => r.status)).toEqual([200, 206, 206]);
  });

  it('gives up after the retries, keeps the partial file for a resume, and a later pull resumes it', async () => {
    server = await startModelServer(file, { dropAfterBytes: 30_000, dropTimes: 2 });
    const { store, entry } = setup(server.url);
    const error = await store.pull(entry, { ...quick, retries: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NightjarError);
    expect(error).toMatchObject({ code: 'NJ_DOWNLOAD_FAILED', message: expect.stringContaining('kept for a resume') });
    expect(await files(store.dir)).toEqual(['test-model-q8_0.gguf.part', 'test-model-q8_0.gguf.part.json']);
    // Not a model: nothing lists it and nothing can load it.
    expect(await store.list()).toEqual([]);
    await expect(store.require(entry.id)).rejects.toMatchObject({ code: 'NJ_MODEL_NOT_INSTALLED' });
    const kept = (
      JSON.parse(await readFile(partialPaths(store.dir, store.fileNameFor(entry.id)).state, 'utf8')) as { durableBytes: number }
    ).durableBytes;
    expect(kept).toBeGreaterThan(0);

    const installed = await store.pull(entry, quick);
    expect(await readFile(store.pathOf(installed))).toEqual(file);
    expect(server.requests.at(-1)).toMatchObject({ range: `bytes=${kept}-`, status: 206 });
  });

  // Security: fails if downloadFile stops comparing the streamed sha256 with the expected one.
  it('rejects corrupted bytes by the hash: deletes the partial file and installs nothing', async () => {
    server = await startModelServer(file, { corruptAt: 12_345 });
    const { store, entry } = setup(server.url);
    const progress: DownloadProgress[] = [];
    const error = await store.pull(entry, { ...quick, onProgress: (p) => progress.push(p) }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'NJ_MODEL_FILE_INVALID',
      message: expect.stringMatching(/has sha256 [0-9a-f]{64}, not the expected .*; it was deleted/),
    });
    expect(await files(store.dir)).toEqual([]);
    expect(await store.list()).toEqual([]);
    expect(progress.at(-1)).toMatchObject({ phase: 'failed', error: { code: 'NJ_MODEL_FILE_INVALID' } });
  });

  it('rejects a file corrupted in the part fetched after a resume', async () => {
    server = await startModelServer(file, { dropAfterBytes: 50_000, corruptAt: 90_000 });
    const { store, entry } = setup(server.url);
    await expect(store.pull(entry, quick)).rejects.toMatchObject({ code: 'NJ_MODEL_FILE_INVALID' });
    expect(await files(store.dir)).toEqual([]);
  });

  it('starts over when the server ignores the range and sends the whole file', async () => {
    server = await startModelServer(file, { dropAfterBytes: 50_000, ignoreRange: true });
    const { store, entry } = setup(server.url);
    const installed = await store.pull(entry, quick);
    expect(await readFile(store.pathOf(installed))).toEqual(file);
    expect(server.requests.map((r) => r.status)).toEqual([200, 200]);
    expect(server.requests[0]!.range).toBeNull();
    expect(server.requests[1]!.range).toMatch(/^bytes=[1-9]\d*-$/);
  });

  it('starts over when the file changed on the server (If-Range does not match)', async () => {
    server = await startModelServer(file, { dropAfterBytes: 50_000 });
    const { store, entry } = setup(server.url);
    const first = await store.pull(entry, { ...quick, retries: 0 }).catch((e: unknown) => e);
    expect(first).toMatchObject({ code: 'NJ_DOWNLOAD_FAILED' });
    server.options = { etag: '"v2"' };
    const installed = await store.pull(entry, quick);
    expect(await readFile(store.pathOf(installed))).toEqual(file);
    expect(server.requests.at(-1)).toMatchObject({ range: expect.stringMatching(/^bytes=[1-9]\d*-$/), ifRange: '"v1"', status: 200 });
  });

  it('refuses before writing when the disk is too full', async () => {
    server = await startModelServer(file);
    const { store, entry } = setup(server.url);
    const error = await store.pull(entry, { ...quick, freeBytes: async () => file.length - 1 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NJ_DISK_FULL', message: expect.stringContaining(`needs ${file.length} more bytes`) });
    expect((await files(store.dir)).filter((f) => f.endsWith('.gguf') || f.endsWith('.part'))).toEqual([]);
  });

  it('refuses a server that offers another size than the catalog says', async () => {
    server = await startModelServer(file);
    const { store, entry } = setup(server.url, { bytes: file.length + 1 });
    await expect(store.pull(entry, quick)).rejects.toMatchObject({
      code: 'NJ_DOWNLOAD_FAILED',
      message: expect.stringContaining('the catalog says'),
    });
  });

  it('does not retry a 404, and says to check the URL', async () => {
    server = await startModelServer(file, { status: 404 });
    const { store, entry } = setup(server.url);
    await expect(store.pull(entry, quick)).rejects.toMatchObject({
      code: 'NJ_DOWNLOAD_FAILED',
      message: expect.stringContaining('HTTP 404'),
    });
    expect(server.requests).toHaveLength(1);
  });

  it('retries a 503', async () => {
    server = await startModelServer(file, { status: 503 });
    const { store, entry } = setup(server.url);
    let retried!: () => void;
    const retry = new Promise<void>((resolve) => (retried = resolve));
    let requests = 0;
    const counting: typeof fetch = async (input, init) => {
      const response = await http.fetch(input, init);
      if (++requests === 2) retried(); // the second answer, a 503 too, is in
      return response;
    };
    const pulling = store.pull(entry, { ...quick, fetch: counting, retries: 5, backoff: { initialMs: 5 } });
    await retry;
    server.options = {};
    await pulling;
    expect(server.requests.map((r) => r.status).slice(0, 2)).toEqual([503, 503]);
  });

  it('never installs an entry without a known hash: the pull must be given one', async () => {
    server = await startModelServer(file);
    const { store, entry } = setup(server.url, { sha256: null, verified: false });
    await expect(store.pull(entry, quick)).rejects.toMatchObject({ code: 'NJ_USAGE', message: expect.stringContaining('--sha256') });
    expect(server.requests).toHaveLength(0);
    const installed = await store.pull(entry, { ...quick, sha256 });
    expect(installed.sha256).toBe(sha256);
    // Every built-in entry is unverified here and carries no hash, so each needs one at pull time.
    expect(BUILT_IN_CATALOG.models.every((m) => m.sha256 === null && !m.verified)).toBe(true);
  });

  it('an aborted download keeps its partial file and resumes', async () => {
    server = await startModelServer(file, { throttle: { chunkBytes: 8192, intervalMs: 5 } });
    const { store, entry } = setup(server.url);
    const abort = new AbortController();
    let halfway!: () => void;
    const reached = new Promise<void>((resolve) => (halfway = resolve));
    const pulling = store.pull(entry, {
      ...quick,
      checkpointBytes: 16_384,
      signal: abort.signal,
      onProgress: (p) => p.receivedBytes >= 50_000 && halfway(),
    });
    await reached;
    abort.abort(new Error('stop'));
    await expect(pulling).rejects.toThrow('stop');
    server.options = {};
    const installed = await store.pull(entry, quick);
    expect(await readFile(store.pathOf(installed))).toEqual(file);
    expect(Number(/bytes=(\d+)-/.exec(server.requests.at(-1)!.range ?? '')?.[1])).toBeGreaterThanOrEqual(49_152);
  });

  it('disposing the store aborts its downloads; the partial file stays for a resume by the next store', async () => {
    server = await startModelServer(file, { throttle: { chunkBytes: 8192, intervalMs: 5 } });
    const { store, entry } = setup(server.url);
    let halfway!: () => void;
    const reached = new Promise<void>((resolve) => (halfway = resolve));
    const pulling = store.pull(entry, { ...quick, checkpointBytes: 16_384, onProgress: (p) => p.receivedBytes >= 50_000 && halfway() });
    await reached;
    await store.dispose();
    await expect(pulling).rejects.toMatchObject({ code: 'NJ_CANCELLED' });
    await expect(store.pull(entry, quick)).rejects.toMatchObject({ code: 'NJ_CANCELLED' });
    expect(await files(store.dir)).toEqual([`${store.fileNameFor(entry.id)}.part`, `${store.fileNameFor(entry.id)}.part.json`]);
    server.options = {};
    const next = new ModelStore({ dir: store.dir });
    const installed = await next.pull(entry, quick);
    expect(await readFile(next.pathOf(installed))).toEqual(file);
    expect(Number(/bytes=(\d+)-/.exec(server.requests.at(-1)!.range ?? '')?.[1])).toBeGreaterThanOrEqual(49_152);
  });
});

describe('a download killed with SIGKILL', () => {
  it('resumes in-process from the last durable checkpoint; the hash checks; the partial file was never loadable', async () => {
    server = await startModelServer(file, { throttle: { chunkBytes: 4096, intervalMs: 10 } });
    const { store, entry } = setup(server.url);
    const fileName = store.fileNameFor(entry.id);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'test/main/support/pull-child.ts'), server.url, store.dir, fileName, sha256, entry.id],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NODE_OPTIONS: '' },
      },
    );
    let out = '';
    const received = (): number =>
      Math.max(
        0,
        ...out
          .split('\n')
          .slice(0, -1) // whole lines only
          .map((l) => (JSON.parse(l) as { receivedBytes?: number }).receivedBytes ?? 0),
      );
    const halfway = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (received() > file.length / 2) resolve();
      }),
    );
    child.stderr.resume();
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, signal) => r(signal)));
    await Promise.race([
      halfway,
      exited.then(() => {
        throw new Error(`the child exited before it was half-way: ${out}`);
      }),
    ]);
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(out).not.toContain('finished');

    // What the killed process left: a partial file and its state; no model.
    const { part, state } = partialPaths(store.dir, fileName);
    const partSize = (await stat(part)).size;
    expect(partSize).toBeGreaterThan(0);
    expect(partSize).toBeLessThan(file.length);
    const durable = (JSON.parse(await readFile(state, 'utf8')) as { durableBytes: number }).durableBytes;
    expect(durable).toBeGreaterThan(0);
    expect(await store.list()).toEqual([]);
    await expect(store.require(entry.id)).rejects.toMatchObject({ code: 'NJ_MODEL_NOT_INSTALLED' });

    server.options = {};
    const before = server.requests.length;
    const installed = await store.pull(entry, quick);
    expect(server.requests.slice(before)).toEqual([{ range: `bytes=${durable}-`, ifRange: '"v1"', status: 206 }]);
    expect(installed.sha256).toBe(sha256);
    expect(await readFile(store.pathOf(installed))).toEqual(file);

    // And it is a model llama.cpp loads.
    const engine = await modelChoice({ store, model: installed, slots: 1, loadEngine: (o) => loadEngine({ ...o, threads: 1 }) }).load();
    try {
      const r = await engine.generate({ messages: [{ role: 'user', content: 'hi' }], sampling: { maxTokens: 3, temperature: 0 } });
      expect(r.usage.completionTokens).toBe(3);
    } finally {
      await engine.dispose();
    }
  }, 60_000);
});

describe('downloading through plain fetch', () => {
  it('works with the global fetch too (no injected one)', async () => {
    server = await startModelServer(file);
    const { entry } = setup(server.url);
    const target = path.join(dir, `plain-${++n}`);
    const r = await downloadFile({
      url: entry.url,
      dir: target,
      fileName: 'x.gguf',
      sha256,
      modelId: entry.id,
      reserveBytes: 0,
      fetch: http.fetch,
    });
    expect(r).toMatchObject({ bytes: file.length, resumedFromBytes: 0, requests: 1 });
  });
});
