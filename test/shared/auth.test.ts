/**
 * Challenge-response (DESIGN.md "Agent ↔ gateway"): the agent signs the gateway's nonce and time,
 * the gateway's id and its own agent id, under a domain no other signature uses.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AUTH_DOMAIN,
  BUNDLE_DOMAIN,
  cryptoBackend,
  fromBase64Url,
  signChallenge,
  signingBytes,
  toBase64Url,
  utf8,
  verifyChallenge,
  type ChallengeFields,
} from '../../src/shared/index.js';
import { NOW, makeAgent, testBytes, type TestAgent } from './support/fixtures.js';

let A: TestAgent;
let B: TestAgent;
let fields: ChallengeFields;
let signature: string;

beforeAll(async () => {
  [A, B] = await Promise.all([makeAgent('auth-agent'), makeAgent('auth-other')]);
  fields = { gatewayId: 'gw-eu-1', nonce: toBase64Url(testBytes('auth/nonce', 32)), time: NOW, agentId: A.identity.agentId };
  signature = await signChallenge(fields, A.identity);
});

const flipB64 = (text: string, bit = 0): string => {
  const bytes = fromBase64Url(text);
  bytes[bit >> 3]! ^= 1 << (bit & 7);
  return toBase64Url(bytes);
};

describe('challenge signatures', () => {
  it('sign exactly these bytes: the auth domain and the four fields in canonical order', async () => {
    expect(AUTH_DOMAIN).toBe('auth/v1');
    const expected = `nightjar/auth/v1\n{"agentId":"${fields.agentId}","gatewayId":"gw-eu-1","nonce":"${fields.nonce}","time":${NOW}}`;
    expect(await (await cryptoBackend()).verify(A.identity.publicKey, utf8(expected), fromBase64Url(signature))).toBe(true);
    expect(await verifyChallenge(fields, signature, A.identity.publicKey)).toBe(true);
  });

  // Each fails if the field stops being part of the signed bytes.
  it.each<[string, (f: ChallengeFields) => ChallengeFields]>([
    ['nonce', (f) => ({ ...f, nonce: flipB64(f.nonce, 100) })],
    ['time, one millisecond later', (f) => ({ ...f, time: f.time + 1 })],
    ['time, one millisecond earlier', (f) => ({ ...f, time: f.time - 1 })],
    ['gatewayId', (f) => ({ ...f, gatewayId: 'gw-eu-2' })],
    ['agentId', (f) => ({ ...f, agentId: B.identity.agentId })],
  ])('altered %s does not verify', async (_what, alter) => {
    expect(await verifyChallenge(alter(fields), signature, A.identity.publicKey)).toBe(false);
  });

  it('does not verify under another agent’s key, or with an altered signature', async () => {
    expect(await verifyChallenge(fields, signature, B.identity.publicKey)).toBe(false);
    expect(await verifyChallenge(fields, flipB64(signature, 0), A.identity.publicKey)).toBe(false);
    expect(await verifyChallenge(fields, flipB64(signature, 511), A.identity.publicKey)).toBe(false);
  });

  // The same fields signed for another purpose must not pass as a challenge answer.
  // Fails if the auth domain tag stops being part of the signed bytes.
  it('a signature over the same fields under another domain does not verify', async () => {
    const elsewhere = await (await cryptoBackend()).sign(A.identity.seed, signingBytes(BUNDLE_DOMAIN, { ...fields }));
    expect(await verifyChallenge(fields, toBase64Url(elsewhere), A.identity.publicKey)).toBe(false);
  });

  // A caller may pass the challenge frame itself plus its agent id; extra members must not change
  // what is signed, or the gateway (which passes only the four fields) would refuse an honest
  // agent. Fails if signChallenge goes back to signing whatever object it is given.
  it('signs only the four fields, whatever else the object carries', async () => {
    const frame = { v: 1, type: 'challenge', ...fields };
    const fromFrame = await signChallenge(frame, A.identity);
    expect(fromFrame).toBe(signature);
    expect(await verifyChallenge(frame, signature, A.identity.publicKey)).toBe(true);
  });
});
