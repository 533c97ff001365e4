/**
 * Reply chunks (DESIGN.md "Envelope" step 5): keys derived from the content key, counter nonces,
 * and a reader that refuses altered, reordered, duplicated, missing and trailing chunks and a
 * stream that ends without its final chunk.
 */
import { createHash, hkdfSync } from 'node:crypto';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  CryptoError,
  LIMITS,
  ProtocolError,
  ReplyDigest,
  ReplyOpener,
  ReplySealer,
  deriveReplyKeys,
  pad,
  secretSeal,
  u32be,
  utf8,
  type ReplyFinal,
  type ReplyKeys,
} from '../../src/shared/index.js';
import { errorChainText, expectNjError } from './support/expect-error.js';
import { testBytes } from './support/fixtures.js';

const CONTENT_KEY = testBytes('reply/content-key', 32);
const SALT = testBytes('reply/salt', 16);
const AGENT = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const KEYS = deriveReplyKeys(CONTENT_KEY, SALT, AGENT);
const FINAL: ReplyFinal = { finishReason: 'stop', usage: { promptTokens: 17, completionTokens: 3 } };

interface Chunk {
  seq: number;
  data: Uint8Array;
}

function sealStream(keys: ReplyKeys = KEYS, deltas: string[] = ['The ', 'nightjar', '.']): Chunk[] {
  const sealer = new ReplySealer(keys);
  return deltas.map((delta, i) => sealer.seal(delta, i === deltas.length - 1 ? FINAL : undefined));
}

const STREAM = sealStream();
const undecryptable = (seq: number): string => `reply chunk ${seq} does not decrypt: altered, truncated or sealed for another key`;
const nonceFor = (prefix: Uint8Array, seq: number): Uint8Array => new Uint8Array([...prefix, 0, 0, 0, 0, ...u32be(seq)]);

describe('keys, nonces and the stream digest', () => {
  it('derives the key and nonce prefix with HKDF-SHA256, bound to the agent id', () => {
    // node:crypto's HKDF is an independent implementation of RFC 5869.
    const okm = new Uint8Array(hkdfSync('sha256', CONTENT_KEY, SALT, `nightjar/reply/v1\n${AGENT}`, 48));
    expect(KEYS.key).toEqual(okm.subarray(0, 32));
    expect(KEYS.noncePrefix).toEqual(okm.subarray(32, 48));
  });

  it('seals chunk n as secretbox(pad(json), prefix ‖ 0⁴ ‖ u32be(n), key)', () => {
    const sealer = new ReplySealer(KEYS);
    const chunks = [sealer.seal('hi'), sealer.seal('!', FINAL)];
    const payloads = [
      { seq: 0, delta: 'hi' },
      { seq: 1, delta: '!', final: FINAL },
    ];
    chunks.forEach((chunk, i) => {
      const json = utf8(JSON.stringify(payloads[i]));
      const size = Math.ceil((json.length + 4) / LIMITS.chunkPadBytes) * LIMITS.chunkPadBytes;
      const expected = nacl.secretbox(pad(json, size), nonceFor(KEYS.noncePrefix, i), KEYS.key);
      expect(chunk).toEqual({ seq: i, data: expected });
    });
  });

  it('pads every chunk plaintext to a multiple of the pad size', () => {
    const sealer = new ReplySealer(KEYS);
    for (const delta of ['', 'x', 'y'.repeat(40), 'z'.repeat(41), 'é'.repeat(100)]) {
      expect((sealer.seal(delta).data.length - 16) % LIMITS.chunkPadBytes).toBe(0);
    }
    const custom = new ReplySealer(KEYS, 256);
    expect(custom.seal('short').data.length).toBe(256 + 16);
  });

  it('opens a whole stream in order, and both sides compute the same digest', () => {
    const sealer = new ReplySealer(KEYS);
    const chunks = ['The ', 'nightjar', '.'].map((d, i, all) => sealer.seal(d, i === all.length - 1 ? FINAL : undefined));
    expect(sealer.finished).toBe(true);
    const opener = new ReplyOpener(KEYS);
    const text = chunks.map((c) => opener.open(c.seq, c.data).delta).join('');
    expect(text).toBe('The nightjar.');
    expect(opener.finished).toBe(true);
    expect(opener.finish()).toEqual(FINAL);
    // sha256 over each ciphertext prefixed with its length, computed independently.
    const hash = createHash('sha256');
    for (const c of chunks) hash.update(u32be(c.data.length)).update(c.data);
    const expected = new Uint8Array(hash.digest());
    expect(sealer.digest()).toEqual(expected);
    expect(opener.digest()).toEqual(expected);
  });

  it('a length prefix keeps chunk boundaries in the digest', () => {
    const one = new ReplyDigest();
    one.add(new Uint8Array([1, 2]));
    one.add(new Uint8Array([3]));
    const two = new ReplyDigest();
    two.add(new Uint8Array([1]));
    two.add(new Uint8Array([2, 3]));
    expect(one.digest()).not.toEqual(two.digest());
  });

  it('refuses a salt that is not 16 bytes', async () => {
    await expectNjError(
      () => deriveReplyKeys(CONTENT_KEY, SALT.subarray(0, 15), AGENT),
      CryptoError,
      'NJ_BAD_KEY',
      'a reply salt must be 16 bytes',
    );
  });
});

describe('tamper matrix: one chunk', () => {
  const flip = (bytes: Uint8Array, bit: number): Uint8Array => {
    const out = new Uint8Array(bytes);
    out[bit >> 3]! ^= 1 << (bit & 7);
    return out;
  };

  // Fails if ReplyOpener stops authenticating chunks (secretbox open).
  it.each<[string, (d: Uint8Array) => Uint8Array]>([
    ['bit 0 flipped (the tag)', (d) => flip(d, 0)],
    ['bit 130 flipped (the text)', (d) => flip(d, 130)],
    ['last bit flipped (the padding)', (d) => flip(d, d.length * 8 - 1)],
    ['truncated by one byte', (d) => d.subarray(0, -1)],
    ['truncated to less than a tag', (d) => d.subarray(0, 10)],
    ['emptied', () => new Uint8Array(0)],
    ['extended by one byte', (d) => new Uint8Array([...d, 0])],
    ['extended by a whole pad block', (d) => new Uint8Array([...d, ...new Uint8Array(64)])],
  ])('%s → NJ_DECRYPT_FAILED', async (_what, edit) => {
    const opener = new ReplyOpener(KEYS);
    await expectNjError(() => opener.open(0, edit(STREAM[0]!.data)), CryptoError, 'NJ_DECRYPT_FAILED', undecryptable(0));
  });

  it('every single-bit flip of a chunk is refused', () => {
    const data = STREAM[1]!.data;
    for (let bit = 0; bit < data.length * 8; bit++) {
      const opener = new ReplyOpener(KEYS);
      opener.open(0, STREAM[0]!.data);
      expect(() => opener.open(1, flip(data, bit)), `bit ${bit}`).toThrow(undecryptable(1));
    }
  });

  // Fails if the reply key stops depending on the salt, the agent id or the content key.
  it.each<[string, ReplyKeys]>([
    ['a different salt (another attempt)', deriveReplyKeys(CONTENT_KEY, testBytes('reply/other-salt', 16), AGENT)],
    ['a different agent', deriveReplyKeys(CONTENT_KEY, SALT, 'f'.repeat(32))],
    ['a different content key (another job)', deriveReplyKeys(testBytes('reply/other-key', 32), SALT, AGENT)],
  ])('a chunk sealed under %s → NJ_DECRYPT_FAILED', async (_what, keys) => {
    const foreign = sealStream(keys);
    const opener = new ReplyOpener(KEYS);
    await expectNjError(() => opener.open(0, foreign[0]!.data), CryptoError, 'NJ_DECRYPT_FAILED', undecryptable(0));
  });

  it('a refused chunk does not advance the stream: the genuine one still opens', () => {
    const opener = new ReplyOpener(KEYS);
    expect(() => opener.open(0, flip(STREAM[0]!.data, 3))).toThrow(undecryptable(0));
    expect(opener.open(0, STREAM[0]!.data).delta).toBe('The ');
  });
});

describe('tamper matrix: the order of chunks', () => {
  // Fails if ReplyOpener stops comparing the frame's seq with the next expected one.
  it('reordered: chunk 1 before chunk 0 → NJ_CHUNK_SEQUENCE', async () => {
    const opener = new ReplyOpener(KEYS);
    await expectNjError(() => opener.open(1, STREAM[1]!.data), CryptoError, 'NJ_CHUNK_SEQUENCE', 'a gap before chunk: expected 0, got 1');
  });

  it('duplicated: chunk 0 twice → NJ_CHUNK_SEQUENCE', async () => {
    const opener = new ReplyOpener(KEYS);
    opener.open(0, STREAM[0]!.data);
    await expectNjError(
      () => opener.open(0, STREAM[0]!.data),
      CryptoError,
      'NJ_CHUNK_SEQUENCE',
      'a duplicate or reordered chunk: expected 1, got 0',
    );
  });

  it('missing: chunk 1 skipped → NJ_CHUNK_SEQUENCE', async () => {
    const opener = new ReplyOpener(KEYS);
    opener.open(0, STREAM[0]!.data);
    await expectNjError(() => opener.open(2, STREAM[2]!.data), CryptoError, 'NJ_CHUNK_SEQUENCE', 'a gap before chunk: expected 1, got 2');
  });

  // Relabelling a chunk with the expected number passes the sequence check; the nonce carries the
  // counter, so it cannot decrypt. Fails if the chunk nonce stops including the counter.
  it.each<[string, number, number]>([
    ['reordered and relabelled: chunk 1 sent as chunk 0', 0, 1],
    ['duplicated and relabelled: chunk 0 sent again as chunk 1', 1, 0],
    ['skipped and relabelled: chunk 2 sent as chunk 1', 1, 2],
  ])('%s → NJ_DECRYPT_FAILED', async (_what, label, actual) => {
    const opener = new ReplyOpener(KEYS);
    for (let seq = 0; seq < label; seq++) opener.open(seq, STREAM[seq]!.data);
    await expectNjError(() => opener.open(label, STREAM[actual]!.data), CryptoError, 'NJ_DECRYPT_FAILED', undecryptable(label));
  });

  // Fails if ReplyOpener stops refusing chunks once the final one has arrived.
  it('a chunk after the final one → NJ_CHUNK_SEQUENCE', async () => {
    const sealer = new ReplySealer(KEYS);
    const chunks = [sealer.seal('a', FINAL)];
    // A dishonest agent (or a relay replaying another stream's bytes) sends one more chunk.
    const extra = secretSeal(pad(utf8(JSON.stringify({ seq: 1, delta: 'more' })), 64), nonceFor(KEYS.noncePrefix, 1), KEYS.key);
    const opener = new ReplyOpener(KEYS);
    opener.open(0, chunks[0]!.data);
    await expectNjError(() => opener.open(1, extra), CryptoError, 'NJ_CHUNK_SEQUENCE', 'a chunk arrived after the final chunk');
  });

  // Fails if finish() stops requiring the final chunk.
  it('a stream that ends without its final chunk → NJ_STREAM_TRUNCATED', async () => {
    const opener = new ReplyOpener(KEYS);
    await expectNjError(
      () => opener.finish(),
      CryptoError,
      'NJ_STREAM_TRUNCATED',
      'the reply ended after 0 chunks without its final chunk',
    );
    opener.open(0, STREAM[0]!.data);
    opener.open(1, STREAM[1]!.data);
    expect(opener.finished).toBe(false);
    await expectNjError(
      () => opener.finish(),
      CryptoError,
      'NJ_STREAM_TRUNCATED',
      'the reply ended after 2 chunks without its final chunk',
    );
  });

  it('a stream spliced from two attempts → NJ_DECRYPT_FAILED at the splice', async () => {
    const retry = sealStream(deriveReplyKeys(CONTENT_KEY, testBytes('reply/attempt-1', 16), AGENT));
    const opener = new ReplyOpener(KEYS);
    opener.open(0, STREAM[0]!.data);
    await expectNjError(() => opener.open(1, retry[1]!.data), CryptoError, 'NJ_DECRYPT_FAILED', undecryptable(1));
  });
});

describe('an agent that seals something inconsistent', () => {
  const sealRaw = (seq: number, plaintext: Uint8Array): Uint8Array =>
    secretSeal(pad(plaintext, 64), nonceFor(KEYS.noncePrefix, seq), KEYS.key);

  // The nonce already binds the counter; the sealed seq is checked too, in depth.
  // Fails if ReplyOpener stops comparing the sealed seq with the frame's.
  it('a sealed seq that differs from its nonce → NJ_CHUNK_SEQUENCE', async () => {
    const opener = new ReplyOpener(KEYS);
    const data = sealRaw(0, utf8(JSON.stringify({ seq: 1, delta: 'x' })));
    await expectNjError(() => opener.open(0, data), CryptoError, 'NJ_CHUNK_SEQUENCE', 'reply chunk 0 carries sequence 1');
  });

  it('a chunk that is not JSON → NJ_DECRYPT_FAILED, without echoing its text', async () => {
    const opener = new ReplyOpener(KEYS);
    const error = await expectNjError(
      () => opener.open(0, sealRaw(0, utf8('CANARY reply text'))),
      CryptoError,
      'NJ_DECRYPT_FAILED',
      'reply chunk 0 is not JSON',
    );
    expect(errorChainText(error)).not.toContain('CANARY');
  });

  it('a chunk with an unknown field → NJ_FRAME_INVALID', async () => {
    const opener = new ReplyOpener(KEYS);
    const data = sealRaw(0, utf8(JSON.stringify({ seq: 0, delta: 'x', tool: 'y' })));
    await expectNjError(
      () => opener.open(0, data),
      ProtocolError,
      'NJ_FRAME_INVALID',
      'reply chunk is invalid at (root): Unrecognized key: "tool"',
    );
  });

  it('an impossible padding length → NJ_DECRYPT_FAILED', async () => {
    const opener = new ReplyOpener(KEYS);
    const padded = new Uint8Array(64);
    padded[3] = 200;
    const data = secretSeal(padded, nonceFor(KEYS.noncePrefix, 0), KEYS.key);
    await expectNjError(() => opener.open(0, data), CryptoError, 'NJ_DECRYPT_FAILED', 'padded message has an impossible length');
  });
});

describe('the sealer', () => {
  it('refuses to seal after the final chunk', async () => {
    const sealer = new ReplySealer(KEYS);
    sealer.seal('done', FINAL);
    await expectNjError(() => sealer.seal('more'), CryptoError, 'NJ_CHUNK_SEQUENCE', 'the reply is already finished');
  });

  it('refuses a chunk larger than the protocol allows', async () => {
    const sealer = new ReplySealer(KEYS);
    await expectNjError(
      () => sealer.seal('x'.repeat(LIMITS.maxChunkBytes)),
      CryptoError,
      'NJ_FRAME_TOO_LARGE',
      'a reply chunk is too large',
    );
  });
});
