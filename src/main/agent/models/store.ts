/**
 * The models on this machine: a directory of GGUF files, each with a manifest
 * (`<name>.model.json`) written only after the file's sha256 was checked. A file without a
 * manifest (a partial download, a file copied in by hand) is not a model to the agent. Before a
 * model is loaded its file is hashed again (once per process, and again whenever its size or
 * modification time changes), so a file altered on disk is refused, not served under the hash
 * the bundle advertises.
 */
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { readGgufFileInfo } from 'node-llama-cpp';
import {
  NightjarError,
  installedModelSchema,
  silentLogger,
  systemClock,
  withDefaults,
  type AsyncResource,
  type CatalogEntry,
  type Clock,
  type InstalledModel,
  type Logger,
} from '../../../shared/index.js';
import { errnoCode, writeFileAtomic } from '../fs-util.js';
import { downloadFile, partialPaths, type DownloadOptions } from './download.js';
import { sha256File } from './hash.js';

/** Options of {@link ModelStore}. */
export interface ModelStoreOptions {
  /** The models directory. Required. */
  dir: string;
  /** Defaults to the system clock. */
  clock?: Clock;
  /** Defaults to a silent logger. */
  logger?: Logger;
}

/** What {@link ModelStore.pull} takes besides the catalog entry. */
export type PullOptions = Pick<
  DownloadOptions,
  | 'fetch'
  | 'signal'
  | 'onProgress'
  | 'retries'
  | 'backoff'
  | 'random'
  | 'checkpointBytes'
  | 'freeBytes'
  | 'reserveBytes'
  | 'progressIntervalMs'
> & {
  /** The expected sha256 when the entry has none (required then). Defaults to the entry's. */
  sha256?: string;
};

const MANIFEST_SUFFIX = '.model.json';

const STORE_DEFAULTS: Required<Pick<ModelStoreOptions, 'clock' | 'logger'>> = { clock: systemClock, logger: silentLogger };

/**
 * The models directory. Its downloads are its children: dispose() aborts the ones under way
 * (their partial files stay for a resume) and waits for them to stop.
 */
export class ModelStore implements AsyncResource {
  readonly dir: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  /** Files hashed by this process: path → what stat said then. */
  readonly #verified = new Map<string, { size: number; mtimeMs: number; ino: number; sha256: string }>();
  /** Downloads under way, to abort on dispose. */
  readonly #pulls = new Set<{ abort: AbortController; done: Promise<unknown> }>();
  #disposed: Promise<void> | null = null;

  constructor(options: ModelStoreOptions) {
    const o = withDefaults(STORE_DEFAULTS, options);
    this.dir = path.resolve(o.dir);
    this.#clock = o.clock;
    this.#log = o.logger;
  }

  /** Aborts the downloads under way and waits for them to stop. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      const pulls = [...this.#pulls];
      for (const p of pulls) p.abort.abort(new NightjarError('NJ_CANCELLED', 'the agent is stopping'));
      await Promise.all(pulls.map((p) => p.done.catch(() => undefined)));
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /**
   * A GGUF file outside any models directory (`nightjar serve --model FILE`), hashed once now:
   * a store rooted at its directory, and the file as a model of it. Nothing is written.
   */
  static async forFile(
    file: string,
    options: { id: string; synthetic?: boolean; clock?: Clock; logger?: Logger; onProgress?: (hashed: number, total: number) => void },
  ): Promise<{ store: ModelStore; model: InstalledModel }> {
    const absolute = path.resolve(file);
    const store = new ModelStore({ dir: path.dirname(absolute), clock: options.clock, logger: options.logger });
    let info;
    try {
      info = await stat(absolute);
    } catch (cause) {
      throw new NightjarError('NJ_MODEL_FILE_INVALID', `No model file at ${absolute}.`, { cause });
    }
    const sha256 = await sha256File(absolute, { onProgress: options.onProgress });
    const model = installedModelSchema.parse({
      id: options.id,
      file: path.basename(absolute),
      sha256,
      bytes: info.size,
      source: null,
      synthetic: options.synthetic ?? (await isSyntheticFile(absolute)),
      installedAt: store.#clock.now(),
      contextLength: await trainContextLength(absolute),
      minMemoryBytes: null,
      license: null,
    });
    store.#verified.set(absolute, { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino, sha256 });
    return { store, model };
  }

  /** The file name a model id is stored under (ids may hold '/' and ':'). */
  fileNameFor(id: string): string {
    return `${id.replace(/[/:]/g, '_')}.gguf`;
  }

  /** Absolute path of an installed model's file. */
  pathOf(model: InstalledModel): string {
    return path.join(this.dir, model.file);
  }

  #manifestPath(id: string): string {
    return path.join(this.dir, this.fileNameFor(id).replace(/\.gguf$/, MANIFEST_SUFFIX));
  }

  /** Every installed model, by id. Manifests that do not parse are skipped (and logged). */
  async list(): Promise<InstalledModel[]> {
    const names = await readdir(this.dir).catch((err: unknown) => {
      if (errnoCode(err) === 'ENOENT') return [] as string[];
      throw err;
    });
    const out: InstalledModel[] = [];
    for (const name of names.filter((n) => n.endsWith(MANIFEST_SUFFIX)).sort()) {
      const parsed = installedModelSchema.safeParse(await readFile(path.join(this.dir, name), 'utf8').then(JSON.parse, () => null));
      if (parsed.success) out.push(parsed.data);
      else this.#log.warn('unreadable model manifest skipped', { file: name });
    }
    return out;
  }

  /** The installed model `id`, or null. */
  async get(id: string): Promise<InstalledModel | null> {
    return (await this.list()).find((m) => m.id === id) ?? null;
  }

  /** The installed model `id`; NJ_MODEL_NOT_INSTALLED if there is none. */
  async require(id: string): Promise<InstalledModel> {
    const model = await this.get(id);
    if (!model) throw new NightjarError('NJ_MODEL_NOT_INSTALLED', `The model ${id} is not installed on this machine.`);
    return model;
  }

  /** Partial downloads waiting for a resume: file name and bytes on disk. */
  async partials(): Promise<{ file: string; bytes: number }[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out = [];
    for (const name of names.filter((n) => n.endsWith('.gguf.part'))) {
      out.push({ file: name, bytes: (await stat(path.join(this.dir, name)).catch(() => ({ size: 0 }))).size });
    }
    return out;
  }

  /** Deletes a model's file, manifest and any partial download. False if nothing was there. */
  async remove(id: string): Promise<boolean> {
    const fileName = this.fileNameFor(id);
    const { part, state } = partialPaths(this.dir, fileName);
    let removed = false;
    // The manifest goes first: a crash in between leaves a stray file, never a manifest without one.
    for (const file of [this.#manifestPath(id), path.join(this.dir, fileName), part, state]) {
      try {
        await rm(file);
        removed = true;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    this.#verified.delete(path.join(this.dir, fileName));
    return removed;
  }

  /**
   * Downloads a catalog model (resuming a partial download) and installs it. The sha256 must be
   * known, from the entry or from `options.sha256`; if both are given they must agree.
   */
  async pull(entry: CatalogEntry, options: PullOptions = {}): Promise<InstalledModel> {
    const given = options.sha256?.toLowerCase();
    if (given !== undefined && !/^[0-9a-f]{64}$/.test(given)) throw new NightjarError('NJ_USAGE', '--sha256 must be 64 hex digits');
    if (given && entry.sha256 && given !== entry.sha256) {
      throw new NightjarError('NJ_USAGE', `The sha256 given for ${entry.id} differs from the catalog's; check which one is right.`);
    }
    const sha256 = entry.sha256 ?? given;
    if (!sha256) {
      throw new NightjarError(
        'NJ_USAGE',
        `The catalog has no sha256 for ${entry.id} (it was not verified), and Nightjar never installs an unchecked file. ` +
          `Find the file's SHA256 on its download page (${entry.url.replace('/resolve/', '/blob/')}) and pass --sha256 HEX.`,
      );
    }
    if (this.#disposed) throw new NightjarError('NJ_CANCELLED', 'the agent is stopping');
    const fileName = this.fileNameFor(entry.id);
    const { sha256: _drop, ...download } = options;
    const abort = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
    const done = downloadFile({
      ...download,
      signal,
      url: entry.url,
      dir: this.dir,
      fileName,
      sha256,
      bytes: entry.bytes,
      modelId: entry.id,
      clock: this.#clock,
      logger: this.#log,
    });
    const pull = { abort, done };
    this.#pulls.add(pull);
    const result = await done.finally(() => this.#pulls.delete(pull));
    return this.#install({
      id: entry.id,
      file: fileName,
      sha256: result.sha256,
      bytes: result.bytes,
      source: entry.url,
      // A synthetic file says so in its metadata wherever it came from; it is never served as real.
      synthetic: await isSyntheticFile(path.join(this.dir, fileName)),
      installedAt: this.#clock.now(),
      contextLength: entry.contextLength,
      minMemoryBytes: entry.minMemoryBytes,
      license: entry.license,
    });
  }

  /**
   * Installs a GGUF file already inside the models directory (a synthetic model written there):
   * hashes it and writes its manifest.
   */
  async adopt(id: string, options: { synthetic: boolean; source?: string | null; license?: string | null }): Promise<InstalledModel> {
    const fileName = this.fileNameFor(id);
    const file = path.join(this.dir, fileName);
    const sha256 = await sha256File(file);
    const info = await stat(file);
    return this.#install({
      id,
      file: fileName,
      sha256,
      bytes: info.size,
      source: options.source ?? null,
      synthetic: options.synthetic,
      installedAt: this.#clock.now(),
      contextLength: await trainContextLength(file),
      minMemoryBytes: null,
      license: options.license ?? null,
    });
  }

  async #install(model: InstalledModel): Promise<InstalledModel> {
    const checked = installedModelSchema.parse(model);
    await writeFileAtomic(this.#manifestPath(model.id), JSON.stringify(checked, null, 2) + '\n', 0o644);
    const info = await stat(this.pathOf(checked));
    this.#verified.set(this.pathOf(checked), { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino, sha256: checked.sha256 });
    this.#log.info('model installed', { model: model.id, bytes: model.bytes });
    return checked;
  }

  /**
   * Checks that the model's file still has the sha256 it was installed with. Hashes it unless
   * this process already did and stat shows the same file. Throws NJ_MODEL_FILE_INVALID.
   */
  async verify(
    model: InstalledModel,
    options: { onProgress?: (hashed: number, total: number) => void; signal?: AbortSignal } = {},
  ): Promise<void> {
    const file = this.pathOf(model);
    let info;
    try {
      info = await stat(file);
    } catch (cause) {
      throw new NightjarError('NJ_MODEL_FILE_INVALID', `The file of ${model.id} is missing (${file}); pull it again.`, { cause });
    }
    const known = this.#verified.get(file);
    if (known && known.size === info.size && known.mtimeMs === info.mtimeMs && known.ino === info.ino && known.sha256 === model.sha256)
      return;
    this.#log.info('checking model file', { model: model.id, bytes: info.size });
    const actual = await sha256File(file, options);
    if (actual !== model.sha256) {
      this.#verified.delete(file);
      throw new NightjarError(
        'NJ_MODEL_FILE_INVALID',
        `The file of ${model.id} changed on disk: its sha256 is no longer the one it was installed with. ` +
          `It will not be loaded; remove it (\`nightjar models rm ${model.id}\`) and pull it again.`,
      );
    }
    this.#verified.set(file, { size: info.size, mtimeMs: info.mtimeMs, ino: info.ino, sha256: actual });
  }
}

async function ggufMetadata(file: string): Promise<Record<string, Record<string, unknown> | undefined> | null> {
  try {
    const info = await readGgufFileInfo(file, { sourceType: 'filesystem', readTensorInfo: false, logWarnings: false });
    return info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  } catch {
    return null;
  }
}

/** The context length a GGUF file says its model was trained for, or null. */
export async function trainContextLength(file: string): Promise<number | null> {
  const metadata = await ggufMetadata(file);
  const arch = metadata?.['general']?.['architecture'];
  const length = typeof arch === 'string' ? metadata?.[arch]?.['context_length'] : undefined;
  return typeof length === 'number' && Number.isInteger(length) && length > 0 ? length : null;
}

/** True if a GGUF file says Nightjar's synthetic generator wrote it. */
export async function isSyntheticFile(file: string): Promise<boolean> {
  return (await ggufMetadata(file))?.['nightjar']?.['synthetic'] === true;
}
