/**
 * Secure Enclave attestation (src/shared/crypto/attestation.ts): the frozen vectors of
 * tools/make-attestation-vectors.ts (one per typed outcome, with the trust each yields), the
 * strict DER reader, and a tamper matrix of the bundle co-signature.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ATTESTATION_REASONS,
  ATTESTATION_REASON_TEXT,
  CryptoError,
  createBundle,
  derToRawSignature,
  enclaveBundleBytes,
  fromBase64Url,
  generateBoxKey,
  generateIdentity,
  judgeAttestation,
  judgeBundleAttestation,
  rawToDerSignature,
  releasedAppsOf,
  signEnclaveAnswer,
  toBase64Url,
  verifyBundle,
  verifyP256,
  type EnclaveAnswer,
  type EnclaveSigner,
  type KeyBundle,
  type SignedBundle,
} from '../../src/shared/index.js';
import { softwareEnclave } from '../helpers/software-enclave.js';

interface VectorCase {
  name: string;
  bundle: SignedBundle;
  answer: EnclaveAnswer | null;
  context: { now: number; gatewayId: string; nonce: string; answered: string[]; releases: string[] };
  expect: { trust: 'signed' | 'attested'; reasons: string[] };
}
const vectors = JSON.parse(readFileSync(path.join(import.meta.dirname, '..', 'vectors', 'nightjar-attestation.json'), 'utf8')) as {
  source: string;
  cases: VectorCase[];
};

describe('attestation vectors (test/vectors/nightjar-attestation.json)', () => {
  it('say where they came from and cover every typed outcome', () => {
    expect(vectors.source).toMatch(/make-attestation-vectors/);
    expect(vectors.cases.map((c) => c.name).sort()).toEqual([...ATTESTATION_REASONS].sort());
  });

  // Each case fails when its check is removed from judgeAttestation; shown once for each of
  // these by deleting the check: without the gateway/nonce/answered comparison `replayed-challenge` judged
  // attested; without the boxKeyId comparison `wrong-box-key` judged attested; without the age
  // check `stale-timestamp` judged attested; without the bundle co-signature check
  // `enclave-key-not-bound` judged attested.
  for (const c of vectors.cases) {
    it(`${c.name} → ${c.expect.trust} (${c.expect.reasons.join(', ')})`, async () => {
      // Every bundle's identity signature holds: what fails is the attestation, not the bundle.
      await verifyBundle(c.bundle, { now: c.context.now });
      const got = await judgeAttestation(c.bundle.bundle, c.answer, {
        now: c.context.now,
        gatewayId: c.context.gatewayId,
        nonce: c.context.nonce,
        answered: new Set(c.context.answered),
        releases: releasedAppsOf(c.context.releases),
      });
      expect(got).toEqual(c.expect);
    });
  }

  it('a client judging the bundle alone sees the co-signature and the posture', async () => {
    const byName = new Map(vectors.cases.map((c) => [c.name, c]));
    const releases = releasedAppsOf(byName.get('valid')!.context.releases);
    const judge = async (name: string) => (await judgeBundleAttestation(byName.get(name)!.bundle.bundle, releases)).reasons;
    expect(await judge('valid')).toEqual(['valid']);
    expect(await judge('no-attestation')).toEqual(['no-attestation']);
    // The transplanted co-signature does not cover agent B's bundle.
    expect(await judge('enclave-key-not-bound')).toEqual(['bad-enclave-signature']);
    expect(await judge('sip-off')).toEqual(['sip-off']);
    expect(await judge('unreleased-app-hash')).toEqual(['unreleased-app-hash']);
  });

  it('every reason has a text that says what to do', () => {
    for (const r of ATTESTATION_REASONS) expect(ATTESTATION_REASON_TEXT[r].fix.length).toBeGreaterThan(5);
  });
});

describe('DER ↔ raw', () => {
  const der = (hex: string) => Uint8Array.from(Buffer.from(hex.replace(/\s/g, ''), 'hex'));
  const r32 = '01'.repeat(32);
  const ok = `3044 0220${r32} 0220${r32}`;

  it('round-trips raw signatures, with and without the sign byte', () => {
    for (const first of [0x00, 0x01, 0x7f, 0x80, 0xff]) {
      const raw = new Uint8Array(64).fill(3);
      raw[0] = first;
      raw[1] = first === 0 ? 0 : raw[1]!;
      raw[32] = 0x80;
      if (first === 0xff) continue; // above the group order
      expect(derToRawSignature(rawToDerSignature(raw))).toEqual(raw);
    }
    expect(derToRawSignature(der(ok))).toEqual(new Uint8Array(64).fill(1));
  });

  // Fails without the strict reader: with readInteger's sign, minimality and 33-byte checks
  // removed (shown once), 'negative r', 'non-minimal r' and '33-byte r…' were read as signatures,
  // and so was one of the flipped signatures below.
  const malformed: [string, string][] = [
    ['not a SEQUENCE', `3144 0220${r32} 0220${r32}`],
    ['long-form length', `308144 0220${r32} 0220${r32}`],
    ['length too long', `3045 0220${r32} 0220${r32}`],
    ['trailing byte', `3044 0220${r32} 0220${r32} 00`],
    ['negative r', `3044 0220${'80'.repeat(32)} 0220${r32}`],
    ['non-minimal r', `3045 022100${r32} 0220${r32}`],
    ['zero s', `3025 0220${r32} 020100`],
    ['33-byte r without a zero lead', `3045 0221${'01'.repeat(33)} 0220${r32}`],
    ['r equal to the order', `3045 022100ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551 0220${r32}`],
    ['an INTEGER tag missing', `3044 0320${r32} 0220${r32}`],
    ['truncated', `3044 0220${r32} 0220${'01'.repeat(31)}`],
  ];
  for (const [what, hex] of malformed) {
    it(`refuses ${what}`, () => {
      expect(() => derToRawSignature(der(hex))).toThrow(CryptoError);
      expect(() => derToRawSignature(der(hex))).toThrow(/malformed DER/);
    });
  }
});

describe('the bundle co-signature', () => {
  let enclave: EnclaveSigner;
  let signed: SignedBundle;
  const releases = releasedAppsOf(['ab'.repeat(32)]);
  beforeAll(async () => {
    enclave = await softwareEnclave();
    signed = await createBundle({
      identity: await generateIdentity(),
      boxKey: await generateBoxKey(),
      models: [{ id: 'm', sha256: 'cd'.repeat(32), synthetic: false, contextLength: 512 }],
      slots: 1,
      platform: { os: 'darwin', osVersion: '25', arch: 'arm64', chip: 'Apple M1', memoryBytes: 8 },
      posture: { sip: true, hardenedRuntime: true, debuggerDenied: true, secureEnclave: true, appVersion: '1', appHash: 'ab'.repeat(32) },
      now: Date.now(),
      enclave,
    });
  });

  it('verifies with WebCrypto and is covered by the identity signature', async () => {
    expect(await judgeBundleAttestation(signed.bundle, releases)).toEqual({ trust: 'attested', reasons: ['valid'] });
    const swapped = {
      ...signed,
      bundle: {
        ...signed.bundle,
        attestation: { ...signed.bundle.attestation!, enclaveKey: toBase64Url((await softwareEnclave()).publicKey) },
      },
    };
    await expect(verifyBundle(swapped, { now: Date.now() })).rejects.toThrow(/signature does not verify/);
  });

  // Tamper matrix: every field of the bundle changed, and the signature flipped, truncated and
  // extended. Fails without the co-signature check (judgeBundleAttestation not verifying the
  // signature of an attestation present): shown once, every changed field judged attested.
  const changes: [string, (b: KeyBundle) => KeyBundle][] = [
    ['agentId', (b) => ({ ...b, agentId: '0'.repeat(32) })],
    ['identityKey', (b) => ({ ...b, identityKey: toBase64Url(new Uint8Array(32).fill(9)) })],
    ['boxKey', (b) => ({ ...b, boxKey: toBase64Url(new Uint8Array(32).fill(9)) })],
    ['boxKeyId', (b) => ({ ...b, boxKeyId: '0'.repeat(16) })],
    ['notBefore', (b) => ({ ...b, notBefore: b.notBefore + 1 })],
    ['notAfter', (b) => ({ ...b, notAfter: b.notAfter + 1 })],
    ['models', (b) => ({ ...b, models: [{ ...b.models[0]!, id: 'n' }] })],
    ['capacity', (b) => ({ ...b, capacity: { slots: 2 } })],
    ['platform', (b) => ({ ...b, platform: { ...b.platform, chip: 'Apple M9' } })],
    ['posture.appHash', (b) => ({ ...b, posture: { ...b.posture, appHash: 'ef'.repeat(32) } })],
    ['posture.appVersion', (b) => ({ ...b, posture: { ...b.posture, appVersion: '2' } })],
  ];
  for (const [field, change] of changes) {
    it(`a changed ${field} breaks it`, async () => {
      const tampered = change(signed.bundle);
      const r = await judgeBundleAttestation(tampered, releasedAppsOf(['ab'.repeat(32), 'ef'.repeat(32)]));
      expect(r.trust).toBe('signed');
      expect(r.reasons).toContain('bad-enclave-signature');
    });
  }

  it('a flipped, truncated or extended signature breaks it', async () => {
    const sig = fromBase64Url(signed.bundle.attestation!.signature);
    const key = fromBase64Url(signed.bundle.attestation!.enclaveKey);
    const bytes = enclaveBundleBytes(signed.bundle);
    for (let i = 0; i < sig.length; i++) {
      const flipped = sig.slice();
      flipped[i]! ^= 0x01;
      expect(await verifyP256(key, bytes, toBase64Url(flipped))).toBe(false);
    }
    expect(await verifyP256(key, bytes, toBase64Url(sig.subarray(0, sig.length - 1)))).toBe(false);
    expect(await verifyP256(key, bytes, toBase64Url(Uint8Array.from([...sig, 0])))).toBe(false);
    expect(await verifyP256(key, bytes, toBase64Url(sig))).toBe(true);
  });

  it('a flipped or malformed enclave key breaks it, never throws', async () => {
    const sig = signed.bundle.attestation!.signature;
    const key = fromBase64Url(signed.bundle.attestation!.enclaveKey);
    const bytes = enclaveBundleBytes(signed.bundle);
    for (const i of [0, 1, 32, 64]) {
      const k = key.slice();
      k[i]! ^= 0x01;
      expect(await verifyP256(k, bytes, sig)).toBe(false);
    }
    expect(await verifyP256(key.subarray(0, 64), bytes, sig)).toBe(false);
    expect(await verifyP256(key, bytes, 'not base64!')).toBe(false);
  });

  it('an answer is bound to its five fields and its domain', async () => {
    const fields = {
      gatewayId: 'g',
      nonce: toBase64Url(new Uint8Array(32)),
      time: 5,
      agentId: signed.bundle.agentId,
      boxKeyId: signed.bundle.boxKeyId,
    };
    const signature = await signEnclaveAnswer(fields, enclave);
    // The answer's signature is not a co-signature of the bundle (different domain and bytes).
    expect(await verifyP256(enclave.publicKey, enclaveBundleBytes(signed.bundle), signature)).toBe(false);
    const ctx = { now: 10, gatewayId: 'g', nonce: fields.nonce, releases };
    expect((await judgeAttestation(signed.bundle, { ...fields, signature }, ctx)).reasons).toEqual(['valid']);
    expect((await judgeAttestation(signed.bundle, { ...fields, time: 6, signature }, ctx)).reasons).toEqual(['bad-enclave-signature']);
    expect(
      (await judgeAttestation(signed.bundle, { ...fields, signature }, { ...ctx, answered: new Set([fields.nonce]) })).reasons,
    ).toEqual(['replayed-challenge']);
  });
});
