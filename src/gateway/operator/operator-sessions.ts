/**
 * Dashboard sign-ins: random session ids (32 bytes) mapped to the operator they belong to, each
 * expiring after a fixed lifetime, at most `maxSessions` at once (the oldest go first). They live
 * in memory: a restart signs everyone out.
 */
import { randomBytes, toBase64Url, type Clock } from '../../shared/index.js';

/** Options of {@link OperatorSessions}. */
export interface OperatorSessionsOptions {
  /** Time source of the expiry. Required. */
  clock: Clock;
  /** Lifetime of a sign-in, ms. Required (the gateway resolves it). */
  ttlMs: number;
  /** Sign-ins kept at once. Required (the gateway resolves it). */
  maxSessions: number;
}

/** The operators signed in to the dashboard. */
export class OperatorSessions {
  readonly #o: OperatorSessionsOptions;
  readonly #sessions = new Map<string, { operatorId: string; expiresAt: number }>();

  constructor(options: OperatorSessionsOptions) {
    this.#o = options;
  }

  /** Lifetime of a sign-in, in whole seconds (the cookie's Max-Age). */
  get maxAgeSeconds(): number {
    return Math.floor(this.#o.ttlMs / 1000);
  }

  /** Signs `operatorId` in; returns the new session's id. */
  create(operatorId: string): string {
    const now = this.#o.clock.now();
    for (const [id, s] of this.#sessions) if (s.expiresAt <= now) this.#sessions.delete(id);
    while (this.#sessions.size >= this.#o.maxSessions) this.#sessions.delete(this.#sessions.keys().next().value!);
    const id = toBase64Url(randomBytes(32));
    this.#sessions.set(id, { operatorId, expiresAt: now + this.#o.ttlMs });
    return id;
  }

  /** The operator signed in as `id`, or null (an unknown or expired session, which is forgotten). */
  operatorOf(id: string): string | null {
    const s = this.#sessions.get(id);
    if (s && s.expiresAt > this.#o.clock.now()) return s.operatorId;
    this.#sessions.delete(id);
    return null;
  }

  /** Signs a session out. */
  delete(id: string): void {
    this.#sessions.delete(id);
  }

  /** Sessions kept now. */
  get size(): number {
    return this.#sessions.size;
  }
}
