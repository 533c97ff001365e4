/**
 * Pinned agent identity keys: the client remembers the identity key of every agent it has
 * accepted (trust on first use) and refuses a bundle that names a pinned agent with another key.
 *
 * What this does and does not buy: an agentId is derived from its identity key, so a bundle
 * whose key differs from the pin also fails the id check — the pin check is a second line that
 * catches a corrupted or tampered pin store, and a future id scheme that is not derived from the
 * key. The protection that matters against a gateway steering a client to agents of its choosing
 * is `TrustPolicy.onlyPinned`: use only agents seen (and pinned) before.
 */
import { fromBase64Url, toBase64Url } from '../../shared/index.js';

/** Identity keys of agents seen before, by agentId. Methods may be sync or async. */
export interface PinStore {
  /** The pinned identity key of `agentId`, if any. */
  get(agentId: string): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** Pins `identityKey` for `agentId` (first use); must not replace an existing pin silently. */
  set(agentId: string, identityKey: Uint8Array): void | Promise<void>;
}

/** A pin store in memory (one process, or one page load). */
export class MemoryPinStore implements PinStore {
  readonly #pins = new Map<string, string>();

  /** @param initial Pins to start with: agentId → base64url identity key. Defaults to none. */
  constructor(initial: Readonly<Record<string, string>> = {}) {
    for (const [id, key] of Object.entries(initial)) this.#pins.set(id, key);
  }

  /** {@inheritDoc PinStore.get} */
  get(agentId: string): Uint8Array | undefined {
    const key = this.#pins.get(agentId);
    return key === undefined ? undefined : fromBase64Url(key);
  }

  /** {@inheritDoc PinStore.set} */
  set(agentId: string, identityKey: Uint8Array): void {
    if (!this.#pins.has(agentId)) this.#pins.set(agentId, toBase64Url(identityKey));
  }

  /** Every pin: agentId → base64url identity key. */
  entries(): Record<string, string> {
    return Object.fromEntries(this.#pins);
  }
}
