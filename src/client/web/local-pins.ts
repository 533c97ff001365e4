/**
 * A PinStore kept in the page's localStorage: the browser remembers the agents it has used; and
 * a GatewayKeyStore beside it, for the key the gateway signs its answers with.
 */
import { fromBase64Url, toBase64Url, withDefaults } from '../../shared/index.js';
import type { GatewayKeyStore, GatewayPinReason, PinStore } from '../sdk/index.js';

const KEY = 'nightjar.pins.v1';

/** Options of {@link LocalStoragePinStore}. */
export interface LocalStoragePinStoreOptions {
  /** The storage. Defaults to window.localStorage (null when the browser refuses it). */
  storage?: Storage | null;
  /** Most agents pinned. Defaults to 1 000. */
  maxPins?: number;
}

/** The defaults of {@link LocalStoragePinStoreOptions} (storage's is read when a store is built). */
export const LOCAL_PINS_DEFAULTS: Readonly<Required<Omit<LocalStoragePinStoreOptions, 'storage'>>> = { maxPins: 1000 };

/** Pins in localStorage; falls back to memory when storage is unavailable. */
export class LocalStoragePinStore implements PinStore {
  readonly #storage: Storage | null;
  readonly #max: number;
  #memory: Record<string, string> = {};

  constructor(options: LocalStoragePinStoreOptions = {}) {
    const o = withDefaults(LOCAL_PINS_DEFAULTS, options);
    let storage: Storage | null;
    try {
      // Read here, not in the defaults: touching window.localStorage may throw (a sandboxed frame).
      storage = o.storage === undefined ? window.localStorage : o.storage;
    } catch {
      storage = null;
    }
    this.#storage = storage;
    this.#max = o.maxPins;
  }

  #read(): Record<string, string> {
    if (!this.#storage) return this.#memory;
    try {
      const parsed: unknown = JSON.parse(this.#storage.getItem(KEY) ?? '{}');
      return parsed && typeof parsed === 'object' ? (parsed as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  /** {@inheritDoc PinStore.get} */
  get(agentId: string): Uint8Array | undefined {
    const key = this.#read()[agentId];
    return typeof key === 'string' ? fromBase64Url(key) : undefined;
  }

  /** {@inheritDoc PinStore.set} */
  set(agentId: string, identityKey: Uint8Array): void {
    const pins = this.#read();
    if (pins[agentId] || Object.keys(pins).length >= this.#max) return;
    pins[agentId] = toBase64Url(identityKey);
    if (!this.#storage) {
      this.#memory = pins;
      return;
    }
    try {
      this.#storage.setItem(KEY, JSON.stringify(pins));
    } catch {
      this.#memory = pins;
    }
  }
}

const GATEWAY_KEY = 'nightjar.gateway-keys.v1';

/**
 * The gateway keys this browser profile pinned, in localStorage (falling back to memory): trust
 * on first use per browser profile, moved only by a rotation statement the pinned key signed.
 */
export class LocalStorageGatewayKeyStore implements GatewayKeyStore {
  readonly #storage: Storage | null;
  #memory: Record<string, string> = {};

  /** @param storage The storage. Defaults to window.localStorage (null when the browser refuses it). */
  constructor(storage?: Storage | null) {
    let s: Storage | null;
    try {
      s = storage === undefined ? window.localStorage : storage;
    } catch {
      s = null;
    }
    this.#storage = s;
  }

  #read(): Record<string, string> {
    if (!this.#storage) return this.#memory;
    try {
      const parsed: unknown = JSON.parse(this.#storage.getItem(GATEWAY_KEY) ?? '{}');
      return parsed && typeof parsed === 'object' ? (parsed as Record<string, string>) : {};
    } catch {
      return {};
    }
  }

  /** {@inheritDoc GatewayKeyStore.get} */
  get(gatewayUrl: string): Uint8Array | undefined {
    const key = this.#read()[gatewayUrl];
    return typeof key === 'string' ? fromBase64Url(key) : undefined;
  }

  /** {@inheritDoc GatewayKeyStore.set} */
  set(gatewayUrl: string, key: Uint8Array, reason: GatewayPinReason): void {
    const keys = this.#read();
    if (reason === 'first-use' && keys[gatewayUrl]) return;
    keys[gatewayUrl] = toBase64Url(key);
    this.#memory = keys;
    try {
      this.#storage?.setItem(GATEWAY_KEY, JSON.stringify(keys));
    } catch {
      // Storage full or refused: the pin lasts as long as this page.
    }
  }
}
