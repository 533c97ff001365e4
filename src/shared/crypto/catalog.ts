/**
 * The gateway's signing key and the model catalog it signs. The catalog says, for each model id
 * the gateway prices and routes, which files (by sha256) are that model; a client or an agent
 * checks it with {@link verifySignedCatalog} against the gateway key it was given or pinned. Signed
 * like bundles and receipts: Ed25519 over `nightjar/catalog/v1\n` + canonical JSON. The same key
 * signs the gateway's other documents, each under its own domain ({@link signAsGateway}).
 */
import { CryptoError } from '../errors.js';
import { bytesEqual, fromBase64Url, signingBytes, toBase64Url, toHex, type CanonicalValue } from '../encoding.js';
import { decodeMessage, validate } from '../protocol/codec.js';
import { LIMITS, PROTOCOL_VERSION } from '../protocol/limits.js';
import {
  gatewayCatalogSchema,
  signedGatewayCatalogSchema,
  type GatewayCatalog,
  type GatewayCatalogFile,
  type GatewayCatalogModel,
  type SignedGatewayCatalog,
} from '../protocol/schemas.js';
import { cryptoBackend, randomBytes } from './backend.js';
import { isWeakEd25519Key } from './ed25519-order.js';
import { taggedHash } from './hash.js';

/** Signing domain of the model catalog. */
export const CATALOG_DOMAIN = 'catalog/v1';

/** The gateway's Ed25519 signing identity. The seed is the secret: it never leaves the gateway's store. */
export interface GatewayKeyPair {
  /** 32-byte secret seed. */
  readonly seed: Uint8Array;
  /** 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** Hex id of the public key, for people to compare. */
  readonly keyId: string;
}

/** The id of a gateway public key: hex of the first 8 bytes of its tagged hash. */
export function gatewayKeyIdFor(publicKey: Uint8Array): string {
  return toHex(taggedHash('gateway-key-id/v1', publicKey).subarray(0, 8));
}

/** Rebuilds a gateway key pair from its 32-byte seed. */
export async function gatewayKeyFromSeed(seed: Uint8Array): Promise<GatewayKeyPair> {
  if (seed.length !== 32) throw new CryptoError('NJ_BAD_KEY', 'a gateway key seed must be 32 bytes');
  const publicKey = await (await cryptoBackend()).ed25519PublicKey(seed);
  return { seed, publicKey, keyId: gatewayKeyIdFor(publicKey) };
}

/** A fresh random gateway key pair. */
export function generateGatewayKey(): Promise<GatewayKeyPair> {
  return gatewayKeyFromSeed(randomBytes(32));
}

/**
 * Signs `value` as the gateway, under `domain` (`catalog/v1`, and later the directory answer and
 * the released-versions list): the signature is over `nightjar/<domain>\n` + canonical JSON, so a
 * signature made for one kind of document never verifies as another.
 */
export async function signAsGateway(domain: string, value: CanonicalValue, key: GatewayKeyPair): Promise<Uint8Array> {
  return (await cryptoBackend()).sign(key.seed, signingBytes(domain, value));
}

/** What goes into a catalog. */
export interface CreateSignedCatalogOptions {
  /** The gateway key that signs it. */
  key: GatewayKeyPair;
  /** The model ids and their files, in any order (sorted here). */
  models: readonly GatewayCatalogModel[];
  /** Milliseconds since the epoch: the catalog's issuedAt. */
  now: number;
}

const byId = (a: { id: string }, b: { id: string }): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const bySha = (a: GatewayCatalogFile, b: GatewayCatalogFile): number => (a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0);

/** Builds (models sorted by id, files by sha256) and signs a catalog; throws NJ_CATALOG_INVALID if it breaks a bound. */
export async function createSignedCatalog(options: CreateSignedCatalogOptions): Promise<SignedGatewayCatalog> {
  const models = [...options.models].map((m) => ({ id: m.id, files: [...m.files].sort(bySha) })).sort(byId);
  let catalog: GatewayCatalog;
  try {
    catalog = validate(
      gatewayCatalogSchema,
      { v: PROTOCOL_VERSION, gatewayKey: toBase64Url(options.key.publicKey), issuedAt: options.now, models },
      'catalog',
    );
  } catch (cause) {
    throw new CryptoError('NJ_CATALOG_INVALID', (cause as Error).message, { cause });
  }
  checkOrder(catalog);
  const signature = await signAsGateway(CATALOG_DOMAIN, catalog, options.key);
  return { catalog, signature: toBase64Url(signature) };
}

/** Ids strictly increasing, each model's sha256s strictly increasing: one encoding, no duplicates. */
function checkOrder(catalog: GatewayCatalog): void {
  catalog.models.forEach((m, i) => {
    if (i > 0 && catalog.models[i - 1]!.id >= m.id) {
      throw new CryptoError('NJ_CATALOG_INVALID', `catalog models must be sorted by id without repeats (at ${m.id})`);
    }
    m.files.forEach((f, j) => {
      if (j > 0 && m.files[j - 1]!.sha256 >= f.sha256) {
        throw new CryptoError('NJ_CATALOG_INVALID', `catalog files of ${m.id} must be sorted by sha256 without repeats`);
      }
    });
  });
}

/** How strictly to check a catalog. */
export interface VerifySignedCatalogOptions {
  /**
   * The gateway key the catalog must be signed by (given, or pinned on first use). Defaults to
   * trusting the key the catalog names, which only proves the document is intact.
   */
  gatewayKey?: Uint8Array;
  /** Milliseconds since the epoch, to refuse a catalog issued in the future. Defaults to no time check. */
  now?: number;
  /** Clock skew tolerated on issuedAt. Defaults to 60 000 ms. */
  skewMs?: number;
  /** Refuse a catalog issued longer ago than this (with `now`). Defaults to no limit. */
  maxAgeMs?: number;
}

/** A catalog whose signature, key and order have been checked. */
export interface VerifiedGatewayCatalog {
  readonly signed: SignedGatewayCatalog;
  readonly catalog: GatewayCatalog;
  /** The key that signed it. */
  readonly gatewayKey: Uint8Array;
  /** The catalog's entry for the file `sha256` of model `id`, if it lists that file for that id. */
  file(id: string, sha256: string): GatewayCatalogFile | undefined;
}

/**
 * Checks a signed catalog: schema and bounds, canonical order, a gateway key that is a canonical
 * point of large order (and the expected one, if given), the signature over the catalog, and its
 * time. Throws NJ_CATALOG_INVALID naming the first check that failed.
 */
export async function verifySignedCatalog(input: unknown, options: VerifySignedCatalogOptions = {}): Promise<VerifiedGatewayCatalog> {
  let signed: SignedGatewayCatalog;
  try {
    signed = validate(signedGatewayCatalogSchema, input, 'catalog');
  } catch (cause) {
    throw new CryptoError('NJ_CATALOG_INVALID', (cause as Error).message, { cause });
  }
  const { catalog } = signed;
  const gatewayKey = fromBase64Url(catalog.gatewayKey);
  if (options.gatewayKey && !bytesEqual(options.gatewayKey, gatewayKey)) {
    throw new CryptoError('NJ_CATALOG_INVALID', 'the catalog is signed by another gateway key than the expected one');
  }
  if (isWeakEd25519Key(gatewayKey)) {
    throw new CryptoError('NJ_CATALOG_INVALID', 'the catalog gateway key is a weak (small-order or non-canonical) point');
  }
  checkOrder(catalog);
  const ok = await (await cryptoBackend()).verify(gatewayKey, signingBytes(CATALOG_DOMAIN, catalog), fromBase64Url(signed.signature));
  if (!ok) throw new CryptoError('NJ_CATALOG_INVALID', 'catalog signature does not verify');
  if (options.now !== undefined) {
    if (catalog.issuedAt > options.now + (options.skewMs ?? 60_000)) {
      throw new CryptoError('NJ_CATALOG_INVALID', 'the catalog was issued in the future');
    }
    if (options.maxAgeMs !== undefined && options.now - catalog.issuedAt > options.maxAgeMs) {
      throw new CryptoError('NJ_CATALOG_INVALID', 'the catalog is older than allowed');
    }
  }
  const index = new Map(catalog.models.map((m) => [m.id, new Map(m.files.map((f) => [f.sha256, f]))]));
  return { signed, catalog, gatewayKey, file: (id, sha256) => index.get(id)?.get(sha256) };
}

/**
 * Decodes a GET /v1/catalog answer as it arrived (text or bytes), refusing it above
 * LIMITS.maxCatalogBytes before parsing, then verifies it as {@link verifySignedCatalog} does.
 */
export async function decodeSignedCatalog(
  data: string | Uint8Array,
  options: VerifySignedCatalogOptions = {},
): Promise<VerifiedGatewayCatalog> {
  let value: unknown;
  try {
    value = decodeMessage(signedGatewayCatalogSchema, data, LIMITS.maxCatalogBytes, 'catalog');
  } catch (cause) {
    throw new CryptoError('NJ_CATALOG_INVALID', (cause as Error).message, { cause });
  }
  return verifySignedCatalog(value, options);
}
