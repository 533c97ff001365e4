/**
 * Inputs shared by the src/shared tests: deterministic bytes, one model, a platform and posture,
 * and agents with signed bundles. Nothing here is random, so a failing test fails the same way
 * on every run.
 */
import {
  boxKeyFromSecret,
  createBundle,
  hkdfSha256,
  identityFromSeed,
  utf8,
  verifyBundle,
  type BoxKeyPair,
  type BundleModel,
  type ChatMessage,
  type IdentityKeyPair,
  type Platform,
  type Posture,
  type Sampling,
  type SignedBundle,
  type VerifiedBundle,
} from '../../../src/shared/index.js';

/** The fixed "now" of every test that does not move the clock itself: 2026-01-01T12:00:00Z. */
export const NOW = Date.UTC(2026, 0, 1, 12);

/** `length` bytes determined by `label` alone: HKDF-SHA256(ikm = label, no salt, info "nightjar/test-bytes"). */
export function testBytes(label: string, length: number): Uint8Array {
  return hkdfSha256(utf8(label), new Uint8Array(0), 'nightjar/test-bytes', length);
}

/**
 * A `random` for sealRequest that hands out `draws` in order, as fresh copies (sealRequest zeroes
 * the ephemeral secret it is given), and fails loudly if asked for a length it did not expect.
 */
export function sequenceRandom(draws: readonly Uint8Array[]): (length: number) => Uint8Array {
  let next = 0;
  return (length) => {
    const draw = draws[next++];
    if (!draw) throw new Error(`random draw ${next - 1} was not recorded`);
    if (draw.length !== length) throw new Error(`random draw ${next - 1} is ${draw.length} bytes; ${length} were asked for`);
    return new Uint8Array(draw);
  };
}

/** A `random` that derives each draw from `label` and a counter: deterministic, never repeating. */
export function labelledRandom(label: string): (length: number) => Uint8Array {
  let n = 0;
  return (length) => testBytes(`${label}/${n++}`, length);
}

export const MODEL: BundleModel = {
  id: 'llama-3.2-1b-instruct-q4_0',
  sha256: '5d3f0f8d2c9b1e7a4c6b8e0f1a2d3c4b5e6f708192a3b4c5d6e7f8091a2b3c4d',
  synthetic: false,
  contextLength: 8192,
};

export const PLATFORM: Platform = {
  os: 'macOS',
  osVersion: '15.1',
  arch: 'arm64',
  chip: 'Apple M2',
  memoryBytes: 16 * 1024 ** 3,
};

export const POSTURE: Posture = {
  sip: true,
  hardenedRuntime: true,
  debuggerDenied: true,
  secureEnclave: true,
  appVersion: '0.1.0',
  appHash: null,
};

/** An agent: identity, one box key, its signed bundle and that bundle as a client verified it. */
export interface TestAgent {
  readonly name: string;
  readonly identity: IdentityKeyPair;
  readonly boxKey: BoxKeyPair;
  readonly signed: SignedBundle;
  readonly verified: VerifiedBundle;
}

/** Builds the agent called `name` (same name, same keys) with a bundle valid from `now`. */
export async function makeAgent(name: string, now: number = NOW): Promise<TestAgent> {
  const identity = await identityFromSeed(testBytes(`${name}/identity`, 32));
  const boxKey = await boxKeyFromSecret(testBytes(`${name}/box`, 32));
  const signed = await createBundle({ identity, boxKey, models: [MODEL], slots: 2, platform: PLATFORM, posture: POSTURE, now });
  const verified = await verifyBundle(signed, { now });
  return { name, identity, boxKey, signed, verified };
}

export const MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a nocturnal bird.' },
];

export const SAMPLING: Sampling = { maxTokens: 64, temperature: 0, stop: ['\n\n'] };

/** A deep copy that a test may tamper with freely. */
export function clone<T>(value: T): T {
  return structuredClone(value);
}
