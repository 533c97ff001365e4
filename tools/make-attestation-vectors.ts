/**
 * Writes test/vectors/nightjar-attestation.json: one Secure Enclave attestation case per typed
 * outcome of judgeAttestation, each with the bundle, the enclave's answer to a challenge, what the
 * verifier checks it against, and the trust and reasons it must yield.
 *
 *   npx tsx tools/make-attestation-vectors.ts           write the file if it is missing
 *   npx tsx tools/make-attestation-vectors.ts --check   judge the stored file; exit 1 on disagreement
 *   npx tsx tools/make-attestation-vectors.ts --force   overwrite (a deliberate wire change only)
 *
 * How it is made: every key is software, none came from a Secure Enclave.
 * - The enclave keys are P-256 private scalars d = fixed('attest/enclave-a' | 'attest/enclave-b', 32)
 *   (fixed(label, n) = the first n bytes of SHA-256("nightjar/vectors/" + label), as in
 *   test/vectors/generate.ts); both are below the group order. Node's crypto derives the public
 *   point and signs ECDSA P-256 / SHA-256, DER-encoded, as the enclave does. ECDSA draws a random
 *   k, so running --force again gives other signatures for the same keys: the file is frozen once
 *   written, and --check (and test/shared/attestation.test.ts) judge the stored bytes.
 * - Identity seeds are fixed('attest/identity-a' | 'attest/identity-b', 32); box secrets
 *   fixed('attest/box-a' | 'attest/box-a-old', 32). The bundles are made with src/shared's
 *   createBundle at notBefore = 1 767 225 600 000 (2026-01-01T00:00:00Z).
 */
import { createECDH, createHash, createPrivateKey, sign } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  boxKeyFromSecret,
  createBundle,
  identityFromSeed,
  judgeAttestation,
  releasedAppsOf,
  signEnclaveAnswer,
  toBase64Url,
  toHex,
  type EnclaveAnswer,
  type EnclaveAnswerFields,
  type EnclaveSigner,
  type KeyBundle,
  type Posture,
  type SignedBundle,
} from '../src/shared/index.js';

const OUT = path.resolve(import.meta.dirname, '..', 'test', 'vectors', 'nightjar-attestation.json');
const NOW = 1_767_225_600_000;
const GATEWAY_ID = 'gw-vectors';

function fixed(label: string, n: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`nightjar/vectors/${label}`).digest()).subarray(0, n);
}

function softwareEnclaveFrom(d: Uint8Array): EnclaveSigner {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(Buffer.from(d));
  const publicKey = new Uint8Array(ecdh.getPublicKey());
  const key = createPrivateKey({
    format: 'jwk',
    key: {
      kty: 'EC',
      crv: 'P-256',
      d: toBase64Url(d),
      x: toBase64Url(publicKey.subarray(1, 33)),
      y: toBase64Url(publicKey.subarray(33)),
    },
  });
  return {
    kind: 'software',
    publicKey,
    sign: async (message) => new Uint8Array(sign('sha256', message, { key, dsaEncoding: 'der' })),
  };
}

/** One stored case. */
interface VectorCase {
  name: string;
  what: string;
  bundle: SignedBundle;
  answer: EnclaveAnswer | null;
  context: { now: number; gatewayId: string; nonce: string; answered: string[]; releases: string[] };
  expect: { trust: 'signed' | 'attested'; reasons: string[] };
}

async function build(): Promise<VectorCase[]> {
  const enclaveA = softwareEnclaveFrom(fixed('attest/enclave-a', 32));
  const enclaveB = softwareEnclaveFrom(fixed('attest/enclave-b', 32));
  const identityA = await identityFromSeed(fixed('attest/identity-a', 32));
  const identityB = await identityFromSeed(fixed('attest/identity-b', 32));
  const boxA = await boxKeyFromSecret(fixed('attest/box-a', 32));
  const boxOld = await boxKeyFromSecret(fixed('attest/box-a-old', 32));
  const appHash = toHex(fixed('attest/app-hash', 32));
  const otherAppHash = toHex(fixed('attest/app-hash-unreleased', 32));
  const hardened: Posture = { sip: true, hardenedRuntime: true, debuggerDenied: true, secureEnclave: true, appVersion: '1.0.0', appHash };
  const models = [{ id: 'vector-model', sha256: toHex(fixed('attest/model', 32)), synthetic: false, contextLength: 2048 }];
  const platform = { os: 'darwin', osVersion: '25.0.0', arch: 'arm64', chip: 'Apple M2', memoryBytes: 17_179_869_184 };
  const bundleOf = (posture: Partial<Posture>, options: { identity?: typeof identityA; enclave?: EnclaveSigner | null } = {}) =>
    createBundle({
      identity: options.identity ?? identityA,
      boxKey: boxA,
      models,
      slots: 2,
      platform,
      posture: { ...hardened, ...posture },
      now: NOW,
      ...(options.enclave === null ? {} : { enclave: options.enclave ?? enclaveA }),
    });
  const nonce = toBase64Url(fixed('attest/nonce', 32));
  const earlierNonce = toBase64Url(fixed('attest/nonce-earlier', 32));
  const now = NOW + 60_000;
  const fieldsFor = (b: KeyBundle, over: Partial<EnclaveAnswerFields> = {}): EnclaveAnswerFields => ({
    gatewayId: GATEWAY_ID,
    nonce,
    time: now - 1000,
    agentId: b.agentId,
    boxKeyId: b.boxKeyId,
    ...over,
  });
  const answer = async (b: KeyBundle, over: Partial<EnclaveAnswerFields> = {}, signer = enclaveA): Promise<EnclaveAnswer> => {
    const fields = fieldsFor(b, over);
    return { ...fields, signature: await signEnclaveAnswer(fields, signer) };
  };
  const context = { now, gatewayId: GATEWAY_ID, nonce, answered: [] as string[], releases: [appHash] };

  const valid = await bundleOf({});
  const cases: Omit<VectorCase, 'expect'>[] = [];
  cases.push({
    name: 'valid',
    what: 'hardened posture, released app hash, co-signature and fresh answer by the enclave key',
    bundle: valid,
    answer: await answer(valid.bundle),
    context,
  });
  const plain = await bundleOf({ secureEnclave: false }, { enclave: null });
  cases.push({
    name: 'no-attestation',
    what: 'a hardened posture but no co-signature and no enclave answer',
    bundle: plain,
    answer: null,
    context,
  });
  cases.push({
    name: 'bad-enclave-signature',
    what: 'the answer is signed by another P-256 key than the bundle’s enclave key',
    bundle: valid,
    answer: await answer(valid.bundle, {}, enclaveB),
    context,
  });
  // Agent B's identity presents agent A's enclave key and co-signature (copied from A's bundle);
  // A's enclave answers the challenge for B (its owner relays it). The key is live, but it never
  // co-signed B's identity and box key.
  const bBundle = await bundleOf({}, { identity: identityB, enclave: null });
  const transplanted = await (async (): Promise<SignedBundle> => {
    const { signBundle } = await import('../src/shared/index.js');
    return signBundle({ ...bBundle.bundle, attestation: valid.bundle.attestation! }, identityB);
  })();
  cases.push({
    name: 'enclave-key-not-bound',
    what: 'another identity carries agent A’s enclave key and co-signature; A’s enclave answers for it',
    bundle: transplanted,
    answer: await answer(transplanted.bundle),
    context,
  });
  cases.push({
    name: 'stale-timestamp',
    what: 'the enclave answers the outstanding nonce, but with a challenge time 60 s old',
    bundle: valid,
    answer: await answer(valid.bundle, { time: now - 60_000 }),
    context,
  });
  cases.push({
    name: 'replayed-challenge',
    what: 'a valid answer to an earlier challenge, presented while another nonce is outstanding',
    bundle: valid,
    answer: await answer(valid.bundle, { nonce: earlierNonce }),
    context: { ...context, answered: [earlierNonce] },
  });
  cases.push({
    name: 'wrong-box-key',
    what: 'the enclave answers for the box key of an older bundle',
    bundle: valid,
    answer: await answer(valid.bundle, { boxKeyId: boxOld.keyId }),
    context,
  });
  const unreleased = await bundleOf({ appHash: otherAppHash });
  cases.push({
    name: 'unreleased-app-hash',
    what: 'the app hash is not on the released list',
    bundle: unreleased,
    answer: await answer(unreleased.bundle),
    context,
  });
  const sipOff = await bundleOf({ sip: false });
  cases.push({ name: 'sip-off', what: 'System Integrity Protection is off', bundle: sipOff, answer: await answer(sipOff.bundle), context });
  const debuggable = await bundleOf({ debuggerDenied: false });
  cases.push({
    name: 'debugger-allowed',
    what: 'PT_DENY_ATTACH did not take',
    bundle: debuggable,
    answer: await answer(debuggable.bundle),
    context,
  });
  const soft = await bundleOf({ hardenedRuntime: false });
  cases.push({
    name: 'hardened-runtime-off',
    what: 'the app is not validly signed with the hardened runtime',
    bundle: soft,
    answer: await answer(soft.bundle),
    context,
  });

  const out: VectorCase[] = [];
  for (const c of cases) out.push({ ...c, expect: await judge(c) });
  return out;
}

async function judge(c: Omit<VectorCase, 'expect'>): Promise<VectorCase['expect']> {
  const j = await judgeAttestation(c.bundle.bundle, c.answer, {
    now: c.context.now,
    gatewayId: c.context.gatewayId,
    nonce: c.context.nonce,
    answered: new Set(c.context.answered),
    releases: releasedAppsOf(c.context.releases),
  });
  return { trust: j.trust, reasons: j.reasons };
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === '--check') {
    const stored = JSON.parse(readFileSync(OUT, 'utf8')) as { cases: VectorCase[] };
    let bad = 0;
    for (const c of stored.cases) {
      const got = await judge(c);
      if (JSON.stringify(got) !== JSON.stringify(c.expect)) {
        bad++;
        console.error(`${c.name}: expected ${JSON.stringify(c.expect)}, got ${JSON.stringify(got)}`);
      }
    }
    process.exit(bad ? 1 : 0);
  }
  if (existsSync(OUT) && mode !== '--force') {
    console.error(`${OUT} exists; it is frozen (use --check, or --force for a deliberate wire change)`);
    process.exit(1);
  }
  const cases = await build();
  const names = cases.map((c) => c.name);
  for (const c of cases) {
    if (c.name === 'valid' ? c.expect.trust !== 'attested' : c.expect.trust !== 'signed' || !c.expect.reasons.includes(c.name)) {
      throw new Error(`case ${c.name} judged ${JSON.stringify(c.expect)}`);
    }
  }
  const file = {
    source:
      'tools/make-attestation-vectors.ts: software P-256 keys from fixed scalars (no Secure Enclave), ' +
      'Ed25519 identities from fixed seeds; ' +
      'ECDSA signatures drawn once with a random k and frozen',
    cases,
  };
  writeFileSync(OUT, `${JSON.stringify(file, null, 2)}\n`);
  console.log(`wrote ${names.length} cases: ${names.join(', ')}`);
}

await main();
