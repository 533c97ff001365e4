/**
 * Request rate limits shared by every node of a cluster: one token bucket per caller in a JetStream
 * key-value bucket, so a caller whose requests a balancer spreads over N nodes gets its limit once,
 * not N times.
 *
 * An entry is keyed by the limit's name and the SHA-256 of the caller id (never an API key or an
 * address in a key), and holds `{tokens, at}`: the tokens left at time `at` (the writing node's
 * clock; the nodes' clocks must agree, as for the nodes table). A take reads the entry, refills it
 * to now, and writes it back with compare-and-swap on the entry's revision (create when there is
 * none), retrying on a conflict. The bucket's max age is at least burst / perSecond, so an idle
 * caller's entry vanishes once its bucket would be full again: an absent entry is a full bucket.
 * A take that finds no token writes nothing. Takes for the same caller on one node are coalesced:
 * while one compare-and-swap is in flight, the takes that arrive wait and go together in the next
 * (one read and one write for all of them), so only nodes contend for an entry, never requests.
 *
 * Cost: an accepted take is two NATS round trips (a direct get and a publish acknowledged by
 * JetStream), a refused one a single read; a conflict adds two per retry.
 *
 * Never fail a request because the limiter's store is down: when a read or write fails or takes
 * longer than timeoutMs, the node counts NATS as unreachable, limits with its own buckets (the
 * {@link RateLimiter} it was handed) for retryMs, then lets one take try NATS again. The outage is
 * logged once when it begins (warn) and once when it ends (info); every take that used the node's
 * own bucket is reported through onFallback (the gateway counts it in
 * nightjar_rate_limit_fallbacks_total{reason}).
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV, KvEntry } from '@nats-io/kv';
import { concatBytes, errorMessage, raceClock, sha256, toHex, utf8, type Clock, type Logger } from '../../shared/index.js';
import type { RateLimiter, RateTaken, RequestLimiter } from '../rate-limit.js';

/** Why a take used the node's own bucket instead of the shared one. */
export type FallbackReason = 'unreachable' | 'conflict' | 'busy';

/** The key-value operations a shared bucket needs (a {@link KV} bucket has them). */
export type LimitsKv = Pick<KV, 'get' | 'create' | 'update'>;

/** Options of {@link SharedLimits}. */
export interface SharedLimitsOptions {
  /** The bucket (created by the caller with a max age of at least every limit's burst / perSecond). Required. */
  kv: LimitsKv;
  /** Time source of the buckets' refill and of the timeouts. Required. */
  clock: Clock;
  /** Where the outage's start and end are logged. Required. */
  logger: Logger;
  /** Longest a read or write may take before NATS counts as unreachable, ms. Required (ClusterOptions.rateLimitTimeoutMs). */
  timeoutMs: number;
  /**
   * After a failure, how long the node limits with its own buckets before it tries NATS again, ms.
   * Required (ClusterOptions.rateLimitRetryMs).
   */
  retryMs: number;
  /** Compare-and-swap attempts of one take before it uses the node's bucket. Required (ClusterOptions.rateLimitCasAttempts). */
  casAttempts: number;
  /**
   * Callers with a shared take in flight at once, per limit; past it, takes use the node's bucket.
   * Required (ClusterOptions.rateLimitMaxPending).
   */
  maxPending: number;
  /** Told of every take that used the node's own bucket. Defaults to nothing. */
  onFallback?: (reason: FallbackReason) => void;
  /**
   * The secret an entry's name is keyed with (the same on every node): a caller id's plain hash
   * would let whoever reads the bucket try every IPv4 address against it. Required (the gateway
   * derives it from its signing key's seed, which every node has: {@link rateLimitKeySecret}).
   */
  keySecret: Uint8Array;
}

/** The secret entries' names are keyed with, from the gateway key's seed (the same on every node). */
export function rateLimitKeySecret(gatewayKeySeed: Uint8Array): Uint8Array {
  return sha256(concatBytes(utf8('nightjar rate-limit entry names v1\0'), gatewayKeySeed));
}

/** The entry `id`'s bucket of limit `name` is kept under: the limit and a keyed hash of the id. */
export function rateLimitEntryName(name: string, id: string, secret: Uint8Array): string {
  return `${name}.${toHex(sha256(concatBytes(secret, utf8(id)))).slice(0, 32)}`;
}

/** The bucket's state as one entry holds it. */
interface BucketState {
  tokens: number;
  at: number;
}

/** The entry's state, or null (absent, deleted, or not ours to read: taken as a full bucket). */
function stateOf(entry: KvEntry | null, burst: number): BucketState | null {
  if (!entry || entry.operation !== 'PUT') return null;
  try {
    const v = JSON.parse(entry.string()) as unknown;
    if (typeof v !== 'object' || v === null) return null;
    const { tokens, at } = v as Record<string, unknown>;
    if (typeof tokens !== 'number' || typeof at !== 'number' || !Number.isFinite(tokens) || !Number.isFinite(at)) return null;
    return { tokens: Math.min(burst, Math.max(0, tokens)), at };
  } catch {
    return null;
  }
}

/** True if `err` is JetStream refusing a write whose expected revision is not the entry's. */
function isConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

/** A NATS operation that failed or timed out. */
class Unreachable extends Error {}

/**
 * The cluster's shared rate-limit buckets on one node: the link to NATS and its outage state,
 * shared by every limit it makes ({@link SharedLimits.limiter}).
 */
export class SharedLimits {
  readonly #o: SharedLimitsOptions;
  #state: 'up' | 'down' | 'probing' = 'up';
  #retryAt = 0;
  /** Compare-and-swap conflicts met (each retried). */
  conflicts = 0;

  constructor(options: SharedLimitsOptions) {
    this.#o = options;
  }

  /** The secret entry names are keyed with. */
  get keySecret(): Uint8Array {
    return this.#o.keySecret;
  }

  /** True while takes go to the shared buckets (false during an outage). */
  get shared(): boolean {
    return this.#state === 'up';
  }

  /**
   * A limit of `perSecond` and `burst` per caller, shared by the cluster under `name` (letters and
   * digits: every node must use the same name and figures for it), falling back to `local`.
   */
  limiter(name: string, limits: { perSecond: number; burst: number }, local: RateLimiter): RequestLimiter {
    return new SharedRateLimiter(this, name, limits, local);
  }

  /** NATS said its connection dropped: use the node's buckets now, without waiting for a timeout. */
  connectionLost(reason: string): void {
    this.#down(reason);
  }

  /** NATS said it reconnected: the next take may try the shared buckets again. */
  connectionRestored(): void {
    if (this.#state === 'down') this.#retryAt = 0;
  }

  /** @internal Whether a take may use NATS now; a take after the back-off becomes the one probe. */
  usable(): boolean {
    if (this.#state === 'up') return true;
    if (this.#state === 'probing' || this.#o.clock.now() < this.#retryAt) return false;
    this.#state = 'probing';
    return true;
  }

  /** @internal Reports a take that used the node's bucket. */
  fellBack(reason: FallbackReason): void {
    this.#o.onFallback?.(reason);
  }

  /** @internal Runs one NATS operation within the timeout; throws {@link Unreachable} (and marks the outage) if it fails or is late. */
  async op<T>(work: Promise<T>, conflictOk = false): Promise<T> {
    // A late operation's eventual rejection is ours to swallow.
    work.catch(() => undefined);
    let raced: Awaited<ReturnType<typeof raceClock<T>>>;
    try {
      raced = await raceClock(this.#o.clock, this.#o.timeoutMs, work);
    } catch (err) {
      if (conflictOk && isConflict(err)) {
        this.#up();
        throw err;
      }
      this.#down(errorMessage(err));
      throw new Unreachable(errorMessage(err));
    }
    if (!raced.done) {
      this.#down(`no answer within ${this.#o.timeoutMs} ms`);
      throw new Unreachable('timed out');
    }
    this.#up();
    return raced.value;
  }

  /** @internal The options. */
  get options(): SharedLimitsOptions {
    return this.#o;
  }

  #down(reason: string): void {
    this.#retryAt = this.#o.clock.now() + this.#o.retryMs;
    if (this.#state === 'up') {
      this.#o.logger.warn('shared rate limits unavailable (NATS); this node limits with its own buckets until NATS is back', {
        err: reason.replace(/\/\/[^@/\s]+@/g, '//').slice(0, 200),
      });
    }
    this.#state = 'down';
  }

  #up(): void {
    if (this.#state === 'up') return;
    this.#state = 'up';
    this.#o.logger.info('shared rate limits are back (NATS)', {});
  }
}

/** One limit's shared buckets (see the module comment). */
class SharedRateLimiter implements RequestLimiter {
  readonly #link: SharedLimits;
  readonly #name: string;
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #local: RateLimiter;
  /** Callers with a take in flight, and the takes waiting for the next round. */
  readonly #waiting = new Map<string, Array<(taken: RateTaken) => void>>();

  constructor(link: SharedLimits, name: string, limits: { perSecond: number; burst: number }, local: RateLimiter) {
    this.#link = link;
    this.#name = name;
    this.#perSecond = limits.perSecond;
    this.#burst = limits.burst;
    this.#local = local;
  }

  take(id: string): RateTaken | Promise<RateTaken> {
    const queue = this.#waiting.get(id);
    if (queue) return new Promise((resolve) => queue.push(resolve));
    if (this.#waiting.size >= this.#link.options.maxPending) return this.#fallback(id, 'busy');
    if (!this.#link.usable()) return this.#fallback(id, 'unreachable');
    const first: Array<(taken: RateTaken) => void> = [];
    this.#waiting.set(id, first);
    const taken = new Promise<RateTaken>((resolve) => first.push(resolve));
    void this.#run(id);
    return taken;
  }

  #fallback(id: string, reason: FallbackReason): RateTaken {
    this.#link.fellBack(reason);
    return this.#local.take(id);
  }

  /** Takes for `id` round after round until none waits. */
  async #run(id: string): Promise<void> {
    const key = rateLimitEntryName(this.#name, id, this.#link.keySecret);
    // The first round was cleared to use NATS by take(); later ones ask again.
    let first = true;
    for (;;) {
      const batch = this.#waiting.get(id)!;
      if (batch.length === 0) {
        this.#waiting.delete(id);
        return;
      }
      this.#waiting.set(id, []);
      let results: RateTaken[];
      if (!first && !this.#link.usable()) {
        results = batch.map(() => this.#fallback(id, 'unreachable'));
      } else {
        try {
          results = (await this.#takeShared(key, batch.length)) ?? batch.map(() => this.#fallback(id, 'conflict'));
        } catch {
          results = batch.map(() => this.#fallback(id, 'unreachable'));
        }
      }
      first = false;
      batch.forEach((resolve, i) => resolve(results[i]!));
    }
  }

  /**
   * Takes `n` tokens from the shared bucket at `key` (as many as it has): one answer per take, in
   * order. Null when every compare-and-swap attempt met a conflict; throws when NATS fails.
   */
  async #takeShared(key: string, n: number): Promise<RateTaken[] | null> {
    const { kv, clock, casAttempts } = this.#link.options;
    const perSecond = this.#perSecond;
    const burst = this.#burst;
    for (let attempt = 0; attempt < casAttempts; attempt++) {
      const entry = await this.#link.op(kv.get(key));
      const now = clock.now();
      const state = stateOf(entry, burst);
      const tokens = state ? Math.min(burst, state.tokens + (Math.max(0, now - state.at) / 1000) * perSecond) : burst;
      const granted = Math.min(n, Math.floor(tokens));
      const left = tokens - granted;
      const refused: RateTaken = { ok: false, retryAfterMs: Math.max(1, Math.ceil(((1 - left) / perSecond) * 1000)) };
      const results: RateTaken[] = Array.from({ length: n }, (_, i) => (i < granted ? { ok: true } : refused));
      if (granted === 0) return results;
      const value = JSON.stringify({ tokens: left, at: now } satisfies BucketState);
      try {
        await this.#link.op(entry ? kv.update(key, value, entry.revision) : kv.create(key, value), true);
        return results;
      } catch (err) {
        if (!isConflict(err)) throw err;
        this.#link.conflicts++;
      }
    }
    return null;
  }
}
