/**
 * Pinned gateway keys: the client remembers, per gateway URL, the Ed25519 key that gateway signs
 * its word with (directory answers, the catalog, the released-versions list), trusting it on first
 * use, and refuses anything signed by another key unless a rotation statement signed by the pinned
 * key leads to it (then the pin moves to the new key).
 *
 * What this buys: after the first use, a network attacker (or a different server answering at the
 * gateway's URL) cannot make the client accept candidates, trust levels, a catalog or a releases
 * list the gateway did not sign. What it does not: the first use itself is trusted blindly (give
 * the key with `gatewayKey` / `--gateway-key` to close that), and the gateway that holds the key
 * can still sign what it likes.
 */
import { fromBase64Url, toBase64Url } from '../../shared/index.js';

/** How a pin came to be: trusted on first use, or moved by a rotation statement signed by the pinned key. */
export type GatewayPinReason = 'first-use' | 'rotation';

/** Gateway keys by gateway URL (its base, without a trailing slash). Methods may be sync or async. */
export interface GatewayKeyStore {
  /** The pinned key of the gateway at `gatewayUrl`, if any. */
  get(gatewayUrl: string): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /**
   * Pins `key` for `gatewayUrl`. With reason 'first-use' an existing pin is kept (never replaced
   * silently); with 'rotation' it is replaced (the caller verified the rotation statement).
   */
  set(gatewayUrl: string, key: Uint8Array, reason: GatewayPinReason): void | Promise<void>;
}

/** Gateway pins in memory (one process, or one page load): the default of a client given none. */
export class MemoryGatewayKeyStore implements GatewayKeyStore {
  readonly #pins = new Map<string, string>();

  /** @param initial Pins to start with: gateway URL → base64url key. Defaults to none. */
  constructor(initial: Readonly<Record<string, string>> = {}) {
    for (const [url, key] of Object.entries(initial)) this.#pins.set(url, key);
  }

  /** {@inheritDoc GatewayKeyStore.get} */
  get(gatewayUrl: string): Uint8Array | undefined {
    const key = this.#pins.get(gatewayUrl);
    return key === undefined ? undefined : fromBase64Url(key);
  }

  /** {@inheritDoc GatewayKeyStore.set} */
  set(gatewayUrl: string, key: Uint8Array, reason: GatewayPinReason): void {
    if (reason === 'first-use' && this.#pins.has(gatewayUrl)) return;
    this.#pins.set(gatewayUrl, toBase64Url(key));
  }

  /** Every pin: gateway URL → base64url key. */
  entries(): Record<string, string> {
    return Object.fromEntries(this.#pins);
  }
}
