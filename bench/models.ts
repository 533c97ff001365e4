/**
 * Synthetic model files for the benchmarks, written once into a cache directory and reused, and
 * what a model reads from memory for each generated token.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readGgufFileInfo } from 'node-llama-cpp';
import {
  SYNTHETIC_GENERATOR_VERSION,
  writeSyntheticModel,
  type SyntheticModelFile,
  type SyntheticShapeName,
} from '../src/main/agent/index.js';

interface CacheRecord {
  generatorVersion: number;
  file: SyntheticModelFile;
}

/**
 * The synthetic model of `shape` in `dir`, written if it is missing or was written by another
 * generator version. Writing a 1B shape takes seconds (Q4_0 ≈ 0.7 GB, Q8_0 ≈ 1.3 GB).
 */
export async function ensureModel(dir: string, shape: SyntheticShapeName, log?: (line: string) => void): Promise<SyntheticModelFile> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `synthetic-${shape}.gguf`);
  const record = path.join(dir, `synthetic-${shape}.json`);
  try {
    const cached = JSON.parse(await readFile(record, 'utf8')) as CacheRecord;
    const info = await stat(file);
    if (cached.generatorVersion === SYNTHETIC_GENERATOR_VERSION && info.size === cached.file.bytes) return cached.file;
  } catch {
    // not cached yet
  }
  log?.(`writing synthetic model ${shape} to ${file}`);
  const written = await writeSyntheticModel({ path: file, shape });
  const entry: CacheRecord = { generatorVersion: SYNTHETIC_GENERATOR_VERSION, file: written };
  await writeFile(record, JSON.stringify(entry, null, 2));
  return written;
}

/** What one generated token reads of a model's weights. */
export interface WeightTraffic {
  /** Bytes of all tensor data in the file. */
  tensorBytes: number;
  /** Bytes read per generated token (see {@link weightTraffic}). */
  bytesPerToken: number;
  /** True when the output matrix is the token embedding (no `output.weight`). */
  tiedEmbeddings: boolean;
  /** Bytes of the token embedding tensor. */
  embeddingBytes: number;
}

/**
 * Bytes of weights read per generated token, from the file's tensor table. Decoding one token
 * multiplies the activation by every weight matrix once, so every tensor is read in full, with
 * one exception: the token embedding is a table lookup (one row) unless the output matrix is
 * that same tensor (tied embeddings, as in the 1B shapes), in which case it is read in full for
 * the logits. KV-cache reads are left out: at the short contexts benchmarked they are a few MB
 * against hundreds of MB of weights.
 */
export async function weightTraffic(modelPath: string): Promise<WeightTraffic> {
  const info = await readGgufFileInfo(modelPath, { sourceType: 'filesystem', readTensorInfo: true, logWarnings: false });
  const tensors = (info.fullTensorInfo ?? info.tensorInfo ?? [])
    .map((t) => ({ name: t.name, dimensions: t.dimensions.map(Number), fileOffset: Number(t.fileOffset) }))
    .sort((a, b) => a.fileOffset - b.fileOffset);
  const fileBytes = (await stat(modelPath)).size;
  if (tensors.length === 0) return { tensorBytes: fileBytes, bytesPerToken: fileBytes, tiedEmbeddings: false, embeddingBytes: 0 };
  // Each tensor's size is the distance to the next one (alignment padding is at most 31 bytes).
  const sizes = new Map<string, number>();
  tensors.forEach((t, i) => sizes.set(t.name, (tensors[i + 1]?.fileOffset ?? fileBytes) - t.fileOffset));
  const tensorBytes = fileBytes - tensors[0]!.fileOffset;
  const embedding = tensors.find((t) => t.name === 'token_embd.weight');
  const embeddingBytes = embedding ? sizes.get(embedding.name)! : 0;
  const tiedEmbeddings = !tensors.some((t) => t.name === 'output.weight');
  const rows = embedding?.dimensions[1] ?? 1;
  const bytesPerToken = tiedEmbeddings ? tensorBytes : tensorBytes - embeddingBytes + embeddingBytes / rows;
  return { tensorBytes, bytesPerToken, tiedEmbeddings, embeddingBytes };
}
