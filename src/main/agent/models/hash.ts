/**
 * sha256 of a model file, streamed through node:crypto's native hash so a multi-gigabyte GGUF
 * never sits in memory.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/** Options of {@link sha256File}. */
export interface Sha256FileOptions {
  /** Called after each chunk with bytes hashed so far and the file size. Defaults to none. */
  onProgress?: (bytesHashed: number, totalBytes: number) => void;
  /** Aborting stops hashing and rejects with the signal's reason. Defaults to none. */
  signal?: AbortSignal;
  /** Bytes read per chunk. Defaults to 4 MiB. */
  chunkBytes?: number;
}

/** The sha256 of the file at `path`, lowercase hex. */
export async function sha256File(path: string, options: Sha256FileOptions = {}): Promise<string> {
  const chunkBytes = options.chunkBytes ?? 4 << 20;
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  let read: Promise<{ bytesRead: number }> | undefined;
  try {
    const { size } = await handle.stat();
    // Two buffers: hash one while the next read fills the other.
    const buffers = [Buffer.allocUnsafe(chunkBytes), Buffer.allocUnsafe(chunkBytes)];
    let which = 0;
    let position = 0;
    read = handle.read(buffers[0]!, 0, chunkBytes, 0);
    for (;;) {
      const { bytesRead } = await read;
      read = undefined;
      options.signal?.throwIfAborted();
      if (bytesRead === 0) break;
      const filled = buffers[which]!;
      position += bytesRead;
      which ^= 1;
      read = handle.read(buffers[which]!, 0, chunkBytes, position);
      hash.update(filled.subarray(0, bytesRead));
      options.onProgress?.(position, size);
    }
    return hash.digest('hex');
  } finally {
    // Never close the file under a read still in flight (a throwing onProgress can leave one).
    await read?.catch(() => undefined);
    await handle.close();
  }
}
