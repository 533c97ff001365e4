/**
 * The gateway's word, signed: directory answers (the candidates for a request with the trust the
 * gateway judged, the time and the request answered), the released-versions list, and rotation
 * statements (an old gateway key naming its successor). Each is Ed25519 over
 * `nightjar/<domain>\n` + canonical JSON under its own domain, like the catalog
 * ({@link signAsGateway}), so a signature made for one never verifies as another.
 */
import type { z } from 'zod';
import { CryptoError } from '../errors.js';
import { bytesEqual, fromBase64Url, signingBytes, toBase64Url, toHex, type CanonicalValue } from '../encoding.js';
import { decodeMessage, validate } from '../protocol/codec.js';
import { LIMITS, PROTOCOL_VERSION } from '../protocol/limits.js';
import {
  candidatesResponseSchema,
  gatewayRotationSchema,
  releasesListSchema,
  signedGatewayRotationSchema,
  signedReleasesListSchema,
  type Candidate,
  type CandidatesResponse,
  type DirectoryAnswer,
  type DirectoryRequest,
  type GatewayRotation,
  type Release,
  type ReleasesList,
  type SignedGatewayRotation,
  type SignedReleasesList,
} from '../protocol/schemas.js';
import type { ErrorCode } from '../errors.js';
import { cryptoBackend } from './backend.js';
import { gatewayKeyIdFor, signAsGateway, type GatewayKeyPair } from './catalog.js';
import { isWeakEd25519Key } from './ed25519-order.js';
import { taggedHash } from './hash.js';

/** Signing domain of a directory answer (GET /v1/candidates). */
export const DIRECTORY_DOMAIN = 'directory/v1';
/** Signing domain of the released-versions list (GET /v1/releases). */
export const RELEASES_DOMAIN = 'releases/v1';
/** Signing domain of a rotation statement (old gateway key → new). */
export const ROTATION_DOMAIN = 'gateway-rotation/v1';

/**
 * The fingerprint people compare: 16 bytes of the key's tagged hash in hex, in groups of four.
 * Its first 16 hex digits are the key id ({@link gatewayKeyIdFor}).
 */
export function gatewayKeyFingerprint(publicKey: Uint8Array): string {
  const hex = toHex(taggedHash('gateway-key-id/v1', publicKey).subarray(0, 16));
  return hex.replace(/(.{4})(?!$)/g, '$1 ');
}

/** How a gateway key was given: its base64url public key, its fingerprint, or its id. */
export type GatewayKeyExpectation = { readonly key: Uint8Array } | { readonly fingerprint: string } | { readonly keyId: string };

/**
 * Reads a gateway key as a person gives it (`--gateway-key`): a 43-character base64url public key,
 * a 32-hex-digit fingerprint (spaces allowed) or a 16-hex-digit key id. Throws NJ_CONFIG_INVALID.
 */
export function parseGatewayKey(text: string): GatewayKeyExpectation {
  const compact = text.trim().replace(/\s+/g, '').toLowerCase();
  if (/^[0-9a-f]{32}$/.test(compact)) return { fingerprint: compact };
  if (/^[0-9a-f]{16}$/.test(compact)) return { keyId: compact };
  if (/^[A-Za-z0-9_-]{43}$/.test(text.trim())) {
    try {
      const key = fromBase64Url(text.trim());
      if (key.length === 32 && !isWeakEd25519Key(key)) return { key };
    } catch {
      // Not canonical base64url: refused below.
    }
  }
  throw new CryptoError(
    'NJ_CONFIG_INVALID',
    'a gateway key is its base64url public key, its fingerprint (32 hex digits) or its id (16 hex digits), ' +
      'as `nightjar gateway key` prints',
  );
}

/** True if `publicKey` is the key `expected` describes. */
export function gatewayKeyMatches(expected: GatewayKeyExpectation, publicKey: Uint8Array): boolean {
  if ('key' in expected) return bytesEqual(expected.key, publicKey);
  if ('fingerprint' in expected) return gatewayKeyFingerprint(publicKey).replace(/ /g, '') === expected.fingerprint;
  return gatewayKeyIdFor(publicKey) === expected.keyId;
}

function invalid(code: ErrorCode, message: string, cause?: unknown): CryptoError {
  return new CryptoError(code, message, cause === undefined ? undefined : { cause });
}

/** Schema-checks `input`, turning a failure into `code`. */
function parse<S extends z.ZodType>(schema: S, input: unknown, what: string, code: ErrorCode): z.output<S> {
  try {
    return validate(schema, input, what);
  } catch (cause) {
    throw invalid(code, (cause as Error).message, cause);
  }
}

/**
 * Checks the signer of a document: a canonical point of large order, the expected key if one is
 * given (else NJ_GATEWAY_KEY_MISMATCH), and the signature over `nightjar/<domain>\n` + canonical JSON.
 */
async function checkSignature(
  domain: string,
  body: CanonicalValue,
  signerText: string,
  signature: string,
  expected: Uint8Array | undefined,
  code: ErrorCode,
  what: string,
): Promise<Uint8Array> {
  const signer = fromBase64Url(signerText);
  if (expected && !bytesEqual(expected, signer)) {
    throw invalid('NJ_GATEWAY_KEY_MISMATCH', `the ${what} is signed by gateway key ${gatewayKeyIdFor(signer)}, not the expected one`);
  }
  if (isWeakEd25519Key(signer)) throw invalid(code, `the ${what}'s gateway key is a weak (small-order or non-canonical) point`);
  const ok = await (await cryptoBackend()).verify(signer, signingBytes(domain, body), fromBase64Url(signature));
  if (!ok) throw invalid(code, `the ${what}'s signature does not verify`);
  return signer;
}

/** Checks issuedAt against `now`: not in the future beyond `skewMs`, not older than `maxAgeMs`. */
function checkTime(
  issuedAt: number,
  now: number | undefined,
  skewMs: number,
  maxAgeMs: number | undefined,
  code: ErrorCode,
  what: string,
): void {
  if (now === undefined) return;
  if (issuedAt > now + skewMs) throw invalid(code, `the ${what} was issued in the future (check this machine's clock)`);
  if (maxAgeMs !== undefined && now - issuedAt > maxAgeMs) throw invalid(code, `the ${what} is stale: issued ${now - issuedAt} ms ago`);
}

// ---- directory answers ----

/** What goes into a directory answer. */
export interface CreateDirectoryAnswerOptions {
  /** The gateway key that signs it. */
  key: GatewayKeyPair;
  /** The request answered (the client's nonce, model, k and minTrust). */
  request: DirectoryRequest;
  /** The candidates, best first, each with the trust the gateway judged. */
  candidates: readonly Candidate[];
  /** Milliseconds since the epoch: the answer's issuedAt. */
  now: number;
}

/** Builds and signs a directory answer; throws NJ_DIRECTORY_INVALID if it breaks a bound. */
export async function createDirectoryAnswer(options: CreateDirectoryAnswerOptions): Promise<CandidatesResponse> {
  const body: DirectoryAnswer = {
    v: PROTOCOL_VERSION,
    model: options.request.model,
    candidates: [...options.candidates],
    gatewayKey: toBase64Url(options.key.publicKey),
    issuedAt: options.now,
    request: options.request,
  };
  const signature = toBase64Url(await signAsGateway(DIRECTORY_DOMAIN, body, options.key));
  return parse(candidatesResponseSchema, { ...body, signature }, 'directory answer', 'NJ_DIRECTORY_INVALID');
}

/** How a client checks a directory answer. */
export interface VerifyDirectoryAnswerOptions {
  /** The gateway key it must be signed by (pinned or given). Required: an answer is never trusted on its own word. */
  gatewayKey: Uint8Array;
  /** The request the client sent: the answer must name this very nonce, model, k and minTrust. Required. */
  request: DirectoryRequest;
  /** The client's time, ms since the epoch. Required. */
  now: number;
  /** How far issuedAt may be from `now`, either way. Defaults to 30 000 ms. */
  windowMs?: number;
}

/**
 * Checks a directory answer: schema and bounds, the pinned gateway key (NJ_GATEWAY_KEY_MISMATCH
 * otherwise), the signature, the request it answers (nonce, model, k, minTrust: an answer replayed
 * from another request is refused), at most k candidates, and a fresh time. Throws
 * NJ_DIRECTORY_INVALID naming the first check that failed.
 */
export async function verifyDirectoryAnswer(input: unknown, options: VerifyDirectoryAnswerOptions): Promise<CandidatesResponse> {
  const answer = parse(candidatesResponseSchema, input, 'directory answer', 'NJ_DIRECTORY_INVALID');
  const { signature, ...body } = answer;
  await checkSignature(
    DIRECTORY_DOMAIN,
    body,
    answer.gatewayKey,
    signature,
    options.gatewayKey,
    'NJ_DIRECTORY_INVALID',
    'directory answer',
  );
  const sent = options.request;
  const got = answer.request;
  if (sent.nonce === null || got.nonce !== sent.nonce) {
    throw invalid('NJ_DIRECTORY_INVALID', 'the directory answer answers another request (its nonce is not the one sent): a replay');
  }
  if (got.model !== sent.model || answer.model !== sent.model || got.k !== sent.k || got.minTrust !== sent.minTrust) {
    throw invalid('NJ_DIRECTORY_INVALID', 'the directory answer answers another request (model, k or minTrust differ)');
  }
  if (answer.candidates.length > sent.k)
    throw invalid('NJ_DIRECTORY_INVALID', `the directory answer names more than the ${sent.k} candidates asked for`);
  const windowMs = options.windowMs ?? 30_000;
  checkTime(answer.issuedAt, options.now, windowMs, windowMs, 'NJ_DIRECTORY_INVALID', 'directory answer');
  return answer;
}

/** Decodes a GET /v1/candidates answer as it arrived, refusing it above LIMITS.maxSignedAnswerBytes, then verifies it. */
export async function decodeDirectoryAnswer(data: string | Uint8Array, options: VerifyDirectoryAnswerOptions): Promise<CandidatesResponse> {
  let value: unknown;
  try {
    value = decodeMessage(candidatesResponseSchema, data, LIMITS.maxSignedAnswerBytes, 'directory answer');
  } catch (cause) {
    throw invalid('NJ_DIRECTORY_INVALID', (cause as Error).message, cause);
  }
  return verifyDirectoryAnswer(value, options);
}

// ---- the released-versions list ----

/** What goes into a released-versions list. */
export interface CreateSignedReleasesOptions {
  /** The gateway key that signs it. */
  key: GatewayKeyPair;
  /** The releases, in any order (sorted by appHash here). */
  releases: readonly Release[];
  /** Milliseconds since the epoch: the list's issuedAt. */
  now: number;
}

function checkReleaseOrder(list: ReleasesList): void {
  list.releases.forEach((r, i) => {
    if (i > 0 && list.releases[i - 1]!.appHash >= r.appHash) {
      throw invalid('NJ_RELEASES_INVALID', `releases must be sorted by appHash without repeats (at ${r.appHash})`);
    }
  });
}

/** Builds (sorted by appHash) and signs a released-versions list; throws NJ_RELEASES_INVALID past a bound. */
export async function createSignedReleases(options: CreateSignedReleasesOptions): Promise<SignedReleasesList> {
  const releases = [...options.releases].map((r) => ({ version: r.version, appHash: r.appHash }));
  releases.sort((a, b) => (a.appHash < b.appHash ? -1 : a.appHash > b.appHash ? 1 : 0));
  const list = parse(
    releasesListSchema,
    { v: PROTOCOL_VERSION, gatewayKey: toBase64Url(options.key.publicKey), issuedAt: options.now, releases },
    'releases',
    'NJ_RELEASES_INVALID',
  );
  checkReleaseOrder(list);
  return { releases: list, signature: toBase64Url(await signAsGateway(RELEASES_DOMAIN, list, options.key)) };
}

/** How strictly to check a released-versions list. */
export interface VerifySignedReleasesOptions {
  /** The gateway key it must be signed by (pinned or given). Required. */
  gatewayKey: Uint8Array;
  /** Milliseconds since the epoch, to refuse a list from the future (or too old, with maxAgeMs). Defaults to no time check. */
  now?: number;
  /** Clock skew tolerated on issuedAt. Defaults to 60 000 ms. */
  skewMs?: number;
  /** Refuse a list issued longer ago than this (with `now`). Defaults to no limit. */
  maxAgeMs?: number;
}

/** A released-versions list whose signature, key and order have been checked. */
export interface VerifiedReleases {
  readonly signed: SignedReleasesList;
  readonly list: ReleasesList;
  /** The release an app hash is, if it is one. */
  release(appHash: string): Release | undefined;
}

/**
 * Checks a signed released-versions list: schema and bounds, canonical order, the expected gateway
 * key (NJ_GATEWAY_KEY_MISMATCH otherwise), the signature and its time. Throws NJ_RELEASES_INVALID.
 */
export async function verifySignedReleases(input: unknown, options: VerifySignedReleasesOptions): Promise<VerifiedReleases> {
  const signed = parse(signedReleasesListSchema, input, 'releases', 'NJ_RELEASES_INVALID');
  const list = signed.releases;
  await checkSignature(
    RELEASES_DOMAIN,
    list,
    list.gatewayKey,
    signed.signature,
    options.gatewayKey,
    'NJ_RELEASES_INVALID',
    'releases list',
  );
  checkReleaseOrder(list);
  checkTime(list.issuedAt, options.now, options.skewMs ?? 60_000, options.maxAgeMs, 'NJ_RELEASES_INVALID', 'releases list');
  const index = new Map(list.releases.map((r) => [r.appHash, r]));
  return { signed, list, release: (appHash) => index.get(appHash) };
}

/** Decodes a GET /v1/releases answer as it arrived, refusing it above LIMITS.maxSignedAnswerBytes, then verifies it. */
export async function decodeSignedReleases(data: string | Uint8Array, options: VerifySignedReleasesOptions): Promise<VerifiedReleases> {
  let value: unknown;
  try {
    value = decodeMessage(signedReleasesListSchema, data, LIMITS.maxSignedAnswerBytes, 'releases');
  } catch (cause) {
    throw invalid('NJ_RELEASES_INVALID', (cause as Error).message, cause);
  }
  return verifySignedReleases(value, options);
}

// ---- rotation statements ----

/** What goes into a rotation statement. */
export interface CreateRotationOptions {
  /** The key being retired: it signs the statement. */
  oldKey: GatewayKeyPair;
  /** The public half of the key that replaces it. */
  newKey: Uint8Array;
  /** When the new key takes over, ms since the epoch. */
  rotatedAt: number;
  /** Until when clients may follow the statement (the old key's grace period), ms since the epoch. */
  graceUntil: number;
}

/** Signs a rotation statement with the old key. */
export async function createRotation(options: CreateRotationOptions): Promise<SignedGatewayRotation> {
  const rotation: GatewayRotation = parse(
    gatewayRotationSchema,
    {
      v: PROTOCOL_VERSION,
      oldKey: toBase64Url(options.oldKey.publicKey),
      newKey: toBase64Url(options.newKey),
      rotatedAt: options.rotatedAt,
      graceUntil: options.graceUntil,
    },
    'rotation',
    'NJ_GATEWAY_KEY_MISMATCH',
  );
  return { rotation, signature: toBase64Url(await signAsGateway(ROTATION_DOMAIN, rotation, options.oldKey)) };
}

/**
 * Checks one rotation statement: schema, old and new keys distinct canonical points, the old key's
 * signature, and (with `now`) that its grace period has not ended. Throws NJ_GATEWAY_KEY_MISMATCH.
 */
export async function verifyRotation(input: unknown, options: { now?: number } = {}): Promise<GatewayRotation> {
  const signed = parse(signedGatewayRotationSchema, input, 'rotation', 'NJ_GATEWAY_KEY_MISMATCH');
  const { rotation } = signed;
  if (rotation.oldKey === rotation.newKey) throw invalid('NJ_GATEWAY_KEY_MISMATCH', 'a rotation statement names the same key twice');
  if (isWeakEd25519Key(fromBase64Url(rotation.newKey))) {
    throw invalid('NJ_GATEWAY_KEY_MISMATCH', 'a rotation statement names a weak (small-order or non-canonical) new key');
  }
  await checkSignature(
    ROTATION_DOMAIN,
    rotation,
    rotation.oldKey,
    signed.signature,
    undefined,
    'NJ_GATEWAY_KEY_MISMATCH',
    'rotation statement',
  );
  if (options.now !== undefined && options.now > rotation.graceUntil) {
    throw invalid('NJ_GATEWAY_KEY_MISMATCH', 'the rotation statement’s grace period is over');
  }
  return rotation;
}

/**
 * Follows rotation statements from `pinned` to `target`: each step must be signed by the key the
 * previous step ended at, within its grace period. Resolves with the chain's keys after `pinned`
 * (ending at `target`), or null if no valid chain leads there. Statements that do not verify are
 * skipped; none is trusted for anything but the step it signs.
 */
export async function followRotations(
  pinned: Uint8Array,
  target: Uint8Array,
  rotations: readonly unknown[],
  options: { now?: number } = {},
): Promise<Uint8Array[] | null> {
  const valid: GatewayRotation[] = [];
  for (const r of rotations.slice(0, LIMITS.maxGatewayRotations)) {
    try {
      valid.push(await verifyRotation(r, options));
    } catch {
      // A statement that does not verify moves no one.
    }
  }
  const chain: Uint8Array[] = [];
  let at = toBase64Url(pinned);
  const seen = new Set([at]);
  for (;;) {
    if (at === toBase64Url(target)) return chain;
    const step = valid.find((r) => r.oldKey === at);
    if (!step || seen.has(step.newKey)) return null;
    seen.add(step.newKey);
    at = step.newKey;
    chain.push(fromBase64Url(at));
  }
}
