/**
 * Known-answer vectors (test/vectors/): published ones (RFC 8032, RFC 7748, NaCl's box vector,
 * tweetnacl-js's own data) and Nightjar's frozen ones from test/vectors/generate.ts. The current
 * code must accept every frozen structure and reproduce it byte for byte — on both backends,
 * forced in turn through the same vi.mock seam as backend-interop.test.ts.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import nacl from 'tweetnacl';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type * as BackendModule from '../../src/shared/crypto/backend.js';
import {
  AUTH_DOMAIN,
  BUNDLE_DOMAIN,
  CryptoError,
  RECEIPT_DOMAIN,
  ReplyOpener,
  ReplySealer,
  boxKeyFromSecret,
  createBundle,
  createWebCryptoBackend,
  cryptoBackend,
  deriveReplyKeys,
  fromBase64Url,
  fromHex,
  fromUtf8,
  headerDigest,
  identityFromSeed,
  naclBackend,
  openRequest,
  sealRequest,
  secretOpen,
  secretSeal,
  signChallenge,
  signReceipt,
  signingBytes,
  toBase64Url,
  toHex,
  unpad,
  verifyBundle,
  verifyChallenge,
  verifyReceipt,
  type ChatMessage,
  type CreateBundleOptions,
  type CryptoBackend,
  type Envelope,
  type ReplyFinal,
  type Sampling,
  type SignedBundle,
  type SignedReceipt,
  type ChallengeFields,
  type CandidatesResponse,
  type SignedGatewayRotation,
  type SignedReleasesList,
  DIRECTORY_DOMAIN,
  RELEASES_DOMAIN,
  ROTATION_DOMAIN,
  createDirectoryAnswer,
  createRotation,
  createSignedReleases,
  gatewayKeyFingerprint,
  gatewayKeyFromSeed,
  verifyDirectoryAnswer,
  verifyRotation,
  verifySignedReleases,
} from '../../src/shared/index.js';
import { expectNjError } from './support/expect-error.js';
import { sequenceRandom } from './support/fixtures.js';

const forced = vi.hoisted(() => ({ backend: undefined as CryptoBackend | undefined }));
vi.mock('../../src/shared/crypto/backend.js', async (importOriginal) => {
  const real = await importOriginal<typeof BackendModule>();
  return { ...real, cryptoBackend: () => (forced.backend ? Promise.resolve(forced.backend) : real.cryptoBackend()) };
});

const DIR = path.resolve(import.meta.dirname, '../vectors');
const load = <T>(name: string): T => JSON.parse(readFileSync(path.join(DIR, name), 'utf8')) as T;
const b64std = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64'));

// ---- shapes of the vector files ----
interface Rfc8032 {
  vectors: { name: string; secretKey: string; publicKey: string; message: string; signature: string }[];
}
interface Rfc7748 {
  x25519: { name: string; scalar: string; u: string; output: string }[];
  diffieHellman: { alicePrivate: string; alicePublic: string; bobPrivate: string; bobPublic: string; shared: string };
}
interface NaclBox {
  alicesk: string;
  bobpk: string;
  nonce: string;
  beforenm: string;
  message: string;
  box: string;
  smallOrderPublicKey: string;
}
interface TweetnaclRandom {
  box: [string, string, string, string][];
  secretbox: [string, string, string, string][];
}
type Name = 'agentA' | 'agentB';
interface Keys {
  identities: Record<Name, { seed: string; publicKey: string; agentId: string }>;
  boxKeys: Record<Name, { secretKey: string; publicKey: string; keyId: string }>;
}
interface Bundles {
  inputs: Omit<CreateBundleOptions, 'identity' | 'boxKey'>;
  bundles: Record<Name, { signingBytes: string; signed: SignedBundle }>;
}
interface Challenge {
  identity: Name;
  fields: ChallengeFields;
  signingBytes: string;
  signature: string;
}
interface EnvelopeVectors {
  inputs: { model: string; messages: ChatMessage[]; sampling: Sampling; now: number; recipients: Name[] };
  random: { name: string; bytes: string }[];
  wrapKeys: Record<Name, string>;
  plaintext: string;
  headerDigest: string;
  contentKey: string;
  requestDigest: string;
  envelope: Envelope;
}
interface ReplyVectors {
  inputs: { contentKey: string; replySalt: string; agentId: string; deltas: { delta: string; final?: ReplyFinal }[] };
  keys: { key: string; noncePrefix: string };
  chunks: { seq: number; nonce: string; plaintext: string; data: string }[];
  replyDigest: string;
}
interface ReceiptVectors {
  identity: Name;
  signingBytes: string;
  signed: SignedReceipt;
}

const RFC8032 = load<Rfc8032>('rfc8032-ed25519.json');
const RFC7748 = load<Rfc7748>('rfc7748-x25519.json');
const NACL = load<NaclBox>('nacl-box.json');
const TWEETNACL = load<TweetnaclRandom>('tweetnacl-random.json');
const KEYS = load<Keys>('nightjar-keys.json');
const BUNDLES = load<Bundles>('nightjar-bundle.json');
const CHALLENGE = load<Challenge>('nightjar-challenge.json');
const ENVELOPE = load<EnvelopeVectors>('nightjar-envelope.json');
const REPLY = load<ReplyVectors>('nightjar-reply.json');
const RECEIPT = load<ReceiptVectors>('nightjar-receipt.json');

interface GatewayKeyVector {
  seed: string;
  publicKey: string;
  keyId: string;
  fingerprint: string;
}
interface GatewayWordVectors {
  gateway: GatewayKeyVector;
  next: GatewayKeyVector;
  directory: { signingBytes: string; answer: CandidatesResponse };
  releases: { signingBytes: string; signed: SignedReleasesList };
  rotation: { signingBytes: string; signed: SignedGatewayRotation };
}
const GATEWAY_WORD = load<GatewayWordVectors>('nightjar-gateway-word.json');

/** HSalsa20 of a shared secret with NaCl's constants: what crypto_box_beforenm adds to X25519. */
function hsalsa20(shared: Uint8Array): Uint8Array {
  const lowlevel = (
    nacl as unknown as { lowlevel: { crypto_core_hsalsa20(o: Uint8Array, i: Uint8Array, k: Uint8Array, c: Uint8Array): number } }
  ).lowlevel;
  const out = new Uint8Array(32);
  lowlevel.crypto_core_hsalsa20(out, new Uint8Array(16), shared, new TextEncoder().encode('expand 32-byte k'));
  return out;
}

describe('every vector file says where it came from', () => {
  it.each(readdirSync(DIR).filter((f) => f.endsWith('.json')))('%s', (file) => {
    const { source } = load<{ source?: unknown }>(file);
    expect(typeof source).toBe('string');
    if (file === 'nightjar-attestation.json') expect(source).toMatch(/^tools\/make-attestation-vectors\.ts: software P-256 keys/);
    else if (file.startsWith('nightjar-'))
      expect(source).toMatch(/^Generated by test\/vectors\/generate\.ts at commit [0-9a-f]{12} from fixed seeds/);
    else expect(source).toMatch(/RFC \d+|libsodium|tweetnacl-js/);
  });
});

describe('secretbox (backend-independent)', () => {
  it('reproduces the NaCl box vector from its beforenm key', () => {
    expect(toHex(secretSeal(fromHex(NACL.message), fromHex(NACL.nonce), fromHex(NACL.beforenm)))).toBe(NACL.box);
    expect(toHex(secretOpen(fromHex(NACL.box), fromHex(NACL.nonce), fromHex(NACL.beforenm), 'vector'))).toBe(NACL.message);
  });

  it.each(TWEETNACL.secretbox.map((v, i) => [i, ...v] as const))(
    'reproduces tweetnacl-js secretbox vector %s',
    (_i, key, nonce, msg, box) => {
      expect(toBase64Url(secretSeal(b64std(msg), b64std(nonce), b64std(key)))).toBe(toBase64Url(b64std(box)));
      expect(secretOpen(b64std(box), b64std(nonce), b64std(key), 'vector')).toEqual(b64std(msg));
    },
  );
});

describe.each([
  ['webcrypto', () => createWebCryptoBackend(globalThis.crypto.subtle)],
  ['tweetnacl', () => naclBackend],
])('on the %s backend', (name, make) => {
  beforeAll(() => {
    forced.backend = make();
  });
  afterAll(() => {
    forced.backend = undefined;
  });

  it('is the backend in use', async () => {
    expect((await cryptoBackend()).name).toBe(name);
  });

  describe('published vectors', () => {
    it.each(RFC8032.vectors.map((v) => [v.name, v] as const))('RFC 8032 §7.1 %s: public key, signature, verification', async (_n, v) => {
      const backend = await cryptoBackend();
      expect(toHex(await backend.ed25519PublicKey(fromHex(v.secretKey)))).toBe(v.publicKey);
      expect(toHex(await backend.sign(fromHex(v.secretKey), fromHex(v.message)))).toBe(v.signature);
      expect(await backend.verify(fromHex(v.publicKey), fromHex(v.message), fromHex(v.signature))).toBe(true);
    });

    it.each(RFC7748.x25519.map((v) => [v.name, v] as const))(
      'RFC 7748 %s: the box key is HSalsa20 of the published output',
      async (_n, v) => {
        const backend = await cryptoBackend();
        expect(toHex(await backend.boxKey(fromHex(v.u), fromHex(v.scalar)))).toBe(toHex(hsalsa20(fromHex(v.output))));
      },
    );

    it('RFC 7748 §6.1: both public keys, and one box key from either side', async () => {
      const backend = await cryptoBackend();
      const dh = RFC7748.diffieHellman;
      expect(toHex(await backend.x25519PublicKey(fromHex(dh.alicePrivate)))).toBe(dh.alicePublic);
      expect(toHex(await backend.x25519PublicKey(fromHex(dh.bobPrivate)))).toBe(dh.bobPublic);
      const expected = toHex(hsalsa20(fromHex(dh.shared)));
      expect(toHex(await backend.boxKey(fromHex(dh.bobPublic), fromHex(dh.alicePrivate)))).toBe(expected);
      expect(toHex(await backend.boxKey(fromHex(dh.alicePublic), fromHex(dh.bobPrivate)))).toBe(expected);
      // The same keys are the NaCl paper's, so this is also NaCl's published firstkey.
      expect(expected).toBe(NACL.beforenm);
    });

    it('NaCl box: the box key is beforenm, the box matches, and the small-order key is refused', async () => {
      const backend = await cryptoBackend();
      const key = await backend.boxKey(fromHex(NACL.bobpk), fromHex(NACL.alicesk));
      expect(toHex(key)).toBe(NACL.beforenm);
      expect(toHex(secretSeal(fromHex(NACL.message), fromHex(NACL.nonce), key))).toBe(NACL.box);
      await expectNjError(
        () => backend.boxKey(fromHex(NACL.smallOrderPublicKey), fromHex(NACL.alicesk)),
        CryptoError,
        'NJ_BAD_KEY',
        /^the public key is /,
      );
    });

    it.each(TWEETNACL.box.map((v, i) => [i, ...v] as const))('tweetnacl-js box vector %s (zero nonce)', async (_i, pk, sk, msg, box) => {
      const key = await (await cryptoBackend()).boxKey(b64std(pk), b64std(sk));
      expect(toBase64Url(secretSeal(b64std(msg), new Uint8Array(24), key))).toBe(toBase64Url(b64std(box)));
    });
  });

  describe('Nightjar vectors', () => {
    const identity = (n: Name) => identityFromSeed(fromHex(KEYS.identities[n].seed));
    const boxKey = (n: Name) => boxKeyFromSecret(fromHex(KEYS.boxKeys[n].secretKey));

    it('keys: public keys and ids, the ids recomputed independently', async () => {
      for (const n of ['agentA', 'agentB'] as const) {
        const id = await identity(n);
        const box = await boxKey(n);
        expect({ publicKey: toHex(id.publicKey), agentId: id.agentId }).toEqual({
          publicKey: KEYS.identities[n].publicKey,
          agentId: KEYS.identities[n].agentId,
        });
        expect({ publicKey: toHex(box.publicKey), keyId: box.keyId }).toEqual({
          publicKey: KEYS.boxKeys[n].publicKey,
          keyId: KEYS.boxKeys[n].keyId,
        });
        const tagged = (tag: string, key: Uint8Array, n: number) =>
          createHash('sha256')
            .update(`nightjar/${tag}\n`)
            .update(key)
            .digest('hex')
            .slice(0, 2 * n);
        expect(tagged('agent-id/v1', id.publicKey, 16)).toBe(id.agentId);
        expect(tagged('box-key-id/v1', box.publicKey, 8)).toBe(box.keyId);
      }
      // Agent A's identity is RFC 8032 TEST 1's key.
      expect(KEYS.identities.agentA.publicKey).toBe(RFC8032.vectors[0]!.publicKey);
    });

    it('bundles: verify, sign the recorded bytes, and are rebuilt identically', async () => {
      for (const n of ['agentA', 'agentB'] as const) {
        const { signed, signingBytes: bytes } = BUNDLES.bundles[n];
        await verifyBundle(signed, { now: BUNDLES.inputs.now });
        expect(fromUtf8(signingBytes(BUNDLE_DOMAIN, signed.bundle))).toBe(bytes);
        const rebuilt = await createBundle({ ...BUNDLES.inputs, identity: await identity(n), boxKey: await boxKey(n) });
        expect(JSON.stringify(rebuilt)).toBe(JSON.stringify(signed));
      }
    });

    it('challenge: the same signature over the same bytes', async () => {
      const id = await identity(CHALLENGE.identity);
      expect(fromUtf8(signingBytes(AUTH_DOMAIN, { ...CHALLENGE.fields }))).toBe(CHALLENGE.signingBytes);
      expect(await signChallenge(CHALLENGE.fields, id)).toBe(CHALLENGE.signature);
      expect(await verifyChallenge(CHALLENGE.fields, CHALLENGE.signature, id.publicKey)).toBe(true);
    });

    it('envelope: each recipient opens it to the recorded request, content key and digests', async () => {
      for (const n of ENVELOPE.inputs.recipients) {
        const opened = await openRequest(ENVELOPE.envelope, {
          agentId: KEYS.identities[n].agentId,
          boxKeys: [await boxKey(n)],
          now: ENVELOPE.inputs.now,
        });
        expect(opened.payload).toEqual(JSON.parse(ENVELOPE.plaintext));
        expect(toHex(opened.contentKey)).toBe(ENVELOPE.contentKey);
        expect(toBase64Url(opened.requestDigest)).toBe(ENVELOPE.requestDigest);
      }
      expect(headerDigest(ENVELOPE.envelope.header)).toBe(ENVELOPE.headerDigest);
      const body = fromBase64Url(ENVELOPE.envelope.body);
      const plaintext = secretOpen(body, fromBase64Url(ENVELOPE.envelope.header.bodyNonce), fromHex(ENVELOPE.contentKey), 'vector');
      expect(fromUtf8(unpad(plaintext))).toBe(ENVELOPE.plaintext);
    });

    it('envelope: the wrap keys, agent A’s being NaCl’s published firstkey', async () => {
      const backend = await cryptoBackend();
      const ephemeral = fromBase64Url(ENVELOPE.envelope.header.ephemeralKey);
      for (const n of ENVELOPE.inputs.recipients)
        expect(toHex(await backend.boxKey(ephemeral, fromHex(KEYS.boxKeys[n].secretKey)))).toBe(ENVELOPE.wrapKeys[n]);
      expect(ENVELOPE.wrapKeys.agentA).toBe(NACL.beforenm);
    });

    it('envelope: sealed again from the recorded inputs and draws, byte for byte', async () => {
      const recipients = await Promise.all(
        ENVELOPE.inputs.recipients.map((n) => verifyBundle(BUNDLES.bundles[n].signed, { now: ENVELOPE.inputs.now })),
      );
      const sealed = await sealRequest({
        model: ENVELOPE.inputs.model,
        messages: ENVELOPE.inputs.messages,
        sampling: ENVELOPE.inputs.sampling,
        now: ENVELOPE.inputs.now,
        recipients,
        random: sequenceRandom(ENVELOPE.random.map((d) => fromHex(d.bytes))),
      });
      expect(JSON.stringify(sealed.envelope)).toBe(JSON.stringify(ENVELOPE.envelope));
      expect(toHex(sealed.contentKey)).toBe(ENVELOPE.contentKey);
      expect(toBase64Url(sealed.requestDigest)).toBe(ENVELOPE.requestDigest);
    });

    it('reply: keys, chunks and digest re-derived byte for byte, and the frozen chunks open', () => {
      const { inputs } = REPLY;
      expect(inputs.contentKey).toBe(ENVELOPE.contentKey);
      const keys = deriveReplyKeys(fromHex(inputs.contentKey), fromHex(inputs.replySalt), inputs.agentId);
      expect({ key: toHex(keys.key), noncePrefix: toHex(keys.noncePrefix) }).toEqual(REPLY.keys);
      const sealer = new ReplySealer(keys);
      const resealed = inputs.deltas.map(({ delta, final }) => toBase64Url(sealer.seal(delta, final).data));
      expect(resealed).toEqual(REPLY.chunks.map((c) => c.data));
      expect(toBase64Url(sealer.digest())).toBe(REPLY.replyDigest);
      const opener = new ReplyOpener(keys);
      for (const chunk of REPLY.chunks) {
        expect(chunk.nonce).toBe(REPLY.keys.noncePrefix + '00000000' + chunk.seq.toString(16).padStart(8, '0'));
        expect(opener.open(chunk.seq, fromBase64Url(chunk.data))).toEqual(JSON.parse(chunk.plaintext));
      }
      expect(opener.finish()).toEqual(inputs.deltas.at(-1)!.final);
      expect(toBase64Url(opener.digest())).toBe(REPLY.replyDigest);
    });

    it('gateway word: keys, ids, fingerprints; directory answer, releases and rotation verify and sign again identically', async () => {
      const V = GATEWAY_WORD;
      const [gateway, next] = await Promise.all([gatewayKeyFromSeed(fromHex(V.gateway.seed)), gatewayKeyFromSeed(fromHex(V.next.seed))]);
      for (const [k, v] of [
        [gateway, V.gateway],
        [next, V.next],
      ] as const) {
        expect({ publicKey: toBase64Url(k.publicKey), keyId: k.keyId, fingerprint: gatewayKeyFingerprint(k.publicKey) }).toEqual({
          publicKey: v.publicKey,
          keyId: v.keyId,
          fingerprint: v.fingerprint,
        });
        // The id recomputed independently: SHA-256 of the tagged key, first 8 bytes.
        const tagged = Buffer.concat([Buffer.from('nightjar/gateway-key-id/v1\n'), Buffer.from(k.publicKey)]);
        expect(createHash('sha256').update(tagged).digest('hex').slice(0, 16)).toBe(k.keyId);
      }
      const { answer } = V.directory;
      const { signature: _s, ...body } = answer;
      expect(answer.candidates.map((c) => c.bundle)).toEqual([BUNDLES.bundles.agentA.signed, BUNDLES.bundles.agentB.signed]);
      expect(fromUtf8(signingBytes(DIRECTORY_DOMAIN, body))).toBe(V.directory.signingBytes);
      expect(await verifyDirectoryAnswer(answer, { gatewayKey: gateway.publicKey, request: answer.request, now: answer.issuedAt })).toEqual(
        answer,
      );
      expect(
        await createDirectoryAnswer({ key: gateway, request: answer.request, candidates: answer.candidates, now: answer.issuedAt }),
      ).toEqual(answer);
      const { signed: releases } = V.releases;
      expect(fromUtf8(signingBytes(RELEASES_DOMAIN, releases.releases))).toBe(V.releases.signingBytes);
      await verifySignedReleases(releases, { gatewayKey: gateway.publicKey, now: releases.releases.issuedAt });
      expect(await createSignedReleases({ key: gateway, releases: releases.releases.releases, now: releases.releases.issuedAt })).toEqual(
        releases,
      );
      const { signed: rotation } = V.rotation;
      expect(fromUtf8(signingBytes(ROTATION_DOMAIN, rotation.rotation))).toBe(V.rotation.signingBytes);
      expect(await verifyRotation(rotation, { now: rotation.rotation.rotatedAt })).toEqual(rotation.rotation);
      expect(
        await createRotation({
          oldKey: gateway,
          newKey: next.publicKey,
          rotatedAt: rotation.rotation.rotatedAt,
          graceUntil: rotation.rotation.graceUntil,
        }),
      ).toEqual(rotation);
    });

    it('receipt: verifies against the job and reply above, and is signed again identically', async () => {
      const id = await identity(RECEIPT.identity);
      const { receipt } = RECEIPT.signed;
      expect(receipt.jobId).toBe(ENVELOPE.envelope.header.jobId);
      await verifyReceipt(RECEIPT.signed, {
        identityKey: id.publicKey,
        agentId: id.agentId,
        jobId: ENVELOPE.envelope.header.jobId,
        attempt: 0,
        model: ENVELOPE.inputs.model,
        requestDigest: fromBase64Url(ENVELOPE.requestDigest),
        replyDigest: fromBase64Url(REPLY.replyDigest),
        promptTokens: 31,
        completionTokens: 3,
      });
      expect(fromUtf8(signingBytes(RECEIPT_DOMAIN, receipt))).toBe(RECEIPT.signingBytes);
      expect(await signReceipt(receipt, id)).toEqual(RECEIPT.signed);
    });
  });
});
