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
 * - Free disk space is checked before writing (NJ_DISK_FULL), and a write the disk refuses
 *   meanwhile (ENOSPC, EDQUOT) is NJ_DISK_FULL too, the bytes before it kept for a resume.
 * - Attempts are spaced by the one backoff of src/shared (full jitter) on the injected clock.
 */
import { createHash, type Hash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, statfs, truncate } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  NightjarError,
  backoffDelay,
  delay,
  resolveBackoff,
  silentLogger,
  systemClock,
  withDefaults,
  type BackoffOptions,
  type Clock,
  type DownloadProgress,
  type Logger,
  type ResolvedBackoff,
} from '../../../shared/index.js';
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
  /** Reported in progress events. Required. */
  modelId: string;
  /** Expected size in bytes, if known. Defaults to null (the server's Content-Length is used). */
  bytes?: number | null;
  /** The fetch to use. Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Aborting stops the download; the partial file is kept for a resume. Defaults to none. */
  signal?: AbortSignal;
  /** Receives progress, at most every `progressIntervalMs` and at each phase change. Defaults to none. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Attempts after a dropped connection or a 5xx, each resuming. Defaults to 5. */
  retries?: number;
  /** The wait between attempts (full jitter, src/shared's backoff). Defaults to 1000 ms growing ×2 up to 30 s. */
  backoff?: BackoffOptions;
  /** Random source in [0, 1) for the jitter. Defaults to Math.random. */
  random?: () => number;
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

type Defaulted =
  | 'bytes'
  | 'fetch'
  | 'onProgress'
  | 'retries'
  | 'random'
  | 'checkpointBytes'
  | 'progressIntervalMs'
  | 'freeBytes'
  | 'reserveBytes'
  | 'clock'
  | 'logger';

const DOWNLOAD_DEFAULTS: Required<Pick<DownloadOptions, Defaulted>> = {
  bytes: null,
  fetch: (input, init) => fetch(input, init),
  onProgress: () => undefined,
  retries: 5,
  random: Math.random,
  checkpointBytes: 8 << 20,
  progressIntervalMs: 250,
  freeBytes: defaultFreeBytes,
  reserveBytes: 256 << 20,
  clock: systemClock,
  logger: silentLogger,
};

/** The retry timing of downloads, unless the options say otherwise. */
const DOWNLOAD_BACKOFF: ResolvedBackoff = { initialMs: 1000, maxMs: 30_000, factor: 2 };

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

/**
 * A write that failed because the disk filled (ENOSPC, or EDQUOT for a quota) as NJ_DISK_FULL:
 * the free-space check before the download cannot see another writer filling the disk meanwhile.
 * The bytes before `position` are kept (the next pull resumes from the last checkpoint); any
 * other error is returned as it is.
 */
function diskFullOr(err: unknown, modelId: string, position: number): unknown {
  const code = errnoCode(err);
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  return new NightjarError(
    'NJ_DISK_FULL',
    `The disk filled while downloading ${modelId} (${position} bytes written). Free disk space and pull it again: it resumes.`,
    { cause: err },
  );
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
  const sha256 = options.sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new NightjarError('NJ_USAGE', 'the expected sha256 must be 64 hex digits');
  const download = new Download({ ...withDefaults(DOWNLOAD_DEFAULTS, options), sha256 });
  await download.prepare();
  await download.fetchAll();
  return download.land();
}

/** One download in progress: where it is, its running hash, and what the server said. */
class Download {
  readonly #o: typeof DOWNLOAD_DEFAULTS & DownloadOptions;
  readonly #backoff: ResolvedBackoff;
  readonly #part: string;
  readonly #stateFile: string;
  readonly #finalPath: string;
  #state: PartState | null = null;
  #position = 0;
  #resumedFromBytes = 0;
  #total: number | null;
  #hash = createHash('sha256');
  #requests = 0;
  #lastEmit = -Infinity;
  #windowStart: number;
  #windowBytes = 0;

  constructor(options: typeof DOWNLOAD_DEFAULTS & DownloadOptions) {
    this.#o = options;
    this.#backoff = resolveBackoff(options.backoff, DOWNLOAD_BACKOFF);
    const { part, state } = partialPaths(options.dir, options.fileName);
    this.#part = part;
    this.#stateFile = state;
    this.#finalPath = path.join(options.dir, options.fileName);
    this.#total = options.bytes;
    this.#windowStart = options.clock.now();
  }

  #emit(phase: DownloadProgress['phase'], force = false, error: DownloadProgress['error'] = null): void {
    const now = this.#o.clock.now();
    if (!force && now - this.#lastEmit < this.#o.progressIntervalMs) return;
    this.#lastEmit = now;
    const seconds = (now - this.#windowStart) / 1000;
    this.#o.onProgress({
      modelId: this.#o.modelId,
      phase,
      receivedBytes: this.#position,
      totalBytes: this.#total,
      resumedFromBytes: this.#resumedFromBytes,
      bytesPerSecond: seconds > 0 ? Math.max(0, (this.#position - this.#windowBytes) / seconds) : 0,
      error,
    });
  }

  #fail(error: NightjarError): NightjarError {
    this.#emit('failed', true, { code: error.code, message: error.message });
    return error;
  }

  /** Finds what an earlier attempt left on disk, keeps it if it may be continued, and hashes it. */
  async prepare(): Promise<void> {
    const o = this.#o;
    await mkdir(o.dir, { recursive: true, mode: 0o700 });
    let state = await readState(this.#stateFile);
    if (state && (state.url !== o.url || state.sha256 !== o.sha256)) state = null;
    this.#state = state;
    this.#position = state ? Math.min(state.durableBytes, await sizeOf(this.#part)) : 0;
    if (!state) await rm(this.#part, { force: true });
    else await truncate(this.#part, this.#position);
    this.#resumedFromBytes = this.#windowBytes = this.#position;
    this.#total = state?.bytes ?? o.bytes;
    this.#emit('starting', true);
    if (this.#position > 0) {
      this.#emit('hashing-partial', true);
      await hashPrefix(this.#part, this.#position, this.#hash, o.signal);
      o.logger.info('resuming download', { model: o.modelId, fromBytes: this.#position });
    }
  }

  async #saveState(durable: number): Promise<void> {
    const o = this.#o;
    this.#state = {
      v: 1,
      url: o.url,
      sha256: o.sha256,
      bytes: this.#total,
      etag: this.#state?.etag ?? null,
      lastModified: this.#state?.lastModified ?? null,
      durableBytes: durable,
    };
    await writeFileAtomic(this.#stateFile, JSON.stringify(this.#state));
  }

  /** Requests until every byte is on disk, resuming after each retryable failure. */
  async fetchAll(): Promise<void> {
    const o = this.#o;
    for (let failures = 0; ;) {
      o.signal?.throwIfAborted();
      try {
        this.#requests++;
        if (await this.#attempt()) return;
      } catch (err) {
        if (!(err instanceof Retryable)) throw err instanceof NightjarError ? this.#fail(err) : err;
        failures++;
        if (failures > o.retries) {
          throw this.#fail(
            new NightjarError(
              'NJ_DOWNLOAD_FAILED',
              `Downloading ${o.modelId} failed ${failures} times (last: ${err.message}); ${this.#position} bytes are kept for a resume.`,
            ),
          );
        }
        const wait = backoffDelay(failures - 1, this.#backoff, o.random);
        o.logger.warn('download interrupted; resuming', { model: o.modelId, atBytes: this.#position, delayMs: wait, reason: err.message });
        await delay(o.clock, wait, o.signal).catch((e: unknown) => {
          throw o.signal?.aborted ? (o.signal.reason as Error) : e;
        });
      }
    }
  }

  /** Every byte is here: checks size and hash, then lands the file by an atomic rename. */
  async land(): Promise<DownloadResult> {
    const o = this.#o;
    this.#emit('verifying', true);
    const digest = this.#hash.digest('hex');
    const size = await sizeOf(this.#part);
    const total = this.#total;
    if ((total !== null && size !== total) || digest !== o.sha256) {
      await rm(this.#part, { force: true });
      await rm(this.#stateFile, { force: true });
      const what =
        total !== null && size !== total ? `is ${size} bytes, not ${total}` : `has sha256 ${digest}, not the expected ${o.sha256}`;
      throw this.#fail(
        new NightjarError(
          'NJ_MODEL_FILE_INVALID',
          `The download of ${o.modelId} ${what}; it was deleted. Pull it again, and check the expected hash if it keeps failing.`,
        ),
      );
    }
    await rename(this.#part, this.#finalPath);
    await fsyncDir(o.dir);
    await rm(this.#stateFile, { force: true });
    this.#emit('done', true);
    o.logger.info('download complete', { model: o.modelId, bytes: size, requests: this.#requests });
    return { path: this.#finalPath, sha256: digest, bytes: size, resumedFromBytes: this.#resumedFromBytes, requests: this.#requests };
  }

  /** One HTTP request; true when the file is complete. */
  async #attempt(): Promise<boolean> {
    const response = await this.#request();
    if (response === 'complete') return true;
    try {
      await this.#accept(response);
    } catch (err) {
      await response.body?.cancel();
      throw err;
    }
    if (!response.body) throw new Retryable('the answer has no body');
    await this.#write(response.body);
    const total = this.#total;
    if (total !== null && this.#position < total) throw new Retryable(`the connection ended at ${this.#position} of ${total} bytes`);
    if (total === null) this.#total = this.#position;
    return true;
  }

  /** Sends the request (a range from where the file stands); 'complete' if nothing is left. */
  async #request(): Promise<Response | 'complete'> {
    const o = this.#o;
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (this.#position > 0) {
      headers.range = `bytes=${this.#position}-`;
      const state = this.#state;
      const validator = state?.etag && !state.etag.startsWith('W/') ? state.etag : state?.lastModified;
      if (validator) headers['if-range'] = validator;
    }
    let response: Response;
    try {
      response = await o.fetch(o.url, { headers, redirect: 'follow', signal: o.signal });
    } catch (err) {
      o.signal?.throwIfAborted();
      throw new Retryable((err as Error).message);
    }
    const status = response.status;
    if (status === 416 && this.#position > 0 && this.#total !== null && this.#position === this.#total) {
      await response.body?.cancel();
      return 'complete';
    }
    return response;
  }

  /** Checks the answer (status, range, size, free disk) and records its validators. */
  async #accept(response: Response): Promise<void> {
    const o = this.#o;
    const status = response.status;
    if (status >= 500 || status === 408 || status === 429) throw new Retryable(`HTTP ${status}`);
    if (status !== 200 && status !== 206) {
      throw new NightjarError('NJ_DOWNLOAD_FAILED', `The server answered HTTP ${status} for ${o.modelId}; check the catalog URL.`);
    }
    let offered: number | null;
    if (status === 206) {
      const range = contentRange(response.headers.get('content-range'));
      if (!range || range.first !== this.#position) throw new Retryable('the server answered a different range');
      offered = range.total;
    } else {
      // 200: the whole file. Either a first request, or the server ignored the range (or the file
      // changed, per If-Range): start over.
      if (this.#position > 0) await this.#startOver();
      const length = response.headers.get('content-length');
      offered = length === null ? null : Number(length);
    }
    if (o.bytes !== null && offered !== null && offered !== o.bytes) {
      throw new NightjarError(
        'NJ_DOWNLOAD_FAILED',
        `The server offers ${offered} bytes for ${o.modelId}; the catalog says ${o.bytes}. The catalog entry or the URL is wrong.`,
      );
    }
    this.#total = offered ?? this.#total;
    const total = this.#total;
    const free = await o.freeBytes(o.dir);
    if (total !== null && free < total - this.#position + o.reserveBytes) {
      throw new NightjarError(
        'NJ_DISK_FULL',
        `Downloading ${o.modelId} needs ${total - this.#position} more bytes plus ${o.reserveBytes} spare; the disk has ${free} free.`,
      );
    }
    const etag = response.headers.get('etag');
    const lastModified = response.headers.get('last-modified');
    this.#state = { v: 1, url: o.url, sha256: o.sha256, bytes: total, etag, lastModified, durableBytes: this.#position };
    await this.#saveState(this.#position);
  }

  async #startOver(): Promise<void> {
    this.#o.logger.warn('the server sent the whole file instead of the rest; starting over', { model: this.#o.modelId });
    this.#position = 0;
    this.#windowBytes = 0;
    this.#hash = createHash('sha256');
    await truncate(this.#part, 0).catch((err: unknown) => {
      if (errnoCode(err) !== 'ENOENT') throw err;
    });
  }

  /** Streams the body to the partial file, hashing as it goes, with fsync checkpoints. */
  async #write(body: ReadableStream<Uint8Array>): Promise<void> {
    const o = this.#o;
    this.#emit('downloading', true);
    this.#windowStart = o.clock.now();
    this.#windowBytes = this.#position;
    const handle = await open(this.#part, this.#position === 0 ? 'w' : 'a', 0o600);
    let lastCheckpoint = this.#position;
    const reader = body.getReader();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          o.signal?.throwIfAborted();
          throw new Retryable((err as Error).message || 'the connection dropped');
        }
        if (chunk.done) break;
        const bytes = chunk.value;
        if (this.#total !== null && this.#position + bytes.length > this.#total)
          throw new NightjarError('NJ_DOWNLOAD_FAILED', `The server sent more than ${this.#total} bytes for ${o.modelId}.`);
        try {
          await handle.write(bytes);
        } catch (err) {
          throw diskFullOr(err, o.modelId, this.#position);
        }
        this.#hash.update(bytes);
        this.#position += bytes.length;
        if (this.#position - lastCheckpoint >= o.checkpointBytes) {
          await handle.sync();
          await this.#saveState(this.#position);
          lastCheckpoint = this.#position;
        }
        this.#emit('downloading');
      }
    } finally {
      await reader.cancel().catch(() => undefined);
      // Whatever happened, what was written is kept and recorded for the next attempt.
      await handle.sync().catch(() => undefined);
      await handle.close();
      await this.#saveState(this.#position).catch(() => undefined);
    }
  }
}
