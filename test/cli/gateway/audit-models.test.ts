/** `nightjar gateway --audit-models DIR`: the .gguf files in DIR indexed by their SHA-256, hashed once, with progress for large files. */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { indexModelFiles } from '../../../src/cli/gateway/audit-models.js';

const LARGE = 8 * 1024 * 1024;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'nightjar-audit-models-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

describe('indexModelFiles', () => {
  it('maps the sha256 of each .gguf file to its path, and skips other files and folders', async () => {
    await writeFile(path.join(dir, 'a.gguf'), 'model a');
    await writeFile(path.join(dir, 'b.gguf'), 'model b');
    await writeFile(path.join(dir, 'notes.txt'), 'not a model');
    await mkdir(path.join(dir, 'sub.gguf'));
    const index = await indexModelFiles(dir);
    expect(Object.fromEntries(index)).toEqual({
      [sha('model a')]: path.join(dir, 'a.gguf'),
      [sha('model b')]: path.join(dir, 'b.gguf'),
    });
  });

  it('reports progress while hashing a large file (past progressFromBytes), and hashes it right', async () => {
    const big = path.join(dir, 'big.gguf');
    await writeFile(big, '');
    await truncate(big, LARGE);
    const seen: number[] = [];
    const index = await indexModelFiles(dir, {
      onProgress: (file, done, total) => seen.push(file === 'big.gguf' && total === LARGE ? done : -1),
      progressFromBytes: LARGE,
    });
    expect(seen.length).toBeGreaterThanOrEqual(5);
    expect(seen.at(-1)).toBe(LARGE);
    expect([...index.keys()]).toEqual([sha(new Uint8Array(LARGE))]);
  });

  it('says which directory it cannot read', async () => {
    await expect(indexModelFiles(path.join(dir, 'missing'))).rejects.toMatchObject({
      code: 'NJ_USAGE',
      message: expect.stringMatching(/^--audit-models: cannot read .*missing \(ENOENT\)$/),
    });
  });
});
