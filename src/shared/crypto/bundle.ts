/**
 * Key bundles: what an agent publishes and a client checks before it encrypts. The identity key
 * signs the canonical encoding of the whole bundle.
 */
import { CryptoError } from '../errors.js';
import { bytesEqual, fromBase64Url, signingBytes, toBase64Url } from '../encoding.js';
import { validate } from '../protocol/codec.js';
import {
  keyBundleSchema,
  signedBundleSchema,
  type BundleModel,
  type KeyBundle,
  type Platform,
  type Posture,
  type SignedBundle,
} from '../protocol/schemas.js';
import { PROTOCOL_VERSION } from '../protocol/limits.js';
import { cryptoBackend } from './backend.js';
import { isWeakEd25519Key } from './ed25519-order.js';
import { attestBundle, type EnclaveSigner } from './attestation.js';
import { agentIdFor, boxKeyIdFor, type BoxKeyPair, type IdentityKeyPair } from './keys.js';

/** Signing domain of bundles. */
export const BUNDLE_DOMAIN = 'bundle/v1';
/** Longest validity a bundle may claim. */
export const MAX_BUNDLE_VALIDITY_MS = 7 * 24 * 3600_000;

/** What goes into a new bundle besides the keys. */
export interface CreateBundleOptions {
  identity: IdentityKeyPair;
  boxKey: BoxKeyPair;
  models: BundleModel[];
  slots: number;
  platform: Platform;
  posture: Posture;
  /** Milliseconds since the epoch. */
  now: number;
  /** How long the bundle is valid. Defaults to 25 hours (box keys rotate every 24). */
  validityMs?: number;
  /** The Secure Enclave key that co-signs the bundle (its `attestation`). Defaults to none: no attestation. */
  enclave?: EnclaveSigner;
}

/** Builds and signs a bundle. */
export async function createBundle(options: CreateBundleOptions): Promise<SignedBundle> {
  const bundle: KeyBundle = validate(
    keyBundleSchema,
    {
      v: PROTOCOL_VERSION,
      agentId: options.identity.agentId,
      identityKey: toBase64Url(options.identity.publicKey),
      boxKey: toBase64Url(options.boxKey.publicKey),
      boxKeyId: options.boxKey.keyId,
      notBefore: options.now,
      notAfter: options.now + (options.validityMs ?? 25 * 3600_000),
      models: options.models,
      capacity: { slots: options.slots },
      platform: options.platform,
      posture: options.posture,
    },
    'bundle',
  );
  return signBundle(options.enclave ? await attestBundle(bundle, options.enclave) : bundle, options.identity);
}

/** Signs a bundle with its identity key. */
export async function signBundle(bundle: KeyBundle, identity: IdentityKeyPair): Promise<SignedBundle> {
  const signature = await (await cryptoBackend()).sign(identity.seed, signingBytes(BUNDLE_DOMAIN, bundle));
  return { bundle, signature: toBase64Url(signature) };
}

/** A bundle whose signature, ids and validity window have been checked. */
export interface VerifiedBundle {
  readonly signed: SignedBundle;
  readonly bundle: KeyBundle;
  readonly identityKey: Uint8Array;
  readonly boxKey: Uint8Array;
}

/** How strictly to check a bundle. */
export interface VerifyBundleOptions {
  /** Milliseconds since the epoch. */
  now: number;
  /** Clock skew tolerated on notBefore. Defaults to 60 000. */
  skewMs?: number;
  /** Identity key the agent must have (pinning). */
  pinnedIdentityKey?: Uint8Array;
}

/**
 * Checks a signed bundle: schema, agentId and boxKeyId derived from the keys, an identity key
 * that is a canonical point of large order, signature by that key, validity window. Throws NJ_BUNDLE_INVALID (or NJ_PINNED_KEY_CHANGED).
 */
export async function verifyBundle(input: unknown, options: VerifyBundleOptions): Promise<VerifiedBundle> {
  let signed: SignedBundle;
  try {
    signed = validate(signedBundleSchema, input, 'bundle');
  } catch (cause) {
    throw new CryptoError('NJ_BUNDLE_INVALID', (cause as Error).message, { cause });
  }
  const { bundle } = signed;
  const identityKey = fromBase64Url(bundle.identityKey);
  const boxKey = fromBase64Url(bundle.boxKey);
  if (agentIdFor(identityKey) !== bundle.agentId) {
    throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle agentId does not match its identity key');
  }
  if (boxKeyIdFor(boxKey) !== bundle.boxKeyId) {
    throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle boxKeyId does not match its box key');
  }
  if (isWeakEd25519Key(identityKey)) {
    throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle identity key is a weak (small-order or non-canonical) point');
  }
  if (options.pinnedIdentityKey && !bytesEqual(options.pinnedIdentityKey, identityKey)) {
    throw new CryptoError('NJ_PINNED_KEY_CHANGED', `agent ${bundle.agentId} presented an identity key other than the pinned one`);
  }
  const ok = await (await cryptoBackend()).verify(identityKey, signingBytes(BUNDLE_DOMAIN, bundle), fromBase64Url(signed.signature));
  if (!ok) throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle signature does not verify');
  const skew = options.skewMs ?? 60_000;
  if (bundle.notAfter <= bundle.notBefore || bundle.notAfter - bundle.notBefore > MAX_BUNDLE_VALIDITY_MS) {
    throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle validity window is empty or longer than 7 days');
  }
  if (options.now + skew < bundle.notBefore) throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle is not valid yet');
  if (options.now > bundle.notAfter) throw new CryptoError('NJ_BUNDLE_INVALID', 'bundle has expired');
  return { signed, bundle, identityKey, boxKey };
}
