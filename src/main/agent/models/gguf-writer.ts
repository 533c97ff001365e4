/**
 * A small GGUF v3 writer: metadata, tensor infos and tensor data streamed to disk, with the
 * sha256 of the file computed on the way out and an atomic rename at the end, so a half-written
 * file never appears at the target path.
 *
 * Layout (ggml's docs/gguf.md): magic `GGUF`, version 3, tensor count (u64), metadata count (u64),
 * the metadata key/values, the tensor infos (name, dims innermost first, ggml type, offset into
 * the data section), padding to `general.alignment`, then each tensor's bytes, each padded to the
 * alignment. Everything is little-endian.
 *
 * Also here: the two ggml block formats the synthetic models use (Q8_0 and Q4_0) and IEEE half
 * conversion, since Node 20 has no Float16Array.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { NightjarError } from '../../../shared/index.js';

/** Numeric metadata value kinds carried as a JavaScript number. */
export type GgufNumberKind = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';

/** One metadata value, tagged with its GGUF type. */
export type GgufValue =
  | { readonly kind: GgufNumberKind; readonly value: number }
  | { readonly kind: 'uint64' | 'int64'; readonly value: bigint }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'array'; readonly itemKind: GgufNumberKind; readonly values: ArrayLike<number> }
  | { readonly kind: 'array'; readonly itemKind: 'string'; readonly values: readonly string[] };

/** Shorthands for building {@link GgufValue}s. */
export const gguf = {
  uint32: (value: number): GgufValue => ({ kind: 'uint32', value }),
  int32: (value: number): GgufValue => ({ kind: 'int32', value }),
  float32: (value: number): GgufValue => ({ kind: 'float32', value }),
  uint64: (value: bigint): GgufValue => ({ kind: 'uint64', value }),
  bool: (value: boolean): GgufValue => ({ kind: 'bool', value }),
  string: (value: string): GgufValue => ({ kind: 'string', value }),
  strings: (values: readonly string[]): GgufValue => ({ kind: 'array', itemKind: 'string', values }),
  float32s: (values: ArrayLike<number>): GgufValue => ({ kind: 'array', itemKind: 'float32', values }),
  int32s: (values: ArrayLike<number>): GgufValue => ({ kind: 'array', itemKind: 'int32', values }),
} as const;

/** The ggml tensor types this writer knows the sizes of. */
export type GgmlTensorType = 'f32' | 'f16' | 'q4_0' | 'q8_0';

/** ggml's numeric ids for {@link GgmlTensorType} (ggml.h `enum ggml_type`). */
export const GGML_TYPE_ID: Readonly<Record<GgmlTensorType, number>> = { f32: 0, f16: 1, q4_0: 2, q8_0: 8 };

/** Elements per block and bytes per block of each type. */
export const GGML_BLOCK: Readonly<Record<GgmlTensorType, { readonly elements: number; readonly bytes: number }>> = {
  f32: { elements: 1, bytes: 4 },
  f16: { elements: 1, bytes: 2 },
  // block_q4_0: ggml_half d; uint8_t qs[16]  (two 4-bit codes per byte)
  q4_0: { elements: 32, bytes: 18 },
  // block_q8_0: ggml_half d; int8_t qs[32]
  q8_0: { elements: 32, bytes: 34 },
};

/** One tensor to write. */
export interface GgufTensorSpec {
  /** Tensor name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  /** Dimensions, innermost (row length) first, as GGUF stores them. */
  readonly dims: readonly number[];
  readonly type: GgmlTensorType;
  /**
   * Produces the tensor's bytes in order, in chunks of any size. Called once, when the writer
   * reaches this tensor, so a producer may generate its data lazily; a chunk must not be changed
   * after it has been yielded. The writer checks that the total matches dims and type.
   */
  readonly data: () => Iterable<Uint8Array>;
}

/** Options of {@link writeGgufFile}. */
export interface WriteGgufOptions {
  /** Where the file lands (atomically, by rename from a temp file in the same folder). */
  readonly path: string;
  /** Metadata in file order. `general.alignment` is added if missing. */
  readonly metadata: ReadonlyArray<readonly [string, GgufValue]>;
  readonly tensors: readonly GgufTensorSpec[];
  /** Data alignment in bytes. Defaults to 32 (GGUF's default). */
  readonly alignment?: number;
  /** Called after each chunk with bytes written so far and the final size. Defaults to none. */
  readonly onProgress?: (bytesWritten: number, totalBytes: number) => void;
  /** Aborting stops the write and removes the temp file. Defaults to none. */
  readonly signal?: AbortSignal;
  /** fsync the file before the rename, so a crash cannot leave a renamed but empty file. Defaults to true. */
  readonly sync?: boolean;
}

/** What {@link writeGgufFile} wrote. */
export interface GgufFileWritten {
  readonly path: string;
  /** File size in bytes. */
  readonly bytes: number;
  /** sha256 of the whole file, lowercase hex. */
  readonly sha256: string;
}

/** Bytes a tensor of this type and shape takes. Throws if rows do not split into whole blocks. */
export function tensorByteSize(type: GgmlTensorType, dims: readonly number[]): number {
  const block = GGML_BLOCK[type];
  const rowLength = dims[0] ?? 1;
  if (rowLength % block.elements !== 0) {
    throw new NightjarError(
      'NJ_BAD_REQUEST',
      `A ${type} tensor needs a row length that is a multiple of ${block.elements}; got ${rowLength}.`,
    );
  }
  const elements = dims.reduce((a, b) => a * b, 1);
  return (elements / block.elements) * block.bytes;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

const NUMBER_KIND_ID: Readonly<Record<GgufNumberKind, number>> = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  float64: 12,
};
const NUMBER_KIND_SIZE: Readonly<Record<GgufNumberKind, number>> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  float64: 8,
};
const KIND_ID = { bool: 7, string: 8, array: 9, uint64: 10, int64: 11 } as const;

/** Grows a byte buffer as the header is serialised. */
class ByteBuilder {
  private buf = Buffer.alloc(1 << 16);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  get length(): number {
    return this.len;
  }

  u32(v: number): void {
    this.reserve(4);
    this.len = this.buf.writeUInt32LE(v, this.len);
  }

  u64(v: bigint | number): void {
    this.reserve(8);
    this.len = this.buf.writeBigUInt64LE(BigInt(v), this.len);
  }

  i64(v: bigint): void {
    this.reserve(8);
    this.len = this.buf.writeBigInt64LE(v, this.len);
  }

  number(kind: GgufNumberKind, v: number): void {
    this.reserve(8);
    const b = this.buf;
    switch (kind) {
      case 'uint8':
        this.len = b.writeUInt8(v, this.len);
        break;
      case 'int8':
        this.len = b.writeInt8(v, this.len);
        break;
      case 'uint16':
        this.len = b.writeUInt16LE(v, this.len);
        break;
      case 'int16':
        this.len = b.writeInt16LE(v, this.len);
        break;
      case 'uint32':
        this.len = b.writeUInt32LE(v, this.len);
        break;
      case 'int32':
        this.len = b.writeInt32LE(v, this.len);
        break;
      case 'float32':
        this.len = b.writeFloatLE(v, this.len);
        break;
      case 'float64':
        this.len = b.writeDoubleLE(v, this.len);
        break;
    }
  }

  string(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(n);
    this.reserve(n);
    this.len += this.buf.write(s, this.len, 'utf8');
  }

  zeros(n: number): void {
    this.reserve(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }

  value(v: GgufValue): void {
    switch (v.kind) {
      case 'bool':
        this.u32(KIND_ID.bool);
        this.reserve(1);
        this.len = this.buf.writeUInt8(v.value ? 1 : 0, this.len);
        return;
      case 'string':
        this.u32(KIND_ID.string);
        this.string(v.value);
        return;
      case 'uint64':
        this.u32(KIND_ID.uint64);
        this.u64(v.value);
        return;
      case 'int64':
        this.u32(KIND_ID.int64);
        this.i64(v.value);
        return;
      case 'array':
        this.u32(KIND_ID.array);
        if (v.itemKind === 'string') {
          this.u32(KIND_ID.string);
          this.u64(v.values.length);
          for (const s of v.values) this.string(s);
        } else {
          this.u32(NUMBER_KIND_ID[v.itemKind]);
          this.u64(v.values.length);
          this.reserve(v.values.length * NUMBER_KIND_SIZE[v.itemKind]);
          for (let i = 0; i < v.values.length; i++) this.number(v.itemKind, v.values[i]!);
        }
        return;
      default:
        this.u32(NUMBER_KIND_ID[v.kind]);
        this.number(v.kind, v.value);
    }
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/** Serialises everything before the tensor data, padded to the alignment. */
function buildHeader(
  metadata: ReadonlyArray<readonly [string, GgufValue]>,
  tensors: readonly GgufTensorSpec[],
  alignment: number,
): { header: Buffer; sizes: number[]; dataBytes: number } {
  const b = new ByteBuilder();
  // magic "GGUF" read as a little-endian u32
  b.u32(0x46554747);
  b.u32(3);
  b.u64(tensors.length);
  b.u64(metadata.length);
  for (const [key, value] of metadata) {
    b.string(key);
    b.value(value);
  }
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    const size = tensorByteSize(t.type, t.dims);
    sizes.push(size);
    b.string(t.name);
    b.u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(GGML_TYPE_ID[t.type]);
    b.u64(offset);
    offset = alignUp(offset + size, alignment);
  }
  b.zeros(alignUp(b.length, alignment) - b.length);
  return { header: Buffer.from(b.bytes()), sizes, dataBytes: offset };
}

/**
 * Writes a GGUF v3 file. Tensor data is pulled from each tensor's producer and written with one
 * write in flight, so generating the next chunk overlaps writing the last. The file is written to
 * a temp name beside `path` and renamed into place only when complete.
 */
export async function writeGgufFile(options: WriteGgufOptions): Promise<GgufFileWritten> {
  const alignment = options.alignment ?? 32;
  const metadata = options.metadata.some(([k]) => k === 'general.alignment')
    ? options.metadata
    : [...options.metadata, ['general.alignment', gguf.uint32(alignment)] as const];
  const names = new Set<string>();
  for (const t of options.tensors) {
    if (names.has(t.name)) throw new NightjarError('NJ_BAD_REQUEST', `Tensor "${t.name}" appears twice.`);
    names.add(t.name);
  }
  const { header, sizes, dataBytes } = buildHeader(metadata, options.tensors, alignment);
  const totalBytes = header.length + dataBytes;

  const target = path.resolve(options.path);
  await mkdir(path.dirname(target), { recursive: true });
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.partial`);
  const hash = createHash('sha256');
  const handle = await open(temp, 'wx');
  let written = 0;
  let pending: Promise<unknown> = Promise.resolve();
  const write = async (chunk: Uint8Array): Promise<void> => {
    await pending;
    options.signal?.throwIfAborted();
    hash.update(chunk);
    written += chunk.length;
    pending = handle.write(chunk, 0, chunk.length);
    options.onProgress?.(written, totalBytes);
  };
  let renamed = false;
  try {
    await write(header);
    for (let i = 0; i < options.tensors.length; i++) {
      const t = options.tensors[i]!;
      const expected = sizes[i]!;
      let got = 0;
      for (const chunk of t.data()) {
        got += chunk.length;
        if (got > expected) break;
        await write(chunk);
      }
      if (got !== expected) {
        throw new NightjarError('NJ_BAD_REQUEST', `Tensor "${t.name}" produced ${got} bytes, expected ${expected}.`);
      }
      const pad = alignUp(expected, alignment) - expected;
      if (pad > 0) await write(new Uint8Array(pad));
    }
    await pending;
    if (options.sync ?? true) await handle.sync();
    await handle.close();
    await rename(temp, target);
    renamed = true;
  } finally {
    if (!renamed) {
      await pending.catch(() => undefined);
      await handle.close().catch(() => undefined);
      await unlink(temp).catch(() => undefined);
    }
  }
  return { path: target, bytes: written, sha256: hash.digest('hex') };
}

// ---------------------------------------------------------------------------------------------
// IEEE 754 half precision

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bits nearest to `value` (round to nearest even; overflow to infinity). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and 0x7bff + 1 is infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** The value of binary16 `bits`. */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------
// Q8_0 / Q4_0 blocks from random codes

/**
 * Turns `random` (a whole number of `type` blocks of random bytes) into valid blocks in place:
 * each block's first two bytes become the half-precision scale `scale`, the rest stay as the
 * quantised codes. A Q8_0 block then holds 32 values `scale × int8`, uniform over −128…127; a
 * Q4_0 block 32 values `scale × (nibble − 8)`, uniform over −8…7, the low nibbles of its 16 code
 * bytes being elements 0–15 and the high nibbles elements 16–31 (ggml's `dequantize_row_q4_0`).
 * Blocks for which `isZero(blockIndex)` is true are cleared to zero values.
 */
export function fillQuantBlocks(
  type: 'q8_0' | 'q4_0',
  random: Uint8Array,
  scale: number,
  isZero?: (blockIndex: number) => boolean,
): Uint8Array {
  const blockBytes = GGML_BLOCK[type].bytes;
  if (random.length % blockBytes !== 0) {
    throw new NightjarError('NJ_BAD_REQUEST', `${random.length} bytes is not a whole number of ${type} blocks.`);
  }
  const bits = float32ToFloat16Bits(scale);
  const lo = bits & 0xff;
  const hi = bits >>> 8;
  const blocks = random.length / blockBytes;
  for (let b = 0, o = 0; b < blocks; b++, o += blockBytes) {
    if (isZero !== undefined && isZero(b)) {
      // d = 0 makes every value 0 whatever the codes; clearing the codes too keeps it obvious.
      random.fill(0, o, o + blockBytes);
      continue;
    }
    random[o] = lo;
    random[o + 1] = hi;
  }
  return random;
}

/** Standard deviation of one uniformly random code: int8 over −128…127 for Q8_0, −8…7 for Q4_0. */
export const RANDOM_CODE_STD: Readonly<Record<'q8_0' | 'q4_0', number>> = {
  q8_0: Math.sqrt((256 * 256 - 1) / 12),
  q4_0: Math.sqrt((16 * 16 - 1) / 12),
};
