/**
 * Synthetic models: llama-architecture GGUF files with deterministic random weights, a byte-level
 * tokenizer and a chat template, in named shapes. Weights cannot be downloaded where Nightjar is
 * developed; speed depends on a model's shape, not on its weights' values, so these stand in for
 * real models in tests (`tiny`, `mini-*`) and benchmarks (`1b-*`).
 *
 * What a synthetic file guarantees:
 * - Same shape and seed → byte-identical file. Weights come from AES-128-CTR keystreams keyed by
 *   sha256(seed, shape, tensor name), so each tensor is generated independently, at native speed,
 *   straight into its storage format (Q8_0 / Q4_0 blocks are written directly, never quantised
 *   from floats), and streamed to disk.
 * - It says what it is: `general.name` is `Nightjar synthetic <shape>`, `nightjar.synthetic` is
 *   true, and `nightjar.synthetic_shape` / `nightjar.synthetic_seed` / `nightjar.synthetic_version`
 *   record how it was made. (Not `nightjar.synthetic.shape`: GGUF readers such as node-llama-cpp
 *   nest keys on dots, and `nightjar.synthetic` cannot be both a boolean and an object.)
 * - Greedy decoding is useful in tests: the rows of the output matrix (the token embedding when
 *   the shape ties them) are zero for every token except the 95 printable ASCII byte tokens
 *   (0x20–0x7E). Zero rows give logit 0 while the printable tokens' random logits spread around 0,
 *   so the argmax is always printable: at temperature 0 a synthetic model emits printable ASCII
 *   only, never EOS, never a filler token, and so never ends early. (With temperature > 0 those
 *   tokens keep a small probability.) Greedy output is deterministic run to run.
 *
 * Vocabulary: `<unk>` (0, type 2), `<s>` (1, type 3), `</s>` (2, type 3), the 256 byte tokens
 * `<0x00>`…`<0xFF>` (3–258, type 6), `▁` (259, normal: SentencePiece's escaped space, so a space
 * in a prompt is one token and detokenises back to a space), then `<unused_N>` fillers (type 5,
 * they detokenise to nothing) up to the shape's vocabulary size, so the output matrix has a
 * realistic size.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { NightjarError } from '../../../shared/index.js';
import {
  GGML_BLOCK,
  RANDOM_CODE_STD,
  fillQuantBlocks,
  float16BitsToFloat32,
  gguf,
  writeGgufFile,
  type GgmlTensorType,
  type GgufTensorSpec,
  type GgufValue,
} from './gguf-writer.js';

/** Names of the built-in shapes. */
export type SyntheticShapeName = 'tiny' | 'mini-q8_0' | 'mini-q4_0' | '1b-q8_0' | '1b-q4_0';

/** Storage type of a shape's weight matrices (norms are always F32). */
export type SyntheticWeightType = 'f32' | 'q8_0' | 'q4_0';

/** The dimensions and storage of a synthetic model. */
export interface SyntheticShape {
  readonly name: SyntheticShapeName;
  /** One line for people: what the shape is for. */
  readonly description: string;
  /** n_embd. */
  readonly embeddingLength: number;
  /** Transformer blocks. */
  readonly blockCount: number;
  /** Attention heads; head size is embeddingLength / headCount. */
  readonly headCount: number;
  /** Key/value heads (grouped-query attention when fewer than headCount). */
  readonly headCountKv: number;
  /** n_ff. */
  readonly feedForwardLength: number;
  /** Tokens in the vocabulary, fillers included. */
  readonly vocabSize: number;
  /** `llama.context_length`: the context the model claims it was trained for. */
  readonly contextLength: number;
  readonly weightType: SyntheticWeightType;
  /** No `output.weight`: the output matrix is the token embedding (as in Llama 3.2 1B). */
  readonly tiedEmbeddings: boolean;
  /** `llama.rope.freq_base`. */
  readonly ropeFreqBase: number;
}

/** The built-in shapes. */
export const SYNTHETIC_SHAPES: Readonly<Record<SyntheticShapeName, SyntheticShape>> = {
  tiny: {
    name: 'tiny',
    description: 'Tests: loads and generates in milliseconds (F32, 2 blocks of width 64).',
    embeddingLength: 64,
    blockCount: 2,
    headCount: 4,
    headCountKv: 2,
    feedForwardLength: 128,
    vocabSize: 260,
    contextLength: 4096,
    weightType: 'f32',
    tiedEmbeddings: false,
    ropeFreqBase: 10000,
  },
  'mini-q8_0': {
    name: 'mini-q8_0',
    description: 'Tests of the Q8_0 block layout: small, quantised, tied embeddings.',
    embeddingLength: 128,
    blockCount: 2,
    headCount: 4,
    headCountKv: 2,
    feedForwardLength: 256,
    vocabSize: 512,
    contextLength: 4096,
    weightType: 'q8_0',
    tiedEmbeddings: true,
    ropeFreqBase: 10000,
  },
  'mini-q4_0': {
    name: 'mini-q4_0',
    description: 'Tests of the Q4_0 block layout: small, quantised, tied embeddings.',
    embeddingLength: 128,
    blockCount: 2,
    headCount: 4,
    headCountKv: 2,
    feedForwardLength: 256,
    vocabSize: 512,
    contextLength: 4096,
    weightType: 'q4_0',
    tiedEmbeddings: true,
    ropeFreqBase: 10000,
  },
  '1b-q8_0': {
    name: '1b-q8_0',
    description: 'Benchmarks: the shape of Llama 3.2 1B (1.24 B parameters), Q8_0, about 1.3 GB.',
    embeddingLength: 2048,
    blockCount: 16,
    headCount: 32,
    headCountKv: 8,
    feedForwardLength: 8192,
    vocabSize: 128256,
    contextLength: 131072,
    weightType: 'q8_0',
    tiedEmbeddings: true,
    ropeFreqBase: 500000,
  },
  '1b-q4_0': {
    name: '1b-q4_0',
    description: 'Benchmarks: the shape of Llama 3.2 1B (1.24 B parameters), Q4_0, about 0.7 GB.',
    embeddingLength: 2048,
    blockCount: 16,
    headCount: 32,
    headCountKv: 8,
    feedForwardLength: 8192,
    vocabSize: 128256,
    contextLength: 131072,
    weightType: 'q4_0',
    tiedEmbeddings: true,
    ropeFreqBase: 500000,
  },
};

/** True if `name` is a built-in shape. */
export function isSyntheticShapeName(name: string): name is SyntheticShapeName {
  return Object.prototype.hasOwnProperty.call(SYNTHETIC_SHAPES, name);
}

/** The model id of a synthetic shape: `synthetic-<shape>`. */
export function syntheticModelId(shape: SyntheticShapeName): string {
  return `synthetic-${shape}`;
}

/**
 * The chat template every synthetic model carries (`tokenizer.chat_template`), so node-llama-cpp
 * resolves its chat wrapper from the file. One block per message:
 * `<|role|>\n{content}<|end|>\n`, then `<|assistant|>\n` when a reply is wanted.
 */
export const SYNTHETIC_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/** Bumped whenever the bytes written for a given shape and seed change. */
export const SYNTHETIC_GENERATOR_VERSION = 1;

/** Token ids of the synthetic vocabulary. */
export const SYNTHETIC_TOKENS = {
  unk: 0,
  bos: 1,
  eos: 2,
  /** Id of the byte token `<0x00>`; byte b is `firstByte + b`. */
  firstByte: 3,
  /** SentencePiece's escaped space `▁`. */
  space: 259,
  /** Id of the first `<unused_N>` filler. */
  firstFiller: 260,
} as const;

/** Options of {@link writeSyntheticModel}. */
export interface SyntheticModelOptions {
  /** Where the file lands; written to a temp file beside it and renamed into place. */
  path: string;
  /** Which built-in shape. */
  shape: SyntheticShapeName;
  /** Weights are a pure function of shape and seed (an integer 0…2³²−1). Defaults to 0. */
  seed?: number;
  /**
   * Store the very same weight values dequantised to F32 instead of as Q8_0 / Q4_0 blocks, so a
   * test can check that llama.cpp reads our blocks as we meant them (both files must give the
   * same logits). Only meaningful for quantised shapes. Defaults to false.
   */
  storeAsF32?: boolean;
  /** Called as bytes are written, with the final size. Defaults to none. */
  onProgress?: (bytesWritten: number, totalBytes: number) => void;
  /** Aborting stops the write and removes the partial file. Defaults to none. */
  signal?: AbortSignal;
}

/** A written synthetic model. */
export interface SyntheticModelFile {
  /** Absolute path of the file. */
  path: string;
  /** File size in bytes. */
  bytes: number;
  /** sha256 of the file, lowercase hex (computed while writing). */
  sha256: string;
  shape: SyntheticShapeName;
  /** `synthetic-<shape>`. */
  modelId: string;
  seed: number;
}

/** Bytes of keystream, tensor by tensor, deterministic in (seed, shape, tensor). */
class KeyStream {
  private readonly cipher;
  private static zeros = new Uint8Array(0);

  constructor(seed: number, shape: string, tensor: string) {
    const key = createHash('sha256').update(`nightjar/synthetic/v${SYNTHETIC_GENERATOR_VERSION}\n${seed}\n${shape}\n${tensor}`).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  }

  next(n: number): Uint8Array {
    if (KeyStream.zeros.length < n) KeyStream.zeros = new Uint8Array(n);
    return this.cipher.update(KeyStream.zeros.subarray(0, n));
  }
}

/** Roughly how many bytes each produced chunk holds. */
const CHUNK_BYTES = 4 << 20;

/** Random F32 values, uniform with standard deviation `std`. */
function* randomF32(
  stream: KeyStream,
  elements: number,
  std: number,
  rowLength: number,
  zeroRow: ((row: number) => boolean) | undefined,
): Generator<Uint8Array> {
  const half = std * Math.sqrt(3);
  const perChunk = Math.max(rowLength, Math.floor(CHUNK_BYTES / 4 / rowLength) * rowLength);
  for (let start = 0; start < elements; start += perChunk) {
    const n = Math.min(perChunk, elements - start);
    const raw = stream.next(n * 4);
    const codes = new Uint32Array(raw.buffer, raw.byteOffset, n);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (codes[i]! / 2 ** 32) * 2 * half - half;
    if (zeroRow !== undefined) {
      for (let r = 0; r < n / rowLength; r++) {
        if (zeroRow(start / rowLength + r)) out.fill(0, r * rowLength, (r + 1) * rowLength);
      }
    }
    yield new Uint8Array(out.buffer);
  }
}

/** Random Q8_0 / Q4_0 blocks with a scale that gives values of standard deviation `std`. */
function* randomBlocks(
  type: 'q8_0' | 'q4_0',
  stream: KeyStream,
  elements: number,
  std: number,
  rowLength: number,
  zeroRow: ((row: number) => boolean) | undefined,
  asF32: boolean,
): Generator<Uint8Array> {
  const { bytes: blockBytes, elements: perBlock } = GGML_BLOCK[type];
  const blocks = elements / perBlock;
  const blocksPerRow = rowLength / perBlock;
  const perChunk = Math.max(blocksPerRow, Math.floor(CHUNK_BYTES / blockBytes / blocksPerRow) * blocksPerRow);
  const scale = std / RANDOM_CODE_STD[type];
  for (let start = 0; start < blocks; start += perChunk) {
    const n = Math.min(perChunk, blocks - start);
    const isZero = zeroRow === undefined ? undefined : (b: number): boolean => zeroRow(Math.floor((start + b) / blocksPerRow));
    const chunk = fillQuantBlocks(type, stream.next(n * blockBytes), scale, isZero);
    yield asF32 ? new Uint8Array(dequantizeBlocks(type, chunk).buffer) : chunk;
  }
}

/** Values of Q8_0 / Q4_0 blocks (ggml's `dequantize_row_q8_0` / `dequantize_row_q4_0`). */
export function dequantizeBlocks(type: 'q8_0' | 'q4_0', blocks: Uint8Array): Float32Array {
  const { bytes: blockBytes, elements: perBlock } = GGML_BLOCK[type];
  const n = blocks.length / blockBytes;
  const out = new Float32Array(n * perBlock);
  for (let b = 0; b < n; b++) {
    const o = b * blockBytes;
    const d = float16BitsToFloat32(blocks[o]! | (blocks[o + 1]! << 8));
    const base = b * perBlock;
    if (type === 'q8_0') {
      for (let j = 0; j < 32; j++) out[base + j] = d * ((blocks[o + 2 + j]! << 24) >> 24);
    } else {
      for (let j = 0; j < 16; j++) {
        const q = blocks[o + 2 + j]!;
        out[base + j] = d * ((q & 0x0f) - 8);
        out[base + j + 16] = d * ((q >>> 4) - 8);
      }
    }
  }
  return out;
}

/** True for the token ids greedy decoding may pick: the printable ASCII byte tokens. */
function isPrintableByteToken(id: number): boolean {
  const b = id - SYNTHETIC_TOKENS.firstByte;
  return b >= 0x20 && b <= 0x7e;
}

function vocabulary(shape: SyntheticShape): { tokens: string[]; scores: Float32Array; types: Int32Array } {
  const tokens = ['<unk>', '<s>', '</s>'];
  for (let b = 0; b < 256; b++) tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  tokens.push('\u2581');
  for (let i = tokens.length; i < shape.vocabSize; i++) tokens.push(`<unused_${i - SYNTHETIC_TOKENS.firstFiller}>`);
  const types = new Int32Array(shape.vocabSize);
  for (let i = 0; i < shape.vocabSize; i++) {
    types[i] =
      i === SYNTHETIC_TOKENS.unk
        ? 2
        : i === SYNTHETIC_TOKENS.bos || i === SYNTHETIC_TOKENS.eos
          ? 3
          : i < SYNTHETIC_TOKENS.space
            ? 6
            : i === SYNTHETIC_TOKENS.space
              ? 1
              : 5;
  }
  return { tokens, scores: new Float32Array(shape.vocabSize), types };
}

const FILE_TYPE: Readonly<Record<SyntheticWeightType, number>> = { f32: 0, q8_0: 7, q4_0: 2 };

/** Metadata of a synthetic file, in file order. */
function metadataOf(shape: SyntheticShape, seed: number, storeAsF32: boolean): Array<readonly [string, GgufValue]> {
  const vocab = vocabulary(shape);
  const stored: SyntheticWeightType = storeAsF32 ? 'f32' : shape.weightType;
  const entries: Array<readonly [string, GgufValue]> = [
    ['general.architecture', gguf.string('llama')],
    ['general.name', gguf.string(`Nightjar synthetic ${shape.name}`)],
    ['general.description', gguf.string('Deterministic random weights written by Nightjar for tests and benchmarks; not a real model.')],
    ['general.file_type', gguf.uint32(FILE_TYPE[stored])],
    ...(stored === 'f32' ? [] : [['general.quantization_version', gguf.uint32(2)] as const]),
    ['nightjar.synthetic', gguf.bool(true)],
    ['nightjar.synthetic_shape', gguf.string(shape.name)],
    ['nightjar.synthetic_seed', gguf.uint32(seed)],
    ['nightjar.synthetic_version', gguf.uint32(SYNTHETIC_GENERATOR_VERSION)],
    ['llama.vocab_size', gguf.uint32(shape.vocabSize)],
    ['llama.context_length', gguf.uint32(shape.contextLength)],
    ['llama.embedding_length', gguf.uint32(shape.embeddingLength)],
    ['llama.block_count', gguf.uint32(shape.blockCount)],
    ['llama.feed_forward_length', gguf.uint32(shape.feedForwardLength)],
    ['llama.attention.head_count', gguf.uint32(shape.headCount)],
    ['llama.attention.head_count_kv', gguf.uint32(shape.headCountKv)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.float32(1e-5)],
    ['llama.rope.dimension_count', gguf.uint32(shape.embeddingLength / shape.headCount)],
    ['llama.rope.freq_base', gguf.float32(shape.ropeFreqBase)],
    ['tokenizer.ggml.model', gguf.string('llama')],
    ['tokenizer.ggml.tokens', gguf.strings(vocab.tokens)],
    ['tokenizer.ggml.scores', gguf.float32s(vocab.scores)],
    ['tokenizer.ggml.token_type', gguf.int32s(vocab.types)],
    ['tokenizer.ggml.bos_token_id', gguf.uint32(SYNTHETIC_TOKENS.bos)],
    ['tokenizer.ggml.eos_token_id', gguf.uint32(SYNTHETIC_TOKENS.eos)],
    ['tokenizer.ggml.unknown_token_id', gguf.uint32(SYNTHETIC_TOKENS.unk)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
    ['tokenizer.ggml.add_space_prefix', gguf.bool(false)],
    ['tokenizer.chat_template', gguf.string(SYNTHETIC_CHAT_TEMPLATE)],
  ];
  return entries;
}

/** The tensors of a synthetic file, each producing its data lazily. */
function tensorsOf(shape: SyntheticShape, seed: number, storeAsF32: boolean): GgufTensorSpec[] {
  const nEmbd = shape.embeddingLength;
  const nEmbdKv = (nEmbd / shape.headCount) * shape.headCountKv;
  const nFf = shape.feedForwardLength;
  const nVocab = shape.vocabSize;
  const stored: GgmlTensorType = storeAsF32 ? 'f32' : shape.weightType;
  const zeroOutputRow = (row: number): boolean => !isPrintableByteToken(row);

  // Standard deviations: 1/sqrt(fan-in) keeps activations of order 1 through the blocks; the
  // output rows get 3/sqrt(n_embd) so logits spread by about 3 and greedy picks are clear-cut.
  // Queries get 8/sqrt(n_embd): sharp attention makes the output depend on the whole prompt
  // rather than mostly on the last token (with 1/sqrt the tiny model falls into ':::' loops).
  const queryStd = 8 / Math.sqrt(nEmbd);
  const matrix = (name: string, rowLength: number, rows: number, std: number, zeroRow?: (row: number) => boolean): GgufTensorSpec => ({
    name,
    dims: [rowLength, rows],
    type: stored,
    data: () => {
      const stream = new KeyStream(seed, shape.name, name);
      return shape.weightType === 'f32'
        ? randomF32(stream, rowLength * rows, std, rowLength, zeroRow)
        : randomBlocks(shape.weightType, stream, rowLength * rows, std, rowLength, zeroRow, storeAsF32);
    },
  });
  const norm = (name: string): GgufTensorSpec => ({
    name,
    dims: [nEmbd],
    type: 'f32',
    data: () => [new Uint8Array(new Float32Array(nEmbd).fill(1).buffer)],
  });

  const outputStd = 3 / Math.sqrt(nEmbd);
  const tensors: GgufTensorSpec[] = [
    shape.tiedEmbeddings
      ? matrix('token_embd.weight', nEmbd, nVocab, outputStd, zeroOutputRow)
      : matrix('token_embd.weight', nEmbd, nVocab, 1),
  ];
  for (let i = 0; i < shape.blockCount; i++) {
    const p = `blk.${i}.`;
    tensors.push(
      norm(`${p}attn_norm.weight`),
      matrix(`${p}attn_q.weight`, nEmbd, nEmbd, queryStd),
      matrix(`${p}attn_k.weight`, nEmbd, nEmbdKv, 1 / Math.sqrt(nEmbd)),
      matrix(`${p}attn_v.weight`, nEmbd, nEmbdKv, 1 / Math.sqrt(nEmbd)),
      matrix(`${p}attn_output.weight`, nEmbd, nEmbd, 1 / Math.sqrt(nEmbd)),
      norm(`${p}ffn_norm.weight`),
      matrix(`${p}ffn_gate.weight`, nEmbd, nFf, 1 / Math.sqrt(nEmbd)),
      matrix(`${p}ffn_up.weight`, nEmbd, nFf, 1 / Math.sqrt(nEmbd)),
      matrix(`${p}ffn_down.weight`, nFf, nEmbd, 1 / Math.sqrt(nFf)),
    );
  }
  tensors.push(norm('output_norm.weight'));
  if (!shape.tiedEmbeddings) tensors.push(matrix('output.weight', nEmbd, nVocab, outputStd, zeroOutputRow));
  return tensors;
}

/** Parameters a shape has (weights only; norms included). */
export function syntheticParameterCount(shape: SyntheticShape): number {
  const nEmbd = shape.embeddingLength;
  const nEmbdKv = (nEmbd / shape.headCount) * shape.headCountKv;
  const perBlock = 2 * nEmbd + 2 * nEmbd * nEmbd + 2 * nEmbd * nEmbdKv + 3 * nEmbd * shape.feedForwardLength;
  return shape.vocabSize * nEmbd * (shape.tiedEmbeddings ? 1 : 2) + shape.blockCount * perBlock + nEmbd;
}

/**
 * Writes a synthetic model file for `options.shape`. The file appears at `options.path` only when
 * complete (temp file + rename); the sha256 is computed while writing, without a second read.
 */
export async function writeSyntheticModel(options: SyntheticModelOptions): Promise<SyntheticModelFile> {
  if (!isSyntheticShapeName(options.shape)) {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `Unknown synthetic shape "${String(options.shape)}"; use one of ${Object.keys(SYNTHETIC_SHAPES).join(', ')}.`,
    );
  }
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new NightjarError('NJ_BAD_REQUEST', `The seed must be an integer from 0 to 4294967295; got ${seed}.`);
  }
  const shape = SYNTHETIC_SHAPES[options.shape];
  const storeAsF32 = options.storeAsF32 ?? false;
  const written = await writeGgufFile({
    path: options.path,
    metadata: metadataOf(shape, seed, storeAsF32),
    tensors: tensorsOf(shape, seed, storeAsF32),
    onProgress: options.onProgress,
    signal: options.signal,
  });
  return {
    path: written.path,
    bytes: written.bytes,
    sha256: written.sha256,
    shape: shape.name,
    modelId: syntheticModelId(shape.name),
    seed,
  };
}
