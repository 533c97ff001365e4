/**
 * Secrets the gateway issues: client API keys, operator tokens, enrollment tokens. Each is
 * `<kind>_<id>_<32 random bytes, base64url>`: the id names the row (safe to show and log), the
 * whole string is the secret, shown once and stored only as its SHA-256.
 *
 * SHA-256 rather than a slow password hash: these secrets carry 256 bits from the CSPRNG, so
 * nobody can guess them from a stolen hash, and a slow hash would only cost every request time.
 */
import { bytesEqual, fromHex, randomBytes, sha256, toBase64Url, toHex, utf8 } from '../../shared/index.js';

/** What a secret is for, as its prefix says. */
export type SecretKind = 'njk' | 'njop' | 'njen';

/** A freshly issued secret. */
export interface IssuedSecret {
  /** Row id, shown in lists and logs. */
  readonly id: string;
  /** The secret itself: give it to its owner once, never store or log it. */
  readonly secret: string;
  /** Lower-case hex SHA-256 of the secret: what is stored. */
  readonly hash: string;
}

/** Draws a new secret of `kind`, with a fresh id unless `id` is given (rotating a secret in place). */
export function issueSecret(kind: SecretKind, id: string = toHex(randomBytes(6))): IssuedSecret {
  const secret = `${kind}_${id}_${toBase64Url(randomBytes(32))}`;
  return { id, secret, hash: hashSecret(secret) };
}

/** Hex SHA-256 of a secret. */
export function hashSecret(secret: string): string {
  return toHex(sha256(utf8(secret)));
}

/** The id a secret claims, or null if it is not shaped like a secret of `kind`. */
export function secretId(kind: SecretKind, secret: string): string | null {
  const m = new RegExp(`^${kind}_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$`).exec(secret);
  return m ? m[1]! : null;
}

/** True if `secret` hashes to `storedHash`, compared in constant time. */
export function secretMatches(secret: string, storedHash: string): boolean {
  return bytesEqual(fromHex(hashSecret(secret)), fromHex(storedHash));
}
