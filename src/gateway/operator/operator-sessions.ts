/**
 * Dashboard sign-ins: random session tokens (32 bytes, base64url: the cookie's value) mapped to
 * the operator they belong to, each expiring after a fixed lifetime, at most `maxSessions` at once
 * (the oldest go first). They live in the gateway's database ({@link OperatorSessionStore}) as the
 * SHA-256 of the token, so every node of a cluster sees the same sign-ins, a sign-out on one node
 * ends the session everywhere, and a restart keeps them.
 */
import { randomBytes, sha256, toBase64Url, toHex, utf8, type Clock } from '../../shared/index.js';
import type { OperatorSessionStore } from './operator-session.store.js';

/** The shape of a session token this class issues; anything else is refused without a lookup. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Options of {@link OperatorSessions}. */
export interface OperatorSessionsOptions {
  /** Where the sessions are kept. Required. */
  store: OperatorSessionStore;
  /** Time source of the expiry. Required. */
  clock: Clock;
  /** Lifetime of a sign-in, ms. Required (the gateway resolves it). */
  ttlMs: number;
  /** Sign-ins kept at once. Required (the gateway resolves it). */
  maxSessions: number;
}

/** Hex SHA-256 of a session token: what the store keeps. */
function tokenHash(token: string): string {
  return toHex(sha256(utf8(token)));
}

/** The operators signed in to the dashboard. */
export class OperatorSessions {
  readonly #o: OperatorSessionsOptions;

  constructor(options: OperatorSessionsOptions) {
    this.#o = options;
  }

  /** Lifetime of a sign-in, in whole seconds (the cookie's Max-Age). */
  get maxAgeSeconds(): number {
    return Math.floor(this.#o.ttlMs / 1000);
  }

  /** Signs `operatorId` in; resolves with the new session's token (the cookie's value). */
  async create(operatorId: string): Promise<string> {
    const now = this.#o.clock.now();
    const token = toBase64Url(randomBytes(32));
    await this.#o.store.create(tokenHash(token), operatorId, now, now + this.#o.ttlMs, this.#o.maxSessions);
    return token;
  }

  /** The operator signed in as `token`, or null (an unknown, malformed or expired session). */
  async operatorOf(token: string): Promise<string | null> {
    if (!TOKEN_PATTERN.test(token)) return null;
    return this.#o.store.operatorOf(tokenHash(token), this.#o.clock.now());
  }

  /** Signs a session out, on every node. */
  async delete(token: string): Promise<void> {
    if (TOKEN_PATTERN.test(token)) await this.#o.store.delete(tokenHash(token));
  }

  /** Sessions kept now (expired ones not swept yet included). */
  size(): Promise<number> {
    return this.#o.store.count();
  }
}
