/**
 * The model files of `nightjar gateway --audit-models DIR`: every `.gguf` file directly in DIR,
 * hashed once at start (SHA-256, streamed, with progress for large files) so that the gateway's
 * reply checker can find the file a revealed job's receipt names by its sha256.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { NightjarError } from '../../shared/index.js';

/** Files this large or larger report their hashing progress. */
export const PROGRESS_FROM_BYTES = 256 * 1024 * 1024;

/** Options of {@link indexModelFiles}. */
export interface IndexModelFilesOptions {
  /** Told as each file is hashed: its name, bytes hashed so far and its size (large files only, about every 5 %). Defaults to nothing. */
  onProgress?: (file: string, done: number, total: number) => void;
  /** Files at least this large report progress. Defaults to {@link PROGRESS_FROM_BYTES} (256 MiB). */
  progressFromBytes?: number;
  /** Stops hashing. Defaults to none. */
  signal?: AbortSignal;
}

/** sha256 (lowercase hex) of each `.gguf` file in `dir` → its absolute path. Throws NJ_USAGE for a directory that cannot be read. */
export async function indexModelFiles(dir: string, options: IndexModelFilesOptions = {}): Promise<Map<string, string>> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && e.name.endsWith('.gguf')).map((e) => e.name);
  } catch (err) {
    throw new NightjarError('NJ_USAGE', `--audit-models: cannot read ${dir} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const index = new Map<string, string>();
  for (const name of names.sort()) {
    const file = path.resolve(dir, name);
    index.set(await sha256OfFile(file, name, options), file);
  }
  return index;
}

async function sha256OfFile(file: string, name: string, options: IndexModelFilesOptions): Promise<string> {
  const total = (await stat(file)).size;
  const hash = createHash('sha256');
  const step = Math.max(1, Math.floor(total / 20));
  let done = 0;
  let next = step;
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024, signal: options.signal })) {
    hash.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    if (total >= (options.progressFromBytes ?? PROGRESS_FROM_BYTES) && done >= next) {
      options.onProgress?.(name, done, total);
      next += step;
    }
  }
  return hash.digest('hex');
}
