/**
 * Key pairs: the agent's long-lived Ed25519 identity, its rotating X25519 box keys, and the
 * identifiers derived from them.
 */
import nacl from 'tweetnacl';
import { CryptoError } from '../errors.js';
import { toHex } from '../encoding.js';
import { cryptoBackend, randomBytes } from './backend.js';
import { taggedHash } from './hash.js';

/** An Ed25519 identity. The seed is the secret; keep it in the keychain. */
export interface IdentityKeyPair {
  /** 32-byte secret seed. */
  readonly seed: Uint8Array;
  /** 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Hex id derived from the public key. */
  readonly agentId: string;
}

/** An X25519 key pair for NaCl box, with the id it is published under. */
export interface BoxKeyPair {
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly keyId: string;
}

/** The agent id of an identity public key: hex of the first 16 bytes of its tagged hash. */
export function agentIdFor(identityPublicKey: Uint8Array): string {
  return toHex(taggedHash('agent-id/v1', identityPublicKey).subarray(0, 16));
}

/** The id of a box public key: hex of the first 8 bytes of its tagged hash. */
export function boxKeyIdFor(boxPublicKey: Uint8Array): string {
  return toHex(taggedHash('box-key-id/v1', boxPublicKey).subarray(0, 8));
}

/** Rebuilds an identity from its 32-byte seed. */
export async function identityFromSeed(seed: Uint8Array): Promise<IdentityKeyPair> {
  if (seed.length !== 32) throw new CryptoError('NJ_BAD_KEY', 'an identity seed must be 32 bytes');
  const publicKey = await (await cryptoBackend()).ed25519PublicKey(seed);
  return { seed, publicKey, agentId: agentIdFor(publicKey) };
}

/** A fresh random identity. */
export function generateIdentity(): Promise<IdentityKeyPair> {
  return identityFromSeed(randomBytes(32));
}

/** Rebuilds a box key pair from its 32-byte secret. */
export async function boxKeyFromSecret(secretKey: Uint8Array): Promise<BoxKeyPair> {
  if (secretKey.length !== 32) throw new CryptoError('NJ_BAD_KEY', 'a box secret key must be 32 bytes');
  const publicKey = await (await cryptoBackend()).x25519PublicKey(secretKey);
  return { secretKey, publicKey, keyId: boxKeyIdFor(publicKey) };
}

/** A fresh random box key pair. */
export function generateBoxKey(): Promise<BoxKeyPair> {
  return boxKeyFromSecret(randomBytes(32));
}

/** NaCl box: seals `message` for `theirPublic` from `mySecret` (XSalsa20-Poly1305). */
export async function boxSeal(message: Uint8Array, nonce: Uint8Array, theirPublic: Uint8Array, mySecret: Uint8Array): Promise<Uint8Array> {
  const key = await (await cryptoBackend()).boxKey(theirPublic, mySecret);
  return nacl.secretbox(message, nonce, key);
}

/** Opens a NaCl box, throwing NJ_DECRYPT_FAILED where tweetnacl would return null. */
export async function boxOpen(
  sealed: Uint8Array,
  nonce: Uint8Array,
  theirPublic: Uint8Array,
  mySecret: Uint8Array,
  what: string,
): Promise<Uint8Array> {
  const key = await (await cryptoBackend()).boxKey(theirPublic, mySecret);
  return secretOpen(sealed, nonce, key, what);
}

/** secretbox open with a typed error instead of null. */
export function secretOpen(sealed: Uint8Array, nonce: Uint8Array, key: Uint8Array, what: string): Uint8Array {
  const opened = nacl.secretbox.open(sealed, nonce, key);
  if (!opened) throw new CryptoError('NJ_DECRYPT_FAILED', `${what} does not decrypt: altered, truncated or sealed for another key`);
  return opened;
}

/** secretbox seal (XSalsa20-Poly1305). */
export function secretSeal(message: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  return nacl.secretbox(message, nonce, key);
}
