/**
 * The asymmetric primitives, twice: WebCrypto (Ed25519, X25519) for speed where the runtime has
 * it, and tweetnacl as the portable reference. Both produce byte-identical keys, signatures and
 * NaCl box keys (a test holds them to it). Symmetric sealing is always tweetnacl's secretbox.
 */
import nacl from 'tweetnacl';
import { CryptoError } from '../errors.js';
import { bytesEqual, concatBytes, fromBase64Url, toBase64Url } from '../encoding.js';

/** A source of asymmetric operations. All methods are async so both backends fit one shape. */
export interface CryptoBackend {
  /** `webcrypto` or `tweetnacl`. */
  readonly name: 'webcrypto' | 'tweetnacl';
  /** The Ed25519 public key of a 32-byte seed. */
  ed25519PublicKey(seed: Uint8Array): Promise<Uint8Array>;
  /** An Ed25519 signature (64 bytes) of `message` by the key with this seed. */
  sign(seed: Uint8Array, message: Uint8Array): Promise<Uint8Array>;
  /** True if `signature` is a valid Ed25519 signature of `message` by `publicKey`. Never throws. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
  /** The X25519 public key of a 32-byte secret. */
  x25519PublicKey(secret: Uint8Array): Promise<Uint8Array>;
  /**
   * The NaCl box key (`crypto_box_beforenm`): HSalsa20 of the X25519 shared secret. Throws
   * NJ_BAD_KEY for a low-order public key (all-zero shared secret).
   */
  boxKey(theirPublic: Uint8Array, mySecret: Uint8Array): Promise<Uint8Array>;
  /**
   * A fresh ephemeral X25519 key pair, and the NaCl box key it shares with each of
   * `theirPublics` (in order). The secret never leaves the backend and is gone afterwards.
   */
  ephemeralBoxKeys(theirPublics: readonly Uint8Array[]): Promise<{ publicKey: Uint8Array; boxKeys: Uint8Array[] }>;
}

interface NaclLowLevel {
  crypto_core_hsalsa20(out: Uint8Array, inp: Uint8Array, k: Uint8Array, c: Uint8Array): number;
}
const lowlevel = (nacl as unknown as { lowlevel: NaclLowLevel }).lowlevel;
const SIGMA = new Uint8Array([101, 120, 112, 97, 110, 100, 32, 51, 50, 45, 98, 121, 116, 101, 32, 107]);
const ZERO16 = new Uint8Array(16);

function hsalsa20(shared: Uint8Array): Uint8Array {
  if (bytesEqual(shared, new Uint8Array(32))) {
    throw new CryptoError('NJ_BAD_KEY', 'the public key is a low-order point');
  }
  const out = new Uint8Array(32);
  lowlevel.crypto_core_hsalsa20(out, ZERO16, shared, SIGMA);
  return out;
}

// L, the order of the Ed25519 base point, little-endian (RFC 8032 §5.1).
const ED25519_ORDER = new Uint8Array([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0x10,
]);

/**
 * True if the S half of a signature is below L, as RFC 8032 §5.1.7 requires. tweetnacl skips
 * this check, so without it a signature (R, S + L) would verify there and fail in WebCrypto.
 */
function canonicalScalar(signature: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const s = signature[32 + i]!;
    const l = ED25519_ORDER[i]!;
    if (s !== l) return s < l;
  }
  return false;
}

function requireLength(bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new CryptoError('NJ_BAD_KEY', `${what} must be ${length} bytes`);
  }
}

/** The tweetnacl backend: pure JavaScript, runs anywhere, slow for Ed25519. */
export const naclBackend: CryptoBackend = {
  name: 'tweetnacl',
  async ed25519PublicKey(seed) {
    requireLength(seed, 32, 'an Ed25519 seed');
    return nacl.sign.keyPair.fromSeed(seed).publicKey;
  },
  async sign(seed, message) {
    requireLength(seed, 32, 'an Ed25519 seed');
    return nacl.sign.detached(message, nacl.sign.keyPair.fromSeed(seed).secretKey);
  },
  async verify(publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64 || !canonicalScalar(signature)) return false;
    try {
      return nacl.sign.detached.verify(message, signature, publicKey);
    } catch {
      return false;
    }
  },
  async x25519PublicKey(secret) {
    requireLength(secret, 32, 'an X25519 secret key');
    return nacl.scalarMult.base(secret);
  },
  async boxKey(theirPublic, mySecret) {
    requireLength(theirPublic, 32, 'an X25519 public key');
    requireLength(mySecret, 32, 'an X25519 secret key');
    return hsalsa20(nacl.scalarMult(mySecret, theirPublic));
  },
  async ephemeralBoxKeys(theirPublics) {
    const secret = randomBytes(32);
    try {
      const publicKey = nacl.scalarMult.base(secret);
      const boxKeys = theirPublics.map((their) => {
        requireLength(their, 32, 'an X25519 public key');
        return hsalsa20(nacl.scalarMult(secret, their));
      });
      return { publicKey, boxKeys };
    } finally {
      secret.fill(0);
    }
  },
};

// PKCS#8 prefixes for a raw 32-byte private key (RFC 8410).
const PKCS8_ED25519 = new Uint8Array([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 112, 4, 34, 4, 32]);
const PKCS8_X25519 = new Uint8Array([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 110, 4, 34, 4, 32]);

const PUBLIC_KEY_CACHE_LIMIT = 4096;

/** WebCrypto's types want an ArrayBuffer-backed view; ours always are. */
function view(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>;
}

/**
 * Builds the WebCrypto backend over a SubtleCrypto. Imported keys are cached: private keys by
 * the identity of their seed array, public keys by value (bounded).
 */
export function createWebCryptoBackend(subtle: SubtleCrypto): CryptoBackend {
  const signingKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();
  const agreementKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();
  const verifyKeys = new Map<string, Promise<CryptoKey>>();
  const agreementPublicKeys = new Map<string, Promise<CryptoKey>>();

  function cached(map: Map<string, Promise<CryptoKey>>, key: string, make: () => Promise<CryptoKey>): Promise<CryptoKey> {
    let hit = map.get(key);
    if (!hit) {
      if (map.size >= PUBLIC_KEY_CACHE_LIMIT) map.delete(map.keys().next().value as string);
      hit = make();
      map.set(key, hit);
      hit.catch(() => map.delete(key));
    }
    return hit;
  }

  function privateKey(
    map: WeakMap<Uint8Array, Promise<CryptoKey>>,
    raw: Uint8Array,
    prefix: Uint8Array,
    algorithm: string,
    usages: KeyUsage[],
  ): Promise<CryptoKey> {
    let hit = map.get(raw);
    if (!hit) {
      hit = subtle.importKey('pkcs8', view(concatBytes(prefix, raw)), { name: algorithm }, true, usages);
      map.set(raw, hit);
    }
    return hit;
  }

  async function publicOf(key: CryptoKey): Promise<Uint8Array> {
    const jwk = await subtle.exportKey('jwk', key);
    return fromBase64Url(jwk.x ?? '');
  }

  return {
    name: 'webcrypto',
    async ed25519PublicKey(seed) {
      requireLength(seed, 32, 'an Ed25519 seed');
      return publicOf(await privateKey(signingKeys, seed, PKCS8_ED25519, 'Ed25519', ['sign']));
    },
    async sign(seed, message) {
      requireLength(seed, 32, 'an Ed25519 seed');
      const key = await privateKey(signingKeys, seed, PKCS8_ED25519, 'Ed25519', ['sign']);
      return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, view(message)));
    },
    async verify(publicKey, message, signature) {
      if (publicKey.length !== 32 || signature.length !== 64) return false;
      try {
        const key = await cached(verifyKeys, toBase64Url(publicKey), () =>
          subtle.importKey('raw', view(publicKey), { name: 'Ed25519' }, false, ['verify']),
        );
        return await subtle.verify({ name: 'Ed25519' }, key, view(signature), view(message));
      } catch {
        return false;
      }
    },
    async x25519PublicKey(secret) {
      requireLength(secret, 32, 'an X25519 secret key');
      return publicOf(await privateKey(agreementKeys, secret, PKCS8_X25519, 'X25519', ['deriveBits']));
    },
    async boxKey(theirPublic, mySecret) {
      requireLength(theirPublic, 32, 'an X25519 public key');
      requireLength(mySecret, 32, 'an X25519 secret key');
      const mine = await privateKey(agreementKeys, mySecret, PKCS8_X25519, 'X25519', ['deriveBits']);
      let shared: Uint8Array;
      try {
        const theirs = await cached(agreementPublicKeys, toBase64Url(theirPublic), () =>
          subtle.importKey('raw', view(theirPublic), { name: 'X25519' }, false, []),
        );
        shared = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: theirs }, mine, 256));
      } catch (cause) {
        throw new CryptoError('NJ_BAD_KEY', 'the public key is not a usable X25519 point', { cause });
      }
      return hsalsa20(shared);
    },
    async ephemeralBoxKeys(theirPublics) {
      // Generated inside WebCrypto and never exported: about twice as fast as importing a
      // secret drawn outside, and the secret cannot leak from here.
      const pair = (await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits'])) as CryptoKeyPair;
      const publicKey = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
      const boxKeys = await Promise.all(
        theirPublics.map(async (their) => {
          requireLength(their, 32, 'an X25519 public key');
          let shared: Uint8Array;
          try {
            const theirs = await cached(agreementPublicKeys, toBase64Url(their), () =>
              subtle.importKey('raw', view(their), { name: 'X25519' }, false, []),
            );
            shared = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: theirs }, pair.privateKey, 256));
          } catch (cause) {
            throw new CryptoError('NJ_BAD_KEY', 'the public key is not a usable X25519 point', { cause });
          }
          return hsalsa20(shared);
        }),
      );
      return { publicKey, boxKeys };
    },
  };
}

// RFC 8032 §7.1 test 1: a fixed vector both backends must reproduce before WebCrypto is trusted.
const PROBE_SEED = fromBase64Url('nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A');
const PROBE_PUBLIC = fromBase64Url('11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo');

let selected: Promise<CryptoBackend> | undefined;

/**
 * The backend to use here: WebCrypto when the runtime supports Ed25519 and X25519 and agrees
 * with tweetnacl on a fixed vector, tweetnacl otherwise. Decided once per process.
 */
export function cryptoBackend(): Promise<CryptoBackend> {
  selected ??= (async () => {
    const subtle = globalThis.crypto?.subtle;
    if (!subtle) return naclBackend;
    const web = createWebCryptoBackend(subtle);
    try {
      const pub = await web.ed25519PublicKey(PROBE_SEED);
      const secret = new Uint8Array(32).fill(7);
      const [a, b] = await Promise.all([web.x25519PublicKey(secret), naclBackend.x25519PublicKey(secret)]);
      if (bytesEqual(pub, PROBE_PUBLIC) && bytesEqual(a, b)) return web;
    } catch {
      // fall through to the portable backend
    }
    return naclBackend;
  })();
  return selected;
}

/** Cryptographically random bytes from the platform's CSPRNG. */
export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  // getRandomValues fills at most 65,536 bytes per call.
  for (let o = 0; o < length; o += 65536) {
    globalThis.crypto.getRandomValues(out.subarray(o, Math.min(length, o + 65536)));
  }
  return out;
}
