/**
 * Downloads a model file so that a partial or corrupted file can never pass for a model:
 *
 * - Bytes land in `<name>.part`; beside it `<name>.part.json` records the URL, the expected
 *   sha256, the server's validators (ETag / Last-Modified) and how many bytes are durably on disk
 *   (fsync'd, at least every `checkpointBytes`).
 * - A resume (the connection dropped, or the process was killed — even with SIGKILL) re-hashes the
 *   durable prefix, then asks for the rest with `Range` (and `If-Range`, so a file that changed on
 *   the server starts over instead of being spliced). A server that ignores the range sends the
 *   whole file; that is detected and the download restarts from zero.
 * - sha256 is computed while the bytes stream in. Only a file whose size and hash match lands at
 *   its final name, by an atomic rename (then the directory is fsync'd). A mismatch deletes the
 *   partial file: nothing half-written or corrupted is ever at a name the agent loads.
 * - Free disk space is checked before writing (NJ_DISK_FULL).
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, statfs, truncate } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { NightjarError, silentLogger, systemClock, type Clock, type DownloadProgress, type Logger } from '../../../shared/index.js';
import { errnoCode, fsyncDir, writeFileAtomic } from '../fs-util.js';

/** Options of {@link downloadFile}. */
export interface DownloadOptions {
  /** The file's URL (http or https). Required. */
  url: string;
  /** Directory the file lands in. Required. */
  dir: string;
  /** Final file name inside `dir`. Required. */
  fileName: string;
  /** Expected sha256, lower-case hex. Required: nothing is installed unchecked. */
  sha256: string;
  /** Expected size in bytes, if known. Defaults to null (the server's Content-Length is used). */
  bytes?: number | null;
  /** Reported in progress events. Required. */
  modelId: string;
  /** The fetch to use. Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Aborting stops the download; the partial file is kept for a resume. Defaults to none. */
  signal?: AbortSignal;
  /** Receives progress, at most every `progressIntervalMs` and at each phase change. Defaults to none. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Attempts after a dropped connection or a 5xx, each resuming. Defaults to 5. */
  retries?: number;
  /** First delay between attempts, doubled each time. Defaults to 1000 ms. */
  retryDelayMs?: number;
  /** Bytes between fsync checkpoints of the partial file. Defaults to 8 MiB. */
  checkpointBytes?: number;
  /** Minimum interval between progress events. Defaults to 250 ms. */
  progressIntervalMs?: number;
  /** Free bytes on the filesystem holding `dir`. Defaults to statfs. */
  freeBytes?: (dir: string) => Promise<number>;
  /** Space to leave free beyond the file. Defaults to 256 MiB. */
  reserveBytes?: number;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** A finished download. */
export interface DownloadResult {
  path: string;
  sha256: string;
  bytes: number;
  /** Bytes that were already on disk when this call started. */
  resumedFromBytes: number;
  /** HTTP requests made. */
  requests: number;
}

const stateSchema = z.strictObject({
  v: z.literal(1),
  url: z.string(),
  sha256: z.string(),
  bytes: z.int().min(0).nullable(),
  etag: z.string().nullable(),
  lastModified: z.string().nullable(),
  durableBytes: z.int().min(0),
});
type PartState = z.infer<typeof stateSchema>;

/** Paths of the partial file and its state beside the final file. */
export function partialPaths(dir: string, fileName: string): { part: string; state: string } {
  const part = path.join(dir, `${fileName}.part`);
  return { part, state: `${part}.json` };
}

async function readState(file: string): Promise<PartState | null> {
  try {
    const parsed = stateSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

async function defaultFreeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw err;
  }
}

/** Hashes the first `length` bytes of `file` into `hash`. */
async function hashPrefix(file: string, length: number, hash: Hash, signal?: AbortSignal): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(4 << 20);
    let position = 0;
    while (position < length) {
      signal?.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

/** A retryable failure: the attempt loop resumes after it. */
class Retryable extends Error {}

/** Total size from a 206 answer's Content-Range ("bytes 100-199/1000"), and its first byte. */
function contentRange(header: string | null): { first: number; total: number | null } | null {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header ?? '');
  if (!m) return null;
  return { first: Number(m[1]), total: m[2] === '*' ? null : Number(m[2]) };
}

/**
 * Downloads `url` into `dir/fileName`, resuming any partial download of the same URL and hash.
 * Throws NJ_DOWNLOAD_FAILED (server or network; the partial file is kept), NJ_DISK_FULL,
 * NJ_MODEL_FILE_INVALID (size or sha256 mismatch; the partial file is deleted), or the signal's
 * reason when aborted.
 */
export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const clock = options.clock ?? systemClock;
  const log = options.logger ?? silentLogger;
  const fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
  const retries = options.retries ?? 5;
  const checkpointBytes = options.checkpointBytes ?? 8 << 20;
  const freeBytes = options.freeBytes ?? defaultFreeBytes;
  const reserve = options.reserveBytes ?? 256 << 20;
  const { part, state: stateFile } = partialPaths(options.dir, options.fileName);
  const finalPath = path.join(options.dir, options.fileName);
  const expectedBytes = options.bytes ?? null;
  const sha256 = options.sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new NightjarError('NJ_USAGE', 'the expected sha256 must be 64 hex digits');

  await mkdir(options.dir, { recursive: true, mode: 0o700 });

  // What is on disk from an earlier attempt, and whether it may be continued.
  let state = await readState(stateFile);
  if (state && (state.url !== options.url || state.sha256 !== sha256)) state = null;
  let position = state ? Math.min(state.durableBytes, await sizeOf(part)) : 0;
  if (!state) await rm(part, { force: true });
  else await truncate(part, position);
  const resumedFromBytes = position;
  let total: number | null = state?.bytes ?? expectedBytes;

  let lastEmit = -Infinity;
  let windowStart = clock.now();
  let windowBytes = position;
  const emit = (phase: DownloadProgress['phase'], force = false, error: DownloadProgress['error'] = null): void => {
    const now = clock.now();
    if (!force && now - lastEmit < (options.progressIntervalMs ?? 250)) return;
    lastEmit = now;
    const seconds = (now - windowStart) / 1000;
    options.onProgress?.({
      modelId: options.modelId,
      phase,
      receivedBytes: position,
      totalBytes: total,
      resumedFromBytes,
      bytesPerSecond: seconds > 0 ? Math.max(0, (position - windowBytes) / seconds) : 0,
      error,
    });
  };
  emit('starting', true);

  let hash = createHash('sha256');
  if (position > 0) {
    emit('hashing-partial', true);
    await hashPrefix(part, position, hash, options.signal);
    log.info('resuming download', { model: options.modelId, fromBytes: position });
  }

  const saveState = async (durable: number): Promise<void> => {
    state = {
      v: 1,
      url: options.url,
      sha256,
      bytes: total,
      etag: state?.etag ?? null,
      lastModified: state?.lastModified ?? null,
      durableBytes: durable,
    };
    await writeFileAtomic(stateFile, JSON.stringify(state));
  };

  let requests = 0;
  let failures = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      requests++;
      const done = await attempt();
      if (done) break;
    } catch (err) {
      if (!(err instanceof Retryable)) {
        if (err instanceof NightjarError) emit('failed', true, { code: err.code, message: err.message });
        throw err;
      }
      failures++;
      if (failures > retries) {
        const e = new NightjarError(
          'NJ_DOWNLOAD_FAILED',
          `Downloading ${options.modelId} failed ${failures} times (last: ${err.message}); ${position} bytes are kept for a resume.`,
        );
        emit('failed', true, { code: e.code, message: e.message });
        throw e;
      }
      const delay = (options.retryDelayMs ?? 1000) * 2 ** (failures - 1);
      log.warn('download interrupted; resuming', { model: options.modelId, atBytes: position, delayMs: delay, reason: err.message });
      await sleep(clock, delay, options.signal);
    }
  }

  // Every byte is here: check size and hash, then land the file.
  emit('verifying', true);
  const digest = hash.digest('hex');
  const size = await sizeOf(part);
  if ((total !== null && size !== total) || digest !== sha256) {
    await rm(part, { force: true });
    await rm(stateFile, { force: true });
    const what = total !== null && size !== total ? `is ${size} bytes, not ${total}` : `has sha256 ${digest}, not the expected ${sha256}`;
    const e = new NightjarError(
      'NJ_MODEL_FILE_INVALID',
      `The download of ${options.modelId} ${what}; it was deleted. Pull it again, and check the expected hash if it keeps failing.`,
    );
    emit('failed', true, { code: e.code, message: e.message });
    throw e;
  }
  await rename(part, finalPath);
  await fsyncDir(options.dir);
  await rm(stateFile, { force: true });
  emit('done', true);
  log.info('download complete', { model: options.modelId, bytes: size, requests });
  return { path: finalPath, sha256: digest, bytes: size, resumedFromBytes, requests };

  /** One HTTP request; true when the file is complete. */
  async function attempt(): Promise<boolean> {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (position > 0) {
      headers.range = `bytes=${position}-`;
      const validator = state?.etag && !state.etag.startsWith('W/') ? state.etag : state?.lastModified;
      if (validator) headers['if-range'] = validator;
    }
    let response: Response;
    try {
      response = await fetchFn(options.url, { headers, redirect: 'follow', ...(options.signal ? { signal: options.signal } : {}) });
    } catch (err) {
      options.signal?.throwIfAborted();
      throw new Retryable((err as Error).message);
    }
    const status = response.status;
    if (status === 416 && position > 0 && total !== null && position === total) {
      await response.body?.cancel();
      return true;
    }
    if (status >= 500 || status === 408 || status === 429) {
      await response.body?.cancel();
      throw new Retryable(`HTTP ${status}`);
    }
    if (status !== 200 && status !== 206) {
      await response.body?.cancel();
      throw new NightjarError('NJ_DOWNLOAD_FAILED', `The server answered HTTP ${status} for ${options.modelId}; check the catalog URL.`);
    }
    let offered: number | null;
    if (status === 206) {
      const range = contentRange(response.headers.get('content-range'));
      if (!range || range.first !== position) {
        await response.body?.cancel();
        throw new Retryable('the server answered a different range');
      }
      offered = range.total;
    } else {
      // 200: the whole file. Either a first request, or the server ignored the range (or the file
      // changed, per If-Range): start over.
      if (position > 0) {
        log.warn('the server sent the whole file instead of the rest; starting over', { model: options.modelId });
        position = 0;
        windowBytes = 0;
        hash = createHash('sha256');
        await truncate(part, 0).catch(async (err: unknown) => {
          if (errnoCode(err) !== 'ENOENT') throw err;
        });
      }
      const length = response.headers.get('content-length');
      offered = length === null ? null : Number(length);
    }
    if (expectedBytes !== null && offered !== null && offered !== expectedBytes) {
      await response.body?.cancel();
      throw new NightjarError(
        'NJ_DOWNLOAD_FAILED',
        `The server offers ${offered} bytes for ${options.modelId}; the catalog says ${expectedBytes}. The catalog entry or the URL is wrong.`,
      );
    }
    total = offered ?? total;
    const needed = (total ?? position) - position + reserve;
    const free = await freeBytes(options.dir);
    if (total !== null && free < needed) {
      await response.body?.cancel();
      throw new NightjarError(
        'NJ_DISK_FULL',
        `Downloading ${options.modelId} needs ${total - position} more bytes plus ${reserve} spare; the disk has ${free} free.`,
      );
    }
    const etag = response.headers.get('etag');
    const lastModified = response.headers.get('last-modified');
    state = { v: 1, url: options.url, sha256, bytes: total, etag, lastModified, durableBytes: position };
    await saveState(position);
    if (!response.body) throw new Retryable('the answer has no body');

    emit('downloading', true);
    windowStart = clock.now();
    windowBytes = position;
    const handle = await open(part, position === 0 ? 'w' : 'a', 0o600);
    let lastCheckpoint = position;
    const reader = response.body.getReader();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          options.signal?.throwIfAborted();
          throw new Retryable((err as Error).message || 'the connection dropped');
        }
        if (chunk.done) break;
        const bytes = chunk.value;
        if (total !== null && position + bytes.length > total)
          throw new NightjarError('NJ_DOWNLOAD_FAILED', `The server sent more than ${total} bytes for ${options.modelId}.`);
        await handle.write(bytes);
        hash.update(bytes);
        position += bytes.length;
        if (position - lastCheckpoint >= checkpointBytes) {
          await handle.sync();
          await saveState(position);
          lastCheckpoint = position;
        }
        emit('downloading');
      }
    } finally {
      await reader.cancel().catch(() => undefined);
      // Whatever happened, what was written is kept and recorded for the next attempt.
      await handle.sync().catch(() => undefined);
      await handle.close();
      await saveState(position).catch(() => undefined);
    }
    if (total !== null && position < total) throw new Retryable(`the connection ended at ${position} of ${total} bytes`);
    if (total === null) total = position;
    return true;
  }
}

function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
