/**
 * The multi-recipient envelope (DESIGN.md "Envelope"): one random content key, wrapped with
 * NaCl box from a per-request ephemeral key for each candidate agent; the request sealed once
 * with secretbox under the content key, padded to a power-of-two bucket, and bound to the
 * visible header by a digest inside the ciphertext.
 */
import { CryptoError, NightjarError } from '../errors.js';
import { bytesEqual, fromBase64Url, fromUtf8, signingBytes, toBase64Url, utf8 } from '../encoding.js';
import { validate } from '../protocol/codec.js';
import { LIMITS, PROTOCOL_VERSION } from '../protocol/limits.js';
import {
  envelopeHeaderSchema,
  envelopeSchema,
  requestPayloadSchema,
  type ChatMessage,
  type Envelope,
  type EnvelopeHeader,
  type RequestPayload,
  type ResponseFormat,
  type Sampling,
  type Tool,
  type ToolChoice,
} from '../protocol/schemas.js';
import { cryptoBackend, randomBytes } from './backend.js';
import type { VerifiedBundle } from './bundle.js';
import { sha256 } from './hash.js';
import { boxOpen, secretOpen, secretSeal, type BoxKeyPair } from './keys.js';
import { pad, powerOfTwoBucket, unpad } from './padding.js';

/** Signing domain of the header digest. */
export const HEADER_DOMAIN = 'header/v1';

/** What to seal. */
export interface SealRequestOptions {
  model: string;
  messages: ChatMessage[];
  sampling: Sampling;
  /** Functions the model may call. Defaults to none (and then the body is exactly what it was before tools). */
  tools?: Tool[];
  /** Whether it calls one. Defaults to none given (the agent takes 'auto' with tools). */
  toolChoice?: ToolChoice;
  /** The shape of a text reply. Defaults to free text. */
  responseFormat?: ResponseFormat;
  /**
   * An embedding job: the texts to embed (then `messages` is empty and sampling.maxTokens is 1)
   * and, optionally, the width the client expects. Defaults to none (a chat job).
   */
  embed?: { input: string[]; dimensions?: number };
  /**
   * The conversation's cache key (see requestPayloadSchema): sealed in the body, never in the
   * header. Defaults to none (the agent keeps nothing warm).
   */
  cacheKey?: string;
  /** Verified bundles of the candidate agents, best first. */
  recipients: readonly VerifiedBundle[];
  /** Milliseconds since the epoch. */
  now: number;
  /** base64url of 16 bytes. Defaults to a random id. */
  jobId?: string;
  /**
   * Where the random bytes come from, drawn in this order: the jobId (only when none is given),
   * the content key, the ephemeral secret, one wrap nonce per recipient in recipient order, the
   * body nonce. Each call must return fresh bytes. Defaults to the platform CSPRNG
   * ({@link randomBytes}). Only tests that reproduce frozen vectors replace it.
   */
  random?: (length: number) => Uint8Array;
  /**
   * An ephemeral key agreed ahead of time ({@link prepareEphemeral}). Used, and spent, only when
   * it was agreed with exactly these recipients' box keys, in this order; otherwise a fresh one is
   * drawn. Ignored when `random` is given.
   */
  prepared?: PreparedEphemeral;
}

/** A sealed request and the secrets the client keeps to read the reply. */
export interface SealedRequest {
  readonly jobId: string;
  readonly envelope: Envelope;
  /** The content key: the client's only secret for this job. */
  readonly contentKey: Uint8Array;
  /** sha256 of the body ciphertext, as the receipt must state it. */
  readonly requestDigest: Uint8Array;
}

/** base64url sha256 of the canonical header. */
export function headerDigest(header: EnvelopeHeader): string {
  return toBase64Url(sha256(signingBytes(HEADER_DOMAIN, header)));
}

/**
 * An ephemeral X25519 key and the NaCl box keys it shares with some recipients, made before the
 * request they will seal exists, so that drawing the key and the agreements (several round trips
 * to WebCrypto's thread pool) is not paid while the user waits. Seals one envelope at most: the
 * ephemeral public key would otherwise link two requests. Its secret never leaves the backend.
 */
export class PreparedEphemeral {
  readonly #publicKey: Uint8Array;
  readonly #theirs: readonly Uint8Array[];
  #boxKeys: Uint8Array[] | null;

  /** Use {@link prepareEphemeral}. */
  constructor(publicKey: Uint8Array, theirPublics: readonly Uint8Array[], boxKeys: Uint8Array[]) {
    this.#publicKey = publicKey;
    this.#theirs = theirPublics.map((k) => k.slice());
    this.#boxKeys = boxKeys;
  }

  /** False once it has sealed an envelope or was discarded. */
  get usable(): boolean {
    return this.#boxKeys !== null;
  }

  /** Whether it was agreed with exactly these box keys, in this order. */
  fits(theirPublics: readonly Uint8Array[]): boolean {
    return theirPublics.length === this.#theirs.length && theirPublics.every((k, i) => bytesEqual(k, this.#theirs[i]!));
  }

  /** Hands its keys to one seal and is spent; null if it is spent or does not fit. */
  take(theirPublics: readonly Uint8Array[]): { publicKey: Uint8Array; boxKeys: Uint8Array[] } | null {
    if (!this.#boxKeys || !this.fits(theirPublics)) return null;
    const boxKeys = this.#boxKeys;
    this.#boxKeys = null;
    return { publicKey: this.#publicKey, boxKeys };
  }

  /** Wipes the box keys unused. */
  discard(): void {
    for (const key of this.#boxKeys ?? []) key.fill(0);
    this.#boxKeys = null;
  }
}

/** Draws an ephemeral key and agrees box keys with `recipients` ahead of a seal. */
export async function prepareEphemeral(recipients: readonly VerifiedBundle[]): Promise<PreparedEphemeral> {
  const theirs = recipients.map((r) => r.boxKey);
  const { publicKey, boxKeys } = await (await cryptoBackend()).ephemeralBoxKeys(theirs);
  return new PreparedEphemeral(publicKey, theirs, boxKeys);
}

/** Seals a request for every recipient. */
export async function sealRequest(options: SealRequestOptions): Promise<SealedRequest> {
  const backend = await cryptoBackend();
  const random = options.random ?? randomBytes;
  const jobId = options.jobId ?? toBase64Url(random(16));
  const ids = new Set(options.recipients.map((r) => r.bundle.agentId));
  if (ids.size !== options.recipients.length || ids.size === 0) {
    throw new NightjarError('NJ_BAD_REQUEST', 'an envelope needs one or more distinct recipients');
  }
  const contentKey = random(32);
  let ephemeralKey: Uint8Array;
  let boxKeys: Uint8Array[];
  if (options.random) {
    // A given randomness source (known-answer vectors) fixes the ephemeral secret too.
    const ephemeralSecret = random(32);
    ephemeralKey = await backend.x25519PublicKey(ephemeralSecret);
    boxKeys = await Promise.all(options.recipients.map((r) => backend.boxKey(r.boxKey, ephemeralSecret)));
    ephemeralSecret.fill(0);
  } else {
    const theirs = options.recipients.map((r) => r.boxKey);
    ({ publicKey: ephemeralKey, boxKeys } = options.prepared?.take(theirs) ?? (await backend.ephemeralBoxKeys(theirs)));
  }
  const recipients = options.recipients.map((r, i) => {
    const nonce = random(24);
    return {
      agentId: r.bundle.agentId,
      boxKeyId: r.bundle.boxKeyId,
      nonce: toBase64Url(nonce),
      wrappedKey: toBase64Url(secretSeal(contentKey, nonce, boxKeys[i]!)),
    };
  });
  for (const key of boxKeys) key.fill(0);

  const payload: RequestPayload = validate(
    requestPayloadSchema,
    {
      v: PROTOCOL_VERSION,
      jobId,
      model: options.model,
      created: options.now,
      headerDigest: toBase64Url(new Uint8Array(32)),
      messages: options.messages,
      sampling: options.sampling,
      ...(options.tools === undefined ? {} : { tools: options.tools }),
      ...(options.toolChoice === undefined ? {} : { toolChoice: options.toolChoice }),
      ...(options.responseFormat === undefined ? {} : { responseFormat: options.responseFormat }),
      ...(options.embed === undefined
        ? {}
        : {
            task: 'embed' as const,
            input: options.embed.input,
            ...(options.embed.dimensions === undefined ? {} : { dimensions: options.embed.dimensions }),
          }),
      ...(options.cacheKey === undefined ? {} : { cacheKey: options.cacheKey }),
    },
    'request',
  );
  // The digest has a fixed encoded length, so the plaintext size is known before the header.
  const size = utf8(JSON.stringify(payload)).length;
  const bucket = powerOfTwoBucket(size + 4, LIMITS.minRequestBucketBytes);
  if (bucket + 16 > LIMITS.maxRequestBodyBytes) {
    throw new NightjarError('NJ_PAYLOAD_TOO_LARGE', `the request is ${size} bytes; the limit is ${LIMITS.maxRequestBodyBytes - 20}`);
  }
  const bodyNonce = random(24);
  const header: EnvelopeHeader = validate(
    envelopeHeaderSchema,
    {
      v: PROTOCOL_VERSION,
      jobId,
      model: options.model,
      maxTokens: options.sampling.maxTokens,
      ephemeralKey: toBase64Url(ephemeralKey),
      recipients,
      bodyNonce: toBase64Url(bodyNonce),
      bodyLength: bucket + 16,
    },
    'envelope header',
  );
  payload.headerDigest = headerDigest(header);
  const body = secretSeal(pad(utf8(JSON.stringify(payload)), bucket), bodyNonce, contentKey);
  return {
    jobId,
    envelope: { header, body: toBase64Url(body) },
    contentKey,
    requestDigest: sha256(body),
  };
}

/** The agent's side of opening. */
export interface OpenRequestOptions {
  agentId: string;
  /** Box keys the agent holds, current first (the previous one survives a rotation briefly). */
  boxKeys: readonly BoxKeyPair[];
  /** Milliseconds since the epoch. */
  now: number;
  /** Oldest acceptable created time, as an age. Defaults to LIMITS.maxRequestAgeMs. */
  maxAgeMs?: number;
  /** Furthest-future acceptable created time. Defaults to LIMITS.maxClockSkewMs. */
  maxSkewMs?: number;
}

/** An opened request. */
export interface OpenedRequest {
  readonly header: EnvelopeHeader;
  readonly payload: RequestPayload;
  readonly contentKey: Uint8Array;
  readonly requestDigest: Uint8Array;
}

/**
 * Opens an envelope addressed to this agent. Throws, each with its code: NJ_FRAME_INVALID
 * (malformed), NJ_NOT_A_RECIPIENT, NJ_DECRYPT_FAILED (wrong key, altered or truncated),
 * NJ_HEADER_MISMATCH (visible header altered), NJ_STALE_REQUEST (created outside the window).
 * Replay and served-model checks belong to the caller, which holds that state.
 */
export async function openRequest(input: unknown, options: OpenRequestOptions): Promise<OpenedRequest> {
  const envelope = validate(envelopeSchema, input, 'envelope');
  const { header } = envelope;
  const entry = header.recipients.find((r) => r.agentId === options.agentId);
  if (!entry) throw new CryptoError('NJ_NOT_A_RECIPIENT', 'this envelope has no entry for this agent');
  const boxKey = options.boxKeys.find((k) => k.keyId === entry.boxKeyId);
  if (!boxKey) {
    throw new CryptoError('NJ_NOT_A_RECIPIENT', 'this envelope was sealed for a box key this agent no longer holds');
  }
  const contentKey = await boxOpen(
    fromBase64Url(entry.wrappedKey),
    fromBase64Url(entry.nonce),
    fromBase64Url(header.ephemeralKey),
    boxKey.secretKey,
    'the wrapped content key',
  );
  if (contentKey.length !== 32) throw new CryptoError('NJ_DECRYPT_FAILED', 'the wrapped content key has the wrong length');
  const { payload, requestDigest } = openRequestBody(envelope, contentKey);
  const maxAge = options.maxAgeMs ?? LIMITS.maxRequestAgeMs;
  const maxSkew = options.maxSkewMs ?? LIMITS.maxClockSkewMs;
  if (payload.created < options.now - maxAge || payload.created > options.now + maxSkew) {
    throw new CryptoError('NJ_STALE_REQUEST', 'the request was created outside the accepted time window');
  }
  return { header, payload, contentKey, requestDigest };
}

/**
 * Opens an envelope's body with its content key, already unwrapped (the agent's, or one a client
 * kept as evidence of its job), and checks it against the visible header. Throws, each with its
 * code: NJ_HEADER_MISMATCH (body length, header digest or the header's jobId, model or maxTokens
 * differ), NJ_DECRYPT_FAILED (wrong key, altered or truncated, not JSON), NJ_FRAME_INVALID (not a
 * request). Does not check the created time.
 */
export function openRequestBody(envelope: Envelope, contentKey: Uint8Array): { payload: RequestPayload; requestDigest: Uint8Array } {
  const { header } = envelope;
  const body = fromBase64Url(envelope.body);
  if (body.length !== header.bodyLength) {
    throw new CryptoError('NJ_HEADER_MISMATCH', 'the body length differs from the header');
  }
  const plaintext = unpad(secretOpen(body, fromBase64Url(header.bodyNonce), contentKey, 'the request body'));
  let parsed: unknown;
  try {
    parsed = JSON.parse(fromUtf8(plaintext));
  } catch {
    // No cause: JSON.parse quotes its input, and this input is the prompt.
    throw new CryptoError('NJ_DECRYPT_FAILED', 'the request body is not JSON');
  }
  const payload = validate(requestPayloadSchema, parsed, 'request');
  if (payload.headerDigest !== headerDigest(header)) {
    throw new CryptoError('NJ_HEADER_MISMATCH', 'the visible header was altered after sealing');
  }
  if (payload.jobId !== header.jobId || payload.model !== header.model || payload.sampling.maxTokens !== header.maxTokens) {
    throw new CryptoError('NJ_HEADER_MISMATCH', 'the sealed request disagrees with its header');
  }
  return { payload, requestDigest: sha256(body) };
}

/**
 * Remembers jobIds until their request could no longer pass the age check, so each is served
 * once. Bounded: past `maxEntries` live ids it refuses new ones rather than forget old ones.
 */
export class ReplayGuard {
  readonly #seen = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #horizonMs: number;

  /**
   * @param options.maxEntries Live ids kept. Defaults to 200 000.
   * @param options.horizonMs How long an id is kept after its created time. Defaults to the
   *   request age limit plus the skew limit.
   */
  constructor(options: { maxEntries?: number; horizonMs?: number } = {}) {
    this.#maxEntries = options.maxEntries ?? 200_000;
    this.#horizonMs = options.horizonMs ?? LIMITS.maxRequestAgeMs + LIMITS.maxClockSkewMs;
  }

  /** Records `jobId`; throws NJ_REPLAY if it was seen, NJ_ENGINE_BUSY if the guard is full. */
  check(jobId: string, created: number, now: number): void {
    if (this.#seen.has(jobId)) throw new CryptoError('NJ_REPLAY', 'this jobId was already served');
    if (this.#seen.size >= this.#maxEntries) this.prune(now);
    if (this.#seen.size >= this.#maxEntries) {
      throw new NightjarError('NJ_ENGINE_BUSY', 'too many recent jobs to remember; try again shortly', { retryAfterMs: 1000 });
    }
    this.#seen.set(jobId, created + this.#horizonMs);
  }

  /** Forgets ids whose requests have aged out. */
  prune(now: number): void {
    for (const [id, expires] of this.#seen) if (expires < now) this.#seen.delete(id);
  }

  /** Number of ids remembered. */
  get size(): number {
    return this.#seen.size;
  }
}
