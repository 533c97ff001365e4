/**
 * Agent identities with signed bundles, for benchmarks that play the agent's or the client's
 * part without a real agent.
 */
import {
  createBundle,
  generateBoxKey,
  generateIdentity,
  verifyBundle,
  type BoxKeyPair,
  type BundleModel,
  type IdentityKeyPair,
  type SignedBundle,
  type VerifiedBundle,
} from '../src/shared/index.js';

/** The model fake agents claim to serve. */
export const BENCH_MODEL: BundleModel = { id: 'synthetic-bench', sha256: 'ab'.repeat(32), synthetic: true, contextLength: 4096 };

/** An agent's keys and its bundle, signed and verified. */
export interface BenchAgentKeys {
  identity: IdentityKeyPair;
  boxKey: BoxKeyPair;
  bundle: SignedBundle;
  verified: VerifiedBundle;
}

/** A fresh agent identity with a box key and a bundle offering {@link BENCH_MODEL} on `slots` slots. */
export async function benchAgentKeys(slots = 4): Promise<BenchAgentKeys> {
  const identity = await generateIdentity();
  const boxKey = await generateBoxKey();
  const bundle = await createBundle({
    identity,
    boxKey,
    models: [BENCH_MODEL],
    slots,
    platform: { os: 'linux', osVersion: 'bench', arch: 'x64', chip: 'bench', memoryBytes: 0 },
    posture: { sip: null, hardenedRuntime: null, debuggerDenied: null, secureEnclave: false, appVersion: 'bench', appHash: null },
    now: Date.now(),
  });
  return { identity, boxKey, bundle, verified: await verifyBundle(bundle, { now: Date.now() }) };
}
