/**
 * Cold start: how long the agent's engine takes to load a model (and produce its first token),
 * against the time it takes just to read the file — from the page cache (warm) and from disk
 * (cold).
 */
import { execFile } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { defaultThreads, loadEngine, type SyntheticShapeName } from '../src/main/agent/index.js';
import { directLlama } from './llama-direct.js';
import { ensureModel } from './models.js';
import type { AreaReport, BenchContext } from './report.js';
import { fmt, fmtBytes, fmtRatio, now } from './stats.js';

const run$ = promisify(execFile);

/** Reads the whole file into one reused 16 MiB buffer (the /dev/null of Node); returns ms. */
async function readWhole(path: string): Promise<number> {
  const started = now();
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(16 << 20);
    let position = 0;
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
    }
  } finally {
    await file.close();
  }
  return now() - started;
}

/** Bytes of `path` in the page cache, from util-linux `fincore`; null where it is missing. */
async function cachedBytes(path: string): Promise<number | null> {
  try {
    const { stdout } = await run$('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]);
    const n = Number(stdout.trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/**
 * Evicts `path` from the page cache. First `dd iflag=nocache count=0` (posix_fadvise DONTNEED
 * on this one file: needs no privilege and leaves everyone else's cache alone); if pages remain
 * and this process may, the kernel-wide `drop_caches`. Returns how it was done, or null.
 */
async function evict(path: string): Promise<string | null> {
  try {
    await run$('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
  } catch {
    // no GNU dd
  }
  let left = await cachedBytes(path);
  if (left !== null && left < 1 << 20) return 'posix_fadvise(DONTNEED) on the file (dd iflag=nocache), checked with fincore';
  try {
    await run$('sync');
    await writeFile('/proc/sys/vm/drop_caches', '1');
    left = await cachedBytes(path);
    if (left === null || left < 1 << 20)
      return 'the kernel-wide page cache drop (/proc/sys/vm/drop_caches)' + (left === null ? ', unchecked' : ', checked with fincore');
  } catch {
    // not permitted
  }
  return null;
}

interface LoadFigures {
  loadMs: number;
  firstTokenMs: number;
  /** Bytes of the file in the page cache just before the load, after it, and after the first token (null without fincore). */
  cached: { before: number | null; afterLoad: number | null; afterFirstToken: number | null };
}

/** loadEngine with the agent's defaults, then one token; disposes the engine. */
async function loadAndFirstToken(path: string, threads: number): Promise<LoadFigures> {
  const before = await cachedBytes(path);
  const started = now();
  const engine = await loadEngine({ modelPath: path, threads });
  const loadMs = now() - started;
  try {
    const afterLoad = await cachedBytes(path);
    const t = now();
    await engine.generate({ messages: [{ role: 'user', content: 'Hi' }], sampling: { maxTokens: 1, temperature: 0 } });
    const firstTokenMs = now() - t;
    return { loadMs, firstTokenMs, cached: { before, afterLoad, afterFirstToken: await cachedBytes(path) } };
  } finally {
    await engine.dispose();
  }
}

/** node-llama-cpp's loadModel alone (no context), warm: the weights' share of a load. */
async function weightsOnlyMs(path: string): Promise<number> {
  const llama = await directLlama();
  const started = now();
  const model = await llama.loadModel({ modelPath: path });
  const ms = now() - started;
  await model.dispose();
  return ms;
}

interface ShapeFigures {
  shape: SyntheticShapeName;
  bytes: number;
  warmReadMs: number;
  warmLoad: LoadFigures;
  weightsOnlyMs: number;
  coldReadMs: number | null;
  coldLoad: LoadFigures | null;
  evictedBy: string | null;
}

/** Runs the cold-start area: load time against file read time, warm and cold. */
export async function run(ctx: BenchContext): Promise<AreaReport> {
  const shapes: SyntheticShapeName[] = ctx.quick ? ['1b-q4_0'] : ['1b-q4_0', '1b-q8_0'];
  const reps = ctx.quick ? 1 : 2;
  const threads = defaultThreads();
  // Start both llama.cpp bindings (the engine's and the baseline's) before timing anything: the
  // first load in a process also loads the native library.
  await directLlama();
  const tiny = await ensureModel(ctx.modelsDir, 'tiny', ctx.log);
  await (await loadEngine({ modelPath: tiny.path, threads })).dispose();
  const figures: ShapeFigures[] = [];
  for (const shape of shapes) {
    const file = await ensureModel(ctx.modelsDir, shape, ctx.log);
    await readWhole(file.path);
    const reads: number[] = [];
    const loads: LoadFigures[] = [];
    for (let i = 0; i < reps; i++) {
      reads.push(await readWhole(file.path));
      loads.push(await loadAndFirstToken(file.path, threads));
    }
    const weights = await weightsOnlyMs(file.path);
    const f: ShapeFigures = {
      shape,
      bytes: file.bytes,
      warmReadMs: Math.min(...reads),
      warmLoad: loads.reduce((a, b) => (b.loadMs < a.loadMs ? b : a)),
      weightsOnlyMs: weights,
      coldReadMs: null,
      coldLoad: null,
      evictedBy: null,
    };
    f.evictedBy = await evict(file.path);
    if (f.evictedBy) {
      f.coldReadMs = await readWhole(file.path);
      await evict(file.path);
      f.coldLoad = await loadAndFirstToken(file.path, threads);
    }
    ctx.log(
      `${shape}: warm read ${fmt(f.warmReadMs)} ms, load ${fmt(f.warmLoad.loadMs)} ms; ` +
        `cold read ${fmt(f.coldReadMs ?? Number.NaN)} ms, load ${fmt(f.coldLoad?.loadMs ?? Number.NaN)} ms`,
    );
    figures.push(f);
  }

  const share = (bytes: number | null, total: number): string => (bytes === null ? '?' : `${Math.round((100 * bytes) / total)}%`);
  const cacheCell = (l: LoadFigures | null, total: number): string =>
    l ? `${share(l.cached.before, total)} → ${share(l.cached.afterLoad, total)} → ${share(l.cached.afterFirstToken, total)}` : '–';
  const rows: string[][] = [];
  for (const f of figures) {
    rows.push([
      `${f.shape} (${fmtBytes(f.bytes)})`,
      'warm (page cache)',
      `${fmt(f.warmReadMs)} (${fmt(f.bytes / 1e6 / (f.warmReadMs / 1000))} MB/s)`,
      fmt(f.warmLoad.loadMs),
      fmtRatio(f.warmLoad.loadMs / f.warmReadMs),
      fmt(f.warmLoad.firstTokenMs),
      fmt(f.weightsOnlyMs),
      cacheCell(f.warmLoad, f.bytes),
    ]);
    rows.push([
      `${f.shape} (${fmtBytes(f.bytes)})`,
      'cold (evicted)',
      f.coldReadMs === null ? 'not measured' : `${fmt(f.coldReadMs)} (${fmt(f.bytes / 1e6 / (f.coldReadMs / 1000))} MB/s)`,
      f.coldLoad ? fmt(f.coldLoad.loadMs) : 'not measured',
      f.coldLoad && f.coldReadMs ? fmtRatio(f.coldLoad.loadMs / f.coldReadMs) : '–',
      f.coldLoad ? fmt(f.coldLoad.firstTokenMs) : '–',
      '',
      cacheCell(f.coldLoad, f.bytes),
    ]);
  }
  const evictedBy = figures.find((f) => f.evictedBy)?.evictedBy ?? null;
  return {
    title: 'Cold start: model load time against the time to read the file',
    method: [
      `\`loadEngine\` with the agent's defaults (4 slots, context up to 4,096, batch 512; ${threads} thread${threads === 1 ? '' : 's'}), ` +
        'timed to resolve; then the first token of a short prompt; then dispose. ' +
        'The native library is loaded beforehand (by loading the tiny model once), as it is once per agent process. ' +
        'Baseline: reading the whole file with `fs` into one reused 16 MiB buffer (nothing kept), in the same run.',
      `Warm: the file in the page cache (read once first); best of ${reps}. Cold: the file evicted from the page cache just ` +
        `before each cold read and each cold load, by ${evictedBy ?? '(eviction was not possible here, so cold figures are missing)'}.`,
      "The weights-only column is node-llama-cpp's `loadModel` alone, warm (no context): " +
        'the rest of a load is creating the context (KV cache for 4 × 4,096 tokens and compute buffers). ' +
        'The last column (from `fincore`) shows how much of the file was in the page cache before each load, ' +
        'after it, and after the first token: how much of the file a load really read.',
    ],
    tables: [
      {
        columns: [
          'model',
          'page cache',
          'read file, ms',
          'loadEngine, ms',
          'load ÷ read',
          'then first token, ms',
          'weights only (loadModel), ms',
          'file in page cache: before load → after → after first token',
        ],
        rows,
      },
    ],
    targets: [],
    notes: [
      'llama.cpp maps the file rather than reading it; what a cold load brings in from disk, ' +
        "and how fast (through the mapping, not the baseline's sequential 16 MiB reads), is in the page-cache column. " +
        "The rest is llama.cpp's own setup: for Q4_0 it repacks most weights into an interleaved layout for its SIMD " +
        'kernels (a copy of about the file\'s size; a debug-level load logs "CPU_REPACK model buffer size = 662.91 MiB" for 1b-q4_0), ' +
        'and creating the context allocates the KV cache and compute buffers for 4 slots.',
    ],
    data: { threads, reps, figures },
  };
}
