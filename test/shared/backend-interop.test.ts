/**
 * The high-level operations (bundle, challenge, envelope, receipt) run once with each backend
 * forced on each side, and must interoperate and produce identical bytes.
 *
 * How a backend is forced: vi.mock replaces `cryptoBackend()` in src/shared/crypto/backend.ts for
 * this test file only, so every module under src/shared that asks for the backend gets the one the
 * test chose. This keeps a "force the backend" switch out of production code, where it could be
 * left on by accident. The forced backends count their calls, so the test proves it really ran
 * each side on the backend it names.
 */
import { describe, expect, it, vi } from 'vitest';
import type * as BackendModule from '../../src/shared/crypto/backend.js';
import {
  createWebCryptoBackend,
  naclBackend,
  openRequest,
  randomBytes,
  sealRequest,
  signChallenge,
  signReceipt,
  toBase64Url,
  verifyBundle,
  verifyChallenge,
  verifyReceipt,
  type CryptoBackend,
} from '../../src/shared/index.js';
import { MESSAGES, MODEL, NOW, SAMPLING, labelledRandom, makeAgent } from './support/fixtures.js';

const forced = vi.hoisted(() => ({ backend: undefined as CryptoBackend | undefined }));

vi.mock('../../src/shared/crypto/backend.js', async (importOriginal) => {
  const real = await importOriginal<typeof BackendModule>();
  return { ...real, cryptoBackend: () => (forced.backend ? Promise.resolve(forced.backend) : real.cryptoBackend()) };
});

interface Counted {
  readonly backend: CryptoBackend;
  calls: number;
}

function counted(inner: CryptoBackend): Counted {
  const c: Counted = {
    calls: 0,
    backend: {
      name: inner.name,
      ed25519PublicKey: (seed) => (c.calls++, inner.ed25519PublicKey(seed)),
      sign: (seed, message) => (c.calls++, inner.sign(seed, message)),
      verify: (key, message, signature) => (c.calls++, inner.verify(key, message, signature)),
      x25519PublicKey: (secret) => (c.calls++, inner.x25519PublicKey(secret)),
      boxKey: (theirs, mine) => (c.calls++, inner.boxKey(theirs, mine)),
      ephemeralBoxKeys: (theirs) => (c.calls++, inner.ephemeralBoxKeys(theirs)),
    },
  };
  return c;
}

/** Everything one run produced, in wire form, to compare across backend pairs. */
interface Transcript {
  bundle: string;
  challenge: string;
  envelope: string;
  receipt: string;
}

async function run(agentSide: Counted, clientSide: Counted): Promise<Transcript> {
  const use = (side: Counted): void => {
    forced.backend = side.backend;
  };
  try {
    use(agentSide);
    const agent = await makeAgent('interop-agent');
    const fields = { gatewayId: 'gw-interop', nonce: toBase64Url(new Uint8Array(32).fill(9)), time: NOW, agentId: agent.identity.agentId };
    const challenge = await signChallenge(fields, agent.identity);

    use(clientSide);
    const verified = await verifyBundle(agent.signed, { now: NOW });
    expect(await verifyChallenge(fields, challenge, verified.identityKey)).toBe(true);
    const sealed = await sealRequest({
      model: MODEL.id,
      messages: MESSAGES,
      sampling: SAMPLING,
      recipients: [verified],
      now: NOW,
      random: labelledRandom('interop/seal'),
    });

    use(agentSide);
    const opened = await openRequest(sealed.envelope, { agentId: agent.identity.agentId, boxKeys: [agent.boxKey], now: NOW });
    expect(opened.payload.messages).toEqual(MESSAGES);
    expect(opened.contentKey).toEqual(sealed.contentKey);
    const receipt = await signReceipt(
      {
        v: 1,
        jobId: sealed.jobId,
        attempt: 0,
        agentId: agent.identity.agentId,
        model: MODEL.id,
        modelSha256: MODEL.sha256,
        promptTokens: 21,
        completionTokens: 5,
        requestDigest: toBase64Url(opened.requestDigest),
        replyDigest: toBase64Url(new Uint8Array(32).fill(3)),
        startedAt: NOW,
        endedAt: NOW + 250,
        finishReason: 'stop',
      },
      agent.identity,
    );

    use(clientSide);
    await verifyReceipt(receipt, { identityKey: verified.identityKey, jobId: sealed.jobId, requestDigest: sealed.requestDigest });

    return {
      bundle: JSON.stringify(agent.signed),
      challenge,
      envelope: JSON.stringify(sealed.envelope),
      receipt: JSON.stringify(receipt),
    };
  } finally {
    forced.backend = undefined;
  }
}

describe('bundle, challenge, envelope and receipt across backends', () => {
  it('interoperate in all four pairings and produce identical bytes', async () => {
    const web = () => counted(createWebCryptoBackend(globalThis.crypto.subtle));
    const nacl = () => counted(naclBackend);
    const pairs: [string, Counted, Counted][] = [
      ['webcrypto agent, webcrypto client', web(), web()],
      ['webcrypto agent, tweetnacl client', web(), nacl()],
      ['tweetnacl agent, webcrypto client', nacl(), web()],
      ['tweetnacl agent, tweetnacl client', nacl(), nacl()],
    ];
    const transcripts: Transcript[] = [];
    for (const [what, agentSide, clientSide] of pairs) {
      transcripts.push(await run(agentSide, clientSide));
      expect(agentSide.calls, `${what}: the agent side ran on its backend`).toBeGreaterThan(0);
      expect(clientSide.calls, `${what}: the client side ran on its backend`).toBeGreaterThan(0);
    }
    for (const t of transcripts.slice(1)) expect(t).toEqual(transcripts[0]);
  });

  it('leaves the real selection in place when nothing is forced', async () => {
    const { cryptoBackend } = await import('../../src/shared/crypto/backend.js');
    expect((await cryptoBackend()).name).toBe('webcrypto');
    expect(randomBytes(8)).toHaveLength(8);
  });
});
