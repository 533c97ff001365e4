/**
 * SHA-256 and HKDF-SHA256, synchronous and incremental, on every runtime (@noble/hashes).
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { concatBytes, utf8 } from '../encoding.js';

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

/** An incremental SHA-256. */
export interface Sha256Stream {
  update(data: Uint8Array): Sha256Stream;
  digest(): Uint8Array;
}

/** Starts an incremental SHA-256. */
export function createSha256(): Sha256Stream {
  return nobleSha256.create();
}

/** SHA-256 of a domain tag (`nightjar/<domain>\n`) followed by `data`. */
export function taggedHash(domain: string, data: Uint8Array): Uint8Array {
  return nobleSha256(concatBytes(utf8(`nightjar/${domain}\n`), data));
}

/** HKDF-SHA256 (RFC 5869). */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: string, length: number): Uint8Array {
  return hkdf(nobleSha256, ikm, salt, utf8(info), length);
}
