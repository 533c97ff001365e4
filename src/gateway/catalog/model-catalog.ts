/**
 * The catalog as the running gateway uses it: a snapshot of the store's catalog that the directory
 * asks, synchronously, which agents' files may be offered and which are catalogued (priced), and
 * the signed document GET /v1/catalog serves.
 *
 * The rule: a model id the catalog lists is priced and routed only for the files it lists for
 * that id (by sha256); a file under an id the catalog does not list is offered free when
 * `serveUncatalogued` is set, and not at all otherwise; a file under a listed id that the catalog
 * does not list for it is never offered. An agent's own `synthetic` flag decides nothing here.
 *
 * The same snapshot holds the gateway's active signing key, the rotation statements still in their
 * grace period, and the released-versions list, all of which admin commands change too
 * (`nightjar gateway key rotate`, `nightjar gateway releases add`): after a rotation the gateway
 * signs with the new key from its next read on.
 *
 * Admin commands change the catalog from another process, so the snapshot is re-read from the
 * store when it is older than `refreshMs`, at the request boundaries (candidates, jobs, models,
 * catalog); never on a timer, and never while routing.
 */
import type { Emitter } from '../../shared/index.js';
import {
  canonicalJson,
  createSignedCatalog,
  createSignedReleases,
  loggedEmitter,
  silentLogger,
  toBase64Url,
  withDefaults,
  type Clock,
  type Disposable,
  type Event,
  type GatewayCatalogModel,
  type GatewayKeyPair,
  type Logger,
  type Release,
  type ReleasedApps,
  type SignedGatewayCatalog,
  type SignedGatewayRotation,
  type SignedReleasesList,
} from '../../shared/index.js';
import type { FileCatalog } from '../directory.js';
import type { CatalogStore } from './catalog.store.js';

/** Options of {@link ModelCatalog.load}. */
export interface ModelCatalogOptions {
  /** Where the catalog is kept. Required. */
  store: CatalogStore;
  /** The gateway key that signs the catalog until the store names another active key. Required. */
  key: GatewayKeyPair;
  /** Time source of the refresh and of issuedAt. Required. */
  clock: Clock;
  /** Offer, free, files under model ids the catalog does not list. Defaults to false. */
  serveUncatalogued?: boolean;
  /** How long a snapshot is used before the store is read again. Defaults to 2000 ms. */
  refreshMs?: number;
  /** Where a throwing listener is logged. Defaults to a silent logger. */
  logger?: Logger;
}

/** The defaults of {@link ModelCatalogOptions}. */
export const MODEL_CATALOG_DEFAULTS: Required<Pick<ModelCatalogOptions, 'serveUncatalogued' | 'refreshMs' | 'logger'>> = {
  serveUncatalogued: false,
  refreshMs: 2000,
  logger: silentLogger,
};

/** The gateway's catalog snapshot, its rule for files, and its signed form. */
export class ModelCatalog implements FileCatalog, ReleasedApps, Disposable {
  readonly #o: Required<ModelCatalogOptions>;
  readonly #changed: Emitter<void>;
  #index = new Map<string, Set<string>>();
  #bytes = new Map<string, number>();
  #models: GatewayCatalogModel[] = [];
  #text = '';
  #loadedAt = -Infinity;
  #loading: Promise<void> | null = null;
  #signed: SignedGatewayCatalog | null = null;
  #key: GatewayKeyPair;
  #rotations: SignedGatewayRotation[] = [];
  #releases: Release[] = [];
  #releasesText = '';
  #signedReleases: SignedReleasesList | null = null;
  /** The snapshot changed (a file added or removed): what agents can be offered may have changed. */
  readonly onChanged: Event<void>;

  private constructor(options: ModelCatalogOptions) {
    this.#o = withDefaults(MODEL_CATALOG_DEFAULTS, options);
    this.#key = options.key;
    this.#changed = loggedEmitter(this.#o.logger, 'catalog changed');
    this.onChanged = this.#changed.event;
  }

  /** Builds the catalog and reads its first snapshot. */
  static async load(options: ModelCatalogOptions): Promise<ModelCatalog> {
    const catalog = new ModelCatalog(options);
    await catalog.reload();
    return catalog;
  }

  /** The gateway's public key (base64url) and its id. */
  get gatewayKey(): { key: string; keyId: string } {
    return { key: toBase64Url(this.#key.publicKey), keyId: this.#key.keyId };
  }

  /**
   * The active signing key, to sign the gateway's other documents (directory answers).
   * @internal The seed is the gateway's secret: sign with it, never serve or log it.
   */
  get signingKey(): GatewayKeyPair {
    return this.#key;
  }

  /** The rotation statements still in their grace period, oldest first (GET /v1/gateway-key). */
  get rotations(): readonly SignedGatewayRotation[] {
    return this.#rotations;
  }

  /** True if files the catalog does not list are offered free. */
  get serveUncatalogued(): boolean {
    return this.#o.serveUncatalogued;
  }

  /** True if the catalog lists model id `id` (then only its listed files are offered, at its price). */
  lists(id: string): boolean {
    return this.#index.has(id);
  }

  /** True if the catalog lists the file `sha256` as model `id`. */
  catalogued(id: string, sha256: string): boolean {
    return this.#index.get(id)?.has(sha256) ?? false;
  }

  /** The size in bytes of the file `sha256` the catalog lists as model `id`; null for a file it does not list. */
  fileBytes(id: string, sha256: string): number | null {
    return this.#bytes.get(`${id}\n${sha256}`) ?? null;
  }

  /** True if a file `sha256` served as `id` may be offered to clients at all. */
  offers(id: string, sha256: string): boolean {
    return this.#index.has(id) ? this.catalogued(id, sha256) : this.#o.serveUncatalogued;
  }

  /**
   * True if `appHash` is on the released-versions list (re-read from the store when the snapshot is
   * refreshMs old): the gateway's {@link ReleasedApps} for the attestation check, the same list
   * GET /v1/releases signs.
   */
  async isRelease(appHash: string): Promise<boolean> {
    await this.refresh();
    return this.#releases.some((r) => r.appHash === appHash);
  }

  /** Re-reads the store if the snapshot is older than refreshMs (concurrent callers share one read). */
  async refresh(): Promise<void> {
    if (this.#o.clock.now() - this.#loadedAt < this.#o.refreshMs) return;
    await this.reload();
  }

  /** Re-reads the store now (after an admin change in this process, or in tests). */
  reload(): Promise<void> {
    this.#loading ??= this.#read().finally(() => (this.#loading = null));
    return this.#loading;
  }

  async #read(): Promise<void> {
    const store = this.#o.store;
    const now = this.#o.clock.now();
    const [models, key, rotations, releases] = await Promise.all([
      store.models(),
      store.gatewayKey(now),
      store.rotations(now),
      store.listReleases(),
    ]);
    this.#loadedAt = this.#o.clock.now();
    this.#rotations = rotations;
    const releasesText = canonicalJson(releases.map((r) => ({ version: r.version, appHash: r.appHash })));
    if (key.keyId !== this.#key.keyId || releasesText !== this.#releasesText) this.#signedReleases = null;
    this.#releasesText = releasesText;
    this.#releases = releases.map((r) => ({ version: r.version, appHash: r.appHash }));
    if (key.keyId !== this.#key.keyId) {
      this.#key = key;
      this.#signed = null;
    }
    const text = canonicalJson(models);
    if (text === this.#text) return;
    this.#text = text;
    this.#models = models;
    this.#index = new Map(models.map((m) => [m.id, new Set(m.files.map((f) => f.sha256))]));
    this.#bytes = new Map(models.flatMap((m) => m.files.map((f): [string, number] => [`${m.id}\n${f.sha256}`, f.bytes])));
    this.#signed = null;
    this.#changed.fire();
  }

  /**
   * The catalog signed by the gateway key. It is signed again when it changed or when the last
   * signature is refreshMs old, so its issuedAt says how stale it may be (a verifier's maxAgeMs).
   */
  async signed(): Promise<SignedGatewayCatalog> {
    await this.refresh();
    const cached = this.#signed;
    if (cached && this.#o.clock.now() - cached.catalog.issuedAt < this.#o.refreshMs) return cached;
    const text = this.#text;
    const key = this.#key;
    const signed = await createSignedCatalog({ key, models: this.#models, now: this.#o.clock.now() });
    // A reload while it was being signed makes it stale: serve it once, keep nothing.
    if (this.#text === text && this.#key === key) this.#signed = signed;
    return signed;
  }

  /** The released-versions list signed by the gateway key, re-signed as the catalog is (when it changed or is refreshMs old). */
  async signedReleases(): Promise<SignedReleasesList> {
    await this.refresh();
    const cached = this.#signedReleases;
    if (cached && this.#o.clock.now() - cached.releases.issuedAt < this.#o.refreshMs) return cached;
    const text = this.#releasesText;
    const key = this.#key;
    const signed = await createSignedReleases({ key, releases: this.#releases, now: this.#o.clock.now() });
    if (this.#releasesText === text && this.#key === key) this.#signedReleases = signed;
    return signed;
  }

  /** Drops every listener. */
  dispose(): void {
    this.#changed.dispose();
  }
}
