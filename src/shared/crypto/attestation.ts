/**
 * Secure Enclave attestation: what the agent's enclave key (P-256) signs, how a verifier checks it
 * with WebCrypto, and the judgement that grants `attested`.
 *
 * The enclave key signs two things, each under its own domain tag:
 * - the bundle co-signature ({@link ENCLAVE_BUNDLE_DOMAIN}): the bundle's canonical encoding
 *   WITHOUT its `attestation` field, so it covers the agent id, the identity key, the box key and
 *   its id, the validity window, the models and the posture. The identity key then signs the whole
 *   bundle WITH the attestation (enclave key and co-signature): each key vouches for the other.
 * - an answer to each challenge ({@link ENCLAVE_AUTH_DOMAIN}): the gateway's id, its fresh nonce
 *   and time, the agent id and the box key id, so a live enclave answers for this identity and
 *   this box key, now.
 * Signatures are ECDSA P-256 over SHA-256 of those bytes, DER-encoded (X9.62) as the Secure
 * Enclave returns them; WebCrypto wants IEEE P1363 (r‖s), so DER is converted, strictly.
 */
import { bytesEqual, concatBytes, fromBase64Url, fromHex, signingBytes, toBase64Url, toHex } from '../encoding.js';
import { taggedHash } from './hash.js';
import { CryptoError } from '../errors.js';
import type { KeyBundle, Posture } from '../protocol/schemas.js';

/** Signing domain of the enclave's co-signature of a bundle. */
export const ENCLAVE_BUNDLE_DOMAIN = 'enclave-bundle/v1';
/** Signing domain of the enclave's answer to a challenge. */
export const ENCLAVE_AUTH_DOMAIN = 'enclave-auth/v1';
/** Longest DER ECDSA P-256 signature: SEQUENCE of two INTEGERs of up to 33 bytes each. */
export const MAX_DER_SIGNATURE_BYTES = 72;
/** How old a challenge an enclave answer may answer, by default (ms). */
export const DEFAULT_ATTESTATION_MAX_AGE_MS = 30_000;

/** Something that holds a P-256 key and signs with it: the Secure Enclave, or a test's software stand-in. */
export interface EnclaveSigner {
  /**
   * `secure-enclave` for the Mac's enclave (via the native addon); `software` for a key in memory,
   * which only tests may use (a production agent refuses it).
   */
  readonly kind: 'secure-enclave' | 'software';
  /** The public key: a 65-byte uncompressed P-256 point (0x04 ‖ X ‖ Y). */
  readonly publicKey: Uint8Array;
  /** A DER ECDSA P-256 signature over SHA-256(message). */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** Why an agent is or is not attested. `valid` only when every check held. */
export const ATTESTATION_REASONS = [
  'valid',
  'no-attestation',
  'bad-enclave-signature',
  'enclave-key-not-bound',
  'stale-timestamp',
  'replayed-challenge',
  'wrong-box-key',
  'unreleased-app-hash',
  'sip-off',
  'debugger-allowed',
  'hardened-runtime-off',
] as const;
/** One of {@link ATTESTATION_REASONS}. */
export type AttestationReason = (typeof ATTESTATION_REASONS)[number];

/** What each reason means and what the Mac's owner can do about it (for doctor, the tray, the Security screen). */
export const ATTESTATION_REASON_TEXT: Readonly<Record<AttestationReason, { what: string; fix: string }>> = {
  valid: { what: 'The Secure Enclave signature holds and the posture is hardened.', fix: 'Nothing to do.' },
  'no-attestation': {
    what: 'The bundle carries no Secure Enclave co-signature.',
    fix: 'Run the released Nightjar app on a Mac with a Secure Enclave (the command-line agent cannot keep an enclave key).',
  },
  'bad-enclave-signature': {
    what: 'A Secure Enclave signature does not verify.',
    fix: 'Restart the app; if it persists, delete its enclave key in Settings → Security so a new one is made.',
  },
  'enclave-key-not-bound': {
    what: 'The enclave key answers, but did not co-sign this identity and box key.',
    fix: 'Restart the app so it signs a fresh bundle with its own enclave key.',
  },
  'stale-timestamp': {
    what: 'The enclave answered a challenge that is too old.',
    fix: 'Check the Mac’s clock and network; the agent answers the next challenge.',
  },
  'replayed-challenge': {
    what: 'The enclave answer is for a challenge this gateway did not send now (replayed).',
    fix: 'Reconnect; if it persists, something between the Mac and the gateway replays traffic.',
  },
  'wrong-box-key': {
    what: 'The enclave answered for a box key other than the bundle’s.',
    fix: 'Restart the app so its bundle and its answers name the same box key.',
  },
  'unreleased-app-hash': {
    what: 'The app’s measurement (its SHA-256 code directory hash) is not a released Nightjar build.',
    fix: 'Install a released Nightjar app from the gateway’s download page; builds of your own are not attested.',
  },
  'sip-off': {
    what: 'System Integrity Protection is off (or could not be read).',
    fix: 'Turn SIP back on: restart into Recovery, run `csrutil enable`, restart.',
  },
  'debugger-allowed': {
    what: 'A debugger may attach to the agent (PT_DENY_ATTACH did not take).',
    fix: 'Run the released app (not `node`), which denies debuggers when it starts.',
  },
  'hardened-runtime-off': {
    what: 'The app is not validly signed with the hardened runtime.',
    fix: 'Install the released, notarized Nightjar app; a modified or re-signed copy is not attested.',
  },
};

/** The fields an enclave answer signs. */
export interface EnclaveAnswerFields {
  /** The gateway that sent the challenge. */
  gatewayId: string;
  /** The challenge's nonce, base64url of 32 bytes. */
  nonce: string;
  /** The gateway's time in the challenge, ms. */
  time: number;
  agentId: string;
  /** The box key id of the bundle the agent presents. */
  boxKeyId: string;
}

/** An enclave answer: its fields and the DER signature (base64url) over them. */
export interface EnclaveAnswer extends EnclaveAnswerFields {
  signature: string;
}

/** Which app hashes are released builds (the gateway's released-versions list, or a test's set). */
export interface ReleasedApps {
  /** True if `appHash` (lower-case hex, 32 bytes) is a released Nightjar app. */
  isRelease(appHash: string): boolean | Promise<boolean>;
}

/** A release list that lists nothing: nobody is attested. */
export const NO_RELEASES: ReleasedApps = { isRelease: () => false };

/** A release list held in memory (tests, a gateway configured by hand). */
export function releasedAppsOf(hashes: Iterable<string>): ReleasedApps {
  const set = new Set(hashes);
  return { isRelease: (h) => set.has(h) };
}

/** What a verifier checks an answer against. */
export interface AttestationContext {
  /** The verifier's time, ms since the epoch. */
  now: number;
  /** The gateway the answer must name (the verifier's own id). */
  gatewayId: string;
  /** The nonce the verifier sent and is waiting for an answer to. */
  nonce: string;
  /** Nonces already answered (a second answer to one is a replay). Defaults to none. */
  answered?: ReadonlySet<string>;
  /** Oldest challenge accepted, ms before `now`. Defaults to {@link DEFAULT_ATTESTATION_MAX_AGE_MS}. */
  maxAgeMs?: number;
  /** How far in the future a challenge time may be, ms. Defaults to 5000. */
  skewMs?: number;
  /** Which app hashes are releases. Required. */
  releases: ReleasedApps;
}

/** A judgement: the trust it yields and every reason found (`['valid']` exactly when attested). */
export interface AttestationJudgement {
  trust: 'signed' | 'attested';
  reasons: AttestationReason[];
}

/** Domain of the app measurement ({@link appHashOf}). */
export const APP_HASH_DOMAIN = 'app-hash/v1';

/**
 * The posture's appHash: the app's code directory hash (the cdhash macOS reports as
 * kSecCodeInfoUnique, 20 bytes, hex), widened to the protocol's 32 bytes as
 * SHA-256("nightjar/app-hash/v1\n" ‖ cdhash). The cdhash names one signed build exactly: it is a
 * hash of the code directory, which holds the hash of every page of the executable, of Info.plist
 * (where Electron's asar integrity hash lives) and of the sealed resources (app.asar, the addon).
 * For a signature whose best code directory is SHA-256 (every arm64 signature) it is that SHA-256
 * truncated to 160 bits; the widening adds no strength, it only fixes the size and the domain.
 * A release list records this value for each released build (`codesign -dvvv` prints the CDHash).
 */
export function appHashOf(cdhashHex: string): string {
  const cdhash = fromHex(cdhashHex);
  if (cdhash.length !== 20) throw new CryptoError('NJ_BAD_KEY', 'a code directory hash (cdhash) is 20 bytes');
  return toHex(taggedHash(APP_HASH_DOMAIN, cdhash));
}

// ---- DER ↔ raw ----

// The order n of P-256 (FIPS 186-4 D.1.2.3), big-endian.
const P256_ORDER = fromHexBytes('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

function fromHexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

function bad(message: string): CryptoError {
  return new CryptoError('NJ_BAD_SIGNATURE', `malformed DER ECDSA signature: ${message}`);
}

/** Reads one minimal, positive DER INTEGER in [1, n-1] at `at`; returns it as 32 bytes and the next offset. */
function readInteger(der: Uint8Array, at: number): { value: Uint8Array; next: number } {
  if (der[at] !== 0x02) throw bad('expected an INTEGER');
  const len = der[at + 1];
  if (len === undefined || len < 1 || len > 33) throw bad('INTEGER length out of range');
  const start = at + 2;
  if (start + len > der.length) throw bad('INTEGER runs past the end');
  const body = der.subarray(start, start + len);
  if (body[0]! & 0x80) throw bad('negative INTEGER');
  if (len > 1 && body[0] === 0 && !(body[1]! & 0x80)) throw bad('INTEGER not minimally encoded');
  if (len === 33 && body[0] !== 0) throw bad('INTEGER longer than 32 bytes');
  const value = new Uint8Array(32);
  const digits = len === 33 ? body.subarray(1) : body;
  value.set(digits, 32 - digits.length);
  if (value.every((b) => b === 0)) throw bad('INTEGER is zero');
  if (compareBytes(value, P256_ORDER) >= 0) throw bad('INTEGER not below the group order');
  return { value, next: start + len };
}

/**
 * The IEEE P1363 form (r‖s, 64 bytes) of a DER ECDSA P-256 signature. Strict: one SEQUENCE with a
 * short-form length that covers exactly the rest, two minimal positive INTEGERs in [1, n-1],
 * nothing after. High S is accepted (P-256 ECDSA does not require low S). Throws NJ_BAD_SIGNATURE.
 */
export function derToRawSignature(der: Uint8Array): Uint8Array {
  if (der.length < 8 || der.length > MAX_DER_SIGNATURE_BYTES) throw bad('wrong length');
  if (der[0] !== 0x30) throw bad('expected a SEQUENCE');
  if (der[1]! & 0x80) throw bad('long-form length');
  if (der[1] !== der.length - 2) throw bad('SEQUENCE length does not match');
  const r = readInteger(der, 2);
  const s = readInteger(der, r.next);
  if (s.next !== der.length) throw bad('bytes after the signature');
  return concatBytes(r.value, s.value);
}

function derInteger(value: Uint8Array): Uint8Array {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  const digits = value.subarray(i);
  const body = digits[0]! & 0x80 ? concatBytes(new Uint8Array([0]), digits) : digits;
  return concatBytes(new Uint8Array([0x02, body.length]), body);
}

/** The DER form of a raw (r‖s, 64 bytes) P-256 signature. Throws NJ_BAD_SIGNATURE for another length. */
export function rawToDerSignature(raw: Uint8Array): Uint8Array {
  if (raw.length !== 64) throw new CryptoError('NJ_BAD_SIGNATURE', 'a raw P-256 signature is 64 bytes');
  const body = concatBytes(derInteger(raw.subarray(0, 32)), derInteger(raw.subarray(32)));
  return concatBytes(new Uint8Array([0x30, body.length]), body);
}

// ---- what is signed ----

/** The bundle without its attestation field: what the enclave co-signs. */
function unattested(bundle: KeyBundle): Omit<KeyBundle, 'attestation'> {
  const { attestation: _attestation, ...rest } = bundle;
  return rest;
}

/** The bytes the enclave co-signs for `bundle` (its `attestation` field, if any, left out). */
export function enclaveBundleBytes(bundle: KeyBundle): Uint8Array {
  return signingBytes(ENCLAVE_BUNDLE_DOMAIN, unattested(bundle));
}

/** The bytes the enclave signs to answer a challenge: exactly the five fields. */
export function enclaveAnswerBytes({ gatewayId, nonce, time, agentId, boxKeyId }: EnclaveAnswerFields): Uint8Array {
  return signingBytes(ENCLAVE_AUTH_DOMAIN, { gatewayId, nonce, time, agentId, boxKeyId });
}

/**
 * `bundle` with its enclave co-signature: the `attestation` field set from `signer`. The identity
 * key signs the result afterwards (signBundle), so it vouches for the enclave key.
 */
export async function attestBundle(bundle: KeyBundle, signer: EnclaveSigner): Promise<KeyBundle> {
  const signature = await signer.sign(enclaveBundleBytes(bundle));
  derToRawSignature(signature);
  return { ...unattested(bundle), attestation: { enclaveKey: toBase64Url(signer.publicKey), signature: toBase64Url(signature) } };
}

/** The enclave's answer to a challenge: a DER signature, base64url. */
export async function signEnclaveAnswer(fields: EnclaveAnswerFields, signer: EnclaveSigner): Promise<string> {
  return toBase64Url(await signer.sign(enclaveAnswerBytes(fields)));
}

// ---- verification ----

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new CryptoError('NJ_BAD_KEY', 'this runtime has no WebCrypto, so Secure Enclave signatures cannot be checked');
  return s;
}

/**
 * True if `signatureB64` (base64url DER) is a valid ECDSA P-256 / SHA-256 signature of `message`
 * by `publicKey` (65-byte uncompressed point). Never throws: a malformed key, DER or encoding is false.
 */
export async function verifyP256(publicKey: Uint8Array, message: Uint8Array, signatureB64: string): Promise<boolean> {
  try {
    if (publicKey.length !== 65 || publicKey[0] !== 0x04) return false;
    const raw = derToRawSignature(fromBase64Url(signatureB64));
    const s = subtle();
    const key = await s.importKey('raw', publicKey as Uint8Array<ArrayBuffer>, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    return await s.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw as Uint8Array<ArrayBuffer>, message as Uint8Array<ArrayBuffer>);
  } catch {
    return false;
  }
}

function enclaveKeyOf(bundle: KeyBundle): Uint8Array | null {
  if (!bundle.attestation) return null;
  try {
    return fromBase64Url(bundle.attestation.enclaveKey);
  } catch {
    return null;
  }
}

/** True if the two bundles carry the same enclave key (both none counts as the same). */
export function sameEnclaveKey(a: KeyBundle, b: KeyBundle): boolean {
  const ka = enclaveKeyOf(a);
  const kb = enclaveKeyOf(b);
  return ka === null || kb === null ? ka === kb : bytesEqual(ka, kb);
}

/** The posture's failures, in a fixed order: SIP, debugger, hardened runtime, app hash. */
export async function postureReasons(posture: Posture, releases: ReleasedApps): Promise<AttestationReason[]> {
  const reasons: AttestationReason[] = [];
  if (posture.sip !== true) reasons.push('sip-off');
  if (posture.debuggerDenied !== true) reasons.push('debugger-allowed');
  if (posture.hardenedRuntime !== true) reasons.push('hardened-runtime-off');
  if (posture.appHash === null || !(await releases.isRelease(posture.appHash))) reasons.push('unreleased-app-hash');
  return reasons;
}

function judgement(reasons: AttestationReason[]): AttestationJudgement {
  return reasons.length === 0 ? { trust: 'attested', reasons: ['valid'] } : { trust: 'signed', reasons };
}

/**
 * Judges a bundle on its own (what a client can check before sealing): its enclave co-signature
 * and its posture. Call it on a bundle whose identity signature was verified (verifyBundle), which
 * is what binds the enclave key to the identity from the identity's side.
 */
export async function judgeBundleAttestation(bundle: KeyBundle, releases: ReleasedApps): Promise<AttestationJudgement> {
  const reasons: AttestationReason[] = [];
  const key = enclaveKeyOf(bundle);
  if (!bundle.attestation || !key) reasons.push('no-attestation');
  else if (!(await verifyP256(key, enclaveBundleBytes(bundle), bundle.attestation.signature))) reasons.push('bad-enclave-signature');
  reasons.push(...(await postureReasons(bundle.posture, releases)));
  return judgement(reasons);
}

/**
 * Judges a bundle and an enclave answer to a challenge (what the gateway checks at hello and at
 * every periodic challenge). `attested` only when the co-signature and the answer verify with the
 * bundle's enclave key, the answer is for this gateway's outstanding nonce, is fresh, names this
 * agent and its box key, and the posture is hardened with a released app hash. Every failure is
 * named; `answer` null (no enclave signature sent) is `no-attestation`.
 */
export async function judgeAttestation(
  bundle: KeyBundle,
  answer: EnclaveAnswer | null,
  context: AttestationContext,
): Promise<AttestationJudgement> {
  const reasons: AttestationReason[] = [];
  const key = enclaveKeyOf(bundle);
  if (!bundle.attestation || !key || !answer) {
    reasons.push('no-attestation');
  } else {
    const bundleOk = await verifyP256(key, enclaveBundleBytes(bundle), bundle.attestation.signature);
    const answerOk = await verifyP256(key, enclaveAnswerBytes(answer), answer.signature);
    if (!answerOk) reasons.push('bad-enclave-signature');
    // A live key (its answer verifies) that did not co-sign this bundle, or answers for another agent.
    else if (!bundleOk || answer.agentId !== bundle.agentId) reasons.push('enclave-key-not-bound');
    if (answerOk) {
      const maxAge = context.maxAgeMs ?? DEFAULT_ATTESTATION_MAX_AGE_MS;
      const skew = context.skewMs ?? 5000;
      if (answer.gatewayId !== context.gatewayId || answer.nonce !== context.nonce || context.answered?.has(answer.nonce)) {
        reasons.push('replayed-challenge');
      }
      if (context.now - answer.time > maxAge || answer.time > context.now + skew) reasons.push('stale-timestamp');
      if (answer.boxKeyId !== bundle.boxKeyId) reasons.push('wrong-box-key');
    }
  }
  reasons.push(...(await postureReasons(bundle.posture, context.releases)));
  return judgement(reasons);
}
