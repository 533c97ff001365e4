/**
 * Reply chunks (DESIGN.md "Envelope" step 5): each chunk is secretbox under a response key
 * derived from the content key and a per-attempt salt the agent draws, with a nonce built from a
 * derived per-job prefix and the chunk counter. The reader rejects gaps, reordering,
 * duplicates, anything after the final chunk and a stream that ends without one.
 */
import { CryptoError } from '../errors.js';
import { fromBase64Url, fromUtf8, toBase64Url, u32be, utf8 } from '../encoding.js';
import { validate } from '../protocol/codec.js';
import { LIMITS } from '../protocol/limits.js';
import { chunkPayloadSchema, type ChunkPayload, type FinishReason, type ToolCall, type Usage } from '../protocol/schemas.js';
import { createSha256, hkdfSha256, type Sha256Stream } from './hash.js';
import { secretOpen, secretSeal } from './keys.js';
import { pad, unpad } from './padding.js';

/** The key and nonce prefix of one reply stream. */
export interface ReplyKeys {
  readonly key: Uint8Array;
  readonly noncePrefix: Uint8Array;
}

/**
 * Derives the reply keys: HKDF-SHA256 over the content key, salted with the agent's 16 random
 * bytes for this attempt and bound to the agent's id. A fresh salt per attempt means two agents
 * tried for the same job never share a key stream.
 */
export function deriveReplyKeys(contentKey: Uint8Array, replySalt: Uint8Array, agentId: string): ReplyKeys {
  if (replySalt.length !== 16) throw new CryptoError('NJ_BAD_KEY', 'a reply salt must be 16 bytes');
  const okm = hkdfSha256(contentKey, replySalt, `nightjar/reply/v1\n${agentId}`, 48);
  return { key: okm.subarray(0, 32), noncePrefix: okm.subarray(32, 48) };
}

function chunkNonce(prefix: Uint8Array, seq: number): Uint8Array {
  const nonce = new Uint8Array(24);
  nonce.set(prefix, 0);
  new DataView(nonce.buffer).setUint32(20, seq, false);
  return nonce;
}

/** The digest the receipt states over a reply: sha256 of each ciphertext prefixed by its length. */
export class ReplyDigest {
  readonly #hash: Sha256Stream = createSha256();
  /** Adds one chunk ciphertext. */
  add(ciphertext: Uint8Array): void {
    this.#hash.update(u32be(ciphertext.length)).update(ciphertext);
  }
  /** The digest so far (consumes the hash: call once, at the end). */
  digest(): Uint8Array {
    return this.#hash.digest();
  }
}

/** One embedding vector as a chunk carries it: its float32 values, little-endian, in base64url. */
export function encodeEmbedding(vector: ArrayLike<number>): string {
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < vector.length; i++) view.setFloat32(i * 4, vector[i]!, true);
  return toBase64Url(bytes);
}

/** The values of one vector a chunk carries; throws NJ_DECRYPT_FAILED when it is not whole float32 values. */
export function decodeEmbedding(text: string): Float32Array {
  const bytes = fromBase64Url(text);
  if (bytes.length === 0 || bytes.length % 4 !== 0)
    throw new CryptoError('NJ_DECRYPT_FAILED', 'an embedding in the reply is not float32 values');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** The final chunk's content. */
export interface ReplyFinal {
  finishReason: FinishReason;
  usage: Usage;
  /** Which of the request's stop sequences ended the reply (finishReason 'stop'), when one did. */
  stopSequence?: string;
  /** The tool calls of a reply that ended in them (finishReason 'tool_calls'). */
  toolCalls?: ToolCall[];
}

/** Seals the chunks of one reply, in order. */
export class ReplySealer {
  #seq = 0;
  #finished = false;
  readonly #keys: ReplyKeys;
  readonly #digest = new ReplyDigest();
  readonly #padTo: number;

  /** @param padTo Chunk plaintexts pad to a multiple of this. Defaults to LIMITS.chunkPadBytes. */
  constructor(keys: ReplyKeys, padTo: number = LIMITS.chunkPadBytes) {
    this.#keys = keys;
    this.#padTo = padTo;
  }

  /**
   * Seals the next chunk; pass `final` on the last one, and an embedding job's next vectors
   * (base64url float32, see {@link encodeEmbedding}) as `embeddings`.
   */
  seal(delta: string, final?: ReplyFinal, embeddings?: string[]): { seq: number; data: Uint8Array } {
    if (this.#finished) throw new CryptoError('NJ_CHUNK_SEQUENCE', 'the reply is already finished');
    const payload: ChunkPayload = { seq: this.#seq, delta };
    if (final) payload.final = final;
    if (embeddings !== undefined && embeddings.length > 0) payload.embeddings = embeddings;
    const bytes = utf8(JSON.stringify(payload));
    const size = Math.ceil((bytes.length + 4) / this.#padTo) * this.#padTo;
    if (size + 16 > LIMITS.maxChunkBytes) throw new CryptoError('NJ_FRAME_TOO_LARGE', 'a reply chunk is too large');
    const seq = this.#seq++;
    const data = secretSeal(pad(bytes, size), chunkNonce(this.#keys.noncePrefix, seq), this.#keys.key);
    this.#digest.add(data);
    if (final) this.#finished = true;
    return { seq, data };
  }

  /** True once the final chunk is sealed. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Digest over every chunk sealed; call after the final one. */
  digest(): Uint8Array {
    return this.#digest.digest();
  }
}

/** Opens the chunks of one reply, enforcing order and completeness. */
export class ReplyOpener {
  #expected = 0;
  #final: ReplyFinal | undefined;
  readonly #keys: ReplyKeys;
  readonly #digest = new ReplyDigest();

  constructor(keys: ReplyKeys) {
    this.#keys = keys;
  }

  /**
   * Opens the chunk the stream says is number `seq`. Throws NJ_CHUNK_SEQUENCE on a gap, a
   * reorder, a duplicate or a chunk after the final one, NJ_DECRYPT_FAILED if it was altered.
   */
  open(seq: number, data: Uint8Array): ChunkPayload {
    if (this.#final) throw new CryptoError('NJ_CHUNK_SEQUENCE', 'a chunk arrived after the final chunk');
    if (seq !== this.#expected) {
      const kind = seq < this.#expected ? 'a duplicate or reordered' : 'a gap before';
      throw new CryptoError('NJ_CHUNK_SEQUENCE', `${kind} chunk: expected ${this.#expected}, got ${seq}`);
    }
    const plain = unpad(secretOpen(data, chunkNonce(this.#keys.noncePrefix, seq), this.#keys.key, `reply chunk ${seq}`));
    let parsed: unknown;
    try {
      parsed = JSON.parse(fromUtf8(plain));
    } catch {
      // No cause: JSON.parse quotes its input, and this input is reply text.
      throw new CryptoError('NJ_DECRYPT_FAILED', `reply chunk ${seq} is not JSON`);
    }
    const chunk = validate(chunkPayloadSchema, parsed, 'reply chunk');
    if (chunk.seq !== seq) throw new CryptoError('NJ_CHUNK_SEQUENCE', `reply chunk ${seq} carries sequence ${chunk.seq}`);
    this.#expected++;
    this.#digest.add(data);
    if (chunk.final) this.#final = chunk.final;
    return chunk;
  }

  /** The final chunk's content; throws NJ_STREAM_TRUNCATED if the stream has not finished. */
  finish(): ReplyFinal {
    if (!this.#final)
      throw new CryptoError('NJ_STREAM_TRUNCATED', `the reply ended after ${this.#expected} chunks without its final chunk`);
    return this.#final;
  }

  /** True once the final chunk has been opened. */
  get finished(): boolean {
    return this.#final !== undefined;
  }

  /** Digest over the chunks opened; call once, after finish(). */
  digest(): Uint8Array {
    return this.#digest.digest();
  }
}
