/** sha256File: streamed, native, with progress and abort. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../../../src/main/agent/index.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-hash-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sha256File', () => {
  it('matches the known digest of the empty file and of "abc" (FIPS 180-2 example)', async () => {
    await writeFile(path.join(dir, 'empty'), '');
    await writeFile(path.join(dir, 'abc'), 'abc');
    expect(await sha256File(path.join(dir, 'empty'))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(await sha256File(path.join(dir, 'abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('hashes across many chunks and reports progress up to the file size', async () => {
    const data = randomBytes(1_000_003);
    const file = path.join(dir, 'big');
    await writeFile(file, data);
    const progress: Array<[number, number]> = [];
    const digest = await sha256File(file, { chunkBytes: 65_536, onProgress: (done, total) => progress.push([done, total]) });
    expect(digest).toBe(createHash('sha256').update(data).digest('hex'));
    expect(progress).toHaveLength(Math.ceil(data.length / 65_536));
    expect(progress.at(-1)).toEqual([data.length, data.length]);
    for (let i = 1; i < progress.length; i++) expect(progress[i]![0]).toBeGreaterThan(progress[i - 1]![0]);
  });

  it('stops when aborted and closes the file', async () => {
    const file = path.join(dir, 'abort');
    await writeFile(file, randomBytes(300_000));
    const controller = new AbortController();
    const hashing = sha256File(file, {
      chunkBytes: 16_384,
      signal: controller.signal,
      onProgress: (done) => {
        if (done >= 32_768) controller.abort(new Error('enough'));
      },
    });
    await expect(hashing).rejects.toThrow('enough');
  });

  it('closes the file when a progress callback throws with a read in flight', async () => {
    const file = path.join(dir, 'throws');
    await writeFile(file, randomBytes(100_000));
    const hashing = sha256File(file, {
      chunkBytes: 16_384,
      onProgress: () => {
        throw new Error('observer failed');
      },
    });
    await expect(hashing).rejects.toThrow('observer failed');
  });

  it('rejects for a missing file with the system error', async () => {
    await expect(sha256File(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
