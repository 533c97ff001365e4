/**
 * The two asymmetric backends must be interchangeable: WebCrypto on hot paths, tweetnacl as the
 * portable reference (DESIGN.md "Keys"). Every key, signature and box key is compared byte for
 * byte, every signature is verified by the other backend, and both refuse the same bad inputs.
 */
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  CryptoError,
  createWebCryptoBackend,
  cryptoBackend,
  fromHex,
  naclBackend,
  toHex,
  type CryptoBackend,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';
import { testBytes } from './support/fixtures.js';

const web = createWebCryptoBackend(globalThis.crypto.subtle);
const BACKENDS: readonly CryptoBackend[] = [web, naclBackend];

// tweetnacl signs about 100 per second: keep Ed25519 loops short.
const ED_CASES = Array.from({ length: 10 }, (_, i) => ({
  seed: testBytes(`backends/ed25519/${i}`, 32),
  // Lengths 0, 37, 74, … and one longer than a SHA-512 block several times over.
  message: testBytes(`backends/message/${i}`, i === 9 ? 1000 : i * 37),
}));

describe('Ed25519', () => {
  it('gives identical public keys, matching tweetnacl’s own key derivation', async () => {
    for (const { seed } of ED_CASES) {
      const [a, b] = await Promise.all([web.ed25519PublicKey(seed), naclBackend.ed25519PublicKey(seed)]);
      expect(toHex(a)).toBe(toHex(b));
      expect(toHex(a)).toBe(toHex(nacl.sign.keyPair.fromSeed(seed).publicKey));
    }
  });

  it('gives identical signatures, and each backend verifies the other’s', async () => {
    for (const { seed, message } of ED_CASES) {
      const publicKey = await web.ed25519PublicKey(seed);
      const [fromWeb, fromNacl] = await Promise.all([web.sign(seed, message), naclBackend.sign(seed, message)]);
      expect(toHex(fromWeb)).toBe(toHex(fromNacl));
      expect(await web.verify(publicKey, message, fromNacl)).toBe(true);
      expect(await naclBackend.verify(publicKey, message, fromWeb)).toBe(true);
    }
  });

  it('both refuse an altered message, signature or key', async () => {
    const { seed, message } = ED_CASES[3]!;
    const publicKey = await web.ed25519PublicKey(seed);
    const signature = await web.sign(seed, message);
    const flip = (bytes: Uint8Array, bit: number): Uint8Array => {
      const out = new Uint8Array(bytes);
      out[bit >> 3]! ^= 1 << (bit & 7);
      return out;
    };
    const altered: [string, Uint8Array, Uint8Array, Uint8Array][] = [
      ['message bit 0', publicKey, flip(message, 0), signature],
      ['message last bit', publicKey, flip(message, message.length * 8 - 1), signature],
      ['R bit 0', publicKey, message, flip(signature, 0)],
      ['S bit 0', publicKey, message, flip(signature, 256)],
      ['S bit 200', publicKey, message, flip(signature, 456)],
      ['key bit 0', flip(publicKey, 0), message, signature],
      ['key bit 100', flip(publicKey, 100), message, signature],
    ];
    for (const [what, key, msg, sig] of altered) {
      for (const backend of BACKENDS) expect(await backend.verify(key, msg, sig), `${backend.name}: ${what}`).toBe(false);
    }
  });

  // RFC 8032 §5.1.7 requires rejecting S ≥ L. tweetnacl does not check it, so (R, S + L) — a second
  // signature for the same message — verified there and not in WebCrypto.
  // Fails if naclBackend.verify stops checking that S is below L.
  it('both refuse a malleated signature (R, S + L)', async () => {
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const { seed, message } = ED_CASES[1]!;
    const publicKey = await web.ed25519PublicKey(seed);
    const signature = await web.sign(seed, message);
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(signature[32 + i]!);
    // S < L, so S + kL stays below 2^256 (and fits 32 bytes) for every k up to 14.
    for (const bump of [L, 2n * L, 14n * L]) {
      const malleated = new Uint8Array(signature);
      let v = s + bump;
      for (let i = 0; i < 32; i++, v >>= 8n) malleated[32 + i] = Number(v & 255n);
      expect(nacl.sign.detached.verify(message, malleated, publicKey), 'tweetnacl itself accepts it').toBe(true);
      for (const backend of BACKENDS) expect(await backend.verify(publicKey, message, malleated), backend.name).toBe(false);
    }
  });

  it('agree on a small-order public key with the trivial signature', async () => {
    // The identity point and R = identity, S = 0. Both accept it today (a key of small order signs
    // everything); what matters here is that they agree, so a backend switch changes nothing.
    const identity = fromHex('0100000000000000000000000000000000000000000000000000000000000000');
    const signature = new Uint8Array(64);
    signature.set(identity, 0);
    const message = new Uint8Array([1, 2, 3]);
    expect(await web.verify(identity, message, signature)).toBe(await naclBackend.verify(identity, message, signature));
  });

  it('both answer false for keys and signatures of the wrong length, and refuse short seeds', async () => {
    const { seed, message } = ED_CASES[0]!;
    const publicKey = await web.ed25519PublicKey(seed);
    const signature = await web.sign(seed, message);
    for (const backend of BACKENDS) {
      expect(await backend.verify(publicKey.subarray(0, 31), message, signature)).toBe(false);
      expect(await backend.verify(publicKey, message, signature.subarray(0, 63))).toBe(false);
      expect(await backend.verify(new Uint8Array(0), message, new Uint8Array(0))).toBe(false);
      await expectNjError(() => backend.sign(seed.subarray(0, 31), message), CryptoError, 'NJ_BAD_KEY', 'an Ed25519 seed must be 32 bytes');
      await expectNjError(
        () => backend.ed25519PublicKey(new Uint8Array(33)),
        CryptoError,
        'NJ_BAD_KEY',
        'an Ed25519 seed must be 32 bytes',
      );
    }
  });
});

const X_SECRETS = Array.from({ length: 24 }, (_, i) => testBytes(`backends/x25519/${i}`, 32));

describe('X25519 and the NaCl box key', () => {
  it('gives identical public keys, matching tweetnacl’s box key pair', async () => {
    for (const secret of X_SECRETS) {
      const [a, b] = await Promise.all([web.x25519PublicKey(secret), naclBackend.x25519PublicKey(secret)]);
      expect(toHex(a)).toBe(toHex(b));
      expect(toHex(a)).toBe(toHex(nacl.box.keyPair.fromSecretKey(secret).publicKey));
    }
  });

  it('gives identical box keys, equal to nacl.box.before, from either side', async () => {
    for (let i = 0; i + 1 < X_SECRETS.length; i += 2) {
      const mine = X_SECRETS[i]!;
      const theirs = X_SECRETS[i + 1]!;
      const theirPublic = nacl.box.keyPair.fromSecretKey(theirs).publicKey;
      const myPublic = nacl.box.keyPair.fromSecretKey(mine).publicKey;
      const expected = toHex(nacl.box.before(theirPublic, mine));
      for (const backend of BACKENDS) {
        expect(toHex(await backend.boxKey(theirPublic, mine)), backend.name).toBe(expected);
        expect(toHex(await backend.boxKey(myPublic, theirs)), `${backend.name}, other side`).toBe(expected);
      }
    }
  });

  it('agree on public keys outside the canonical range: top bit set, or u ≥ p', async () => {
    const secret = X_SECRETS[0]!;
    const base = fromHex('0900000000000000000000000000000000000000000000000000000000000000');
    const peer = nacl.box.keyPair.fromSecretKey(X_SECRETS[1]!).publicKey;
    const highBit = new Uint8Array(peer);
    highBit[31]! |= 0x80;
    // p + 9 = 2^255 - 10: the same field element as the base point u = 9.
    const pPlus9 = fromHex('f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
    const cases: [string, Uint8Array, Uint8Array][] = [
      ['top bit set is ignored (RFC 7748 §5)', highBit, peer],
      ['u = p + 9 reduces to u = 9', pPlus9, base],
    ];
    for (const [what, odd, equivalent] of cases) {
      const expected = toHex(await naclBackend.boxKey(equivalent, secret));
      for (const backend of BACKENDS) expect(toHex(await backend.boxKey(odd, secret)), `${backend.name}: ${what}`).toBe(expected);
    }
  });

  // The points of small order on Curve25519 and its twist (https://cr.yp.to/ecdh.html#validate):
  // any secret times one of them is zero, so a box "shared" with such a key is known to everyone.
  // Fails if the backends stop refusing an all-zero shared secret.
  const LOW_ORDER = [
    '0000000000000000000000000000000000000000000000000000000000000000',
    '0100000000000000000000000000000000000000000000000000000000000000',
    'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
    '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
    'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  ];
  const withTopBit = (hex: string): string => hex.slice(0, 62) + (parseInt(hex.slice(62), 16) | 0x80).toString(16);

  it.each([...LOW_ORDER, ...LOW_ORDER.map(withTopBit)])('both refuse the low-order point %s with NJ_BAD_KEY', async (hex) => {
    const point = fromHex(hex);
    const secret = X_SECRETS[5]!;
    expect(toHex(nacl.scalarMult(secret, point)), 'the point really is of low order').toBe('00'.repeat(32));
    await expectNjError(() => naclBackend.boxKey(point, secret), CryptoError, 'NJ_BAD_KEY', 'the public key is a low-order point');
    // OpenSSL refuses the point itself; were it to return zeros, the zero check would refuse it.
    await expectNjError(
      () => web.boxKey(point, secret),
      CryptoError,
      'NJ_BAD_KEY',
      /^the public key is (not a usable X25519 point|a low-order point)$/,
    );
  });

  it('ephemeral box keys: each equals what the recipient derives from the ephemeral public key, under either backend', async () => {
    const recipients = X_SECRETS.slice(0, 3).map((secret) => ({ secret, publicKey: nacl.box.keyPair.fromSecretKey(secret).publicKey }));
    for (const backend of BACKENDS) {
      const a = await backend.ephemeralBoxKeys(recipients.map((r) => r.publicKey));
      const b = await backend.ephemeralBoxKeys(recipients.map((r) => r.publicKey));
      expect(toHex(a.publicKey), `${backend.name}: a fresh key each time`).not.toBe(toHex(b.publicKey));
      expect(a.boxKeys).toHaveLength(3);
      for (const [i, r] of recipients.entries()) {
        const expected = toHex(nacl.box.before(a.publicKey, r.secret));
        expect(toHex(a.boxKeys[i]!), backend.name).toBe(expected);
        for (const other of BACKENDS)
          expect(toHex(await other.boxKey(a.publicKey, r.secret)), `${backend.name} → ${other.name}`).toBe(expected);
      }
    }
  });

  it('ephemeral box keys refuse a low-order or short recipient key', async () => {
    for (const backend of BACKENDS) {
      await expectNjError(
        () => backend.ephemeralBoxKeys([new Uint8Array(32)]),
        CryptoError,
        'NJ_BAD_KEY',
        /low-order|not a usable X25519 point/,
      );
      await expectNjError(
        () => backend.ephemeralBoxKeys([new Uint8Array(31)]),
        CryptoError,
        'NJ_BAD_KEY',
        'an X25519 public key must be 32 bytes',
      );
    }
  });

  it('both refuse keys of the wrong length', async () => {
    const secret = X_SECRETS[0]!;
    const peer = nacl.box.keyPair.fromSecretKey(X_SECRETS[1]!).publicKey;
    for (const backend of BACKENDS) {
      await expectNjError(
        () => backend.boxKey(peer.subarray(0, 31), secret),
        CryptoError,
        'NJ_BAD_KEY',
        'an X25519 public key must be 32 bytes',
      );
      await expectNjError(
        () => backend.boxKey(peer, new Uint8Array(33)),
        CryptoError,
        'NJ_BAD_KEY',
        'an X25519 secret key must be 32 bytes',
      );
      await expectNjError(
        () => backend.x25519PublicKey(new Uint8Array(16)),
        CryptoError,
        'NJ_BAD_KEY',
        'an X25519 secret key must be 32 bytes',
      );
    }
  });
});

describe('cryptoBackend()', () => {
  it('picks WebCrypto on Node 20, where it passes the probe, and keeps that choice', async () => {
    const first = await cryptoBackend();
    expect(first.name).toBe('webcrypto');
    expect(await cryptoBackend()).toBe(first);
  });
});
